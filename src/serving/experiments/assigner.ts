import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
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
   * found there already), or with `false` when it could not be appended (the exposures it carried
   * stay unlogged, for the next batch).
   */
  settle(logged: ReadonlySet<string> | false): Promise<void>;
}

interface Claim {
  exposure: Event;
}

/** How long a user found without an assignment in the database is not looked up again (shared mode). */
const ABSENT_TTL_MS = 1_000;
/** Most users remembered as absent; the oldest are forgotten first (they are only looked up again). */
const ABSENT_MAX = 200_000;

/**
 * Sticky assignment and exposure. A user's arm is the pure hash assignment, given once and kept
 * (here, and in the OLTP `assignments` table), so later changes of coverage move nobody. Entering
 * an experiment is logged as an `experiment_exposure` event with a deterministic event_id.
 *
 * The database decides who assigns a user: a new assignment is claimed there first
 * (`claimAssignments`, INSERT ... ON CONFLICT DO NOTHING), and only the claim that stored the row
 * logs the exposure. Of two service instances assigning one user at once, the loser takes the
 * winner's arm and logs nothing, so the exposure is in the log once. (Logging first and storing
 * after, as this class once did, put both instances' exposures in the log; the deterministic id
 * does not help there: each instance's ingest dedupes by the ids it has seen, and a shared JetStream
 * stream has no cross-writer dedupe that keeps offsets dense.) The price: an instance that dies
 * between its claim and the append (milliseconds) leaves that user assigned without an exposure, so
 * the statistics leave them out, as they do a user who never came back; no arm is favoured by that.
 *
 * One rule keeps the log in order: only the Assigner decides which batch carries an exposure. A
 * claimed user's exposure is "unlogged" until a batch carrying it is in the log; the first batch
 * that tags the user claims it (it goes in just before the user's first event there), and any other
 * batch tagging the user meanwhile waits for that append. Claims on exposures are made in one
 * synchronous step, so a batch only ever waits for batches tagged before it (no cycle). If the
 * carrier fails, the exposure stays unlogged and the next batch, or `pendingExposures` (flushed by
 * the platform on its timer), carries it.
 *
 * `shared`: other instances assign in the same database (PostgreSQL). Stored assignments are then
 * not only read once per experiment: a user this instance has not seen assigned is looked up
 * before their events are tagged (and remembered as absent for a second), so an instance tags the
 * events of users another instance assigned.
 */
export class Assigner {
  /** experiment -> user -> arm, for experiments that run or ran. */
  private readonly sticky = new Map<string, Map<string, string>>();
  private readonly loading = new Map<string, Promise<void>>();
  /** Users whose claim this instance won and whose exposure is not in the log yet. */
  private readonly unlogged = new Map<string, Claim>();
  /** Exposures being appended by some batch: resolves when that append ends, rejects when it failed. */
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Claims in the database under way here: a second batch of the same user waits for the first's. */
  private readonly claiming = new Map<string, Promise<void>>();
  /** Shared mode: users looked up and not assigned, until when (ms, performance clock). */
  private readonly absent = new Map<string, number>();
  private lastLookUpWarning = -Infinity;

  constructor(
    private readonly experiments: Experiments,
    private readonly oltp: OltpStore,
    private readonly warn: (err: unknown, message: string) => void = () => undefined,
    private readonly clock: Clock = wallClock,
    private readonly options: { shared?: boolean } = {},
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
   * Shared mode: adds to the cache the stored assignments of `users` it lacks (another instance made
   * them). A user found absent is not asked about again for ABSENT_TTL_MS.
   */
  private async lookUp(key: string, users: Map<string, string>, ids: Iterable<string>): Promise<void> {
    if (!this.options.shared) return;
    const now = performance.now();
    const wanted: string[] = [];
    for (const id of new Set(ids)) {
      if (users.has(id)) continue;
      const k = keyOf(key, id);
      const until = this.absent.get(k);
      if (until !== undefined && until > now) continue;
      wanted.push(id);
    }
    if (wanted.length === 0) return;
    let found: Assignment[];
    try {
      found = await this.oltp.getAssignments(key, wanted);
    } catch (err) {
      // Tagging goes on from the cache: these users' events go untagged until the database answers.
      if (now - this.lastLookUpWarning > 60_000) {
        this.lastLookUpWarning = now;
        this.warn(err, `cannot look up assignments of experiment ${key}; events of users assigned by other instances go untagged meanwhile`);
      }
      return;
    }
    for (const a of found) if (!users.has(a.user_id)) users.set(a.user_id, a.arm);
    for (const id of wanted) {
      const k = keyOf(key, id);
      this.absent.delete(k);
      if (!users.has(id)) this.absent.set(k, now + ABSENT_TTL_MS);
    }
    // Insertion order is expiry order (entries are deleted before being set again): trim from the front.
    for (const [k, until] of this.absent) {
      if (until > now && this.absent.size <= ABSENT_MAX) break;
      this.absent.delete(k);
    }
  }

  /**
   * Claims new assignments in the database (one claim per user at a time in this process) and puts
   * what is stored in the cache; the exposures of the claims won become unlogged here.
   */
  private async claim(users: Map<string, string>, wanted: readonly Assignment[]): Promise<void> {
    const mine: Assignment[] = [];
    const waits: Promise<void>[] = [];
    for (const a of wanted) {
      const k = keyOf(a.experiment, a.user_id);
      const pending = this.claiming.get(k);
      if (pending) waits.push(pending);
      else if (!users.has(a.user_id)) mine.push(a);
    }
    if (mine.length > 0) {
      const done = this.oltp.claimAssignments(mine).then((rows) => {
        for (const { assignment, claimed } of rows) {
          const k = keyOf(assignment.experiment, assignment.user_id);
          this.absent.delete(k);
          if (!users.has(assignment.user_id)) users.set(assignment.user_id, assignment.arm);
          if (claimed) this.unlogged.set(k, { exposure: exposureEvent(assignment.experiment, assignment.user_id, assignment.arm, assignment.assigned_at) });
        }
      });
      for (const a of mine) this.claiming.set(keyOf(a.experiment, a.user_id), done);
      try {
        await done;
      } finally {
        for (const a of mine) {
          const k = keyOf(a.experiment, a.user_id);
          if (this.claiming.get(k) === done) this.claiming.delete(k);
        }
      }
    }
    // Another batch's claim failing fails this one too: the user's arm is not known.
    await Promise.all(waits);
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
    const maps = await Promise.all(running.map((e) => this.load(e.key)));
    await Promise.all(
      running.map((e, k) =>
        this.lookUp(
          e.key,
          maps[k]!,
          events.map((event) => event.user_id),
        ),
      ),
    );
    // New assignments are claimed in the database before anything is tagged with them.
    await Promise.all(
      running.map((e, k) => {
        const users = maps[k]!;
        const wanted = new Map<string, Assignment>();
        for (const event of events) {
          if (event.event !== e.exposureEvent || users.has(event.user_id) || wanted.has(event.user_id)) continue;
          const arm = assign(e, { user_id: event.user_id, dims: dims(event.user_id) });
          if (arm !== undefined) wanted.set(event.user_id, { experiment: e.key, user_id: event.user_id, arm, assigned_at: event.time });
        }
        return wanted.size > 0 ? this.claim(users, [...wanted.values()]) : undefined;
      }),
    );
    // Every await done; from here to the return nothing else runs, so claims on exposures cannot interleave.
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
        const arm = users.get(event.user_id);
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
        for (const [key, c] of mine) {
          if (this.inFlight.get(key) === done) this.inFlight.delete(key);
          if (logged && logged.has(c.exposure.event_id)) this.unlogged.delete(key);
        }
        settleDone(logged !== false);
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
    await this.lookUp(e.key, users, [user.user_id]);
    const existing = users.get(user.user_id);
    if (existing !== undefined) return { experiment: e.key, arm: existing, reason: 'existing' };
    if (!options.enroll) return undefined;
    const arm = assign(e, user);
    if (arm === undefined) return undefined;
    const assigned_at = (options.now ?? new Date(this.clock.now())).toISOString();
    await this.claim(users, [{ experiment: e.key, user_id: user.user_id, arm, assigned_at }]);
    // The claim lost (another batch or instance assigned the user first): the stored arm is the answer.
    const stored = users.get(user.user_id)!;
    return { experiment: e.key, arm: stored, reason: this.isUnlogged({ experiment: e.key, user_id: user.user_id }) ? 'assigned' : 'existing' };
  }

  /**
   * Takes over the exposures of claims whose winner never logged them (an instance that stopped in
   * between, or this process before a restart): each becomes owed here, as the exact event the
   * winner would have logged (same event_id), for the next `logExposures` to carry. Returns the
   * ones taken over; a claim this process won and still owes is left as it is.
   */
  adopt(assignments: readonly Assignment[]): ExposureKey[] {
    const adopted: ExposureKey[] = [];
    for (const a of assignments) {
      const users = this.sticky.get(a.experiment);
      if (users && !users.has(a.user_id)) users.set(a.user_id, a.arm);
      const k = keyOf(a.experiment, a.user_id);
      if (this.unlogged.has(k)) continue;
      this.unlogged.set(k, { exposure: exposureEvent(a.experiment, a.user_id, a.arm, a.assigned_at) });
      adopted.push({ experiment: a.experiment, user_id: a.user_id });
    }
    return adopted;
  }

  /** Whether a user's exposure still has to reach the log. */
  isUnlogged(x: ExposureKey): boolean {
    return this.unlogged.has(keyOf(x.experiment, x.user_id));
  }

  /** Exposures claimed here that no batch has logged (their carrier failed) nor is carrying now: to be logged without waiting for the user's next event. */
  pendingExposures(): ExposureKey[] {
    return [...this.unlogged.entries()]
      .filter(([key]) => !this.inFlight.has(key))
      .map(([, c]) => ({ experiment: String(c.exposure.props.experiment), user_id: c.exposure.user_id }));
  }
}

const NOTHING_TO_TAG: TaggedBatch = Object.freeze({ tags: [], head: [], exposures: new Map(), after: [], settle: async () => undefined });

const keyOf = (experiment: string, user: string) => `${experiment}\u0000${user}`;

/** Deterministic, so a repeat is recognised as the same exposure, and short whatever the user id's length. */
function exposureEvent(experiment: string, user_id: string, arm: string, time: string): Event {
  const id = createHash('sha256').update(`${experiment}\u0000${user_id}`).digest('hex').slice(0, 40);
  return { event_id: `exposure-${id}`, time, user_id, event: EXPOSURE_EVENT, props: { experiment, arm } };
}
