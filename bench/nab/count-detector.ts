/**
 * The service's count detector before issue 16 (replaced there by series-detector.ts), kept here as
 * the baseline `npm run bench:anomaly` measures the SeriesDetector against.
 *
 * Seasonal anomaly detection on the hourly counts of a TimeSeriesStore: "logins from GB suddenly
 * drop" alerts, normal daily and weekly swings do not.
 *
 * Baseline. For a series and hour H, the counts of the same hour of week in the previous weeks (up
 * to 4 with the store's default 5-week window; at least `minWeeks`, default 2). Product traffic
 * repeats by hour of day AND day of week (nights ~5% of days, weekends ~half of weekdays), so the
 * same hour of week removes both cycles without fitting a model. With less history it falls back
 * to the same hour on previous days of the same kind (weekdays with weekdays, Saturday and Sunday
 * together; UTC days), at least `minDays` (default 3): mixing kinds would make every Saturday look
 * like a drop. With less history still, no alert.
 *
 * Rule, with baseline values x_1..x_n and the observed count y:
 *   expected  = median(x)
 *   rate      = max(expected, (y + n * expected) / (n + 1))
 *   sigma     = max(1.4826 * MAD(x),  sqrt(rate * (1 + pi / (2n))),  relativeFloor * expected)
 *   threshold = max(k * sigma, minAbsDeviation)      defaults: k = 4, relativeFloor = 0.1, minAbsDeviation = 5
 *   alert when |y - expected| > threshold: 'drop' below, 'spike' above.
 * - Median and MAD, not mean and standard deviation: a past anomaly in the baseline (last week's
 *   outage, a holiday) would inflate the standard deviation and hide the next one; the median and
 *   MAD ignore it. 1.4826 * MAD estimates the standard deviation of normal data.
 * - Poisson floor: with 2 to 4 values the MAD is often near 0 by chance, while counts of
 *   independent events vary at least like a Poisson variable (variance = mean). pi/(2n) adds the
 *   variance of the median itself, as expected is as noisy as y. The rate pools y with the
 *   baseline: if this hour is like the others it is a sample of the same rate, which keeps 12
 *   events after a baseline of [2, 2] from passing for a 5-sigma spike.
 * - Relative floor: real traffic is overdispersed, whole days move by 10-20% (weather, news,
 *   holidays), which 2 to 4 values cannot show in their MAD. On the NAB taxi series (see the
 *   test), alerts outside the labelled windows were 737 on 159 days without it, 175 on 56 days at
 *   0.05, 40 on 13 days (mostly unlabelled holidays) at 0.1, and at 0.15 the marathon window was
 *   nearly missed. So by default only a change of about 40% alerts; an outage or a x5 spike is far
 *   beyond it.
 * - minAbsDeviation: for a series with a few events an hour, a deviation of a few events is not
 *   worth a page, whatever the statistics say.
 *
 * Early drop check: an outage should page within minutes, not when the hour closes. At every
 * evaluate, the last `earlyMinutes` (default 15) whole minutes are compared with the events the
 * baselines expect in that span, with the same rule (the MAD term scaled by the span's share of an
 * hour). A sliding span rather than the hour so far, so an outage that starts late in an hour is not
 * diluted by the normal minutes before it: the delay is ~7 minutes wherever the outage starts, for a
 * series with ~1,000 events in the span. Traffic is not flat within an hour, so the expectation
 * integrates a linear rate (see expectedInSpan). Only drops are checked early: a drop is an outage,
 * a spike can wait for the hour to close. The span must be at least the step of the input data
 * (30 minutes for data summed by half-hour), or it would see the gaps between points as drops.
 *
 * At most one alert per series and clock hour (the hour in which the judged window ends): an early
 * alert suppresses the hour's closing one and later early ones, so an outage pages once an hour. The
 * detector never reads the wall clock: event time comes in `evaluate(nowMs)`, so replays run at any
 * speed.
 */
import { DAY_MS, HOUR_MS, MINUTE_MS, WEEK_MS, type Labels, type TimeSeriesStore } from '../../src/serving/observability/timeseries.js';

// simple-statistics ships a CommonJS build (its `require` export) but only ESM typings, which this
// CommonJS package cannot import statically (and `npx tsc`, tslab's TypeScript 5.0, cannot import
// their types with a resolution-mode either): require the CommonJS build and type the two functions.
const { median, medianAbsoluteDeviation } = require('simple-statistics') as {
  median(x: number[]): number;
  medianAbsoluteDeviation(x: number[]): number;
};

export interface Alert {
  series: string;
  labels: Labels;
  direction: 'drop' | 'spike';
  /** The count in the window. */
  observed: number;
  /** The count the baseline expects in the window. */
  expected: number;
  /** The largest deviation from `expected` that would not have alerted. */
  threshold: number;
  /** The window judged, ISO strings: a closed hour, or the last `earlyMinutes` for an early drop. */
  windowStart: string;
  windowEnd: string;
  /** Event time at which the alert was raised. */
  detectedAt: string;
}

export interface AnomalyOptions {
  /** Multiplier of sigma. Default 4. */
  k?: number;
  /** Smallest deviation, in events, that can alert. Default 5. */
  minAbsDeviation?: number;
  /** Smallest sigma as a fraction of the expected count (overdispersion of real traffic). Default 0.1. */
  relativeFloor?: number;
  /** Length of the sliding window checked for a drop before the hour closes. Default 15. */
  earlyMinutes?: number;
  /** Previous weeks needed for the hour-of-week baseline. Default 2. */
  minWeeks?: number;
  /** Previous days of the same kind needed for the fallback baseline. Default 3. */
  minDays?: number;
}

/** Robust summary of the baseline values of one hour. */
export interface Baseline {
  median: number;
  /** 1.4826 * MAD: a standard deviation that one outlier does not move. */
  madSigma: number;
  n: number;
  source: 'week' | 'day';
}

export function robustBaseline(values: readonly number[], source: Baseline['source']): Baseline {
  return { median: median([...values]), madSigma: 1.4826 * medianAbsoluteDeviation([...values]), n: values.length, source };
}

/**
 * The largest deviation from `expected` that does not alert, for `observed` events in a span that
 * is `fraction` of the hour `b` describes. The Poisson rate is the larger of the expectation and
 * the pooled estimate (observed + n * expected) / (n + 1): if this span is like the others it is a
 * sample of the same rate too, which keeps 12 events after [2, 2] from being "5 sigma".
 */
export function thresholdFor(b: Baseline, observed: number, expected: number, fraction: number, o: Required<AnomalyOptions>): number {
  const rate = Math.max(expected, (observed + b.n * expected) / (b.n + 1), 0);
  const poisson = Math.sqrt(rate * (1 + Math.PI / (2 * b.n)));
  return Math.max(o.k * Math.max(b.madSigma * fraction, poisson, o.relativeFloor * expected), o.minAbsDeviation);
}

/**
 * The fewest events to expect in [fromMs, toMs) given each hour's baseline count `of(hourStart)`,
 * for the early drop check. Within hour h the rate is taken as linear with mean B_h, so the part
 * of the span from fraction x0 to x1 of the hour expects (x1 - x0) * (B_h + s * ((x0 + x1) / 2 - 1/2)).
 * The slope s is either the backward difference B_h - B_h-1 or the forward one B_h+1 - B_h
 * (0 without neighbours); the lower expectation is kept, so a drop alert holds whichever way the
 * rate is moving, including at jumps such as Sunday night to Monday. Undefined when an hour of the
 * span has no baseline.
 */
export function expectedInSpan(fromMs: number, toMs: number, of: (hourStart: number) => number | undefined): number | undefined {
  let sum = 0;
  for (let h = Math.floor(fromMs / HOUR_MS) * HOUR_MS; h < toMs; h += HOUR_MS) {
    const b = of(h);
    if (b === undefined) return undefined;
    const before = of(h - HOUR_MS);
    const after = of(h + HOUR_MS);
    const slopes: number[] = [];
    if (before !== undefined) slopes.push(b - before);
    if (after !== undefined) slopes.push(after - b);
    const x0 = (Math.max(fromMs, h) - h) / HOUR_MS;
    const x1 = (Math.min(toMs, h + HOUR_MS) - h) / HOUR_MS;
    const offset = (x0 + x1) / 2 - 0.5;
    sum += Math.max(0, (x1 - x0) * (b + Math.min(...(slopes.length ? slopes : [0]).map((s) => s * offset))));
  }
  return sum;
}

const isWeekend = (ms: number) => {
  const d = new Date(ms).getUTCDay();
  return d === 0 || d === 6;
};

export class AnomalyDetector {
  readonly options: Required<AnomalyOptions>;
  /** Start of the next hour to judge at its close, once the first evaluate has run. */
  private nextHour: number | undefined;
  /** Per series, the latest clock hour that alerted: at most one alert per series and hour. */
  private readonly alerted = new Map<string, number>();
  /** Baselines by series and hour, for the few hours around now (the early check reuses them every minute). */
  private readonly cache = new Map<string, Map<number, Baseline | undefined>>();
  private cacheHour = -Infinity;
  /** The last minute evaluated: within it, a call finds what the previous one found. */
  private lastEvaluatedEnd = -Infinity;

  constructor(
    private readonly store: TimeSeriesStore,
    options: AnomalyOptions = {},
  ) {
    this.options = {
      k: options.k ?? 4,
      minAbsDeviation: options.minAbsDeviation ?? 5,
      relativeFloor: options.relativeFloor ?? 0.1,
      earlyMinutes: options.earlyMinutes ?? 15,
      minWeeks: options.minWeeks ?? 2,
      minDays: options.minDays ?? 3,
    };
    const span = this.options.earlyMinutes * MINUTE_MS;
    if (!(span > 0) || span % store.bucketMs !== 0 || span > store.fineLength * store.bucketMs) {
      throw new RangeError('earlyMinutes must be a whole number of buckets within the fine window');
    }
  }

  /**
   * Judges, at event time `nowMs` (every event before it is assumed to be in the store), each hour
   * that closed since the last call (the first call judges only the last closed hour) and the last
   * `earlyMinutes` whole minutes. Returns the new alerts.
   */
  evaluate(nowMs: number): Alert[] {
    const o = this.options;
    const alerts: Alert[] = [];
    // Judged once per minute of event time: the monitor calls this after every batch (ten a second
    // under load), and until the minute ends only late events, which can only weaken a drop, change
    // what the windows hold. Each call walked every series; it took a third of the service's thread.
    const minuteEnd = Math.floor(nowMs / this.store.bucketMs) * this.store.bucketMs;
    if (minuteEnd === this.lastEvaluatedEnd) return alerts;
    this.lastEvaluatedEnd = minuteEnd;
    const current = Math.floor(nowMs / HOUR_MS) * HOUR_MS;
    if (current !== this.cacheHour) {
      this.cacheHour = current;
      const oldest = current - (Math.ceil(o.earlyMinutes / 60) + 2) * HOUR_MS;
      for (const hours of this.cache.values()) for (const h of hours.keys()) if (h < oldest) hours.delete(h);
    }
    const series = this.store.series();

    const from = Math.max(this.nextHour ?? current - HOUR_MS, current - (this.store.hourLength - 1) * HOUR_MS);
    for (let hour = from; hour < current; hour += HOUR_MS) {
      for (const s of series) {
        if ((this.alerted.get(s.key) ?? -Infinity) >= hour) continue;
        const observed = this.store.hour(s.key, hour);
        const b = this.baseline(s.key, hour);
        if (observed === undefined || !b) continue;
        const threshold = thresholdFor(b, observed, b.median, 1, o);
        if (Math.abs(observed - b.median) > threshold) {
          alerts.push(alert(s.key, s.labels, observed, b.median, threshold, hour, hour + HOUR_MS, nowMs));
          this.alerted.set(s.key, hour);
        }
      }
    }
    this.nextHour = Math.max(this.nextHour ?? current, current);

    const end = Math.floor(nowMs / this.store.bucketMs) * this.store.bucketMs;
    const start = end - o.earlyMinutes * MINUTE_MS;
    const endHour = Math.floor((end - 1) / HOUR_MS) * HOUR_MS;
    for (const s of series) {
      if (s.firstMs > start || (this.alerted.get(s.key) ?? -Infinity) >= endHour) continue;
      const b = this.cached(s.key, endHour);
      const expected = expectedInSpan(start, end, (h) => this.cached(s.key, h)?.median);
      if (!b || expected === undefined) continue;
      const observed = this.store.minutes(s.key, start, end).reduce((sum, m) => sum + m.value, 0);
      const threshold = thresholdFor(b, observed, expected, (end - start) / HOUR_MS, o);
      if (expected - observed > threshold) {
        alerts.push(alert(s.key, s.labels, observed, expected, threshold, start, end, nowMs));
        this.alerted.set(s.key, endHour);
      }
    }
    return alerts;
  }

  /** The hour-of-week baseline, else the same-kind-of-day fallback, else undefined (no alert). */
  baseline(key: string, hour: number): Baseline | undefined {
    const o = this.options;
    const weeks = known(this.store, key, hour, WEEK_MS, Math.floor(this.store.hourLength / 168), () => true);
    if (weeks.length >= o.minWeeks) return robustBaseline(weeks, 'week');
    const kind = isWeekend(hour);
    const days = known(this.store, key, hour, DAY_MS, 14, (t) => isWeekend(t) === kind);
    return days.length >= o.minDays ? robustBaseline(days, 'day') : undefined;
  }

  private cached(key: string, hour: number): Baseline | undefined {
    let hours = this.cache.get(key);
    if (!hours) this.cache.set(key, (hours = new Map()));
    if (!hours.has(hour)) hours.set(hour, this.baseline(key, hour));
    return hours.get(hour);
  }
}

/** Counts of `hour - i * step` for i = 1, 2, ... that the store still knows and `keep` accepts. */
function known(store: TimeSeriesStore, key: string, hour: number, step: number, maxSteps: number, keep: (t: number) => boolean): number[] {
  const out: number[] = [];
  for (let i = 1; i <= maxSteps; i++) {
    const t = hour - i * step;
    if (!keep(t)) continue;
    const v = store.hour(key, t);
    if (v === undefined) break;
    out.push(v);
  }
  return out;
}

function alert(series: string, labels: Labels, observed: number, expected: number, threshold: number, from: number, to: number, nowMs: number): Alert {
  return {
    series,
    labels,
    direction: observed < expected ? 'drop' : 'spike',
    observed,
    expected,
    threshold,
    windowStart: new Date(from).toISOString(),
    windowEnd: new Date(to).toISOString(),
    detectedAt: new Date(nowMs).toISOString(),
  };
}
