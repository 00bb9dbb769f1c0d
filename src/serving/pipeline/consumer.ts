import type { EnrichedEvent } from '../../workbench/event.js';
import { FencedError } from '../cluster/lease.js';
import type { DeadLetter, DeadLetterStore } from './dead-letters.js';
import { payloadBytes } from './dead-letters.js';
import type { EventLog } from './event-log.js';
import type { RecentEvents } from './recent-events.js';

/**
 * A consumer of the event log. The runner reads batches from where the consumer stands, hands them
 * over in order, and commits the offset after `handle` resolves, so a restart resumes after the last
 * batch that was fully handled.
 */
interface ConsumerBase {
  readonly name: string;
  /**
   * Where to resume, given the offset committed in the log. A consumer whose own durable state
   * records its position (a snapshot, files named by offset) returns that instead.
   */
  resumeAt?(committed: number): Promise<number>;
  /**
   * Called on start when `resumeAt` lies past the log's end `end`: the log lost its tail (a corrupt
   * tail cut, a stream recreated), and the offsets from `end` on will be used again by new records.
   * A consumer with state of its own drops what it took from the lost records (rebuilding from the
   * log, or from a snapshot at or before `end`) and returns where to resume, at most `end`. Without
   * it the consumer resumes at `end`.
   */
  rewind?(end: number): Promise<number>;
  /** Called when the runner stops, after the last batch: persist what must survive a restart. */
  close?(): Promise<void>;
  /**
   * Whether `handle` may be given, alone, a record from before its position: an operator's retry
   * of a dead letter. Only for a consumer that does not take its position from the offsets it is
   * handed (the archiver: files named by offset, resuming after the highest); one that keeps an
   * offset with its state would move it back, or skip the record. Without it retries are refused.
   */
  readonly acceptsLateRecords?: boolean;
}

/** A consumer of decoded events. */
export interface EventConsumer extends ConsumerBase {
  readonly input?: 'events';
  /** Handles the events with offsets `first` to `first + events.length - 1`, in order. */
  handle(events: EnrichedEvent[], first: number): Promise<void>;
}

/** A consumer of the log's records as they are (JSON text), for one that hands them on undecoded. */
export interface RecordConsumer extends ConsumerBase {
  readonly input: 'records';
  handle(records: Uint8Array[], first: number): Promise<void>;
}

export type Consumer = EventConsumer | RecordConsumer;

export interface RunnerOptions {
  /** Most events per batch. */
  batchSize: number;
  /** How long to wait for a batch to fill before handling a partial one (0: handle what is there). */
  maxWaitMs: number;
  /**
   * Commit at most this often (and always on stop); default 0, after every batch. Only for a
   * consumer whose `resumeAt` finds its own position (a snapshot, files named by offset): for any
   * other, a crash would hand it again the batches since the last commit.
   */
  commitEveryMs?: number;
  onError?: (err: unknown, consumer: string) => void;
  /** Where records the consumer cannot apply are set aside; without it a failing batch is retried, every second, until it passes. */
  deadLetters?: DeadLetterOptions;
}

export interface DeadLetterOptions {
  store: DeadLetterStore;
  /** Tries of a batch, and of a single record, before it is split or set aside; default 3. */
  tries?: number;
  /** Pause after a failed try, doubled after each; default 250 ms. */
  backoffMs?: number;
  /** How often the store is asked for retries an operator requested; default 1000 ms. */
  retryPollMs?: number;
  /** A record was set aside: a new letter, or one failing again after a successful retry. */
  onDeadLetter?(letter: DeadLetter, err: unknown): void;
  /** A retry requested by an operator ran (or was refused); the letter holds the outcome. */
  onRetried?(letter: DeadLetter): void;
}

type Value = EnrichedEvent | Uint8Array;

/** Records read from `first` on; `undecodable` holds, by offset, those an event consumer cannot even decode (their slot in `values` is a placeholder). */
interface Batch {
  first: number;
  values: Value[];
  undecodable: Map<number, Error>;
}

/** Thrown out of a pause when the runner stops in the middle of isolating a poison record. */
const STOPPED = Symbol('stopped');

/**
 * Thrown by a consumer that cannot apply anything for now through no record's fault (its store is
 * gone or holds something else): nothing is set aside, and the batch is tried again after a pause.
 */
export class ConsumerBlocked extends Error {
  override name = 'ConsumerBlocked';
}

/**
 * Thrown by a consumer whose store says where it stands and is shared by several instances: another
 * instance moved it (applied batches ahead, or rebuilt it), so the runner goes on from `offset`.
 * No record is at fault: nothing is set aside.
 */
export class Reposition extends Error {
  constructor(
    readonly offset: number,
    reason: string,
  ) {
    super(`continue from offset ${offset}: ${reason}`);
    this.name = 'Reposition';
  }
}

export class ConsumerRunner {
  private position = 0;
  private stopping = false;
  private loop: Promise<void> | undefined;
  private lastError: unknown;
  private committedAt = 0;
  private uncommitted = false;

  constructor(
    private readonly log: EventLog,
    readonly consumer: Consumer,
    private readonly options: RunnerOptions,
    private readonly recent?: RecentEvents,
  ) {}

  /** The next offset this consumer will read. */
  get offset(): number {
    return this.position;
  }

  get error(): unknown {
    return this.lastError;
  }

  /** Set by start() when the consumer stood past the log's end and was moved back: from where, to where. */
  rewound: { from: number; to: number } | undefined;

  async start(): Promise<void> {
    const end = await this.log.next();
    let committed = await this.log.committed(this.consumer.name);
    const stoodAt = committed;
    // Past the end, the offsets from the end on belong to records not yet written: a consumer left
    // there would skip them, and apply a resent copy of a lost record twice.
    if (committed > end) await this.log.commit(this.consumer.name, (committed = end));
    let position = this.consumer.resumeAt ? await this.consumer.resumeAt(committed) : committed;
    if (position > end || stoodAt > end) {
      const from = Math.max(position, stoodAt);
      if (position > end) position = this.consumer.rewind ? await this.consumer.rewind(end) : end;
      if (!(Number.isSafeInteger(position) && position >= 0 && position <= end)) {
        throw new Error(`consumer ${this.consumer.name} rewound to offset ${position}, not within the log's end ${end}`);
      }
      this.rewound = { from, to: position };
    }
    this.position = position;
    this.loop = this.run();
  }

  /** Finishes the batch in hand, commits it, and stops. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop;
    try {
      if (this.uncommitted) await this.commit();
    } finally {
      // A consumer that finds its own position resumes right without this commit; its state must
      // still be persisted and its files closed.
      await this.consumer.close?.();
    }
  }

  private async commit(): Promise<void> {
    await this.log.commit(this.consumer.name, this.position);
    this.committedAt = Date.now();
    this.uncommitted = false;
  }

  /** When the dead-letter store is next asked for requested retries. */
  private nextRetryPoll = 0;
  /** A record was set aside since the last commit: commit at once, so a restart does not meet it again. */
  private setAside = false;

  private async run(): Promise<void> {
    while (!this.stopping) {
      try {
        await this.retryRequested();
        const batch = await this.readBatch();
        if (batch.values.length === 0) continue;
        await this.apply(batch);
        if (this.setAside || Date.now() - this.committedAt >= (this.options.commitEveryMs ?? 0)) await this.commit();
        this.setAside = false;
        this.lastError = undefined;
      } catch (err) {
        if (err === STOPPED) break;
        if (err instanceof Reposition && Number.isSafeInteger(err.offset) && err.offset >= 0) {
          this.position = err.offset;
          this.uncommitted = true;
          continue;
        }
        // Without a dead-letter store (or when setting aside fails) the runner retries from where it
        // stands (it has not committed past it), after a pause.
        this.lastError = err;
        this.options.onError?.(err, this.consumer.name);
        await sleep(1000);
      }
    }
  }

  /** Hands a batch over; with a dead-letter store, isolates and sets aside what cannot be applied. */
  private async apply(batch: Batch): Promise<void> {
    const { values, first, undecodable } = batch;
    if (!this.options.deadLetters) {
      for (const err of undecodable.values()) throw err;
      await this.handle(values, first);
      this.advance(values.length);
      return;
    }
    // Runs of decodable records are handled whole when they can be; an undecodable one is set aside at once (decoding again cannot help).
    let start = 0;
    for (let i = 0; i <= values.length; i++) {
      if (i < values.length && !undecodable.has(first + i)) continue;
      if (i > start) await this.settle(start === 0 && i === values.length ? values : values.slice(start, i), first + start, true);
      if (i < values.length) await this.deadLetter(first + i, undecodable.get(first + i)!, 1);
      start = i + 1;
    }
  }

  /**
   * Handles records `first`.. (where the runner stands) or finds the one that fails. A batch, and a
   * single record, is tried a few times with a growing pause (a failure may be passing); a part of
   * a failing batch once. What keeps failing is split in halves, handled in order, down to the one
   * record that fails alone, which is set aside; good records go through in a few large batches.
   */
  private async settle(values: Value[], first: number, whole: boolean): Promise<void> {
    const { tries = 3, backoffMs = 250 } = this.options.deadLetters!;
    const single = values.length === 1;
    const allowed = whole || single ? tries : 1;
    let failure: unknown;
    for (let attempt = 1; attempt <= allowed; attempt++) {
      // The batch in hand is handled once more on stop; its isolation stops where it stands (the position says how far it got).
      if (this.stopping && (attempt > 1 || !whole)) throw STOPPED;
      try {
        await this.handle(values, first);
        this.advance(values.length);
        return;
      } catch (err) {
        // A singleton whose lease has passed on: no record's fault, none is set aside. The batch is
        // tried again after a pause, until the service stops this runner.
        if (err instanceof FencedError || err instanceof Reposition || err instanceof ConsumerBlocked) throw err;
        failure = err;
        this.lastError = err;
        if (whole || single) this.options.onError?.(err, this.consumer.name);
        if (attempt < allowed) await this.pause(backoffMs * 2 ** (attempt - 1));
      }
    }
    if (single) return this.deadLetter(first, failure, allowed);
    const half = Math.ceil(values.length / 2);
    await this.settle(values.slice(0, half), first, false);
    await this.settle(values.slice(half), first + half, false);
  }

  /** Sets the record at `offset` aside, as it is in the log, and moves past it. */
  private async deadLetter(offset: number, err: unknown, attempts: number): Promise<void> {
    const { store, onDeadLetter } = this.options.deadLetters!;
    const [entry] = await this.log.read(offset, 1);
    if (!entry) throw new Error(`consumer ${this.consumer.name}: record ${offset} to set aside is not in the log`);
    const { letter, isNew } = await store.add({ consumer: this.consumer.name, offset, payload: entry.payload, error: err, attempts });
    if (isNew) onDeadLetter?.(letter, err);
    this.setAside = true;
    this.advance(1);
  }

  /**
   * Applies the letters an operator asked to retry, each alone, and records how it went. Only
   * records the consumer is already past: one ahead of it (met again after a restart from an older
   * snapshot) waits until the consumer has passed it, or it would be applied twice.
   */
  private async retryRequested(): Promise<void> {
    const options = this.options.deadLetters;
    if (!options || Date.now() < this.nextRetryPoll) return;
    this.nextRetryPoll = Date.now() + (options.retryPollMs ?? 1000);
    const { name } = this.consumer;
    for (const letter of await options.store.list({ consumer: name, state: 'retry-requested' })) {
      if (this.stopping || letter.offset >= this.position) continue;
      let outcome: { ok: true } | { ok: false; error: unknown } = { ok: true };
      try {
        if (!this.consumer.acceptsLateRecords) {
          throw new Error(
            `the ${name} consumer keeps its log position with its state, so it cannot apply a record out of order; it applies it again only when it rebuilds from the log`,
          );
        }
        const bytes = payloadBytes(letter);
        const value = this.consumer.input === 'records' ? bytes : decode(bytes, letter.offset);
        if (value instanceof Error) throw value;
        await this.handle([value], letter.offset);
      } catch (err) {
        outcome = { ok: false, error: err };
      }
      options.onRetried?.(await options.store.recordRetry(letter.id, outcome));
    }
  }

  private handle(values: Value[], first: number): Promise<void> {
    return this.consumer.input === 'records' ? this.consumer.handle(values as Uint8Array[], first) : this.consumer.handle(values as EnrichedEvent[], first);
  }

  private advance(count: number): void {
    this.position += count;
    this.uncommitted = true;
  }

  /** A pause that ends early, by throwing STOPPED, when the runner is stopped. */
  private async pause(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      if (this.stopping) throw STOPPED;
      await sleep(Math.min(50, until - Date.now()));
    }
    if (this.stopping) throw STOPPED;
  }

  private async readBatch(): Promise<Batch> {
    const { batchSize, maxWaitMs } = this.options;
    const batch: Batch = { first: this.position, values: [], undecodable: new Map() };
    await this.wait(this.position, 250);
    await this.read(batch, batchSize);
    const deadline = Date.now() + maxWaitMs;
    while (batch.values.length > 0 && batch.values.length < batchSize && Date.now() < deadline && !this.stopping) {
      await this.wait(batch.first + batch.values.length, Math.min(250, deadline - Date.now()));
      await this.read(batch, batchSize - batch.values.length);
    }
    return batch;
  }

  /**
   * Appends up to `max` records to the batch: as they are for a record consumer; else events from
   * the in-memory tail when it has them, else decoded from the log.
   */
  private async read(batch: Batch, max: number): Promise<void> {
    const from = batch.first + batch.values.length;
    const { values } = batch;
    if (this.consumer.input === 'records') {
      for (const e of await this.log.read(from, max)) values.push(e.payload);
      return;
    }
    // The log wakes this runner before ingest has put the batch in the ring: wait for the put
    // rather than decode what the ring is about to hold.
    if (this.recent?.expects(from)) await this.recent.waitFor(from, RING_WAIT_MS);
    const cached = this.recent?.take(from, max);
    if (cached && cached.length > 0) {
      for (const e of cached) values.push(e);
      return;
    }
    for (const entry of await this.log.read(from, max)) {
      const value = decode(entry.payload, entry.offset);
      if (value instanceof Error) {
        batch.undecodable.set(entry.offset, value);
        values.push(new Uint8Array(0)); // a placeholder, never handed over
      } else values.push(value);
    }
  }

  /**
   * Waits for an offset with a timer of the runner's own: the log's timers do not hold the process
   * open, but a running consumer must (until it is stopped).
   */
  private async wait(offset: number, ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.log.waitFor(offset, ms), new Promise<void>((r) => (timer = setTimeout(r, ms + 10)))]);
    clearTimeout(timer);
  }
}

/**
 * How long a runner waits for the ring to be given an offset the log already has. Ingest puts a
 * batch within microseconds of its durability (or after storing new experiment assignments); an
 * offset another instance appended to a shared JetStream log never comes, and costs this wait.
 */
const RING_WAIT_MS = 50;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const decoder = new TextDecoder();

/** A log record as an event, or why it is not one: such a record is set aside, never handed over. */
function decode(payload: Uint8Array, offset: number): EnrichedEvent | Error {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(payload));
  } catch (err) {
    return new Error(`record ${offset} is not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return new Error(`record ${offset} is JSON but not an event object`);
  return value as EnrichedEvent;
}
