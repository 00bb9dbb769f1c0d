import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { before, describe, it } from 'node:test';
import { AppSimulator, type SimulationConfig } from '../../../src/app/simulator.js';
import { DriftMonitor, driftSummary, type OutOfRange } from '../../../src/serving/models/drift.js';
import { AlertSink, type Alert, type FeatureDriftAlert } from '../../../src/serving/observability/alerts.js';
import { silentLogger } from '../../../src/serving/observability/logger.js';
import { Metrics } from '../../../src/serving/observability/metrics.js';
import { SimulatedClock } from '../../../src/workbench/clock.js';
import type { Event } from '../../../src/workbench/event.js';
import { ExperimentSchema } from '../../../src/workbench/experiments/definition.js';
import { appFeatures } from '../../../src/workbench/features/catalog.js';
import type { FeatureValue } from '../../../src/workbench/features/definition.js';
import { OnlineFeatures, type UserState } from '../../../src/workbench/features/online.js';
import { createBundle, type ModelBundle } from '../../../src/workbench/models/bundle.js';
import type { FeatureDistribution } from '../../../src/workbench/models/distribution.js';
import { columnsFor } from '../../../src/workbench/models/preprocess.js';
import { publish } from '../../../src/workbench/models/publish.js';
import { trainClassifier } from '../../../src/workbench/models/train.js';
import { startTestService, type TestService } from '../../helpers/service.js';
import { until } from '../../helpers/wait.js';

const DAY = 86_400_000;
// Five weeks of the simulated product, signups over the first three: the model is trained at the
// end of one run and serves the users of another, at the same moment of their history.
const SIM: Partial<SimulationConfig> = { users: 600, days: 35, start: '2025-01-06', signup_days: 21 };
const CUTOFF = Date.parse('2025-01-06T00:00:00Z') + 35 * DAY;
const MODEL = 'churn-drift';
const PROMTOOL = [
  '/usr/bin/promtool',
  ...(process.env.PATH ?? '')
    .split(delimiter)
    .filter(Boolean)
    .map((dir) => join(dir, 'promtool')),
].find((p) => existsSync(p));

/** Users at CUTOFF: each one's features (the online compiler's, folded here) and whether they churn in the next two weeks. */
function trainingRows(seed: number): Record<string, FeatureValue | number>[] {
  const sim = new AppSimulator({ ...SIM, days: 49, seed });
  const online = new OnlineFeatures(appFeatures);
  const states = new Map<string, UserState>();
  for (const day of sim.days()) {
    for (const e of day.events) {
      const time = Date.parse(e.time);
      if (time >= CUTOFF) continue;
      let state = states.get(e.user_id);
      if (!state) states.set(e.user_id, (state = online.emptyState()));
      online.update(state, { ...e, time });
    }
  }
  return sim
    .truth()
    .users.filter((u) => states.has(u.user_id) && (u.churned_at === null || Date.parse(u.churned_at) >= CUTOFF))
    .map((u) => ({
      ...online.read(states.get(u.user_id), CUTOFF).values,
      churned: u.churned_at !== null && Date.parse(u.churned_at) < CUTOFF + 14 * DAY ? 1 : 0,
    }));
}

/** Users log in far more: every user is in an experiment whose arms both raise the odds of a login by e^2.5. */
function loginBoost(sim: AppSimulator): void {
  const experiment = ExperimentSchema.parse({
    key: 'login-boost',
    hypothesis: 'a daily digest brings users back',
    arms: [
      { key: 'digest', weight: 0.5 },
      { key: 'digest-b', weight: 0.5 },
    ],
    exposureEvent: 'login',
    objective: 'logins',
    mde: 0.05,
    status: 'running',
  });
  sim.runTreatments([{ experiment, fromDay: 0, effects: { digest: { loginLogOdds: 2.5 }, 'digest-b': { loginLogOdds: 2.5 } } }]);
}

interface Served {
  status: number;
  body: { score: number; features: Record<string, FeatureValue>; outOfRange?: OutOfRange[]; error?: { message: string } };
}

/** Serves a simulation: publishes the bundle, replays the history through ingest, then scores every user still active. */
async function serve(bundle: ModelBundle, seed: number, shift?: (sim: AppSimulator) => void): Promise<{ t: TestService; served: Served[]; users: number }> {
  const t = await startTestService({ clock: new SimulatedClock(CUTOFF), ingest: { maxAgeMs: 10 * 365 * DAY } });
  await publish(bundle, { url: t.service.url, key: t.keys.admin, alias: 'champion' });
  const sim = new AppSimulator({ ...SIM, seed });
  shift?.(sim);
  let batch: Event[] = [];
  const flush = async () => {
    const result = await t.service.ingest.ingest(batch);
    assert.equal(result.rejected.length, 0, JSON.stringify(result.rejected.slice(0, 2)));
    batch = [];
  };
  for (const day of sim.days()) {
    for (const e of day.events) {
      batch.push(e);
      if (batch.length === 5000) await flush();
    }
  }
  if (batch.length > 0) await flush();
  const end = await t.service.log.next();
  await until('the features consumer', async () => (t.service.features.offset >= end ? true : undefined), 60_000);
  const churned = new Set(
    sim
      .truth()
      .users.filter((u) => u.churned_at !== null)
      .map((u) => u.user_id),
  );
  const active = sim.currentUsers().filter((u) => !churned.has(u.user_id));
  const served: Served[] = [];
  for (const u of active) {
    const res = await t.call('/v1/predict', {
      method: 'POST',
      key: t.keys.read,
      body: JSON.stringify({ model: MODEL, user_id: u.user_id }),
      headers: { 'content-type': 'application/json' },
    });
    served.push({ status: res.status, body: (await res.json()) as Served['body'] });
  }
  return { t, served, users: active.length };
}

/** `wb_model_feature_psi` and friends from the /metrics text, by feature. */
async function gauges(t: TestService, name: string): Promise<Map<string, { value: number; labels: Record<string, string> }>> {
  const text = await (await t.call('/metrics', { key: t.keys.read })).text();
  const out = new Map<string, { value: number; labels: Record<string, string> }>();
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`).exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
    out.set(labels.feature ?? '', { value: Number(m[2]), labels });
  }
  return out;
}

/** PSI of served values against a training distribution, from the definition: bins found by a scan, shares floored at 1e-4. */
function psiOf(d: FeatureDistribution, values: readonly FeatureValue[]): { psi: number; outside: number } {
  const live = new Array<number>(d.counts.length).fill(0);
  let outside = 0;
  for (const raw of values) {
    const v = Array.isArray(raw) ? raw.length : raw;
    const bin = d.edges.findIndex((edge) => v <= edge);
    live[bin === -1 ? d.edges.length : bin]!++;
    if (v < d.min || v > d.max) outside++;
  }
  let psi = 0;
  d.counts.forEach((c, i) => {
    const e = Math.max(c / d.count, 1e-4);
    const a = Math.max(live[i]! / values.length, 1e-4);
    psi += (a - e) * Math.log(a / e);
  });
  return { psi, outside: outside / values.length };
}

async function alerts(t: TestService): Promise<Alert[]> {
  return ((await (await t.call('/v1/alerts', { key: t.keys.read })).json()) as { alerts: Alert[] }).alerts;
}

/** The first snapshot the dashboard receives. */
async function dashboardSnapshot(t: TestService): Promise<{ models: { name: string; drift?: ReturnType<typeof driftSummary> }[] }> {
  const controller = new AbortController();
  const res = await t.call('/v1/stream', { key: t.keys.read, signal: controller.signal });
  const reader = res.body!.getReader();
  let text = '';
  while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
  controller.abort();
  return JSON.parse(/data: (.*)\n/.exec(text)![1]!) as { models: { name: string; drift?: ReturnType<typeof driftSummary> }[] };
}

describe('drift of served features against the training distribution, on the simulator', { timeout: 300_000 }, () => {
  let bundle: ModelBundle;
  before(async () => {
    const rows = trainingRows(1);
    const model = await trainClassifier(rows, 'churned', columnsFor(appFeatures), { seed: 1, maxEpochs: 20 });
    bundle = await createBundle(MODEL, model, appFeatures, { lineage: { source: 'drift.test' } });
    model.dispose();
  });

  it('finds none serving users who behave as those it was trained on', async () => {
    const { t, served, users } = await serve(bundle, 2);
    try {
      assert.ok(users > 300, `${users} users scored`);
      assert.deepEqual(
        served.filter((s) => s.status !== 200).map((s) => s.body.error?.message),
        [],
      );
      const psi = await gauges(t, 'wb_model_feature_psi');
      const outside = await gauges(t, 'wb_model_feature_out_of_range_ratio');
      const window = await gauges(t, 'wb_model_drift_window_predictions');
      assert.equal(window.get('')?.value, users, 'every prediction is in the window');
      assert.equal(window.get('')?.labels.version, bundle.version);
      for (const d of bundle.training!.features) {
        const want = psiOf(
          d,
          served.map((s) => s.body.features[d.feature]!),
        );
        const got = psi.get(d.feature);
        assert.ok(got, `a PSI gauge for ${d.feature}`);
        assert.ok(Math.abs(got.value - want.psi) < 1e-9, `${d.feature}: /metrics says ${got.value}, recomputed ${want.psi}`);
        assert.ok(Math.abs(outside.get(d.feature)!.value - want.outside) < 1e-9);
        assert.ok(got.value < 0.1, `${d.feature}: PSI ${got.value} is a stable population`);
        assert.ok(want.outside < 0.02, `${d.feature}: ${want.outside} outside the training range`);
      }
      const marked = served.filter((s) => s.body.outOfRange!.length > 0).length;
      assert.ok(marked / users < 0.03, `${marked} of ${users} answers mark a feature out of range`);
      assert.deepEqual(
        (await alerts(t)).filter((a) => 'kind' in a && a.kind === 'feature_drift'),
        [],
      );
      const shown = (await dashboardSnapshot(t)).models.find((m) => m.name === MODEL)!.drift!;
      assert.equal(shown.length, 1);
      assert.deepEqual([shown[0]!.version, shown[0]!.judged, shown[0]!.alerting, shown[0]!.drifting], [bundle.version, true, false, []]);
      console.log(`# unshifted: ${users} users, worst PSI ${shown[0]!.worst!.psi.toFixed(3)} (${shown[0]!.worst!.feature}), ${marked} answers marked`);
    } finally {
      await t.stop();
    }
  });

  it('alerts once, shows PSI past 0.25 and marks out-of-range values when users log in far more', async () => {
    const { t, served, users } = await serve(bundle, 3, loginBoost);
    try {
      assert.ok(users > 300, `${users} users scored`);
      assert.ok(served.every((s) => s.status === 200));
      const psi = await gauges(t, 'wb_model_feature_psi');
      for (const d of bundle.training!.features) {
        const want = psiOf(
          d,
          served.map((s) => s.body.features[d.feature]!),
        );
        assert.ok(Math.abs(psi.get(d.feature)!.value - want.psi) < 1e-9, `${d.feature}: /metrics ${psi.get(d.feature)!.value}, recomputed ${want.psi}`);
      }
      assert.ok(psi.get('logins_7d')!.value > 0.25, `logins_7d PSI ${psi.get('logins_7d')!.value}`);
      assert.ok(psi.get('logins_30d')!.value > 0.25);

      // Answers say which values lie past anything the model was trained on, with the training range.
      const logins = bundle.training!.features.find((f) => f.feature === 'logins_30d')!;
      const marks = served.flatMap((s) => s.body.outOfRange!.map((o) => ({ ...o, served: s.body.features[o.feature] })));
      const loginMarks = marks.filter((m) => m.feature === 'logins_30d');
      assert.ok(loginMarks.length > users * 0.05, `${loginMarks.length} of ${users} answers mark logins_30d`);
      for (const m of loginMarks) assert.deepEqual([m.value, m.min, m.max, m.value > logins.max], [m.served, logins.min, logins.max, true]);
      assert.equal(
        served.filter((s) => (s.body.features.logins_30d as number) > logins.max).length,
        loginMarks.length,
        'every value past the maximum is marked, and only those',
      );

      // One alert for the episode, though every prediction after the 200th was past the threshold.
      const drift = (await alerts(t)).filter((a): a is FeatureDriftAlert => 'kind' in a && a.kind === 'feature_drift');
      assert.equal(drift.length, 1, JSON.stringify(drift));
      assert.deepEqual(drift[0]!.labels, { model: MODEL, version: bundle.version });
      assert.equal(drift[0]!.predictions, 200, 'raised as soon as the window held enough predictions');
      assert.ok(
        drift[0]!.features.some((f) => f.feature === 'logins_7d' && f.psi > 0.25),
        JSON.stringify(drift[0]!.features),
      );
      assert.match(drift[0]!.reason, /model churn-drift version [0-9a-f]{16}: over its last 200 predictions, .*logins_7d \(PSI \d+\.\d\d, /);
      assert.equal(drift[0]!.detectedAt, new Date(CUTOFF).toISOString(), "on the service's clock");
      const text = await (await t.call('/metrics', { key: t.keys.read })).text();
      assert.match(text, /wb_alerts_total\{kind="feature_drift"\} 1\b/);
      if (PROMTOOL) {
        const check = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
        assert.equal(check.status, 0, `promtool check metrics:\n${check.stdout}${check.stderr}`);
      }

      const shown = (await dashboardSnapshot(t)).models.find((m) => m.name === MODEL)!.drift![0]!;
      assert.ok(shown.alerting);
      assert.ok(shown.drifting.some((f) => f.feature === 'logins_7d'));
      console.log(
        `# shifted: ${users} users, ${shown.drifting.map((f) => `${f.feature} PSI ${f.psi.toFixed(2)} ${(100 * f.outOfRange).toFixed(1)}%`).join(', ')}`,
      );
    } finally {
      await t.stop();
    }
  });

  it('counts precomputed scores too', async () => {
    const t = await startTestService({
      clock: new SimulatedClock(CUTOFF),
      ingest: { maxAgeMs: 10 * 365 * DAY },
      precompute: [{ event: 'login', model: MODEL }],
    });
    try {
      await publish(bundle, { url: t.service.url, key: t.keys.admin, alias: 'champion' });
      const logins = Array.from({ length: 5 }, (_, i) => ({
        event_id: `pre-${i}`,
        time: new Date(CUTOFF - 60_000 * (i + 1)).toISOString(),
        user_id: `pre-user-${i}`,
        event: 'login',
        props: {},
      }));
      await t.service.ingest.ingest(logins);
      const report = await until('the precomputed scores', async () => {
        const r = t.service.drift.report(MODEL)[0];
        return r && r.observed === 5 ? r : undefined;
      });
      assert.equal(report.version, bundle.version);
      assert.equal(report.features.find((f) => f.feature === 'logins_7d')!.values, 5);
    } finally {
      await t.stop();
    }
  });
});

describe('the drift monitor', () => {
  const training = {
    rows: 100,
    bins: 10,
    features: [
      { feature: 'n', of: 'value' as const, count: 100, missing: 0, min: 0, max: 3, mean: 1.5, edges: [0, 1, 2], counts: [25, 25, 25, 25] },
      { feature: 'items', of: 'length' as const, count: 100, missing: 0, min: 0, max: 2, mean: 1, edges: [0, 1], counts: [30, 40, 30] },
    ],
  };
  const bundleOf = (version: string, t: ModelBundle['training'] | null = training) =>
    ({ name: 'm', version, training: t ?? undefined }) as unknown as ModelBundle;
  const setup = (options = {}) => {
    const raised: Alert[] = [];
    const alerts = new AlertSink(silentLogger());
    alerts.onAlert((a) => raised.push(a));
    const metrics = new Metrics();
    return { raised, metrics, monitor: new DriftMonitor({ alerts, metrics, now: () => 0 }, { window: 100, minPredictions: 40, ...options }) };
  };
  const even = (i: number) => ({ n: i % 4, items: Array.from({ length: [0, 0, 0, 1, 1, 1, 1, 2, 2, 2][i % 10]! }, () => 'x') });

  it('slides its window: a drift ends when the values come back, and a new one raises a new alert', async () => {
    const { raised, monitor, metrics } = setup();
    const b = bundleOf('00000000000000a1');
    for (let i = 0; i < 100; i++) assert.deepEqual(monitor.observe(b, even(i)), []);
    assert.equal(raised.length, 0);
    const report = () => monitor.report('m')[0]!.features.find((f) => f.feature === 'n')!;
    assert.ok(report().psi < 1e-9, 'exactly the training shares');
    // n = 9 is outside [0, 3] and falls in the last bin.
    for (let i = 0; i < 39; i++) assert.deepEqual(monitor.observe(b, { n: 9, items: ['x'] }), [{ feature: 'n', value: 9, min: 0, max: 3 }]);
    assert.equal(raised.length, 1, 'once the drifted share passes 5%');
    assert.equal(monitor.report('m')[0]!.predictions, 100, 'the window keeps the last 100');
    assert.equal(report().outOfRange, 0.39);
    // Back to the training population: the old values leave the window and the episode ends.
    for (let i = 0; i < 100; i++) monitor.observe(b, even(i));
    assert.equal(monitor.report('m')[0]!.alerting, false);
    assert.equal(report().outOfRange, 0);
    for (let i = 0; i < 60; i++) monitor.observe(b, { n: -1, items: [] });
    assert.equal(raised.length, 2, 'a new episode, a new alert');
    // list lengths drift by PSI but are never marked in an answer (the length is not the served value)
    assert.deepEqual(monitor.observe(b, { n: 1, items: ['a', 'b', 'c', 'd'] }), []);
    monitor.refreshMetrics();
    const text = await metrics.registry.metrics();
    assert.match(text, /wb_model_feature_out_of_range_ratio\{model="m",version="00000000000000a1",feature="items"\} 0\.01\b/);
    assert.match(text, /wb_model_drift_window_predictions\{model="m",version="00000000000000a1"\} 100\b/);
  });

  it('judges nothing before the minimum, ignores bundles without a training distribution, and drops versions past the cap', async () => {
    const { raised, monitor, metrics } = setup({ maxVersions: 2 });
    for (let i = 0; i < 39; i++) monitor.observe(bundleOf('00000000000000b1'), { n: 100, items: [] });
    assert.equal(raised.length, 0, '39 predictions are too few to judge');
    monitor.observe(bundleOf('00000000000000b1'), { n: 100, items: [] });
    assert.equal(raised.length, 1);
    assert.equal(monitor.observe(bundleOf('00000000000000b0', null), { n: 100 }), undefined);
    monitor.observe(bundleOf('00000000000000b2'), { n: 1 });
    monitor.refreshMetrics();
    assert.match(await metrics.registry.metrics(), /version="00000000000000b1"/);
    monitor.observe(bundleOf('00000000000000b3'), { n: 1 });
    monitor.refreshMetrics();
    const text = await metrics.registry.metrics();
    assert.doesNotMatch(text, /version="00000000000000b1"/, 'the least recently used version is dropped with its series');
    assert.deepEqual(
      monitor.report().map((r) => r.version),
      ['00000000000000b2', '00000000000000b3'],
    );
    // A value missing from a prediction is not counted; a wrong kind neither.
    monitor.observe(bundleOf('00000000000000b3'), { items: 'not a list' } as unknown as Record<string, FeatureValue>);
    const b3 = monitor.report()[1]!;
    assert.deepEqual([b3.predictions, b3.features[0]!.values, b3.features[1]!.values], [2, 1, 0]);
  });
});
