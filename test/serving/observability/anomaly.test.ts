import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { AnomalyDetector, expectedInSpan, robustBaseline, type Alert, type AnomalyOptions } from '../../../src/serving/observability/anomaly.js';
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

interface Run {
  store: TimeSeriesStore;
  detector: AnomalyDetector;
  alerts: Alert[];
}

/**
 * Feeds `weeks` of minute counts (Poisson around `rate` times `effect`) and evaluates after every
 * simulated minute. Each series has its own PRNG stream, so an effect on one series leaves the
 * others' counts identical to the clean run.
 */
function simulate(opts: {
  seed: number;
  weeks: number;
  series?: SyntheticSeries[];
  rate?: (peak: number, t: number) => number;
  effect?: (seriesIndex: number, t: number) => number;
  options?: AnomalyOptions;
}): Run {
  const { seed, weeks, series = SERIES, rate = dailyWeekly, effect = () => 1 } = opts;
  const store = new TimeSeriesStore();
  const detector = new AnomalyDetector(store, opts.options);
  const rands = series.map((_, i) => mulberry32(seed * 1000 + i));
  const alerts: Alert[] = [];
  for (let t = START; t < START + weeks * WEEK_MS; t += MINUTE_MS) {
    series.forEach((s, i) => {
      const n = poisson(rands[i]!, rate(s.peak, t) * effect(i, t));
      if (n > 0) store.add('events', s.labels, t, n);
    });
    alerts.push(...detector.evaluate(t + MINUTE_MS));
  }
  return { store, detector, alerts };
}

const SEED = 7;
const show = (alerts: Alert[]) =>
  alerts
    .map(
      (a) =>
        `${a.series} ${a.direction} ${a.windowStart}..${a.windowEnd} observed ${a.observed} expected ${a.expected.toFixed(1)} threshold ${a.threshold.toFixed(1)}`,
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
});

describe('anomaly rule', () => {
  it('summarises a baseline by median and 1.4826 * MAD', () => {
    const b = robustBaseline([1, 1, 2, 2, 4, 6, 9], 'week'); // MAD = 1 (simple-statistics' example)
    assert.equal(b.median, 2);
    assert.equal(b.madSigma, 1.4826);
    assert.equal(b.n, 7);
  });

  it('expects a whole hour to hold its baseline, and the low end of a ramp for part of it', () => {
    const of = (h: number) => [100, 200, 300][(h - START) / HOUR_MS];
    assert.equal(expectedInSpan(START + HOUR_MS, START + 2 * HOUR_MS, of), 200);
    // Rate rising by 100 per hour: the first quarter of the middle hour holds 0.25 * (200 - 100 * 0.375).
    assert.equal(expectedInSpan(START + HOUR_MS, START + HOUR_MS + 15 * MINUTE_MS, of), 40.625);
    assert.equal(expectedInSpan(START + 3 * HOUR_MS, START + 4 * HOUR_MS, of), undefined, 'no baseline, no expectation');
  });
});

describe('AnomalyDetector on 4 weeks of synthetic minute counts (daily and weekly cycles, Poisson noise)', () => {
  it('raises no alert on clean traffic: 6 series of 2 to 200 events/minute at peak, evaluated every minute', () => {
    // Not a lucky seed: over seeds 1-100 the same run raised 7 alerts in all (0.07 per run, about one
    // per 340 series-weeks), each a ~4-sigma Poisson excursion against a baseline median low by chance.
    const { alerts, detector } = simulate({ seed: SEED, weeks: 4 });
    assert.equal(alerts.length, 0, `false positives:\n${show(alerts)}`);
    // Not vacuous: the detector had baselines for every series, by weekday from day 4, by week from week 3.
    for (const s of SERIES) {
      const key = seriesKey('events', s.labels);
      assert.equal(detector.baseline(key, START + 3 * DAY_MS + 12 * HOUR_MS)?.source, 'day');
      assert.equal(detector.baseline(key, START + 27 * DAY_MS + 12 * HOUR_MS)?.n, 3);
    }
  });

  it('alerts on an outage (GB logins at 10% for 3 h, Wednesday of week 4 from 14:40) for that series only, as drops, within 30 minutes', (t) => {
    const outage = START + 23 * DAY_MS + 14 * HOUR_MS + 40 * MINUTE_MS;
    const { alerts } = simulate({ seed: SEED, weeks: 4, effect: (i, t) => (i === 0 && t >= outage && t < outage + 3 * HOUR_MS ? 0.1 : 1) });
    assert.ok(alerts.length > 0, 'the outage was missed');
    assert.deepEqual(new Set(alerts.map((a) => a.series)), new Set([GB_LOGIN]), show(alerts));
    assert.ok(alerts.every((a) => a.direction === 'drop'));
    for (const a of alerts) {
      assert.ok(Date.parse(a.windowEnd) > outage && Date.parse(a.windowStart) < outage + 3 * HOUR_MS, `alert outside the outage:\n${show([a])}`);
    }
    const delayMin = (Date.parse(alerts[0]!.detectedAt) - outage) / MINUTE_MS;
    t.diagnostic(`first alert ${delayMin} min of event time after the outage began; ${alerts.length} alerts (at most one per hour)`);
    assert.ok(delayMin <= 30, `first alert after ${delayMin} min`);
    assert.ok(alerts.length <= 4, 'one alert per clock hour, not one per minute');
  });

  it('detects a x5 spike of US signups (Thursday of week 4, 10:00-12:00) as a spike, for that series only', () => {
    const spike = START + 24 * DAY_MS + 10 * HOUR_MS;
    const { alerts } = simulate({ seed: SEED, weeks: 4, effect: (i, t) => (i === 4 && t >= spike && t < spike + 2 * HOUR_MS ? 5 : 1) });
    assert.deepEqual(
      alerts.map((a) => [a.series, a.direction, a.windowStart, a.windowEnd]),
      [
        [US_SIGNUP, 'spike', new Date(spike).toISOString(), new Date(spike + HOUR_MS).toISOString()],
        [US_SIGNUP, 'spike', new Date(spike + HOUR_MS).toISOString(), new Date(spike + 2 * HOUR_MS).toISOString()],
      ],
      show(alerts),
    );
  });

  it('raises no alert on a series of ~1 event per hour (Poisson noise) over 4 weeks', () => {
    const rare = [{ labels: { event: 'refund', country: 'IS' }, peak: 1 / 60 }];
    // Over seeds 1-100: 2 alerts in all, each 6 events in an hour whose baseline median was 0 (the
    // minAbsDeviation of 5 keeps this rare: with it set to 0, seeds 1-20 gave ~2 alerts per run).
    const { alerts, detector, store } = simulate({ seed: SEED, weeks: 4, series: rare, rate: (peak) => peak });
    assert.equal(alerts.length, 0, show(alerts));
    const key = seriesKey('events', rare[0]!.labels);
    const total = store.hours(key, 0, Infinity).reduce((sum, h) => sum + h.value, 0);
    assert.ok(total > 500 && total < 850, `about 672 events in 4 weeks, got ${total}`);
    assert.equal(detector.baseline(key, START + 27 * DAY_MS)?.source, 'week');
  });
});

describe('AnomalyDetector on NAB nyc_taxi (real data, labelled anomalies)', () => {
  /** NAB timestamps are New York local time without a zone; read as UTC so days and hours stay local. */
  const parse = (s: string) => Date.parse(`${s.replace(' ', 'T')}Z`);
  // The five labelled windows of test/fixtures/nab/SOURCE.md.
  const WINDOWS = [
    ['NYC marathon', '2014-10-30 15:30:00', '2014-11-03 22:30:00'],
    ['Thanksgiving', '2014-11-25 12:00:00', '2014-11-29 19:00:00'],
    ['Christmas', '2014-12-23 11:30:00', '2014-12-27 18:30:00'],
    ['New Year', '2014-12-29 21:30:00', '2015-01-03 04:30:00'],
    ['blizzard', '2015-01-24 20:30:00', '2015-01-29 03:30:00'],
  ].map(([name, from, to]) => ({ name: name!, from: parse(from!), to: parse(to!) }));

  it('alerts inside at least 3 of the 5 labelled windows, with few alerts outside them', (t) => {
    const text = gunzipSync(readFileSync(join(__dirname, '../../fixtures/nab/nyc_taxi.csv.gz'))).toString('utf8');
    const rows = text.trim().split('\n').slice(1);
    assert.equal(rows.length, 10_320);
    const store = new TimeSeriesStore();
    // The data come in 30-minute sums, so the early window must span at least one step: with 15
    // minutes it would see the half hour between two points as a total drop.
    const detector = new AnomalyDetector(store, { earlyMinutes: 30 });
    const alerts: Alert[] = [];
    for (const row of rows) {
      const [time, value] = row.split(',');
      const t = parse(time!);
      store.add('taxi_passengers', {}, t, Number(value));
      alerts.push(...detector.evaluate(t + 30 * MINUTE_MS)); // the half hour starting at t is complete
    }

    const windowOf = (a: Alert) => WINDOWS.findIndex((w) => Date.parse(a.windowEnd) > w.from && Date.parse(a.windowStart) <= w.to);
    const hit = WINDOWS.filter((_, i) => alerts.some((a) => windowOf(a) === i));
    const outside = alerts.filter((a) => windowOf(a) < 0);
    const outsideDays = [...new Set(outside.map((a) => a.windowStart.slice(0, 10)))];
    for (const w of WINDOWS) {
      const first = alerts.find((a) => windowOf(a) === WINDOWS.indexOf(w));
      t.diagnostic(`${w.name}: ${first ? `first alert ${first.direction} at ${first.detectedAt}` : 'missed'}`);
    }
    t.diagnostic(`${hit.length}/5 windows hit; ${outside.length} hourly alerts outside them, on ${outsideDays.length} days: ${outsideDays.join(' ')}`);

    assert.ok(hit.length >= 3, `windows hit: ${hit.map((w) => w.name).join(', ')}`);
    // Measured with the defaults (k = 4, relativeFloor = 0.1): all 5 windows hit; 40 alerts outside
    // them, on 13 days. An alert judges one hour (or half an hour, early) and a holiday moves the
    // whole day, so one unusual day gives several alerts. Most of those days have a known cause
    // NAB does not label: 4 July, Labor Day (09-01), Columbus Day (10-13), the days around
    // Christmas and New Year outside NAB's windows, Martin Luther King Day (01-19, 01-20). 07-11
    // and 07-13 are weekend nights compared with the 4 July weekend only (two weeks in, the
    // baseline is still the same-kind-of-day fallback). The bounds leave ~25% margin for tuning;
    // the rule without its relative floor (737 alerts on 159 days) or with 0.05 (175 on 56) fails them.
    assert.ok(outside.length <= 50, `${outside.length} alerts outside the labelled windows`);
    assert.ok(outsideDays.length <= 16, `${outsideDays.length} days with alerts outside the labelled windows`);
  });
});
