import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SERVICE_DEFAULTS } from '../../../src/serving/observability/monitor-settings.js';
import { SeriesDetector, type SeriesAlert, type SeriesSettings } from '../../../src/serving/observability/series-detector.js';
import { DAY_MS, HOUR_MS, MINUTE_MS, TimeSeriesStore, WEEK_MS, seriesKey, type Labels } from '../../../src/serving/observability/timeseries.js';

// ---- synthetic traffic with a known truth ---------------------------------------------------

/** mulberry32: a tiny seeded PRNG, uniform in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Poisson(lambda): Knuth's product of uniforms below 30, the rounded normal approximation above. */
function poisson(rand: () => number, lambda: number): number {
  if (lambda <= 0) return 0;
  if (lambda < 30) {
    const limit = Math.exp(-lambda);
    let k = 0;
    let p = 1;
    do {
      k++;
      p *= rand();
    } while (p > limit);
    return k - 1;
  }
  const z = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * z));
}

/** Monday 2024-01-01 00:00 UTC: weeks of the simulation start on Mondays. */
const START = Date.UTC(2024, 0, 1);

/** Events per minute at `t` for a series peaking at `peak`: night (03:00) 5% of the 15:00 peak, weekends half. */
function dailyWeekly(peak: number, t: number): number {
  const hour = (t % DAY_MS) / HOUR_MS;
  const daily = 0.05 + (0.95 * (1 - Math.cos((2 * Math.PI * (hour - 3)) / 24))) / 2;
  const day = new Date(t).getUTCDay();
  return peak * daily * (day === 0 || day === 6 ? 0.5 : 1);
}

interface SyntheticSeries {
  labels: Labels;
  /** Events per minute at the weekday peak. */
  peak: number;
}

/** Six series from 2 to 200 events a minute at peak (about 60 to 6,000 an hour at night-to-peak extremes). */
const SERIES: SyntheticSeries[] = [
  { labels: { event: 'login', country: 'GB' }, peak: 60 },
  { labels: { event: 'login', country: 'US' }, peak: 200 },
  { labels: { event: 'login', country: 'FR' }, peak: 20 },
  { labels: { event: 'signup', country: 'GB' }, peak: 5 },
  { labels: { event: 'signup', country: 'US' }, peak: 10 },
  { labels: { event: 'purchase', country: 'DE' }, peak: 2 },
];
const GB_LOGIN = seriesKey('events', SERIES[0]!.labels);
const US_SIGNUP = seriesKey('events', SERIES[4]!.labels);

interface Alert extends SeriesAlert {
  series: string;
  detectedAt: number;
}

interface Run {
  store: TimeSeriesStore;
  detectors: Map<string, SeriesDetector>;
  alerts: Alert[];
}

/**
 * Feeds `weeks` of minute counts (Poisson around `rate` times `effect`) into the store and into one
 * count SeriesDetector per series with the service's defaults (15-minute intervals), advanced after
 * every simulated minute. Each series has its own PRNG stream, so an effect on one series leaves the
 * others' counts identical to the clean run.
 */
function simulate(opts: {
  seed: number;
  weeks: number;
  series?: SyntheticSeries[];
  rate?: (peak: number, t: number) => number;
  effect?: (seriesIndex: number, t: number) => number;
  settings?: Partial<SeriesSettings>;
}): Run {
  const { seed, weeks, series = SERIES, rate = dailyWeekly, effect = () => 1 } = opts;
  const store = new TimeSeriesStore();
  const detectors = new Map(
    series.map((s) => [
      seriesKey('events', s.labels),
      new SeriesDetector({ kind: 'count', ...SERVICE_DEFAULTS, stepMs: SERVICE_DEFAULTS.stepMs!, ...opts.settings }),
    ]),
  );
  const rands = series.map((_, i) => mulberry32(seed * 1000 + i));
  const alerts: Alert[] = [];
  for (let t = START; t < START + weeks * WEEK_MS; t += MINUTE_MS) {
    series.forEach((s, i) => {
      const n = poisson(rands[i]!, rate(s.peak, t) * effect(i, t));
      if (n > 0) {
        store.add('events', s.labels, t, n);
        detectors.get(seriesKey('events', s.labels))!.push(t, n);
      }
    });
    for (const [key, d] of detectors) for (const a of d.advance(t + MINUTE_MS)) alerts.push({ ...a, series: key, detectedAt: t + MINUTE_MS });
  }
  return { store, detectors, alerts };
}

const SEED = 7;
const iso = (t: number) => new Date(t).toISOString();
const show = (alerts: Alert[]) =>
  alerts
    .map(
      (a) =>
        `${a.series} ${a.pattern} ${a.direction} ${iso(a.intervalStart)} observed ${a.observed} expected ${a.expected.toFixed(1)} score ${a.score.toFixed(1)} > ${a.threshold.toFixed(1)}`,
    )
    .join('\n');

describe('TimeSeriesStore', () => {
  it('keys a series by its name and sorted labels, Prometheus style', () => {
    assert.equal(seriesKey('events', { event: 'login', country: 'GB' }), 'events{country="GB",event="login"}');
    assert.equal(seriesKey('events', { a: 'x"y\\z' }), 'events{a="x\\"y\\\\z"}');
    const store = new TimeSeriesStore();
    store.add('events', { event: 'login', country: 'GB' }, START + 30_000, 2);
    store.add('events', { country: 'GB', event: 'login' }, START + 90_000);
    const key = 'events{country="GB",event="login"}';
    assert.deepEqual(
      store.series().map((s) => s.key),
      [key],
    );
    assert.deepEqual(store.minutes(key, START, START + 3 * MINUTE_MS), [
      { start: START, value: 2 },
      { start: START + MINUTE_MS, value: 1 },
      { start: START + 2 * MINUTE_MS, value: 0 },
    ]);
    assert.deepEqual(store.hours(key, START - HOUR_MS, START + HOUR_MS), [{ start: START, value: 3 }], 'the hour before the series began is unknown');
  });

  it('refuses new series beyond the cap, counts them in `dropped`, and keeps serving the others', () => {
    const store = new TimeSeriesStore({ maxSeries: 100 });
    for (let i = 0; i < 150; i++) store.add('events', { user_country: `c${i}` }, START);
    assert.equal(store.series().length, 100);
    assert.equal(store.dropped, 50);
    assert.equal(store.add('events', { user_country: 'c0' }, START + 1), true, 'an existing series still accepts events');
    assert.equal(store.add('events', { user_country: 'c999' }, START + 1), false);
    assert.equal(store.series().length, 100);
    assert.equal(store.dropped, 51);
    assert.equal(new TimeSeriesStore().maxSeries, 10_000);
    assert.equal(new TimeSeriesStore().bytesPerSeries, (360 + 840) * 8, 'defaults: 6 h of minutes + 5 weeks of hours, 9,600 bytes');
  });

  it('evicts old buckets as event time advances: after 6 weeks, 5 weeks of hours and 6 hours of minutes remain', () => {
    const store = new TimeSeriesStore();
    const key = seriesKey('events', { event: 'tick' });
    const end = START + 6 * WEEK_MS;
    for (let t = START; t < end; t += MINUTE_MS) store.add('events', { event: 'tick' }, t);
    const hours = store.hours(key, 0, end);
    assert.equal(hours.length, 5 * 7 * 24);
    assert.equal(hours[0]!.start, end - 5 * WEEK_MS);
    assert.ok(hours.every((h) => h.value === 60));
    const minutes = store.minutes(key, 0, end);
    assert.equal(minutes.length, 6 * 60);
    assert.equal(minutes[0]!.start, end - 6 * HOUR_MS);
    assert.ok(minutes.every((m) => m.value === 1));
    assert.equal(store.add('events', { event: 'tick' }, end - 6 * WEEK_MS), false, 'an event older than the hourly window is refused');
    assert.equal(store.late, 1);

    // A series that goes silent reads as zeros, not as the counts of 5 weeks ago.
    store.add('events', { event: 'other' }, end + 2 * HOUR_MS);
    assert.deepEqual(store.hours(key, end + HOUR_MS, end + 2 * HOUR_MS), [{ start: end + HOUR_MS, value: 0 }]);
  });
  it('keeps a gauge as sum and count per bucket: it reads as the mean, and an empty bucket is unknown, not 0', () => {
    const store = new TimeSeriesStore();
    const key = seriesKey('latency_ms', {});
    store.add('latency_ms', {}, START, 100, 'gauge');
    store.add('latency_ms', {}, START + 10_000, 200, 'gauge');
    store.add('latency_ms', {}, START + 2 * MINUTE_MS, 90, 'gauge');
    assert.deepEqual(store.minutes(key, START, START + 3 * MINUTE_MS), [
      { start: START, value: 150 },
      { start: START + 2 * MINUTE_MS, value: 90 },
    ]);
    assert.deepEqual(store.hours(key, START, START + HOUR_MS), [{ start: START, value: 130 }]);
    assert.equal(store.series()[0]!.kind, 'gauge');
  });

  it('refuses and counts non-finite values and times far ahead of the clock, which would otherwise push every later point out', () => {
    let now = START;
    const store = new TimeSeriesStore({ clock: () => now });
    assert.equal(store.add('revenue', {}, START, Number.NaN, 'sum'), false);
    assert.equal(store.add('revenue', {}, START, Infinity, 'sum'), false);
    assert.equal(store.add('revenue', {}, START + 365 * DAY_MS, 5, 'sum'), false, 'a year ahead');
    assert.deepEqual([store.nonFinite, store.future], [2, 1]);
    assert.equal(store.add('revenue', {}, START + 30 * MINUTE_MS, 5, 'sum'), true, 'within the hour ahead allowed');
    now += HOUR_MS;
    assert.equal(store.add('revenue', {}, START + HOUR_MS, 7, 'sum'), true, 'later points still go in');
    assert.deepEqual(store.hours(seriesKey('revenue', {}), START, START + 2 * HOUR_MS), [
      { start: START, value: 5 },
      { start: START + HOUR_MS, value: 7 },
    ]);
  });
});

describe('SeriesDetector (count, service defaults) on 4 weeks of synthetic minute counts (daily and weekly cycles, Poisson noise)', () => {
  it('raises no alert on clean traffic: 6 series of 2 to 200 events/minute at peak', () => {
    const { alerts, detectors } = simulate({ seed: SEED, weeks: 4 });
    assert.equal(alerts.length, 0, `false positives:\n${show(alerts)}`);
    // Not vacuous: every series was judged, every interval of 4 weeks known.
    for (const d of detectors.values()) assert.equal(d.counts.unknownIntervals, 0);
  });

  it('alerts on an outage (GB logins at 10% for 3 h, Wednesday of week 4 from 14:40) for that series only, once, as a drop, within 30 minutes', (t) => {
    const outage = START + 23 * DAY_MS + 14 * HOUR_MS + 40 * MINUTE_MS;
    const { alerts } = simulate({ seed: SEED, weeks: 4, effect: (i, t) => (i === 0 && t >= outage && t < outage + 3 * HOUR_MS ? 0.1 : 1) });
    assert.equal(alerts.length, 1, show(alerts));
    const [a] = alerts;
    assert.deepEqual([a!.series, a!.direction], [GB_LOGIN, 'drop']);
    assert.ok(a!.intervalEnd > outage && a!.intervalStart < outage + 3 * HOUR_MS, show(alerts));
    const delayMin = (a!.detectedAt - outage) / MINUTE_MS;
    t.diagnostic(`alerted ${delayMin} min of event time after the outage began`);
    assert.ok(delayMin <= 30, `first alert after ${delayMin} min`);
  });

  it('detects a x5 spike of US signups (Thursday of week 4, 10:00-12:00) as one spike alert, for that series only', () => {
    const spike = START + 24 * DAY_MS + 10 * HOUR_MS;
    const { alerts } = simulate({ seed: SEED, weeks: 4, effect: (i, t) => (i === 4 && t >= spike && t < spike + 2 * HOUR_MS ? 5 : 1) });
    assert.deepEqual(
      alerts.map((a) => [a.series, a.direction, iso(a.intervalStart)]),
      [[US_SIGNUP, 'spike', iso(spike)]],
      show(alerts),
    );
  });

  it('raises no alert on a series of ~1 event per hour (Poisson noise) over 4 weeks', () => {
    const rare = [{ labels: { event: 'refund', country: 'IS' }, peak: 1 / 60 }];
    const { alerts, store } = simulate({ seed: SEED, weeks: 4, series: rare, rate: (peak) => peak });
    assert.equal(alerts.length, 0, show(alerts));
    const total = store.hours(seriesKey('events', rare[0]!.labels), 0, Infinity).reduce((sum, h) => sum + h.value, 0);
    assert.ok(total > 500 && total < 850, `about 672 events in 4 weeks, got ${total}`);
  });
});
