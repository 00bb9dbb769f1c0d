import { assign, type Experiment } from '../../workbench/experiments/definition.js';
import type { Event, UserDims } from '../../workbench/event.js';
import type { Assignment, OltpStore } from '../../workbench/oltp/store.js';
import type { Experiments } from './experiments.js';

/** The event that records a user's entry into an experiment; the stats consumer starts counting from it. */
export const EXPOSURE_EVENT = 'experiment_exposure';

/** A user's arm as the service answers it, and why. */
export interface ArmAnswer {
  experiment: string;
  arm: string;
  /** `assigned` (sticky, from now on), `existing` (assigned before), `rolled_back` / `stopped` (control for everyone), `shipped` (the winner for everyone). */
  reason: 'assigned' | 'existing' | 'rolled_back' | 'stopped' | 'shipped';
}

export interface TaggedBatch {
  /** Per event of the batch: its user's arms in running experiments (`{}` for none). */
  tags: Record<string, string>[];
  /** Exposure events to log just before the event at that index. */
  exposures: Map<number, Event[]>;
}

/**
 * Sticky assignment: the first arm a user gets in an experiment is kept in OLTP (and here), so a
 * later change of weights or coverage moves nobody; the arm itself is the pure hash assignment.
 * Entering an experiment is logged as an `experiment_exposure` event, with a deterministic
 * event_id so it is logged once.
 */
export class Assigner {
  /** experiment -> user -> arm, for experiments that run or ran. */
  private readonly sticky = new Map<string, Map<string, string>>();
  private readonly loading = new Map<string, Promise<void>>();

  constructor(
    private readonly experiments: Experiments,
    private readonly oltp: OltpStore,
  ) {}

  /** Loads the stored assignments of an experiment once (they can only grow, and only through here or OLTP). */
  private async load(key: string): Promise<Map<string, string>> {
    let users = this.sticky.get(key);
    if (users) return users;
    let pending = this.loading.get(key);
    if (!pending) {
      pending = this.oltp.getAssignments(key).then((rows) => {
        if (!this.sticky.has(key)) this.sticky.set(key, new Map(rows.map((a) => [a.user_id, a.arm])));
      });
      this.loading.set(key, pending);
    }
    await pending;
    return this.sticky.get(key)!;
  }

  /**
   * Tags a batch at ingest: each event gets its user's arms in running experiments; a user's first
   * event of an experiment's `exposureEvent` (or any exposure already recorded) assigns them, and
   * the exposure is logged before that event. Assignments are stored before the batch is appended.
   */
  async tagBatch(events: readonly Event[], dims: (user: string) => UserDims | undefined): Promise<TaggedBatch> {
    const running = this.experiments.running();
    const tags: Record<string, string>[] = events.map(() => ({}));
    const exposures = new Map<number, Event[]>();
    if (running.length === 0) return { tags, exposures };
    const fresh: Assignment[] = [];
    for (const e of running) {
      const users = await this.load(e.key);
      events.forEach((event, i) => {
        if (event.event === EXPOSURE_EVENT) {
          // An exposure logged through the API: its arm is the sticky one it was given.
          if (event.props.experiment === e.key && typeof event.props.arm === 'string') tags[i]![e.key] = event.props.arm;
          return;
        }
        let arm = users.get(event.user_id);
        if (arm === undefined && event.event === e.exposureEvent) {
          arm = assign(e, { user_id: event.user_id, dims: dims(event.user_id) });
          if (arm !== undefined) {
            users.set(event.user_id, arm);
            fresh.push({ experiment: e.key, user_id: event.user_id, arm, assigned_at: event.time });
            const list = exposures.get(i) ?? [];
            list.push(exposureEvent(e.key, event.user_id, arm, event.time));
            exposures.set(i, list);
          }
        }
        if (arm !== undefined) tags[i]![e.key] = arm;
      });
    }
    if (fresh.length > 0) await this.persist(fresh);
    return { tags, exposures };
  }

  /**
   * The arm the service answers for a user in one experiment, assigning (and returning the exposure
   * to log) when the experiment runs and the user has none yet; undefined when the user is not in it.
   */
  async armFor(e: Experiment, user: { user_id: string; dims?: Partial<UserDims> }, now = new Date()): Promise<{ answer?: ArmAnswer; exposure?: Event }> {
    const control = e.arms[0]!.key;
    if (e.status === 'rolled_back' || e.status === 'stopped') return { answer: { experiment: e.key, arm: control, reason: e.status } };
    if (e.status === 'shipped') return { answer: { experiment: e.key, arm: e.winner ?? control, reason: 'shipped' } };
    if (e.status !== 'running') return {};
    const users = await this.load(e.key);
    const existing = users.get(user.user_id);
    if (existing !== undefined) return { answer: { experiment: e.key, arm: existing, reason: 'existing' } };
    const arm = assign(e, user);
    if (arm === undefined) return {};
    const [stored] = await this.persist([{ experiment: e.key, user_id: user.user_id, arm, assigned_at: now.toISOString() }]);
    users.set(user.user_id, stored!.arm);
    const reason = stored!.arm === arm && stored!.assigned_at === now.toISOString() ? 'assigned' : 'existing';
    return { answer: { experiment: e.key, arm: stored!.arm, reason }, ...(reason === 'assigned' ? { exposure: exposureEvent(e.key, user.user_id, arm, stored!.assigned_at) } : {}) };
  }

  /** Stores new assignments; another process may have assigned some first, and what it stored wins. */
  private async persist(rows: Assignment[]): Promise<Assignment[]> {
    const stored = await this.oltp.insertAssignmentsIfAbsent(rows);
    for (const a of stored) this.sticky.get(a.experiment)?.set(a.user_id, a.arm);
    return stored;
  }
}

function exposureEvent(experiment: string, user_id: string, arm: string, time: string): Event {
  return { event_id: `exposure:${experiment}:${user_id}`, time, user_id, event: EXPOSURE_EVENT, props: { experiment, arm } };
}
