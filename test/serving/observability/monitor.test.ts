import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { AppSimulator, type SimulationConfig } from '../../../src/app/simulator.js';
import { AlertSink, type AnomalyAlert, type Incident } from '../../../src/serving/observability/alerts.js';
import { silentLogger } from '../../../src/serving/observability/logger.js';
import { Metrics } from '../../../src/serving/observability/metrics.js';
import { DEFAULT_METRICS, loadAnomalySettings, resolveMetrics } from '../../../src/serving/observability/monitor-settings.js';
import { Monitor } from '../../../src/serving/observability/monitor.js';
import type { EnrichedEvent } from '../../../src/workbench/event.js';

const HOUR = 3_600_000;
// Six weeks from a Monday, everyone signed up on day one, with the app's telemetry (response times, purchases).
const BASE: Partial<SimulationConfig> = {
  seed: 21,
  users: 4000,
  days: 42,
  start: '2025-01-06',
  signup_days: 1,
  telemetry: { latency_ms: 120, purchase_rate: 0.5 },
};
const INCIDENT_START = '2025-02-12T13:00:00Z'; // a Wednesday afternoon in week 6

/** The simulator's events, enriched as ingest would (the user's country and device from their signup), through a Monitor in batches. */
async function run(config: Partial<SimulationConfig>, settings?: ConstructorParameters<typeof Monitor>[3]) {
  const metrics = new Metrics();
  const sink = new AlertSink(silentLogger());
  const monitor = new Monitor(metrics, sink, async () => 0, settings);
  await monitor.resumeAt();
  const dims = new Map<string, EnrichedEvent['dims']>();
  let batch: EnrichedEvent[] = [];
  let offset = 0;
  const flush = async () => {
    await monitor.handle(batch, offset);
    offset += batch.length;
    batch = [];
  };
  for (const day of new AppSimulator(config).days()) {
    for (const e of day.events) {
      if (e.event === 'signup') dims.set(e.user_id, { country: String(e.props.country), device: String(e.props.device), tier: 'free', first_seen: e.time });
      batch.push({ ...e, props: e.props, dims: dims.get(e.user_id)!, experiments: {}, received_at: e.time });
      if (batch.length === 2000) await flush();
    }
  }
  await flush();
  return { monitor, metrics, sink, alerts: sink.list().reverse() as AnomalyAlert[] };
}

const show = (alerts: AnomalyAlert[]) =>
  alerts
    .map((a) => `${a.series} ${a.pattern} ${a.direction} ${a.windowStart} ${a.observed.toFixed(1)}/${a.expected.toFixed(1)} z ${a.score.toFixed(1)}`)
    .join('\n');

describe('Monitor: counts, a sum (revenue) and a gauge (response time) from the simulated app', { timeout: 300_000 }, () => {
  it('raises nothing on six clean weeks', async () => {
    const { alerts, monitor } = await run(BASE);
    assert.equal(show(alerts), '');
    // Not vacuous: the revenue and latency series exist, their detectors judged weeks of intervals.
    for (const key of ['revenue{}', 'latency_ms{}']) assert.ok(monitor.detector(key)!.counts.accepted > 10_000, key);
  });

  for (const [what, incident, series, direction] of [
    ['a revenue dip (90% of payments fail for 3 hours)', { revenue_dip: { start: INCIDENT_START, hours: 3, factor: 0.1 } }, 'revenue{}', 'drop'],
    ['a latency rise (responses 2.5 times slower for 3 hours)', { latency_rise: { start: INCIDENT_START, hours: 3, factor: 2.5 } }, 'latency_ms{}', 'spike'],
  ] as const) {
    it(`alerts on ${what} within an hour of event time, as one incident, resolved after it`, async (t) => {
      const { alerts, sink } = await run({ ...BASE, ...incident });
      const mine = alerts.filter((a) => a.series === series);
      assert.equal(mine.length, 1, show(alerts));
      assert.equal(mine[0]!.direction, direction);
      const delay = Date.parse(mine[0]!.detectedAt) - Date.parse(INCIDENT_START);
      t.diagnostic(`${series} alerted ${delay / 60_000} min after the incident began (${show(mine)}); all alerts:\n${show(alerts)}`);
      assert.ok(delay > 0 && delay <= HOUR, `${delay / 60_000} min`);
      const inc = sink.incidents().find((i) => i.id === mine[0]!.incident) as Incident;
      assert.ok(inc.resolved, JSON.stringify(inc));
      assert.ok(Date.parse(inc.peak.at) >= Date.parse(INCIDENT_START) && Date.parse(inc.peak.at) < Date.parse(INCIDENT_START) + 3 * HOUR);
      // Nothing else but series the incident moves (a dip of purchases is a drop of purchase counts too).
      for (const a of alerts) assert.ok(a.series === series || a.series.includes('event="purchase"'), show([a]));
    });
  }
});

describe("the simulator's telemetry", () => {
  it("adds response times to logins and purchases, and leaves the users' behaviour as it was", () => {
    const config: Partial<SimulationConfig> = { seed: 3, users: 300, days: 14, start: '2025-01-06' };
    const plain = [...new AppSimulator(config).days()].flatMap((d) => d.events);
    const told = [...new AppSimulator({ ...config, telemetry: { latency_ms: 120, purchase_rate: 0.5 } }).days()].flatMap((d) => d.events);
    const behaviour = (events: typeof plain) => events.filter((e) => e.event !== 'purchase').map((e) => `${e.user_id} ${e.time} ${e.event}`);
    assert.deepEqual(behaviour(told), behaviour(plain));
    const logins = told.filter((e) => e.event === 'login');
    assert.ok(logins.every((e) => typeof e.props.latency_ms === 'number' && e.props.latency_ms > 0));
    const purchases = told.filter((e) => e.event === 'purchase');
    const actions = told.filter((e) => e.event === 'login' || e.event === 'feature_used').length;
    // purchase_rate 0.5 per login or feature use: binomial, 5 standard deviations either way.
    const sd = Math.sqrt(actions * 0.25);
    assert.ok(Math.abs(purchases.length - actions / 2) < 5 * sd, `${purchases.length} purchases after ${actions} actions`);
    assert.ok(purchases.every((e) => [5, 10, 20].includes(e.props.amount as number)));
  });
});

describe('Monitor catching up', { timeout: 300_000 }, () => {
  it('gives the event loop back every few milliseconds while it judges weeks of history (as on a restart)', async (t) => {
    const events: EnrichedEvent[] = [];
    const dims = new Map<string, EnrichedEvent['dims']>();
    for (const day of new AppSimulator({ ...BASE, users: 1500, days: 21 }).days()) {
      for (const e of day.events) {
        if (e.event === 'signup') dims.set(e.user_id, { country: String(e.props.country), device: String(e.props.device), tier: 'free', first_seen: e.time });
        events.push({ ...e, props: e.props, dims: dims.get(e.user_id)!, experiments: {}, received_at: e.time });
      }
    }
    const monitor = new Monitor(new Metrics(), new AlertSink(silentLogger()), async () => events.length);
    await monitor.resumeAt();
    // A ticker beside it: each turn of the event loop is one tick; a gap between ticks is a stretch the loop was held.
    let done = false;
    let ticks = 0;
    let last = performance.now();
    let longest = 0;
    const tick = () => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
      ticks++;
      if (!done) setImmediate(tick);
    };
    setImmediate(tick);
    const t0 = performance.now();
    // Batches handed over back to back, as the runner does when the log is far ahead (no turn of the loop in between).
    for (let i = 0; i < events.length; i += 2000) await monitor.handle(events.slice(i, i + 2000), i);
    const elapsed = performance.now() - t0;
    done = true;
    t.diagnostic(
      `${events.length} events, ${monitor.store.series().length} series in ${elapsed.toFixed(0)} ms; ${ticks} turns of the loop, the longest stretch ${longest.toFixed(1)} ms`,
    );
    // Every series judged three weeks of intervals.
    assert.ok(monitor.detector('events{country="GB",event="login"}')!.counts.accepted > 1000);
    // Slices of 2 ms: a turn at least every 20 ms on average, and no stretch near the seconds it held
    // the loop for when it judged a batch in one piece. Generous bounds: a loaded machine pauses too.
    assert.ok(ticks >= elapsed / 20, `${ticks} turns in ${elapsed.toFixed(0)} ms`);
    assert.ok(longest < 250, `longest stretch ${longest.toFixed(1)} ms`);
  });
});

describe('Monitor inputs and settings', () => {
  it('counts what the detectors refuse on /metrics: non-finite props, far-future times; a gauge interval without values stays unknown', async () => {
    let now = Date.parse('2025-01-06T12:00:00Z');
    const metrics = new Metrics();
    const monitor = new Monitor(metrics, new AlertSink(silentLogger()), async () => 0, { clock: () => now });
    const dims = { country: 'GB', device: 'web', tier: 'free', first_seen: '2025-01-01T00:00:00Z' };
    const ev = (time: number, props: Record<string, unknown>): EnrichedEvent => ({
      event_id: `e${time}${JSON.stringify(props)}`,
      time: new Date(time).toISOString(),
      user_id: 'u1',
      event: 'login',
      props,
      dims,
      experiments: {},
      received_at: new Date(time).toISOString(),
    });
    await monitor.handle(
      [
        ev(now, { latency_ms: 100 }),
        ev(now + 1000, { latency_ms: 'slow' }),
        ev(now + 2000, { latency_ms: Number.POSITIVE_INFINITY }),
        ev(now + 365 * 24 * HOUR, { latency_ms: 100 }),
      ],
      0,
    );
    now += 2 * HOUR;
    await monitor.handle([ev(now, { latency_ms: 90 })], 4);
    now += 20 * 60_000;
    await monitor.handle([ev(now, { latency_ms: 95 })], 5); // closes the 14:00 interval: the gap before it is known to be a gap
    const text = await metrics.registry.metrics();
    assert.match(text, /wb_anomaly_points_total\{outcome="non_finite"\} 2\b/);
    // The year-ahead login is refused by the store for every series it belongs to (3 event counts, the latency gauge): never pushed.
    assert.match(text, /wb_anomaly_points_total\{outcome="accepted"\} \d+/);
    assert.equal(monitor.detector('latency_ms{}')!.counts.future, 0, 'the store refused it before the detector saw it');
    assert.equal(monitor.store.future, 3, 'events by country, by device and the latency gauge refused it');
    assert.match(text, /wb_anomaly_unknown_intervals_total 7\b/, 'the 2 hours between the two latency values: 7 unknown 15-minute intervals');
  });

  it('adds up only the sales into revenue: a refund (a negative amount) is left out', async () => {
    const now = Date.parse('2025-01-06T12:00:00Z');
    const monitor = new Monitor(new Metrics(), new AlertSink(silentLogger()), async () => 0, { clock: () => now });
    const dims = { country: 'GB', device: 'web', tier: 'free', first_seen: '2025-01-01T00:00:00Z' };
    const purchase = (i: number, amount: number): EnrichedEvent => ({
      event_id: `p${i}`,
      time: new Date(now + i * 1000).toISOString(),
      user_id: `u${i}`,
      event: 'purchase',
      props: { amount },
      dims,
      experiments: {},
      received_at: new Date(now + i * 1000).toISOString(),
    });
    await monitor.handle([purchase(1, 50), purchase(2, -30), purchase(3, 20)], 0);
    assert.equal(monitor.store.hour('revenue{}', Date.parse('2025-01-06T12:00:00Z')), 70);
  });

  it('layers settings: service defaults, a file, its metric, the CLI; a bad file is refused with its reasons', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wb-anomaly-'));
    const file = join(dir, 'anomaly.json');
    writeFileSync(
      file,
      JSON.stringify({
        defaults: { timeZone: 'Europe/London', stepMs: 600_000 },
        metrics: [
          { name: 'logins', kind: 'count', events: ['login'], distinctUsers: true, by: [['country']] },
          { name: 'order_value', kind: 'sum', prop: 'amount', settings: { stepMs: 3_600_000, k: 7 } },
        ],
      }),
    );
    const resolved = resolveMetrics({ file: loadAnomalySettings(file), overrides: { k: 8 } });
    assert.deepEqual(
      resolved.map((r) => [r.metric.name, r.settings.kind, r.settings.stepMs, r.settings.timeZone, r.settings.k, r.settings.minIntervals]),
      [
        ['logins', 'count', 600_000, 'Europe/London', 8, 288],
        ['order_value', 'sum', 3_600_000, 'Europe/London', 8, 288],
      ],
    );
    assert.deepEqual(
      resolveMetrics().map((r) => [r.metric.name, r.settings.stepMs, r.settings.timeZone]),
      DEFAULT_METRICS.map((m) => [m.name, 900_000, undefined]),
      'without a file: the built-in metrics, 15-minute intervals, the detector default zone (UTC)',
    );
    writeFileSync(file, JSON.stringify({ defaults: { timeZone: 'Mars/Olympus', stepMs: 7_000_000 }, metrics: [{ name: 'revenue', kind: 'sum' }] }));
    assert.throws(
      () => loadAnomalySettings(file),
      (err: Error) => /IANA time zone/.test(err.message) && /divide one day/.test(err.message) && /names the prop/.test(err.message),
    );
    assert.throws(() => resolveMetrics({ overrides: { stepMs: 7_000_000 } }), /divide one day/);
  });
});
