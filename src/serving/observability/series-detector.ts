/**
 * Anomaly alerts for one metric of any kind, at its native resolution: counts (events per
 * interval), sums (revenue per interval) and gauges (the mean latency or temperature of an
 * interval), with thresholds in the series' own units of spread, so no setting depends on its scale.
 *
 * Intervals. The series lives on a grid of `stepMs` intervals in local time (`timeZone`, IANA:
 * a product's traffic follows its audience's clock, and after a DST change a UTC grid would compare
 * 9:00 with 8:00 for weeks). A value belongs to the interval holding its time; several values in
 * one interval add up (count, sum) or average (gauge). An interval with no value is 0 for a count or
 * a sum (nothing happened) but unknown for a gauge (nothing was measured): unknown intervals are
 * never judged and never enter a baseline. Inputs are checked, never silently absorbed: non-finite
 * values, times too far ahead of the clock (when one is given) and times before an interval already
 * judged are refused and counted in `counts`; merged values and unknown intervals are counted too.
 *
 * Expected value: three baselines, and the one whose residuals have the smallest mean absolute
 * value over the last `scaleIntervals` judged intervals is used (chosen again every hour of
 * intervals, from unlabelled history alone; the mean, not the MAD, so that a level baseline that
 * misses every daily edge by far loses to the day baseline):
 * - level: the median of the last `levelIntervals` known values (a gauge without seasons);
 * - day: the median of the same local time on the previous 7 days;
 * - week: the median of the same local time of week in the previous `seasonWeeks` weeks.
 * Medians, so that one past anomaly does not move the baseline.
 *
 * Spread: sigma = 1.4826 * MAD of those residuals (the standard deviation of normal data, which a
 * few outliers do not inflate), or 1.2533 * their mean absolute deviation when more than half are
 * equal (a sparse series whose MAD is 0); for a count, at least sqrt(expected) (independent events
 * vary at least like a Poisson variable). z = (observed - expected) / sigma.
 *
 * Rule, per judged interval:
 *   spike or drop  when |z| > max(k, q_point)                      defaults: k = 6
 *   level shift    when |median of the last `shiftIntervals` z| > max(shiftK, q_shift)     shiftK = 4, 6 intervals
 * where q_point and q_shift keep the alert rate on the series' own recent behaviour to about
 * `alertsPerDay`: over the last `budgetMs` (14 days) of judged intervals, q is the value exceeded by
 * one interval per day of that history (the d-th largest |z| over d days). A series whose residuals
 * have heavy tails (CPU usage, sensor glitches) thus needs a larger z than a quiet one; a series
 * that was quiet needs only k. The level-shift test sees a change too small for one interval but
 * held for several (a machine drifting, a revenue dip).
 *
 * Episodes: an alert opens an episode; while it is open, further anomalous intervals update it but
 * raise nothing, and it closes after `quietIntervals` judged intervals in a row with |z| <= 3. One
 * page per incident, not one per interval.
 *
 * Configuration is per metric and never tuned on labels: on the NAB realKnownCause series these
 * defaults (one set for all seven) score above Numenta's HTM (`npm run bench:anomaly`, README).
 */
import { z } from 'zod';

export type SeriesKind = 'count' | 'sum' | 'gauge';

/** Per-metric settings (a settings file is validated with `SeriesSettingsSchema`). */
export const SeriesSettingsSchema = z
  .object({
    kind: z.enum(['count', 'sum', 'gauge']),
    /** Native resolution, ms; must divide one day. */
    stepMs: z
      .number()
      .int()
      .positive()
      .refine((s) => 86_400_000 % s === 0, 'stepMs must divide one day'),
    /** IANA time zone of the seasons (days and weeks). Default UTC. */
    timeZone: z.string().default('UTC'),
    k: z.number().positive().default(6),
    shiftK: z.number().positive().default(4),
    shiftIntervals: z.number().int().min(1).default(6),
    levelIntervals: z.number().int().min(1).default(12),
    seasonWeeks: z.number().int().min(2).default(4),
    scaleIntervals: z.number().int().min(10).default(2000),
    /** Judged intervals needed before a baseline's spread is trusted. */
    minIntervals: z.number().int().min(10).default(200),
    alertsPerDay: z.number().positive().default(1),
    budgetMs: z
      .number()
      .positive()
      .default(14 * 86_400_000),
    quietIntervals: z.number().int().min(1).default(12),
    /** Values stamped later than the clock plus this are refused (only with a clock). Default 1 hour. */
    maxAheadMs: z.number().positive().default(3_600_000),
  })
  .strict();
export type SeriesSettings = z.input<typeof SeriesSettingsSchema>;
type Resolved = z.output<typeof SeriesSettingsSchema>;

export type Baseline = 'level' | 'day' | 'week';

export interface SeriesAlert {
  direction: 'spike' | 'drop';
  /** One interval far off (`point`), or several in a row off together (`shift`). */
  pattern: 'point' | 'shift';
  /** The interval judged (UTC ms). */
  intervalStart: number;
  intervalEnd: number;
  observed: number;
  expected: number;
  /** Robust standard deviation of the residuals, in the series' units. */
  sigma: number;
  /** The statistic that crossed its threshold (z of the interval, or the median z of the last intervals) and the threshold. */
  score: number;
  threshold: number;
  baseline: Baseline;
}

/** What happened to each input: counted, so nothing is absorbed silently. */
export interface InputCounts {
  accepted: number;
  /** Values added into an interval that already had one (a gauge averages them). */
  merged: number;
  /** Refused: the interval was already judged. */
  late: number;
  /** Refused: NaN or an infinity. */
  nonFinite: number;
  /** Refused: stamped more than `maxAheadMs` after the clock. */
  future: number;
  /** Intervals without a value for a gauge (or skipped by a DST change): unknown, not judged. */
  unknownIntervals: number;
}

export type InputVerdict = 'accepted' | 'merged' | 'late' | 'nonFinite' | 'future';

const DAY_MS = 86_400_000;
const WEEK_MS = 7 * DAY_MS;
const HOUR_MS = 3_600_000;

export class SeriesDetector {
  readonly settings: Resolved;
  readonly counts: InputCounts = { accepted: 0, merged: 0, late: 0, nonFinite: 0, future: 0, unknownIntervals: 0 };
  private readonly offset: (utcMs: number) => number;
  private readonly perDay: number;
  private readonly perWeek: number;
  /** Known values of the last `history.length` slots (NaN: unknown); slot s at s mod length. */
  private readonly history: Float64Array;
  /** The open (not yet judged) slot, its sum and the number of values in it. */
  private openSlot: number | undefined;
  private openSum = 0;
  private openN = 0;
  /** The latest slot judged. */
  private judged: number | undefined;
  private lastTime = -Infinity;
  private readonly residuals: Record<Baseline, number[]> = { level: [], day: [], week: [] };
  private readonly sigmas: Partial<Record<Baseline, number>> = {};
  private readonly fits: Partial<Record<Baseline, number>> = {};
  private readonly recentZ: number[] = [];
  /** |z| and |shift| of the judged intervals of the last `budgetMs`, with their times. */
  private readonly budget: { t: number[]; point: number[]; shift: number[] } = { t: [], point: [], shift: [] };
  private qPoint: number;
  private qShift: number;
  private sinceRecompute = Infinity;
  private readonly perHour: number;
  private episode: { quiet: number } | undefined;

  constructor(
    settings: SeriesSettings,
    private readonly clock?: () => number,
  ) {
    this.settings = SeriesSettingsSchema.parse(settings);
    const s = this.settings;
    this.offset = zoneOffset(s.timeZone);
    this.perDay = DAY_MS / s.stepMs;
    this.perWeek = WEEK_MS / s.stepMs;
    this.perHour = Math.max(1, Math.round(HOUR_MS / s.stepMs));
    this.history = new Float64Array(Math.max(this.perWeek * s.seasonWeeks, 7 * this.perDay, s.levelIntervals) + 1).fill(Number.NaN);
    this.qPoint = s.k;
    this.qShift = s.shiftK;
  }

  /** The local-time slot of a UTC time. */
  slotOf(utcMs: number): number {
    return Math.floor((utcMs + this.offset(utcMs)) / this.settings.stepMs);
  }

  /** Adds a value at `timeMs` (UTC) to its interval. */
  push(timeMs: number, value: number): InputVerdict {
    if (!Number.isFinite(value) || !Number.isFinite(timeMs)) return this.refuse('nonFinite');
    if (this.clock && timeMs > this.clock() + this.settings.maxAheadMs) return this.refuse('future');
    let slot = this.slotOf(timeMs);
    // The hour repeated when clocks go back maps onto slots already passed: it still follows the
    // last value in real time, so it joins the open interval rather than being refused.
    if (this.openSlot !== undefined && slot < this.openSlot && timeMs >= this.lastTime) slot = this.openSlot;
    if (this.judged !== undefined && slot <= this.judged) return this.refuse('late');
    this.lastTime = Math.max(this.lastTime, timeMs);
    if (this.openSlot === undefined || slot > this.openSlot) {
      // A value for a later interval closes the open one (callers that never call advance still get
      // judgements); for a count or a sum, the empty intervals before it are zeros.
      if (this.openSlot !== undefined) this.pending.push(...this.closeThrough(slot - 1));
      else if (this.judged !== undefined && slot - 1 > this.judged && this.settings.kind !== 'gauge') this.pending.push(...this.fillThrough(slot - 1));
      this.openSlot = slot;
      this.openSum = value;
      this.openN = 1;
      this.counts.accepted++;
      return 'accepted';
    }
    if (slot < this.openSlot) return this.refuse('late');
    this.openSum += value;
    this.openN++;
    this.counts.accepted++;
    this.counts.merged++;
    return 'merged';
  }

  private readonly pending: SeriesAlert[] = [];

  /**
   * Judges every interval that ended at or before `nowMs` (UTC): the open one, and for a count or a
   * sum the empty ones after it (zeros). Returns the alerts raised since the last call.
   */
  advance(nowMs: number): SeriesAlert[] {
    const last = this.slotOf(nowMs) - 1; // the last interval that has ended
    if (this.openSlot !== undefined && this.openSlot <= last) this.pending.push(...this.closeThrough(last));
    else if (this.openSlot === undefined && this.judged !== undefined && this.judged < last && this.settings.kind !== 'gauge') {
      this.pending.push(...this.fillThrough(last));
    }
    return this.pending.splice(0);
  }

  /** The episode in progress, if any. */
  get inEpisode(): boolean {
    return this.episode !== undefined;
  }

  private refuse(reason: Exclude<InputVerdict, 'accepted' | 'merged'>): InputVerdict {
    this.counts[reason]++;
    return reason;
  }

  /** Judges the open slot, then the empty slots up to `last`. */
  private closeThrough(last: number): SeriesAlert[] {
    const out: SeriesAlert[] = [];
    const slot = this.openSlot!;
    const value = this.settings.kind === 'gauge' ? this.openSum / this.openN : this.openSum;
    this.openSlot = undefined;
    this.gapTo(slot);
    const a = this.judge(slot, value);
    if (a) out.push(a);
    if (last > slot && this.settings.kind !== 'gauge') out.push(...this.fillThrough(last));
    return out;
  }

  /** Counts and sums: the slots after the last judged one up to `last` held nothing, so they are zeros. */
  private fillThrough(last: number): SeriesAlert[] {
    const out: SeriesAlert[] = [];
    // A gap longer than the history is not judged zero by zero: the series was away.
    const from = Math.max(this.judged! + 1, last - this.history.length + 1);
    this.gapTo(from);
    for (let s = from; s <= last; s++) {
      const a = this.judge(s, 0);
      if (a) out.push(a);
    }
    return out;
  }

  /** Marks the slots between the last judged one and `slot` unknown (gauges; and a gap a count cannot vouch for). */
  private gapTo(slot: number): void {
    if (this.judged === undefined) return;
    const n = this.history.length;
    const unknown = Math.min(slot - this.judged - 1, n);
    for (let i = 1; i <= unknown; i++) this.history[mod(slot - i, n)] = Number.NaN;
    if (slot - this.judged - 1 > 0) this.counts.unknownIntervals += slot - this.judged - 1;
  }

  private value(slot: number): number {
    if (this.judged === undefined || slot > this.judged || this.judged - slot >= this.history.length) return Number.NaN;
    return this.history[mod(slot, this.history.length)]!;
  }

  private expected(b: Baseline, slot: number): number | undefined {
    const xs: number[] = [];
    if (b === 'level') {
      const L = this.settings.levelIntervals;
      for (let i = 1; i <= L; i++) pushKnown(xs, this.value(slot - i));
      return xs.length >= Math.ceil(L / 2) ? median(xs) : undefined;
    }
    const [period, n] = b === 'day' ? [this.perDay, 7] : [this.perWeek, this.settings.seasonWeeks];
    for (let i = 1; i <= n; i++) pushKnown(xs, this.value(slot - i * period));
    return xs.length >= 2 ? median(xs) : undefined;
  }

  private judge(slot: number, observed: number): SeriesAlert | undefined {
    const s = this.settings;
    const t = slot * s.stepMs - this.offset(slot * s.stepMs); // UTC start, near enough across a DST change
    const recompute = this.sinceRecompute >= this.perHour;
    if (recompute) {
      this.sinceRecompute = 0;
      this.recomputeBudget(t);
    }
    this.sinceRecompute++;

    let best: { b: Baseline; sigma: number; expected: number; fit: number } | undefined;
    for (const b of ['level', 'day', 'week'] as const) {
      const e = this.expected(b, slot);
      if (e === undefined) continue;
      const rs = this.residuals[b];
      if (rs.length >= Math.min(s.scaleIntervals, s.minIntervals)) {
        if (recompute || this.sigmas[b] === undefined) {
          const recent = rs.slice(-s.scaleIntervals);
          this.sigmas[b] = robustSpread(recent);
          this.fits[b] = recent.reduce((a, r) => a + Math.abs(r), 0) / recent.length;
        }
        const sigma = this.sigmas[b]!;
        if (!best || this.fits[b]! < best.fit) best = { b, sigma, expected: e, fit: this.fits[b]! };
      }
      rs.push(observed - e);
      if (rs.length > 2 * s.scaleIntervals) rs.splice(0, rs.length - s.scaleIntervals);
    }
    this.judged = slot;
    this.history[mod(slot, this.history.length)] = observed;
    if (!best) return undefined;

    const sigma = s.kind === 'count' ? Math.max(best.sigma, Math.sqrt(Math.max(best.expected, 1))) : best.sigma;
    const z = sigma > 0 ? (observed - best.expected) / sigma : 0;
    this.recentZ.push(z);
    if (this.recentZ.length > s.shiftIntervals) this.recentZ.shift();
    const shift = this.recentZ.length === s.shiftIntervals ? median(this.recentZ) : 0;
    this.budget.t.push(t);
    this.budget.point.push(Math.abs(z));
    this.budget.shift.push(Math.abs(shift));

    const point = Math.abs(z) > this.qPoint;
    const held = Math.abs(shift) > this.qShift;
    if (this.episode) {
      if (point || held || Math.abs(z) > 3) this.episode.quiet = 0;
      else if (++this.episode.quiet >= s.quietIntervals) this.episode = undefined;
      return undefined;
    }
    if (!point && !held) return undefined;
    this.episode = { quiet: 0 };
    const [score, threshold] = point ? [z, this.qPoint] : [shift, this.qShift];
    return {
      direction: score < 0 ? 'drop' : 'spike',
      pattern: point ? 'point' : 'shift',
      intervalStart: t,
      intervalEnd: t + s.stepMs,
      observed,
      expected: best.expected,
      sigma,
      score,
      threshold,
      baseline: best.b,
    };
  }

  /** The alert budget: the d-th largest |z| (and |shift|) over the last d days of judged intervals. */
  private recomputeBudget(t: number): void {
    const s = this.settings;
    const b = this.budget;
    let drop = 0;
    while (drop < b.t.length && b.t[drop]! < t - s.budgetMs) drop++;
    if (drop > 0) for (const a of [b.t, b.point, b.shift]) a.splice(0, drop);
    if (b.t.length === 0) return;
    const allowed = Math.max(1, Math.round(((t - b.t[0]!) / DAY_MS) * s.alertsPerDay));
    this.qPoint = Math.max(s.k, kthLargest(b.point, allowed));
    this.qShift = Math.max(s.shiftK, kthLargest(b.shift, allowed));
  }
}

function pushKnown(xs: number[], v: number): void {
  if (!Number.isNaN(v)) xs.push(v);
}

const mod = (i: number, n: number) => ((i % n) + n) % n;

export function median(values: readonly number[]): number {
  const a = [...values];
  const n = a.length;
  const hi = select(a, n >> 1);
  return n % 2 ? hi : (hi + select(a, (n >> 1) - 1)) / 2;
}

/**
 * The k-th smallest value (0-based) of `a`, which it reorders: Hoare's quickselect, O(n) on
 * average, so the spreads and budgets over thousands of intervals can be recomputed every hour.
 */
function select(a: number[], k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (hi > lo) {
    const pivot = a[(lo + hi) >> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i++] = a[j]!;
        a[j--] = t;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break;
  }
  return a[k]!;
}

/**
 * 1.4826 * MAD (the standard deviation of normal data, robust to outliers); when more than half the
 * values are equal the MAD is 0 and 1.2533 * the mean absolute deviation from the median is used
 * (equal to the standard deviation for normal data too).
 */
export function robustSpread(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const m = median(values);
  const dev = values.map((v) => Math.abs(v - m));
  const mad = median(dev);
  if (mad > 0) return 1.4826 * mad;
  return (1.2533 * dev.reduce((a, b) => a + b, 0)) / dev.length;
}

function kthLargest(values: readonly number[], k: number): number {
  return select([...values], Math.max(0, values.length - k));
}

/**
 * The offset of an IANA time zone from UTC at a UTC instant, in ms (local = utc + offset), from
 * Intl, cached per quarter hour (offsets change on quarter hours at most).
 */
export function zoneOffset(timeZone: string): (utcMs: number) => number {
  if (timeZone === 'UTC' || timeZone === 'Etc/UTC') return () => 0;
  const format = new Intl.DateTimeFormat('en-US', {
    timeZone, // throws a RangeError for an unknown zone
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  });
  const cache = new Map<number, number>();
  return (utcMs) => {
    const key = Math.floor(utcMs / 900_000);
    let off = cache.get(key);
    if (off === undefined) {
      const base = key * 900_000;
      const p = Object.fromEntries(format.formatToParts(base).map((x) => [x.type, x.value]));
      off = Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day), Number(p.hour), Number(p.minute), Number(p.second)) - base;
      if (cache.size > 10_000) cache.clear();
      cache.set(key, off);
    }
    return off;
  };
}
