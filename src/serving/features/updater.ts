import type { EnrichedEvent } from '../../workbench/event.js';
import { featureSetVersion, type Feature } from '../../workbench/features/definition.js';
import { OnlineFeatures, type FeatureRead, type UserState } from '../../workbench/features/online.js';
import type { EventConsumer } from '../pipeline/consumer.js';
import type { OnlineStore } from './store.js';

/**
 * The features consumer of one feature set: folds every event into the set's online state. The
 * store records the log offset with each batch's states, so after a restart the consumer resumes
 * where the store stands; a store holding another set's states is reset and rebuilt from the
 * start of the log.
 */
export class FeatureUpdater implements EventConsumer {
  private readonly compiled: OnlineFeatures;
  private readonly version: string;

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
    if (position && position.setVersion === this.version) return position.offset;
    await this.store.reset(this.version);
    return 0;
  }

  /**
   * The log lost events these states hold: they are dropped and rebuilt from the start of the log.
   * The reset is flushed at once, so a crash cannot bring back a position past the end.
   */
  async rewind(_end: number): Promise<number> {
    await this.store.reset(this.version);
    await this.store.flush();
    return 0;
  }

  async handle(events: EnrichedEvent[], first: number): Promise<void> {
    const compiled = this.compiled;
    const relevant = events.filter((e) => compiled.reads(e.event));
    const users = [...new Set(relevant.map((e) => e.user_id))];
    const states: Map<string, UserState | undefined> = await this.store.get(users);
    const newest = new Map<string, number>();
    for (const e of relevant) {
      const time = Date.parse(e.time);
      if (time > (newest.get(e.user_id) ?? 0)) newest.set(e.user_id, time);
      let state = states.get(e.user_id);
      if (!state) states.set(e.user_id, (state = compiled.emptyState()));
      compiled.update(state, { event_id: e.event_id, time, user_id: e.user_id, event: e.event, props: e.props });
    }
    // Buckets that no window covers any more, as of the user's newest event, leave (never later:
    // the user may be read at any time after it); a user with nothing left leaves the store.
    for (const [user, state] of states) if (state && compiled.expire(state, newest.get(user)!)) states.set(user, undefined);
    await this.store.write(states, first + events.length);
  }

  /** A user's feature values at a time, with the features that fell back to defaults. */
  async read(userId: string, at: number): Promise<FeatureRead> {
    return this.compiled.read(await this.store.peek(userId), at);
  }

  async close(): Promise<void> {
    await this.store.flush();
  }
}
