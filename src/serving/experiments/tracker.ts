import { rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Experiment, Metric } from '../../workbench/experiments/definition.js';
import type { ArmStats, ExperimentStats, MetricSums } from '../../workbench/experiments/results.js';
import type { EnrichedEvent } from '../../workbench/event.js';
import { dict, hasOwn, toDict } from '../../workbench/dict.js';
import { readCheckedSnapshot, renderInSlices, writeCheckedSnapshotInSlices } from '../../workbench/files.js';
import type { EventConsumer } from '../pipeline/consumer.js';
import { EXPOSURE_EVENT } from './assigner.js';

const DAY_MS = 86_400_000;
/** How late an event may arrive (ingest takes events up to 30 days old): history is kept that much longer. */
const LATE_EVENTS_MS = 30 * DAY_MS;
/** Most metric events kept per user for pre-exposure covariates. */
const HISTORY_PER_USER = 2_000;
/** Most points of an experiment's timeline; beyond it every other point is dropped. */
const TIMELINE_POINTS = 400;

/** A user in an experiment: arm, exposure time, and per metric its value Y and covariate (or denominator) X. */
interface Member {
  arm: string;
  exposedAt: number;
  y: number[];
  x: number[];
}

interface ArmState {
  users: number;
  /** Per metric: sums of deviations from the experiment's shifts (recorded in each), and their compensations (Neumaier). */
  sums: MetricSums[];
  err?: MetricSums[];
}

type Field = 'sumY' | 'sumY2' | 'sumX' | 'sumX2' | 'sumXY';

/** Experiment, arm and user keys come from outside: every object keyed by them has no prototype (see dict.ts). */
interface ExperimentState {
  metrics: string[];
  /**
   * Per metric, the references [Y, X] every arm's sums are deviations from: the first non-zero value
   * seen (null until then, when every value is 0). Deviations keep the variance's precision when the
   * mean is large against the spread; snapshots from before shifts have [0, 0].
   */
  shifts?: [number | null, number | null][];
  arms: Record<string, ArmState>;
  members: Record<string, Member>;
  firstExposure?: number;
  asOf?: number;
  nextPointAt?: number;
  timeline: { at: number; arms: Record<string, ArmState> }[];
}

/**
 * One metric-relevant event of a user: time, metric, numerator and denominator contributions; or,
 * marked `covariate`, a prediction of the metric's CUPAC model (its score in `num`), which only ever
 * serves as the covariate of a later exposure.
 */
type Trace = [time: number, metric: string, num: number, den: number, covariate?: 1];

/** The event every served prediction is logged as (model, alias, score in its props). */
const PREDICTION_EVENT = 'prediction';

interface Snapshot {
  offset: number;
  experiments: Record<string, ExperimentState>;
  /** Only in the file: in memory the history is the tracker's map. */
  history: [string, Trace[]][];
}

const NO_TRACES: Trace[] = [];
const emptySums = (shift: [number | null, number | null]): MetricSums => ({
  n: 0,
  sumY: 0,
  sumY2: 0,
  sumX: 0,
  sumX2: 0,
  sumXY: 0,
  ...(shift[0] !== null ? { shiftY: shift[0] } : {}),
  ...(shift[1] !== null ? { shiftX: shift[1] } : {}),
});

/** Neumaier's compensated summation: sums[f] + err[f] is the sum of every term, to about 2^-106 of the largest. */
function accumulate(sums: MetricSums, err: MetricSums, f: Field, term: number): void {
  const sum = sums[f];
  const t = sum + term;
  err[f] += Math.abs(sum) >= Math.abs(term) ? sum - t + term : term - t + sum;
  sums[f] = t;
}

/** Adds (sign 1) or removes (sign -1) one user's values, as deviations from the sums' shifts. */
function move(sums: MetricSums, err: MetricSums, sign: 1 | -1, y: number, x: number): void {
  const dy = y - (sums.shiftY ?? 0);
  const dx = x - (sums.shiftX ?? 0);
  accumulate(sums, err, 'sumY', sign * dy);
  accumulate(sums, err, 'sumY2', sign * dy * dy);
  accumulate(sums, err, 'sumX', sign * dx);
  accumulate(sums, err, 'sumX2', sign * dx * dx);
  accumulate(sums, err, 'sumXY', sign * dx * dy);
}

function errOf(a: ArmState, i: number): MetricSums {
  a.err ??= a.sums.map(() => emptySums([null, null]));
  return a.err[i]!;
}

/**
 * Fixes metric i's shift of Y (which 0) or X (which 1) at its first non-zero value. Until then every
 * such value was 0, so each arm's sums are re-centred exactly: each user's deviation is -shift.
 */
function establish(s: ExperimentState, i: number, which: 0 | 1, value: number): void {
  s.shifts![i]![which] = value;
  for (const a of Object.values(s.arms)) {
    const sums = a.sums[i]!;
    const err = errOf(a, i);
    const [v, v2, other]: [Field, Field, Field] = which === 0 ? ['sumY', 'sumY2', 'sumX'] : ['sumX', 'sumX2', 'sumY'];
    const otherSum = sums[other] + err[other];
    sums[v] = err[v] = sums[v2] = err[v2] = sums.sumXY = err.sumXY = 0;
    // One term per user, as they will come out again when the users' values change.
    for (let k = 0; k < sums.n; k++) {
      accumulate(sums, err, v, -value);
      accumulate(sums, err, v2, value * value);
    }
    accumulate(sums, err, 'sumXY', -value * otherSum);
    if (which === 0) sums.shiftY = value;
    else sums.shiftX = value;
  }
}

/**
 * The experiments' live statistics: a consumer of the event log that keeps, per experiment, arm and
 * metric, the sufficient statistics the stats engine needs (n, sums and sums of squares of the
 * metric and of its pre-exposure value, and their cross products), updated event by event. A user
 * enters at their `experiment_exposure` event; from then on their events tagged with the experiment
 * and within each metric's window change their values, and the arm's sums change by the difference.
 * The state is snapshotted with its log offset (and a checksum), so a restart resumes without loss
 * or double counting; without a snapshot it is rebuilt from the start of the log. A snapshot is
 * megabytes of JSON (200 ms of one stringify on the default data): it is rendered a few
 * milliseconds at a time while the runner waits for `handle` (so the state stands still), and
 * written and synced on libuv's threads while the next batches are applied.
 */
/** How long an experiment key that a refresh did not find is taken as unknown before the definitions are read for it again. */
const REFRESH_UNKNOWN_MS = 5_000;

export class ExperimentTracker implements EventConsumer {
  readonly name = 'experiments';
  private state: Snapshot = { offset: 0, experiments: dict(), history: [] };
  private history = new Map<string, Trace[]>();
  private lastSnapshot = 0;
  /** Whether the state changed (beyond the offset) since the last snapshot was rendered. */
  private changed = false;
  /** The snapshot being written, if any: each file write waits for the one before, so the newest lands last. */
  private writing: Promise<void> = Promise.resolve();
  private newestTrace = 0;
  private readonly maxPreMs: number;
  /** The metrics each event name counts for: most events count for none and cost one lookup. */
  private readonly byEvent = new Map<string, Metric[]>();

  constructor(
    private readonly definition: (key: string) => Experiment | undefined,
    private readonly metrics: ReadonlyMap<string, Metric>,
    private readonly options: {
      snapshotPath: string;
      snapshotEveryMs?: number;
      warn?: (message: string) => void;
      /**
       * Reads the experiment definitions again: called before a batch holding an exposure to an
       * experiment this instance does not know yet (created on another instance moments ago, its
       * notification not here yet), which would otherwise be dropped.
       */
      refresh?: () => Promise<void>;
    },
  ) {
    this.maxPreMs = Math.max(0, ...[...metrics.values()].map((m) => m.preExposureDays)) * DAY_MS;
    for (const m of metrics.values()) {
      const names = m.kind === 'ratio' ? [m.event, m.denominator!.event] : [m.event];
      if (m.covariate) names.push(PREDICTION_EVENT);
      for (const name of names) {
        const list = this.byEvent.get(name) ?? [];
        if (!list.includes(m)) list.push(m);
        this.byEvent.set(name, list);
      }
    }
  }

  async resumeAt(): Promise<number> {
    const read = readCheckedSnapshot(this.options.snapshotPath);
    if (read && 'corrupt' in read)
      this.options.warn?.(`the experiment statistics snapshot fails its checksum; kept as ${read.corrupt}, rebuilding from the event log`);
    if (!read || 'corrupt' in read) return 0;
    this.state = revive(JSON.parse(read.body) as Snapshot);
    this.history = new Map(this.state.history);
    return this.state.offset;
  }

  /** The log lost records this state counted: it is dropped, its snapshot too, and rebuilt from the start of the log. */
  async rewind(): Promise<number> {
    // A snapshot being written would be renamed into place after the file is removed.
    await this.writing;
    rmSync(this.options.snapshotPath, { force: true });
    this.state = { offset: 0, experiments: dict(), history: [] };
    this.history = new Map();
    this.newestTrace = 0;
    this.changed = true;
    return 0;
  }

  async handle(events: EnrichedEvent[], first: number): Promise<void> {
    // A batch handed again (the runner retries after a failure, even one part-way through) is applied only from where the state stands.
    const from = Math.max(0, this.state.offset - first);
    await this.learnExperiments(events, from);
    for (let i = from; i < events.length; i++) {
      if (this.apply(events[i]!)) this.changed = true;
      this.state.offset = first + i + 1;
    }
    // Batches that changed nothing but the offset (predictions, events of users in no experiment)
    // do not make the snapshot be rendered again, megabytes for an offset: it is, after ten
    // intervals or on close. A snapshot behind by such records is as right; a restart replays them.
    const every = this.options.snapshotEveryMs ?? 10_000;
    const since = Date.now() - this.lastSnapshot;
    if (since >= every && (this.changed || since >= 10 * every)) {
      const { written } = await this.snapshot();
      // The state in memory is right; a snapshot that fails is tried again later, and a restart replays from the last good one.
      written.catch((err: unknown) => {
        // Tried again at the next interval, not only after the next change.
        this.changed = true;
        this.options.warn?.(`cannot write the experiment statistics snapshot: ${(err as Error).message}`);
      });
    }
  }

  /** When each unknown experiment key last made the definitions be read again (bounded: keys come from the log). */
  private readonly refreshedFor = new Map<string, number>();

  private async learnExperiments(events: EnrichedEvent[], from: number): Promise<void> {
    if (!this.options.refresh) return;
    let unknown: string | undefined;
    const now = Date.now();
    for (let i = from; i < events.length && unknown === undefined; i++) {
      const e = events[i]!;
      if (e.event !== EXPOSURE_EVENT) continue;
      const key = String(e.props.experiment);
      // A key read again a moment ago and still unknown is not an experiment: it does not make every batch query the OLTP.
      if (this.definition(key) === undefined && now - (this.refreshedFor.get(key) ?? -Infinity) >= REFRESH_UNKNOWN_MS) unknown = key;
    }
    if (unknown === undefined) return;
    if (this.refreshedFor.size >= 1_000) this.refreshedFor.clear();
    this.refreshedFor.set(unknown, now);
    try {
      await this.options.refresh();
    } catch (err) {
      this.options.warn?.(`cannot read the experiment definitions for an exposure to ${JSON.stringify(unknown.slice(0, 100))}: ${(err as Error).message}`);
    }
  }

  async close(): Promise<void> {
    const { written } = await this.snapshot();
    await written;
  }

  /** The sufficient statistics of one experiment now, or at each point of its timeline. */
  stats(key: string): ExperimentStats {
    const s = this.state.experiments[key];
    if (!s) return { arms: [] };
    return toStats(s, s.arms, s.asOf);
  }

  timeline(key: string): ExperimentStats[] {
    const s = this.state.experiments[key];
    return s ? s.timeline.map((p) => toStats(s, p.arms, p.at)) : [];
  }

  /** The log offset the statistics stand at: every record before it is counted. */
  get position(): number {
    return this.state.offset;
  }

  /**
   * Whether the user's exposure to the experiment is counted. A user enters once: a second exposure
   * of theirs (a re-logged one whose original landed after all) changes nothing.
   */
  exposed(key: string, user_id: string): boolean {
    return this.state.experiments[key]?.members[user_id] !== undefined;
  }

  /** Users in the experiment, by arm. */
  exposures(key: string): Record<string, number> {
    const s = this.state.experiments[key];
    return Object.fromEntries(Object.entries(s?.arms ?? {}).map(([arm, a]) => [arm, a.users]));
  }

  /** Applies one event; returns whether it may have changed the state (beyond the offset). */
  private apply(e: EnrichedEvent): boolean {
    const t = Date.parse(e.time);
    if (e.event === EXPOSURE_EVENT) {
      const key = String(e.props.experiment);
      const def = this.definition(key);
      if (def && typeof e.props.arm === 'string') this.expose(def, e.user_id, e.props.arm, t);
      return true;
    }
    const traces = this.trace(e, t);
    let changed = traces.length > 0;
    for (const key of Object.keys(e.experiments)) {
      const s = this.state.experiments[key];
      const member = s?.members[e.user_id];
      if (!s || !member || t < member.exposedAt) continue;
      changed = true;
      s.metrics.forEach((metricKey, i) => {
        const m = this.metrics.get(metricKey);
        const tr = traces.find((x) => x[1] === metricKey && x[4] === undefined);
        if (!m || !tr || t >= member.exposedAt + m.windowDays * DAY_MS) return;
        this.add(s, s.arms[member.arm]!, m, member, i, tr[2], tr[3]);
      });
      this.advance(key, s, t);
    }
    return changed;
  }

  private expose(def: Experiment, user: string, arm: string, t: number): void {
    const s = (this.state.experiments[def.key] ??= {
      metrics: [def.objective, ...def.guardrails.map((g) => g.metric)],
      arms: dict(),
      members: dict(),
      timeline: [],
    });
    if (s.members[user]) return;
    const pre = this.history.get(user) ?? [];
    const x = s.metrics.map((key) => {
      const m = this.metrics.get(key);
      if (!m || m.kind === 'ratio' || m.preExposureDays === 0) return 0;
      const from = t - m.preExposureDays * DAY_MS;
      const inPre = (tr: Trace) => tr[1] === key && tr[0] >= from && tr[0] < t;
      if (m.covariate) {
        // CUPAC: the latest prediction before exposure (the later in the log of two at the same time); 0 without one.
        let latest: Trace | undefined;
        for (const tr of pre) if (tr[4] === 1 && inPre(tr) && (!latest || tr[0] >= latest[0])) latest = tr;
        return latest ? latest[2] : 0;
      }
      const values = pre.filter((tr) => tr[4] === undefined && inPre(tr));
      return m.kind === 'conversion' ? (values.length > 0 ? 1 : 0) : values.reduce((sum, tr) => sum + tr[2], 0);
    });
    const member: Member = { arm, exposedAt: t, y: s.metrics.map(() => 0), x };
    s.members[user] = member;
    const shifts = (s.shifts ??= s.metrics.map(() => [null, null]));
    const a = (s.arms[arm] ??= { users: 0, sums: s.metrics.map((_, i) => emptySums(shifts[i]!)), err: s.metrics.map(() => emptySums([null, null])) });
    a.users++;
    a.sums.forEach((sums, i) => {
      if (x[i] !== 0 && shifts[i]![1] === null) establish(s, i, 1, x[i]!);
      sums.n++;
      move(sums, errOf(a, i), 1, 0, x[i]!);
    });
    s.firstExposure = Math.min(s.firstExposure ?? t, t);
    this.advance(def.key, s, t);
  }

  /** Changes a member's value of metric i by its numerator and denominator contributions, and the arm's sums by the difference. */
  private add(s: ExperimentState, a: ArmState, m: Metric, member: Member, i: number, num: number, den: number): void {
    const y0 = member.y[i]!;
    const x0 = member.x[i]!;
    let y1 = y0;
    let x1 = x0;
    if (m.kind === 'conversion') y1 = num !== 0 ? 1 : y0;
    else if (m.kind === 'mean') y1 = y0 + num;
    else {
      y1 = y0 + num;
      x1 = x0 + den;
    }
    if (y1 === y0 && x1 === x0) return;
    const shifts = (s.shifts ??= s.metrics.map(() => [null, null]));
    if (y1 !== 0 && shifts[i]![0] === null) establish(s, i, 0, y1);
    if (x1 !== 0 && shifts[i]![1] === null) establish(s, i, 1, x1);
    // The old values out, the new in: each term compensated, so a user's (0 - shift)^2 that goes in at exposure comes out exactly.
    move(a.sums[i]!, errOf(a, i), -1, y0, x0);
    move(a.sums[i]!, errOf(a, i), 1, y1, x1);
    member.y[i] = y1;
    member.x[i] = x1;
  }

  /** The event's contributions to each metric it counts for; also kept for later pre-exposure covariates. */
  private trace(e: EnrichedEvent, t: number): Trace[] {
    const relevant = this.byEvent.get(e.event);
    if (!relevant) return NO_TRACES;
    const out: Trace[] = [];
    for (const m of relevant) {
      if (m.covariate && e.event === PREDICTION_EVENT) {
        const score = scoreOf(e, m.covariate);
        if (score !== undefined) out.push([t, m.key, score, 0, 1]);
      }
      if (e.event !== m.event && !(m.kind === 'ratio' && e.event === m.denominator!.event)) continue;
      const num = e.event === m.event ? valueOf(e, m.prop) : 0;
      const den = m.kind === 'ratio' && e.event === m.denominator!.event ? valueOf(e, m.denominator!.prop) : 0;
      if (num !== 0 || den !== 0) out.push([t, m.key, num, den]);
    }
    if (out.length > 0 && t > this.newestTrace) this.newestTrace = t;
    if (out.length > 0 && this.maxPreMs > 0) {
      let list = this.history.get(e.user_id);
      if (!list) this.history.set(e.user_id, (list = []));
      list.push(...out);
      // Older than the longest pre-exposure period, or beyond the per-user bound: no longer needed.
      const horizon = t - this.maxPreMs;
      let drop = 0;
      while (drop < list.length && (list[drop]![0] < horizon || list.length - drop > HISTORY_PER_USER)) drop++;
      if (drop > 0) list.splice(0, drop);
    }
    return out;
  }

  /** Moves the experiment's clock, and adds a timeline point every 1/14 of its minimum run time (at least a second, at most a day). */
  private advance(key: string, s: ExperimentState, t: number): void {
    if (s.asOf !== undefined && t <= s.asOf) return;
    s.asOf = t;
    if (s.nextPointAt !== undefined && t < s.nextPointAt) return;
    s.timeline.push({ at: t, arms: cloneArms(s.arms) });
    if (s.timeline.length > TIMELINE_POINTS) s.timeline = s.timeline.filter((_, i) => i % 2 === 1);
    const def = this.definition(key);
    const every = Math.min(DAY_MS, Math.max(1000, ((def?.minRunDays ?? 14) * DAY_MS) / 14));
    s.nextPointAt = t + every;
  }

  /**
   * Renders the state as it stands (resolving once rendered: the caller keeps it still until then)
   * and queues the file's write, whose outcome `written` gives (in an object: an async function's
   * promise of a promise would wait for both).
   */
  private async snapshot(): Promise<{ written: Promise<void> }> {
    this.lastSnapshot = Date.now();
    this.changed = false;
    // Users with nothing inside the longest pre-exposure period (plus the lateness ingest allows) are forgotten.
    const newest = Math.max(0, ...Object.values(this.state.experiments).map((x) => x.asOf ?? 0), this.newestTrace);
    for (const [user, list] of this.history)
      if (list.length === 0 || list[list.length - 1]![0] < newest - this.maxPreMs - LATE_EVENTS_MS) this.history.delete(user);
    const text = await renderInSlices(snapshotPieces(this.state, this.history));
    const path = this.options.snapshotPath;
    const written = this.writing.then(async () => {
      await mkdir(dirname(path), { recursive: true });
      await writeCheckedSnapshotInSlices(path, text);
    });
    this.writing = written.catch(() => undefined);
    return { written };
  }
}

/**
 * The snapshot's JSON (`Snapshot`) in pieces: an experiment's fields, then its members one at a
 * time, then each user's history, so that no piece takes long to stringify.
 */
function* snapshotPieces(state: Snapshot, history: ReadonlyMap<string, Trace[]>): Generator<string> {
  yield `{"offset":${JSON.stringify(state.offset)},"experiments":{`;
  let i = 0;
  for (const [key, s] of Object.entries(state.experiments)) {
    const { members, ...rest } = s;
    // `rest` always has its metrics, so its JSON is an object with a field to follow.
    yield `${i++ === 0 ? '' : ','}${JSON.stringify(key)}:${JSON.stringify(rest).slice(0, -1)},"members":{`;
    let m = 0;
    for (const [user, member] of Object.entries(members)) yield `${m++ === 0 ? '' : ','}${JSON.stringify(user)}:${JSON.stringify(member)}`;
    yield '}}';
  }
  yield '},"history":[';
  let h = 0;
  for (const entry of history) yield (h++ === 0 ? '' : ',') + JSON.stringify(entry);
  yield ']}';
}

/** A prop's value as a number: numbers, and text that is a number; anything else counts 0 (as TRY_CAST does in the lakehouse). */
function valueOf(e: EnrichedEvent, prop: string | undefined): number {
  if (!prop) return 1;
  const v = hasOwn(e.props, prop) ? e.props[prop] : undefined;
  const n = typeof v === 'number' ? v : typeof v === 'string' && NUMBER.test(v) ? Number(v) : 0;
  return Number.isFinite(n) ? n : 0;
}
const NUMBER = /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/;

/** A prediction event's score when it is of the covariate's model (and alias, if named) and a finite number (as TRY_CAST reads it in the lakehouse). */
function scoreOf(e: EnrichedEvent, covariate: NonNullable<Metric['covariate']>): number | undefined {
  if (e.props.model !== covariate.model || (covariate.alias !== undefined && e.props.alias !== covariate.alias)) return undefined;
  const v = hasOwn(e.props, 'score') ? e.props.score : undefined;
  const n = typeof v === 'number' ? v : typeof v === 'string' && NUMBER.test(v) ? Number(v) : Number.NaN;
  return Number.isFinite(n) ? n : undefined;
}

function toStats(s: ExperimentState, arms: Record<string, ArmState>, asOf: number | undefined): ExperimentStats {
  // Each sum with its compensation: the sums of deviations from the shifts, which the engine reads with the shifts.
  const total = (a: ArmState, i: number): MetricSums => {
    const x = { ...a.sums[i]! };
    const e = a.err?.[i];
    if (e) for (const f of ['sumY', 'sumY2', 'sumX', 'sumX2', 'sumXY'] as const) x[f] += e[f];
    return x;
  };
  const out: ArmStats[] = Object.entries(arms).map(([arm, a]) => ({ arm, users: a.users, metrics: dict(s.metrics.map((m, i) => [m, total(a, i)])) }));
  return {
    arms: out,
    ...(s.firstExposure !== undefined ? { firstExposure: new Date(s.firstExposure).toISOString() } : {}),
    ...(asOf !== undefined ? { asOf: new Date(asOf).toISOString() } : {}),
  };
}

/** A copy of the arms for a timeline point (structuredClone would give them Object.prototype back). */
function cloneArms(arms: Record<string, ArmState>): Record<string, ArmState> {
  return dict(
    Object.entries(arms).map(([arm, a]) => [
      arm,
      { users: a.users, sums: a.sums.map((x) => ({ ...x })), ...(a.err ? { err: a.err.map((x) => ({ ...x })) } : {}) },
    ]),
  );
}

/** A parsed snapshot with its keyed objects (experiments, arms, members) made prototype-free again. */
function revive(snap: Snapshot): Snapshot {
  const experiments = dict<ExperimentState>();
  for (const [key, s] of Object.entries(snap.experiments)) {
    experiments[key] = {
      ...s,
      // A snapshot from before shifts has raw sums: their shift stays 0.
      shifts: s.shifts ?? s.metrics.map(() => [0, 0]),
      arms: toDict(s.arms),
      members: toDict(s.members),
      timeline: s.timeline.map((p) => ({ at: p.at, arms: toDict(p.arms) })),
    };
  }
  return { ...snap, experiments };
}
