import { createHash } from 'node:crypto';
import { assign, type Experiment } from '../../workbench/experiments/definition.js';
import type { Event, UserDims } from '../../workbench/event.js';
import type { Assignment, OltpStore } from '../../workbench/oltp/store.js';
import { unavailable } from '../errors.js';
import type { Experiments } from './experiments.js';

/** The event that records a user's entry into an experiment; the stats consumer starts counting from it. Reserved: clients cannot send it. */
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
  /** Exposures of other batches that must be in the log before this batch is appended (their users' events are tagged here). */
  after: Promise<void>[];
  /** Called once the batch is in the log (true) or could not be appended (false). */
  settle(appended: boolean): void;
}

/**
 * Sticky assignment: the first arm a user gets in an experiment is kept in OLTP (and here), so a
 * later change of coverage moves nobody; the arm itself is the pure hash assignment. Entering an
 * experiment is logged as an `experiment_exposure` event with a deterministic event_id, so it is
 * logged once. Until its exposure is in the log, a user's assignment counts as unlogged: the next
 * batch that tags the user logs the exposure again (an append can fail after the assignment was
 * stored), and a batch tagging a user whose exposure another batch is appending waits for that
 * append, so no tagged event reaches the log before its user's exposure.
 * One service instance per OLTP database assigns (assignments made elsewhere are read on start).
 */
export class Assigner {
  /** experiment -> user -> arm, for experiments that run or ran. */
  private readonly sticky = new Map<string, Map<string, string>>();
  private readonly loading = new Map<string, Promise<void>>();
  /** Assignments whose exposure is not in the log yet: key -> the exposure event. */
  private readonly unlogged = new Map<string, Event>();
  /** Exposures being appended by some batch: key -> resolves when that append ends (rejects when it failed). */
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(
    private readonly experiments: Experiments,
    private readonly oltp: OltpStore,
  ) {}

  /** Loads the stored assignments of an experiment once (they only grow, and only through here). */
  private async load(key: string): Promise<Map<string, string>> {
    const users = this.sticky.get(key);
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
   * `exposureEvent` of an experiment assigns them (stored before the batch is appended), and the
   * exposure is logged just before that event.
   */
  async tagBatch(events: readonly Event[], dims: (user: string) => UserDims | undefined): Promise<TaggedBatch> {
    const running = this.experiments.running();
    const tags: Record<string, string>[] = events.map(() => ({}));
    const exposures = new Map<number, Event[]>();
    const mine = new Set<string>();
    const after = new Set<Promise<void>>();
    const none: TaggedBatch = { tags, exposures, after: [], settle: () => undefined };
    if (running.length === 0) return none;
    for (const e of running) {
      const users = await this.load(e.key);
      // New users first, stored in one round trip; the stored arm wins (another request may have been first).
      const fresh = new Map<string, Assignment>();
      events.forEach((event) => {
        if (event.event !== e.exposureEvent || users.has(event.user_id) || fresh.has(event.user_id)) return;
        const arm = assign(e, { user_id: event.user_id, dims: dims(event.user_id) });
        if (arm !== undefined) fresh.set(event.user_id, { experiment: e.key, user_id: event.user_id, arm, assigned_at: event.time });
      });
      for (const stored of fresh.size > 0 ? await this.persist([...fresh.values()]) : []) {
        this.unlogged.set(keyOf(e.key, stored.user_id), exposureEvent(e.key, stored.user_id, stored.arm, stored.assigned_at));
      }
      events.forEach((event, i) => {
        if (event.event === EXPOSURE_EVENT) {
          // An exposure logged by the assignment API: tagged with its own arm.
          if (event.props.experiment === e.key && typeof event.props.arm === 'string') tags[i]![e.key] = event.props.arm;
          return;
        }
        const arm = users.get(event.user_id);
        if (arm === undefined) return;
        tags[i]![e.key] = arm;
        const key = keyOf(e.key, event.user_id);
        const flying = this.inFlight.get(key);
        if (flying && !mine.has(key)) return void after.add(flying);
        const exposure = this.unlogged.get(key);
        if (!exposure || mine.has(key)) return;
        mine.add(key);
        const list = exposures.get(i) ?? [];
        list.push(exposure);
        exposures.set(i, list);
      });
    }
    if (mine.size === 0) return { ...none, tags, after: [...after] };
    let settle!: (appended: boolean) => void;
    const done = new Promise<void>((resolve, reject) => {
      settle = (appended) => (appended ? resolve() : reject(unavailable('a batch carrying exposures of these users was not appended; send this batch again')));
    });
    done.catch(() => undefined);
    for (const key of mine) this.inFlight.set(key, done);
    return {
      tags,
      exposures,
      after: [...after],
      settle: (appended) => {
        for (const key of mine) {
          if (this.inFlight.get(key) === done) this.inFlight.delete(key);
          if (appended) this.unlogged.delete(key);
        }
        settle(appended);
      },
    };
  }

  /**
   * The arm the service answers for a user in one experiment. `enroll` assigns a user of a running
   * experiment who has none yet (stored; the caller logs the returned exposure); without it only an
   * existing assignment is answered.
   */
  async armFor(e: Experiment, user: { user_id: string; dims?: Partial<UserDims> }, options: { enroll: boolean; now?: Date }): Promise<{ answer?: ArmAnswer; exposure?: Event }> {
    const control = e.arms[0]!.key;
    if (e.status === 'rolled_back' || e.status === 'stopped') return { answer: { experiment: e.key, arm: control, reason: e.status } };
    if (e.status === 'shipped') return { answer: { experiment: e.key, arm: e.winner ?? control, reason: 'shipped' } };
    if (e.status !== 'running') return {};
    const users = await this.load(e.key);
    const existing = users.get(user.user_id);
    const key = keyOf(e.key, user.user_id);
    if (existing !== undefined) {
      const unlogged = options.enroll ? this.unlogged.get(key) : undefined;
      return { answer: { experiment: e.key, arm: existing, reason: 'existing' }, ...(unlogged && !this.inFlight.has(key) ? { exposure: unlogged } : {}) };
    }
    if (!options.enroll) return {};
    const arm = assign(e, user);
    if (arm === undefined) return {};
    const [stored] = await this.persist([{ experiment: e.key, user_id: user.user_id, arm, assigned_at: (options.now ?? new Date()).toISOString() }]);
    const exposure = exposureEvent(e.key, user.user_id, stored!.arm, stored!.assigned_at);
    this.unlogged.set(key, exposure);
    return { answer: { experiment: e.key, arm: stored!.arm, reason: 'assigned' }, exposure };
  }

  /** The API logged this exposure itself (through ingest): it is in the log. */
  logged(exposure: Event): void {
    this.unlogged.delete(keyOf(String(exposure.props.experiment), exposure.user_id));
  }

  /** Stores new assignments; another request may have assigned some first, and what it stored wins. */
  private async persist(rows: Assignment[]): Promise<Assignment[]> {
    const stored = await this.oltp.insertAssignmentsIfAbsent(rows);
    for (const a of stored) this.sticky.get(a.experiment)?.set(a.user_id, a.arm);
    return stored;
  }
}

const keyOf = (experiment: string, user: string) => `${experiment}\u0000${user}`;

/** Deterministic, so a retry is recognised as the same exposure, and short whatever the user id's length. */
function exposureEvent(experiment: string, user_id: string, arm: string, time: string): Event {
  const id = createHash('sha256').update(`${experiment}\u0000${user_id}`).digest('hex').slice(0, 40);
  return { event_id: `exposure-${id}`, time, user_id, event: EXPOSURE_EVENT, props: { experiment, arm } };
}
