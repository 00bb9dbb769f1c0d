/**
 * The durable, append-only event log between ingest and the consumers. Offsets are dense and start
 * at 0; a batch is acknowledged only once it is on stable storage. Each consumer keeps its own
 * committed offset (the next offset it will read), so it resumes after a restart exactly where it
 * stopped. The embedded implementation writes segment files in the data dir; the scale-out one is
 * NATS JetStream. Both pass test/serving/pipeline/conformance.ts.
 */
export interface LogEntry {
  offset: number;
  payload: Uint8Array;
}

/** A record to append: bytes, or text stored as UTF-8 (ingest hands over JSON text as it is). */
export type Payload = Uint8Array | string;

/**
 * The damaged tail of the last segment that opening cut off. The bytes are kept aside (`savedAs`)
 * so an operator can look at what was lost.
 */
export interface TailCut {
  /** The segment file. */
  readonly file: string;
  /** Where in it the first bad record started. */
  readonly byte: number;
  /** Bytes cut, from `byte` to the end of the file. */
  readonly bytes: number;
  /** The first offset cut: the log's end after the repair. */
  readonly offset: number;
  /**
   * Whole records framed in the cut bytes, when their length fields lead exactly to the end of the
   * file (a damaged payload); null when the tail is torn or garbled, so its record count is unknown.
   */
  readonly records: number | null;
  /** Records after the damage that still pass their CRC and were cut too (only when repair was asked for). */
  readonly intactRecords: number;
  /** Where the cut bytes were copied before the file was truncated. */
  readonly savedAs: string;
}

/** What opening the log repaired; the service logs, alerts and counts it whenever it is not clean. */
export interface LogRecovery {
  /** The log's end (its next offset) once opened. */
  readonly end: number;
  /** Bytes cut from a torn or corrupt tail (0: none). */
  readonly truncatedBytes: number;
  readonly cut?: TailCut;
  /**
   * Consumers whose committed offset lay past the end (their records are gone), with the offset
   * they had committed: each was rewritten to the end.
   */
  readonly rewound: readonly { readonly consumer: string; readonly committed: number }[];
}

export interface EventLog {
  /** `file` or `jetstream`. */
  readonly kind: string;
  /** What opening repaired, for a log that can repair itself (the file log). */
  readonly recovered?: LogRecovery;
  /**
   * Appends a batch; resolves once the whole batch is durable (on disk, fsynced; or acknowledged by
   * the JetStream server), with the offset of its first record and the next free offset. Concurrent
   * calls are allowed and keep each batch contiguous.
   */
  append(payloads: readonly Payload[]): Promise<{ first: number; next: number }>;
  /** Up to `max` entries with offsets from `from` on, in offset order. */
  read(from: number, max: number): Promise<LogEntry[]>;
  /** The offset the next appended record will get: the number of records in the log. */
  next(): Promise<number>;
  /** Resolves when a record with this offset exists, or after `timeoutMs`, whichever is first. */
  waitFor(offset: number, timeoutMs: number): Promise<void>;
  /** Records that `consumer` has processed every record before `offset`. Durable when it resolves. */
  commit(consumer: string, offset: number): Promise<void>;
  /** The offset `consumer` committed last, or 0. */
  committed(consumer: string): Promise<number>;
  close(): Promise<void>;
}
