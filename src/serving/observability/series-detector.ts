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
 * - day: the median of the same local time on the previous 7 days of the same kind (weekdays with
 *   weekdays, Saturdays and Sundays together, within 14 days: before the week baseline has weeks to
 *   learn from, a Saturday compared with Fridays would look like a drop);
 * - week: the median of the same local time of week in the previous `seasonWeeks` weeks.
 * Medians, so that one past anomaly does not move the baseline. A baseline is trusted once it has
 * `minIntervals` residuals; while one that fits better is still learning (it has a quarter of them),
 * or cannot judge this interval (the day baseline on the first weekend), nothing is judged: in a
 * seasonal series' first days only the level is trusted, and every morning would look like a jump.
 *
 * Spread: sigma = 1.4826 * MAD of those residuals (the standard deviation of normal data, which a
 * few outliers do not inflate), or 1.2533 * their mean absolute deviation when more than half are
 * equal (a sparse series whose MAD is 0). z = (observed - expected) / sigma. One spread is pooled
 * over all the hours of the day, so each kind is judged on a scale where a quiet night and a busy
 * noon vary alike (alerts report values on the series' own scale):
 * - a count on Anscombe's 2 sqrt(count + 3/8), where a Poisson count has a variance of 1 at any
 *   mean; its sigma is at least 1 (independent events vary at least like a Poisson variable), and a
 *   drop from 40 to 0 is z = -11.6 where (0 - 40) / sqrt(40) says -6.3;
 * - a sum on sign(y) sqrt(|y|): the total of a random number of purchases has a variance
 *   proportional to its mean too;
 * - a gauge as it is, its residuals weighted by sqrt(n) for an interval of n values (a mean of n
 *   response times varies like 1 / sqrt(n)); NAB's gauges have one value an interval.
 * Spreads and fits are read once an hour of intervals from windows that keep their residuals sorted
 * as they come (rolling-stats.ts), not computed from thousands of residuals again: a catch-up on
 * months of history judges every interval of every series.
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
import { RollingWindow, SortedValues } from './rolling-stats.js';

const DAY_MS = 86_400_000;

export type SeriesKind = 'count' | 'sum' | 'gauge';

/** An IANA time zone name that this Node.js knows (Intl throws a RangeError for any other). */
const TimeZone = z.string().refine((zone) => {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}, 'an IANA time zone, e.g. Europe/London');

/**
 * Settings that a settings file or the CLI may give for one metric or for all (no defaults here, so
 * that layers merge: built-in defaults, then a file's defaults, then the metric's own, then the CLI).
 */
export const SeriesOverridesSchema = z
  .object({
    /** Native resolution, ms; must divide one day. */
    stepMs: z
      .number()
      .int()
      .positive()
      .refine((s) => DAY_MS % s === 0, 'stepMs must divide one day')
      .optional(),
    /** IANA time zone of the seasons (days and weeks). Default UTC. */
    timeZone: TimeZone.optional(),
    k: z.number().positive().optional(),
    shiftK: z.number().positive().optional(),
    shiftIntervals: z.number().int().min(1).optional(),
    levelIntervals: z.number().int().min(1).optional(),
    seasonWeeks: z.number().int().min(2).optional(),
    scaleIntervals: z.number().int().min(10).optional(),
    /** Judged intervals needed before a baseline's spread is trusted. */
    minIntervals: z.number().int().min(10).optional(),
    alertsPerDay: z.number().positive().optional(),
    budgetMs: z.number().positive().optional(),
    quietIntervals: z.number().int().min(1).optional(),
    /** Values stamped later than the clock plus this are refused (only with a clock). Default 1 hour. */
    maxAheadMs: z.number().positive().optional(),
    /**
     * Which way alerts: `both` (default), `drop` (revenue: a spike of sales is no incident) or
     * `spike` (latency: faster answers are none). The other way is judged as usual and never alerts.
     */
    alertOn: z.enum(['both', 'drop', 'spike']).optional(),
  })
  .strict();
export type SeriesOverrides = z.infer<typeof SeriesOverridesSchema>;

/** Per-metric settings: a kind and a step, the rest defaulting to `SERIES_DEFAULTS`. */
export const SeriesSettingsSchema = SeriesOverridesSchema.extend({
  kind: z.enum(['count', 'sum', 'gauge']),
  stepMs: SeriesOverridesSchema.shape.stepMs.unwrap(),
}).strict();
export type SeriesSettings = z.input<typeof SeriesSettingsSchema>;
type Resolved = Required<z.output<typeof SeriesSettingsSchema>>;

/** The defaults of every setting but the kind and the step. */
export const SERIES_DEFAULTS: Readonly<Required<Omit<SeriesOverrides, 'stepMs'>>> = {
  timeZone: 'UTC',
  k: 6,
  shiftK: 4,
  shiftIntervals: 6,
  levelIntervals: 12,
  seasonWeeks: 4,
  scaleIntervals: 2000,
  minIntervals: 200,
  alertsPerDay: 1,
  budgetMs: 14 * 86_400_000,
  quietIntervals: 12,
  maxAheadMs: 3_600_000,
  alertOn: 'both',
};

/** `layers` merged left to right, settings left undefined in a layer keeping the earlier value. */
export function mergeSettings<T extends object>(...layers: (Partial<T> | undefined)[]): Partial<T> {
  const out: Partial<T> = {};
  for (const layer of layers) for (const [k, v] of Object.entries(layer ?? {})) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

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
  /** Robust standard deviation of the residuals on the scale judged (a count's Anscombe scale, a sum's square root, a gauge's units for one value). */
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

/** One anomaly from its first alert until `quietIntervals` ordinary intervals in a row: one incident. */
export interface Episode {
  /** The alert that opened it. */
  alert: SeriesAlert;
  /** The interval farthest from its expected value (largest |z|) so far. */
  peak: { intervalStart: number; observed: number; expected: number; score: number };
  /** End of the last interval that was off (|z| > 3) so far (UTC ms). */
  lastAnomalousEnd: number;
  /** Intervals off so far. */
  intervals: number;
  /** End of the interval that closed it (UTC ms); undefined while it is open. */
  closedAt?: number;
}

export type InputVerdict = 'accepted' | 'merged' | 'late' | 'nonFinite' | 'future';

const WEEK_MS = 7 * DAY_MS;
const HOUR_MS = 3_600_000;
const BASELINES: readonly Baseline[] = ['level', 'day', 'week'];
const LEVEL = 0;
const DAY = 1;

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
  /**
   * Per baseline (by its index in BASELINES): its last `scaleIntervals` residuals, kept sorted too
   * (rolling-stats.ts: its spread is read every hour without sorting them again), its spread and
   * its fit as of the last hour it was read.
   */
  private readonly residuals: RollingWindow[];
  private readonly sigmas: (number | undefined)[] = [undefined, undefined, undefined];
  private readonly fits: (number | undefined)[] = [undefined, undefined, undefined];
  private readonly recentZ: number[] = [];
  /** Scratch for the median of `recentZ`. */
  private readonly recentScratch: Float64Array;
  /**
   * |z| and |shift| of the judged intervals of the last `budgetMs`, with their times, oldest first
   * from `head` (entries before it have left the window), and the same values sorted.
   */
  private readonly budget: { t: number[]; point: number[]; shift: number[]; head: number; sortedPoint: SortedValues; sortedShift: SortedValues };
  /** Scratch for a baseline's past values (its median is taken in place). */
  private readonly scratch: Float64Array;
  private qPoint: number;
  private qShift: number;
  private sinceRecompute = Infinity;
  private readonly perHour: number;
  private episode: (Episode & { quiet: number }) | undefined;
  private readonly ended: Episode[] = [];

  constructor(
    settings: SeriesSettings,
    private readonly clock?: () => number,
  ) {
    this.settings = { ...SERIES_DEFAULTS, ...mergeSettings<Resolved>(SeriesSettingsSchema.parse(settings)) } as Resolved;
    const s = this.settings;
    this.offset = zoneOffset(s.timeZone);
    this.perDay = DAY_MS / s.stepMs;
    this.perWeek = WEEK_MS / s.stepMs;
    this.perHour = Math.max(1, Math.round(HOUR_MS / s.stepMs));
    this.history = new Float64Array(Math.max(this.perWeek * s.seasonWeeks, 7 * this.perDay, s.levelIntervals) + 1).fill(Number.NaN);
    this.qPoint = s.k;
    this.qShift = s.shiftK;
    this.residuals = BASELINES.map(() => new RollingWindow(s.scaleIntervals));
    this.recentScratch = new Float64Array(s.shiftIntervals);
    // Sized for the intervals of budgetMs (it grows if a DST change or a long budget needs more).
    const budgetIntervals = Math.min(Math.ceil(s.budgetMs / s.stepMs) + 1, 1 << 14);
    this.budget = { t: [], point: [], shift: [], head: 0, sortedPoint: new SortedValues(budgetIntervals), sortedShift: new SortedValues(budgetIntervals) };
    this.scratch = new Float64Array(Math.max(s.levelIntervals, 14, s.seasonWeeks));
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
      if (this.openSlot !== undefined) this.closeThrough(slot - 1);
      else if (this.judged !== undefined && slot - 1 > this.judged && this.settings.kind !== 'gauge') this.fillThrough(slot - 1);
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
   *
   * `limit` bounds the intervals judged in this call (after a long quiet spell there can be four
   * weeks of them), so that a caller can give the event loop back in between: calls with the same
   * `nowMs` until `caughtUp(nowMs)` judge exactly what one call without a limit would.
   */
  advance(nowMs: number, limit = Infinity): SeriesAlert[] {
    const last = this.slotOf(nowMs) - 1; // the last interval that has ended
    if (this.openSlot !== undefined && this.openSlot <= last) this.closeThrough(last, limit);
    else if (this.openSlot === undefined && this.judged !== undefined && this.judged < last && this.settings.kind !== 'gauge') {
      this.fillThrough(last, limit);
    }
    // Most calls (every minute, per series) find nothing: no array for them.
    return this.pending.length === 0 ? [] : this.pending.splice(0);
  }

  /**
   * Whether `advance(nowMs)` and `takeEnded()` have nothing to give: every interval that ended at or
   * before `nowMs` has been judged (see the limit), and no alert or closed episode is waiting.
   */
  caughtUp(nowMs: number): boolean {
    if (this.pending.length > 0 || this.ended.length > 0) return false;
    const last = this.slotOf(nowMs) - 1;
    if (this.openSlot !== undefined) return this.openSlot > last;
    return this.judged === undefined || this.judged >= last || this.settings.kind === 'gauge';
  }

  /** The episode in progress, if any. */
  get inEpisode(): boolean {
    return this.episode !== undefined;
  }

  /** The episode in progress (updated in place as intervals are judged), if any. */
  get openEpisode(): Episode | undefined {
    return this.episode;
  }

  /** The episodes that closed since the last call. */
  takeEnded(): Episode[] {
    return this.ended.length === 0 ? [] : this.ended.splice(0);
  }

  private refuse(reason: Exclude<InputVerdict, 'accepted' | 'merged'>): InputVerdict {
    this.counts[reason]++;
    return reason;
  }

  /** Judges the open slot, then the empty slots up to `last`, `limit` slots at most; alerts go to `pending`. */
  private closeThrough(last: number, limit = Infinity): void {
    const slot = this.openSlot!;
    const value = this.settings.kind === 'gauge' ? this.openSum / this.openN : this.openSum;
    this.openSlot = undefined;
    this.gapTo(slot);
    const a = this.judge(slot, value, this.openN);
    if (a) this.pending.push(a);
    if (last > slot && this.settings.kind !== 'gauge' && limit > 1) this.fillThrough(last, limit - 1);
  }

  /** Counts and sums: the slots after the last judged one up to `last` held nothing, so they are zeros (`limit` of them at most). */
  private fillThrough(last: number, limit = Infinity): void {
    // A gap longer than the history is not judged zero by zero: the series was away.
    const from = Math.max(this.judged! + 1, last - this.history.length + 1);
    this.gapTo(from);
    const to = Math.min(last, from + limit - 1);
    for (let s = from; s <= to; s++) {
      const a = this.judge(s, 0);
      if (a) this.pending.push(a);
    }
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

  /** The value baseline `b` (an index in BASELINES) expects at `slot`, or undefined when it has too little history there. */
  private expected(b: number, slot: number): number | undefined {
    // The known values go to a scratch array (no closure, no array per call: this runs three times an interval).
    const xs = this.scratch;
    let n = 0;
    if (b === LEVEL) {
      const L = this.settings.levelIntervals;
      for (let i = 1; i <= L; i++) {
        const v = this.value(slot - i);
        if (!Number.isNaN(v)) xs[n++] = v;
      }
      return n >= Math.ceil(L / 2) ? medianInPlace(xs, n) : undefined;
    }
    if (b === DAY) {
      // Weekdays with weekdays, Saturdays and Sundays together: before the week baseline has weeks
      // to learn from, a Saturday compared with Fridays looks like a drop.
      const weekend = isWeekend(slot, this.perDay);
      for (let i = 1; i <= 14 && n < 7; i++) {
        if (isWeekend(slot - i * this.perDay, this.perDay) !== weekend) continue;
        const v = this.value(slot - i * this.perDay);
        if (!Number.isNaN(v)) xs[n++] = v;
      }
      return n >= 2 ? medianInPlace(xs, n) : undefined;
    }
    for (let i = 1; i <= this.settings.seasonWeeks; i++) {
      const v = this.value(slot - i * this.perWeek);
      if (!Number.isNaN(v)) xs[n++] = v;
    }
    return n >= 2 ? medianInPlace(xs, n) : undefined;
  }

  /** Judges `value` (`n` values' mean for a gauge). */
  private judge(slot: number, value: number, n = 1): SeriesAlert | undefined {
    const s = this.settings;
    const observed = this.scale(value);
    // A gauge's mean of n values varies like 1 / sqrt(n): residuals are weighted by sqrt(n), so a
    // night of 3 response times and a noon of 300 share one spread (NAB's gauges have one value an interval).
    const weight = s.kind === 'gauge' ? Math.sqrt(n) : 1;
    const t = slot * s.stepMs - this.offset(slot * s.stepMs); // UTC start, near enough across a DST change
    const recompute = this.sinceRecompute >= this.perHour;
    if (recompute) {
      this.sinceRecompute = 0;
      this.recomputeBudget(t);
    }
    this.sinceRecompute++;

    // The best baseline so far (index, spread, expected value, fit); no object per interval.
    let best = -1;
    let bestSigma = 0;
    let bestExpected = 0;
    let bestFit = Infinity;
    /** The best fit of a baseline still learning (fewer than `minIntervals` residuals, more than a quarter of them). */
    let learning = Infinity;
    for (let b = 0; b < BASELINES.length; b++) {
      const e = this.expected(b, slot);
      const rs = this.residuals[b]!;
      if (e === undefined) {
        // A baseline that fits better but cannot judge this interval (the day baseline on the
        // first weekend) holds judgement too.
        const fit = this.fits[b];
        if (fit !== undefined) learning = Math.min(learning, fit);
        continue;
      }
      // The window holds the last scaleIntervals residuals, and both thresholds are at most that.
      if (rs.size >= Math.min(s.scaleIntervals, s.minIntervals)) {
        if (recompute || this.sigmas[b] === undefined) {
          this.sigmas[b] = rs.robustSpread();
          this.fits[b] = rs.meanAbs();
        }
        const fit = this.fits[b]!;
        if (best < 0 || fit < bestFit) {
          best = b;
          bestSigma = this.sigmas[b]!;
          bestExpected = e;
          bestFit = fit;
        }
      } else if (rs.size >= s.minIntervals / 4) {
        if (recompute || this.fits[b] === undefined) this.fits[b] = rs.meanAbs();
        learning = Math.min(learning, this.fits[b]!);
      }
      rs.push((observed - e) * weight);
    }
    this.judged = slot;
    this.history[mod(slot, this.history.length)] = observed;
    // While a baseline that already fits better is still learning (the day baseline in a seasonal
    // series' first days, when only the recent level is trusted and every morning looks like a
    // jump), nothing is judged: the trusted one would mistake the season for anomalies.
    if (best < 0 || learning < bestFit) return undefined;

    // On the Anscombe scale a Poisson count has a standard deviation of 1: no count varies less.
    const sigma = s.kind === 'count' ? Math.max(bestSigma, 1) : bestSigma;
    const z = sigma > 0 ? ((observed - bestExpected) * weight) / sigma : 0;
    const recent = this.recentZ;
    recent.push(z);
    if (recent.length > s.shiftIntervals) recent.shift();
    let shift = 0;
    if (recent.length === s.shiftIntervals) {
      this.recentScratch.set(recent);
      shift = medianInPlace(this.recentScratch, recent.length);
    }
    const budget = this.budget;
    budget.t.push(t);
    budget.point.push(Math.abs(z));
    budget.shift.push(Math.abs(shift));
    budget.sortedPoint.insert(Math.abs(z));
    budget.sortedShift.insert(Math.abs(shift));

    const point = Math.abs(z) > this.qPoint;
    const held = Math.abs(shift) > this.qShift;
    const ep = this.episode;
    if (ep) {
      if (point || held || Math.abs(z) > 3) {
        ep.quiet = 0;
        ep.intervals++;
        ep.lastAnomalousEnd = t + s.stepMs;
        if (Math.abs(z) > Math.abs(ep.peak.score)) ep.peak = { intervalStart: t, observed: value, expected: this.unscale(bestExpected), score: z };
      } else if (++ep.quiet >= s.quietIntervals) {
        ep.closedAt = t + s.stepMs;
        const { quiet: _quiet, ...episode } = ep;
        this.ended.push(episode);
        this.episode = undefined;
      }
      return undefined;
    }
    if (!point && !held) return undefined;
    const [score, threshold] = point ? [z, this.qPoint] : [shift, this.qShift];
    if ((s.alertOn === 'drop' && score > 0) || (s.alertOn === 'spike' && score < 0)) return undefined;
    const alert: SeriesAlert = {
      direction: score < 0 ? 'drop' : 'spike',
      pattern: point ? 'point' : 'shift',
      intervalStart: t,
      intervalEnd: t + s.stepMs,
      observed: value,
      expected: this.unscale(bestExpected),
      sigma,
      score,
      threshold,
      baseline: BASELINES[best]!,
    };
    this.episode = {
      alert,
      peak: { intervalStart: t, observed: value, expected: alert.expected, score: z },
      lastAnomalousEnd: t + s.stepMs,
      intervals: 1,
      quiet: 0,
    };
    return alert;
  }

  /**
   * The scale intervals are judged on: a count's is Anscombe's 2 sqrt(y + 3/8), on which Poisson
   * counts have a variance of 1 whatever their mean (a night's 3 events and a noon's 300 share one
   * spread, and a drop to 0 from 40 is as far as it is rare: z = -11.6, where (0 - 40) / sqrt(40)
   * says -6.3); sums and gauges are judged as they are.
   */
  private scale(y: number): number {
    if (this.settings.kind === 'count') return 2 * Math.sqrt(Math.max(y, 0) + 0.375);
    if (this.settings.kind === 'sum') return Math.sign(y) * Math.sqrt(Math.abs(y));
    return y;
  }

  private unscale(v: number): number {
    if (this.settings.kind === 'count') return Math.max(0, (v / 2) ** 2 - 0.375);
    if (this.settings.kind === 'sum') return Math.sign(v) * v * v;
    return v;
  }

  /** The alert budget: the d-th largest |z| (and |shift|) over the last d days of judged intervals. */
  private recomputeBudget(t: number): void {
    const s = this.settings;
    const b = this.budget;
    while (b.head < b.t.length && b.t[b.head]! < t - s.budgetMs) {
      b.sortedPoint.remove(b.point[b.head]!);
      b.sortedShift.remove(b.shift[b.head]!);
      b.head++;
    }
    // The entries that left are cut off now and then, not at every hour (a move of the whole window).
    if (b.head >= 256) {
      for (const a of [b.t, b.point, b.shift]) a.splice(0, b.head);
      b.head = 0;
    }
    if (b.t.length === b.head) return;
    const allowed = Math.max(1, Math.round(((t - b.t[b.head]!) / DAY_MS) * s.alertsPerDay));
    // The allowed-th largest: the sorted values' index n - allowed (the smallest when fewer).
    const n = b.sortedPoint.size;
    this.qPoint = Math.max(s.k, b.sortedPoint.at(Math.max(0, n - allowed)));
    this.qShift = Math.max(s.shiftK, b.sortedShift.at(Math.max(0, n - allowed)));
  }
}

/** Whether a local-time slot falls on a Saturday or a Sunday (day 0 of the epoch, 1970-01-01, was a Thursday). */
function isWeekend(slot: number, perDay: number): boolean {
  const dow = mod(Math.floor(slot / perDay) + 4, 7);
  return dow === 0 || dow === 6;
}

const mod = (i: number, n: number) => ((i % n) + n) % n;

export function median(values: readonly number[]): number {
  return medianInPlace([...values], values.length);
}

/** The median of the first `n` values of `a`, which it reorders. */
function medianInPlace(a: number[] | Float64Array, n: number): number {
  const hi = select(a, n >> 1, n);
  return n % 2 ? hi : (hi + select(a, (n >> 1) - 1, n)) / 2;
}

/**
 * The k-th smallest value (0-based) of the first `n` of `a`, which it reorders: Hoare's
 * quickselect, O(n) on average.
 */
function select(a: number[] | Float64Array, k: number, n = a.length): number {
  let lo = 0;
  let hi = n - 1;
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
