import type { EnrichedEvent } from '../../workbench/event.js';
import { featureSetVersion, type Feature } from '../../workbench/features/definition.js';
import { OnlineFeatures, type FeatureRead, type UserState } from '../../workbench/features/online.js';
import { ConsumerBlocked, Reposition, type EventConsumer } from '../pipeline/consumer.js';
import { StoreMovedError, type OnlineStore } from './store.js';

/** A user's values read as of `at`, 1 ms after an event, while folding it (see `FeatureUpdater.capture`). */
export interface CapturedRead extends FeatureRead {
  at: number;
}

/**
 * Reads kept for the precompute at most: past it (the precompute further behind than this many
 * triggers), it reads at the current time instead. A read is about 1 KB.
 */
const MAX_CAPTURED = 50_000;

/**
 * The features consumer of one feature set: folds every event into the set's online state. The
 * store records the log offset with each batch's states, so after a restart the consumer resumes
 * where the store stands; a store holding another set's states is reset and rebuilt from the
 * start of the log.
 */
export class FeatureUpdater implements EventConsumer {
  private readonly compiled: OnlineFeatures;
  private readonly version: string;
  private captureEvents: ReadonlySet<string> = new Set();
  /** Reads taken while folding, by the log offset of their event, until the precompute takes them. */
  readonly captured = new Map<number, CapturedRead>();
  /** Triggers not kept because `captured` was full. */
  capturedDropped = 0;
  /** The offset this consumer last found or left the store at. */
  private reached = 0;

  constructor(
    readonly store: OnlineStore,
    features: readonly Feature[],
    readonly name = 'features',
  ) {
    this.compiled = new OnlineFeatures(features);
    this.version = featureSetVersion(features);
  }

  get features(): readonly Feature[] {
    return this.compiled.features;
  }

  get setVersion(): string {
    return this.version;
  }

  async resumeAt(): Promise<number> {
    const position = await this.store.position();
    if (position && position.setVersion === this.version) return (this.reached = position.offset);
    await this.store.reset(this.version);
    return (this.reached = 0);
  }

  /**
   * The log lost events these states hold: they are dropped and rebuilt from the start of the log.
   * The reset is flushed at once, so a crash cannot bring back a position past the end.
   */
  async rewind(_end: number): Promise<number> {
    this.captured.clear();
    await this.store.reset(this.version);
    await this.store.flush();
    return (this.reached = 0);
  }

  /**
   * While folding, reads the user of each of these events as of 1 ms after it, into `captured` by
   * the event's log offset: the values a model scoring that event should see, the event in and
   * nothing after it, however far behind the reader runs (on a replay at full speed the precompute
   * reads hours of event time after the login). Exact as long as a user's events come in time order.
   */
  capture(events: ReadonlySet<string>): void {
    this.captureEvents = events;
  }

  /**
   * Folds the events the store does not hold yet. The store's position is the truth: with a store
   * shared by several instances (Redis), whichever folds a batch first writes it (a compare-and-set
   * on the position), the others find it applied and skip it, so every event counts once however
   * many instances run this consumer. A store moved past the batch, or rebuilt behind it, moves the
   * runner there (Reposition).
   */
  async handle(events: EnrichedEvent[], first: number): Promise<void> {
    const end = first + events.length;
    for (;;) {
      const position = await this.store.position();
      if (!position || position.setVersion !== this.version) {
        throw new ConsumerBlocked(`the online store no longer holds feature set ${this.version} (it holds ${position ? position.setVersion : 'nothing'})`);
      }
      const at = position.offset;
      if (at > end || (at < first && at !== this.reached)) {
        this.reached = at;
        throw new Reposition(at, `the online store of feature set ${this.version} stands there (another instance moved it)`);
      }
      // Between `reached` and `first`: records this runner set aside, applied by no one.
      const from = Math.max(at, first);
      if (from < end) {
        try {
          await this.fold(events.slice(from - first), from, end, at);
        } catch (err) {
          if (!(err instanceof StoreMovedError)) throw err;
          // Another instance wrote first: what was read is stale, and so are the reads taken from it.
          for (let o = from; o < end; o++) this.captured.delete(o);
          continue;
        }
      }
      this.reached = end;
      return;
    }
  }

  /** Folds `events` (log offsets `first`..) into their users' states and writes them with `end`, if the store still stands at `at`. */
  private async fold(events: EnrichedEvent[], first: number, end: number, at: number): Promise<void> {
    const compiled = this.compiled;
    const capture = this.captureEvents;
    const users = [...new Set(events.filter((e) => compiled.reads(e.event) || capture.has(e.event)).map((e) => e.user_id))];
    const states: Map<string, UserState | undefined> = await this.store.get(users);
    const newest = new Map<string, number>();
    events.forEach((e, i) => {
      const folds = compiled.reads(e.event);
      if (!folds && !capture.has(e.event)) return;
      const time = Date.parse(e.time);
      let state = states.get(e.user_id);
      if (folds) {
        const seen = newest.get(e.user_id);
        if (seen === undefined || time > seen) newest.set(e.user_id, time);
        if (!state) states.set(e.user_id, (state = compiled.emptyState()));
        compiled.update(state, { event_id: e.event_id, time, user_id: e.user_id, event: e.event, props: e.props });
      }
      if (!capture.has(e.event)) return;
      if (this.captured.size < MAX_CAPTURED) this.captured.set(first + i, { ...compiled.read(state, time + 1), at: time + 1 });
      else this.capturedDropped++;
    });
    // Buckets that no window covers any more, as of the user's newest event, leave (never later:
    // the user may be read at any time after it); a user with nothing left leaves the store. Only
    // the users folded are written: one only read for a capture is unchanged.
    const changed = new Map<string, UserState | undefined>();
    for (const [user, time] of newest) {
      const state = states.get(user)!;
      changed.set(user, compiled.expire(state, time) ? undefined : state);
    }
    await this.store.write(changed, end, at);
  }

  /** Forgets the reads of events before `offset` (taken or not wanted). */
  releaseCaptured(offset: number): void {
    for (const key of this.captured.keys()) {
      if (key >= offset) break;
      this.captured.delete(key);
    }
  }

  /** A user's feature values at a time, with the features that fell back to defaults. */
  async read(userId: string, at: number): Promise<FeatureRead> {
    return this.compiled.read(await this.store.peek(userId), at);
  }

  async close(): Promise<void> {
    await this.store.flush();
  }
}
