import type { EnrichedEvent } from '../../workbench/event.js';
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
  /** Called when the runner stops, after the last batch: persist what must survive a restart. */
  close?(): Promise<void>;
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

  async start(): Promise<void> {
    const committed = await this.log.committed(this.consumer.name);
    this.position = this.consumer.resumeAt ? await this.consumer.resumeAt(committed) : committed;
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

  private async run(): Promise<void> {
    while (!this.stopping) {
      try {
        const batch = await this.readBatch();
        if (batch.length === 0) continue;
        if (this.consumer.input === 'records') await this.consumer.handle(batch as Uint8Array[], this.position);
        else await this.consumer.handle(batch as EnrichedEvent[], this.position);
        this.position += batch.length;
        this.uncommitted = true;
        if (Date.now() - this.committedAt >= (this.options.commitEveryMs ?? 0)) await this.commit();
        this.lastError = undefined;
      } catch (err) {
        // A failing consumer retries the same batch (it has not committed), after a pause.
        this.lastError = err;
        this.options.onError?.(err, this.consumer.name);
        await sleep(1000);
      }
    }
  }

  private async readBatch(): Promise<(EnrichedEvent | Uint8Array)[]> {
    const { batchSize, maxWaitMs } = this.options;
    await this.wait(this.position, 250);
    const events = await this.read(this.position, batchSize);
    const deadline = Date.now() + maxWaitMs;
    while (events.length > 0 && events.length < batchSize && Date.now() < deadline && !this.stopping) {
      const next = this.position + events.length;
      await this.wait(next, Math.min(250, deadline - Date.now()));
      events.push(...(await this.read(next, batchSize - events.length)));
    }
    return events;
  }

  /** Records as they are for a record consumer; else events from the in-memory tail when it has them, else from the log. */
  private async read(from: number, max: number): Promise<(EnrichedEvent | Uint8Array)[]> {
    if (this.consumer.input === 'records') return (await this.log.read(from, max)).map((e) => e.payload);
    const cached = this.recent?.take(from, max);
    if (cached && cached.length > 0) return cached;
    const decoder = new TextDecoder();
    return (await this.log.read(from, max)).map((e) => JSON.parse(decoder.decode(e.payload)) as EnrichedEvent);
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
