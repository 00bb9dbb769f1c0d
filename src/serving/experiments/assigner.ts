import { createHash } from 'node:crypto';
import { wallClock, type Clock } from '../../workbench/clock.js';
import { dict } from '../../workbench/dict.js';
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

/** A user entering an experiment, to be logged. */
export interface ExposureKey {
  experiment: string;
  user_id: string;
}

export interface TaggedBatch {
  /** Per event of the batch: its user's arms in running experiments (no entry for none). */
  tags: (Record<string, string> | undefined)[];
  /** Exposure events to log before all of the batch's events (users entering through the API). */
  head: Event[];
  /** Exposure events to log just before the event at that index. */
  exposures: Map<number, Event[]>;
  /** Exposures other batches are appending that must be in the log before this batch (their users' events are tagged here). */
  after: Promise<void>[];
  /**
   * Called once the batch is in the log, with the exposure ids that are now in it (appended, or
   * found there already), or with `false` when it could not be appended. Stores the batch's new
   * assignments in OLTP.
   */
  settle(logged: ReadonlySet<string> | false): Promise<void>;
}

interface Claim {
  exposure: Event;
  assignment?: Assignment;
}

/**
 * Sticky assignment and exposure. A user's arm is the pure hash assignment, given once and kept
 * (here, and in the OLTP `assignments` table), so later changes of coverage move nobody. Entering
 * an experiment is logged as an `experiment_exposure` event with a deterministic event_id.
 *
 * One rule keeps the log in order: only the Assigner decides which batch carries an exposure. A
 * user's exposure is "unlogged" from the moment they are assigned until a batch carrying it is in
 * the log; the first batch that tags the user claims it (it goes in just before the user's first
 * event there), and any other batch tagging the user meanwhile waits for that append. Claims are
 * made in one synchronous step, so a batch only ever waits for batches tagged before it (no cycle).
 * If the carrier fails, the exposure stays unlogged and the next batch carries it. The assignment
 * is stored in OLTP once the exposure is in the log; should the process die in between, the user
 * is assigned again on their next exposure event, to the same arm (weights are fixed while users
 * are assigned), and the repeated exposure is recognised by its id.
 * One service instance assigns per OLTP database (stored assignments are read on start).
 */
export class Assigner {
  /** experiment -> user -> arm, for experiments that run or ran. */
  private readonly sticky = new Map<string, Map<string, string>>();
  private readonly loading = new Map<string, Promise<void>>();
  /** Users assigned whose exposure is not in the log yet. */
  private readonly unlogged = new Map<string, Claim>();
  /** Exposures being appended by some batch: resolves when that append ends, rejects when it failed. */
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(
    private readonly experiments: Experiments,
    private readonly oltp: OltpStore,
    private readonly warn: (err: unknown, message: string) => void = () => undefined,
    private readonly clock: Clock = wallClock,
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
      pending.catch(() => this.loading.delete(key));
      this.loading.set(key, pending);
    }
    await pending;
    return this.sticky.get(key)!;
  }

  /**
   * Tags a batch at ingest: each event gets its user's arms in running experiments; a user's first
   * `exposureEvent` of an experiment assigns them. `expose` names users the API assigned, whose
   * exposure this batch should carry.
   */
  async tagBatch(events: readonly Event[], dims: (user: string) => UserDims | undefined, expose: readonly ExposureKey[] = []): Promise<TaggedBatch> {
    const running = this.experiments.running();
    // The common case, on ingest's path for every batch: nothing to tag or expose.
    if (running.length === 0 && expose.length === 0) return NOTHING_TO_TAG;
    // Every await first; from here to the return nothing else runs, so claims cannot interleave.
    const maps = await Promise.all(running.map((e) => this.load(e.key)));
    const tags: (Record<string, string> | undefined)[] = [];
    const head: Event[] = [];
    const exposures = new Map<number, Event[]>();
    const mine = new Map<string, Claim>();
    const after = new Set<Promise<void>>();
    const claim = (key: string): Claim | undefined => {
      if (mine.has(key)) return undefined;
      const flying = this.inFlight.get(key);
      if (flying) return void after.add(flying);
      const c = this.unlogged.get(key);
      if (c) mine.set(key, c);
      return c;
    };
    for (const x of expose) {
      const c = claim(keyOf(x.experiment, x.user_id));
      if (c) head.push(c.exposure);
    }
    running.forEach((e, k) => {
      const users = maps[k]!;
      events.forEach((event, i) => {
        let arm = users.get(event.user_id);
        if (arm === undefined && event.event === e.exposureEvent) {
          arm = assign(e, { user_id: event.user_id, dims: dims(event.user_id) });
          if (arm !== undefined) this.enter(e.key, users, { experiment: e.key, user_id: event.user_id, arm, assigned_at: event.time });
        }
        if (arm === undefined) return;
        (tags[i] ??= dict())[e.key] = arm;
        const c = claim(keyOf(e.key, event.user_id));
        if (!c) return;
        const list = exposures.get(i) ?? [];
        list.push(c.exposure);
        exposures.set(i, list);
      });
    });
    let settleDone!: (ok: boolean) => void;
    const done = new Promise<void>((resolve, reject) => {
      settleDone = (ok) => (ok ? resolve() : reject(unavailable('a batch carrying exposures of these users was not appended; send this batch again')));
    });
    done.catch(() => undefined);
    for (const key of mine.keys()) this.inFlight.set(key, done);
    return {
      tags,
      head,
      exposures,
      after: [...after],
      settle: async (logged) => {
        const stored: Assignment[] = [];
        for (const [key, c] of mine) {
          if (this.inFlight.get(key) === done) this.inFlight.delete(key);
          if (logged && logged.has(c.exposure.event_id)) {
            this.unlogged.delete(key);
            if (c.assignment) stored.push(c.assignment);
          }
        }
        settleDone(logged !== false);
        if (stored.length > 0) {
          // The events are durable already: a failure here is reported, and the hash gives the same arm again.
          await this.oltp
            .insertAssignmentsIfAbsent(stored)
            .catch((err: unknown) => this.warn(err, `could not store ${stored.length} experiment assignments; they are in the event log`));
        }
      },
    };
  }

  /**
   * The arm the service answers for a user in one experiment. `enroll` assigns a user of a running
   * experiment who has none yet (the caller then has the exposure logged: `unloggedExposure`);
   * without it only an existing assignment is answered.
   */
  async armFor(e: Experiment, user: { user_id: string; dims?: Partial<UserDims> }, options: { enroll: boolean; now?: Date }): Promise<ArmAnswer | undefined> {
    const control = e.arms[0]!.key;
    if (e.status === 'rolled_back' || e.status === 'stopped') return { experiment: e.key, arm: control, reason: e.status };
    if (e.status === 'shipped') return { experiment: e.key, arm: e.winner ?? control, reason: 'shipped' };
    if (e.status !== 'running') return undefined;
    const users = await this.load(e.key);
    const existing = users.get(user.user_id);
    if (existing !== undefined) return { experiment: e.key, arm: existing, reason: 'existing' };
    if (!options.enroll) return undefined;
    const arm = assign(e, user);
    if (arm === undefined) return undefined;
    this.enter(e.key, users, { experiment: e.key, user_id: user.user_id, arm, assigned_at: (options.now ?? new Date(this.clock.now())).toISOString() });
    return { experiment: e.key, arm, reason: 'assigned' };
  }

  /** Whether a user's exposure still has to reach the log. */
  isUnlogged(x: ExposureKey): boolean {
    return this.unlogged.has(keyOf(x.experiment, x.user_id));
  }

  private enter(experiment: string, users: Map<string, string>, a: Assignment): void {
    users.set(a.user_id, a.arm);
    this.unlogged.set(keyOf(experiment, a.user_id), { exposure: exposureEvent(experiment, a.user_id, a.arm, a.assigned_at), assignment: a });
  }
}

const NOTHING_TO_TAG: TaggedBatch = Object.freeze({ tags: [], head: [], exposures: new Map(), after: [], settle: async () => undefined });

const keyOf = (experiment: string, user: string) => `${experiment}\u0000${user}`;

/** Deterministic, so a repeat is recognised as the same exposure, and short whatever the user id's length. */
function exposureEvent(experiment: string, user_id: string, arm: string, time: string): Event {
  const id = createHash('sha256').update(`${experiment}\u0000${user_id}`).digest('hex').slice(0, 40);
  return { event_id: `exposure-${id}`, time, user_id, event: EXPOSURE_EVENT, props: { experiment, arm } };
}
