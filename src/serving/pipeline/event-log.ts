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

export interface EventLog {
  /** `file` or `jetstream`. */
  readonly kind: string;
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
