import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ExperimentTracker } from '../../../src/serving/experiments/tracker.js';
import type { EnrichedEvent } from '../../../src/workbench/event.js';
import { checkExperiment, ExperimentSchema, MetricSchema } from '../../../src/workbench/experiments/definition.js';
import { experimentStatsFromLake } from '../../../src/workbench/experiments/lakehouse-stats.js';
import { metricCatalog } from '../../../src/workbench/experiments/metrics.js';
import { experimentResults, type MetricSums } from '../../../src/workbench/experiments/results.js';
import { memoryLake } from '../../workbench/experiments/memory-lake.js';

/** logins whose covariate is the forecast model's score (CUPAC), beside the built-in logins (CUPED on its own pre-period count). */
const forecast = MetricSchema.parse({ key: 'logins_cupac', kind: 'mean', event: 'login', preExposureDays: 7, covariate: { model: 'logins-forecast' } });
const champion = MetricSchema.parse({
  key: 'upgrade_cupac',
  kind: 'conversion',
  event: 'upgrade',
  preExposureDays: 7,
  covariate: { model: 'logins-forecast', alias: 'champion' },
});
const metrics = metricCatalog([forecast, champion]);
const e = ExperimentSchema.parse({
  key: 'exp',
  hypothesis: 'h',
  arms: [
    { key: 'a', weight: 0.5 },
    { key: 'b', weight: 0.5 },
  ],
  objective: 'logins_cupac',
  guardrails: [
    { metric: 'upgrade_cupac', bad: 'decrease', tolerance: 0.1 },
    { metric: 'logins', bad: 'decrease', tolerance: 0.1 },
  ],
  mde: 0.05,
  status: 'running',
});
const DAY = 24 * 60;
const at = (minutes: number) => new Date(Date.UTC(2026, 0, 20) + minutes * 60_000).toISOString();
let id = 0;
const ev = (user: string, name: string, minutes: number, props: Record<string, unknown> = {}, arm?: string): EnrichedEvent => ({
  event_id: String(++id),
  time: at(minutes),
  user_id: user,
  event: name,
  props,
  dims: { country: 'GB', device: 'web', tier: 'free', first_seen: at(-100 * DAY) },
  experiments: arm ? { exp: arm } : {},
  received_at: at(minutes),
});
const predict = (user: string, minutes: number, score: unknown, model = 'logins-forecast', alias: string | null = 'champion') =>
  ev(user, 'prediction', minutes, { model, version: 'v1', alias, score });

/**
 * u1 (arm a): forecasts 0.2 (8 days before: outside the 7-day period), 3.5 (2 days before), 4.25 (1 day
 * before, the latest), another model's 99, "n/a" (no number), and 9 after exposure (not before it):
 * X = 4.25; for the champion-only metric, the challenger's 5 a day before is not it either: X = 4.25.
 * u2 (arm b): only a challenger forecast of 2, then 2 logins: X = 2 on logins_cupac, 0 on upgrade_cupac.
 * u3 (arm b): no forecast: X = 0. u4 (arm a): forecast "1.5" as text (a number): X = 1.5.
 */
const events: EnrichedEvent[] = [
  predict('u1', -8 * DAY, 0.2),
  predict('u1', -2 * DAY, 3.5),
  predict('u2', -2 * DAY, 2, 'logins-forecast', 'challenger'),
  predict('u1', -DAY - 10, 5, 'logins-forecast', 'challenger'),
  predict('u1', -DAY, 4.25),
  predict('u1', -DAY + 5, 99, 'churn'),
  predict('u1', -DAY + 6, 'n/a'),
  predict('u4', -DAY + 7, '1.5'),
  ev('u1', 'login', -DAY + 8),
  ev('u1', 'experiment_exposure', 0, { experiment: 'exp', arm: 'a' }, 'a'),
  ev('u2', 'experiment_exposure', 1, { experiment: 'exp', arm: 'b' }, 'b'),
  ev('u3', 'experiment_exposure', 2, { experiment: 'exp', arm: 'b' }, 'b'),
  ev('u4', 'experiment_exposure', 3, { experiment: 'exp', arm: 'a' }, 'a'),
  predict('u1', 10, 9),
  ev('u1', 'login', 11, {}, 'a'),
  ev('u1', 'login', 12, {}, 'a'),
  ev('u2', 'login', 13, {}, 'b'),
  ev('u2', 'login', 14, {}, 'b'),
  ev('u4', 'upgrade', 15, { mrr: 29 }, 'a'),
];

/** The raw sums a set of shifted sums stands for. */
function rawSums(s: MetricSums): Omit<MetricSums, 'shiftY' | 'shiftX'> {
  const [ky, kx] = [s.shiftY ?? 0, s.shiftX ?? 0];
  const r = (v: number) => Math.round(v * 1e9) / 1e9;
  return {
    n: s.n,
    sumY: r(s.sumY + s.n * ky),
    sumY2: r(s.sumY2 + 2 * ky * s.sumY + s.n * ky * ky),
    sumX: r(s.sumX + s.n * kx),
    sumX2: r(s.sumX2 + 2 * kx * s.sumX + s.n * kx * kx),
    sumXY: r(s.sumXY + kx * s.sumY + ky * s.sumX + s.n * kx * ky),
  };
}

describe('CUPAC: a served prediction made before exposure as the covariate', () => {
  it('is defined on conversion and mean metrics with a pre-exposure period', () => {
    assert.throws(() => MetricSchema.parse({ key: 'r', kind: 'ratio', event: 'x', denominator: { event: 'y' }, covariate: { model: 'm' } }), /denominator/);
    assert.throws(() => MetricSchema.parse({ key: 'm', kind: 'mean', event: 'x', preExposureDays: 0, covariate: { model: 'm' } }), /preExposureDays > 0/);
    assert.throws(() => MetricSchema.parse({ key: 'm', kind: 'mean', event: 'x', covariate: { model: 'M!' } }), /model names/);
    checkExperiment({ ...e, status: 'draft' }, { metrics: new Set(metrics.keys()) });
  });

  it('takes the latest score of the named model (and alias) before exposure, in the live consumer and in the lakehouse alike', async () => {
    const tracker = new ExperimentTracker((k) => (k === 'exp' ? e : undefined), metrics, {
      snapshotPath: join(mkdtempSync(join(tmpdir(), 'wb-cupac-')), 'experiments.snapshot'),
      snapshotEveryMs: 60_000,
    });
    await tracker.resumeAt();
    await tracker.handle(events, 0);
    const live = tracker.stats('exp');
    const arm = (stats: typeof live, key: string) => stats.arms.find((x) => x.arm === key)!.metrics;
    // a: u1 (X 4.25, Y 2 logins), u4 (X 1.5, Y 0); b: u2 (X 2, Y 2), u3 (X 0, Y 0).
    assert.deepEqual(rawSums(arm(live, 'a').logins_cupac!), { n: 2, sumY: 2, sumY2: 4, sumX: 5.75, sumX2: 4.25 ** 2 + 1.5 ** 2, sumXY: 8.5 });
    assert.deepEqual(rawSums(arm(live, 'b').logins_cupac!), { n: 2, sumY: 2, sumY2: 4, sumX: 2, sumX2: 4, sumXY: 4 });
    // The champion-only covariate: u2's challenger forecast is not it; u4 upgrades (Y 1).
    assert.deepEqual(rawSums(arm(live, 'a').upgrade_cupac!), { n: 2, sumY: 1, sumY2: 1, sumX: 5.75, sumX2: 4.25 ** 2 + 1.5 ** 2, sumXY: 1.5 });
    assert.deepEqual(rawSums(arm(live, 'b').upgrade_cupac!), { n: 2, sumY: 0, sumY2: 0, sumX: 0, sumX2: 0, sumXY: 0 });
    // The plain logins metric still has its own pre-period count (u1's login a day before) as CUPED's covariate.
    assert.equal(rawSums(arm(live, 'a').logins!).sumX, 1);

    const lake = await memoryLake(events.map((x) => ({ time: x.time, user_id: x.user_id, event: x.event, props: x.props, experiments: x.experiments })));
    try {
      const recomputed = await experimentStatsFromLake(lake, e, metrics);
      for (const key of ['a', 'b'])
        for (const metric of ['logins_cupac', 'upgrade_cupac', 'logins'])
          assert.deepEqual(rawSums(arm(recomputed, key)[metric]!), rawSums(arm(live, key)[metric]!), `${key} ${metric}`);
    } finally {
      lake.close();
    }
    // The results name the method.
    const results = experimentResults(e, metrics, live);
    assert.equal(results.metrics[0]!.comparisons[0]!.cuped?.covariate, 'prediction');
    assert.equal(results.metrics[2]!.comparisons[0]!.cuped?.covariate, 'pre-period');
  });
});
