/**
 * The durable, append-only event log between ingest and the consumers. Offsets are dense and start
 * at 0; a batch is acknowledged only once it is on stable storage. The file log has one writer (its
 * process); a JetStream stream may have several (service instances), whose batches interleave and
 * whose retries the stream recognises by record id (see `append`). Each consumer keeps its own
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

/**
 * Where an appended batch went. With one writer a batch is contiguous: its records are at `first`
 * to `next - 1`, in order, and `offsets` is absent. Otherwise `offsets` says where each record is.
 */
export interface Appended {
  /** The lowest offset of the batch's records (for an empty batch, the log's end). */
  first: number;
  /** One past the highest: every record of the batch lies before it (a consumer past it has them all). */
  next: number;
  /**
   * Each record's offset, in the order given, when they are not exactly `first` to `next - 1`:
   * another writer's records fell between them, or some were in the log already (`duplicates`).
   * Ascending, except a duplicate's, which is its original's.
   */
  offsets?: readonly number[];
  /**
   * Indexes (in the batch) of records whose id the log already held within its duplicate window:
   * not stored again; their offset is the original's, whose payload may differ (an earlier copy).
   */
  duplicates?: readonly number[];
}

/** Each record's offset: `offsets`, or the contiguous range. */
export function offsetsOf(appended: Appended, count: number): readonly number[] {
  return appended.offsets ?? Array.from({ length: count }, (_, i) => appended.first + i);
}

export interface EventLog {
  /** `file` or `jetstream`. */
  readonly kind: string;
  /** What opening repaired, for a log that can repair itself (the file log). */
  readonly recovered?: LogRecovery;
  /**
   * How long the log recognises a record id it stored (JetStream's duplicate window), in ms;
   * absent for a log that ignores ids (the file log: its one writer's ingest dedupes event ids).
   */
  readonly duplicateWindowMs?: number;
  /**
   * Appends a batch; resolves once the whole batch is durable (on disk, fsynced; or acknowledged by
   * the JetStream server) with where its records are. Concurrent calls are allowed; each batch
   * keeps its order, and with one writer it is contiguous. `ids` (one per payload, e.g. event ids)
   * make the append idempotent on a log with a `duplicateWindowMs`: a record whose id the log stored
   * within the window is not stored again (`duplicates`). An append that fails may have stored part
   * of the batch; appending it again with the same ids within the window stores only the rest.
   */
  append(payloads: readonly Payload[], ids?: readonly string[]): Promise<Appended>;
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
