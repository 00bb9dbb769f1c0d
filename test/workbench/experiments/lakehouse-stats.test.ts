import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExperimentSchema, MetricSchema } from '../../../src/workbench/experiments/definition.js';
import { experimentStatsFromLake } from '../../../src/workbench/experiments/lakehouse-stats.js';
import { Random } from '../../../src/workbench/random.js';
import { cuped } from '../../../src/workbench/stats/cuped.js';
import { moments } from '../../../src/workbench/stats/two-sample.js';
import { memoryLake, type LakeEvent } from './memory-lake.js';

const e = ExperimentSchema.parse({
  key: 'exp',
  hypothesis: 'h',
  arms: [
    { key: 'a', weight: 0.5 },
    { key: 'b', weight: 0.5 },
  ],
  objective: 'revenue',
  mde: 0.05,
  status: 'running',
});
const metrics = new Map([['revenue', MetricSchema.parse({ key: 'revenue', kind: 'mean', event: 'purchase', prop: 'amount', preExposureDays: 7 })]]);
const at = (minutes: number) => new Date(Date.UTC(2026, 0, 10) + minutes * 60_000).toISOString();

/** The two-pass (co)variances of values: the mean first, then the sum of squared deviations from it. */
function twoPass(xs: readonly number[], ys: readonly number[]): { varX: number; varY: number; cov: number; meanX: number; meanY: number } {
  const mean = (v: readonly number[]) => v.reduce((s, x) => s + (x - v[0]!), 0) / v.length + v[0]!;
  const [mx, my] = [mean(xs), mean(ys)];
  const d = xs.length - 1;
  return {
    meanX: mx,
    meanY: my,
    varX: xs.reduce((s, x) => s + (x - mx) ** 2, 0) / d,
    varY: ys.reduce((s, y) => s + (y - my) ** 2, 0) / d,
    cov: xs.reduce((s, x, i) => s + (x - mx) * (ys[i]! - my), 0) / d,
  };
}

describe('the lakehouse recomputation of the experiment statistics', () => {
  it('keeps the (co)variances of a metric whose mean is 1e8, as a two-pass computation gives them (sums of deviations from the mean)', async () => {
    // Pre-period and in-window revenue of 1e8 + N(0, 1.2) per user: raw sums of squares (1e19 per user) keep no digit of a variance of 1.44.
    const r = new Random(5);
    const events: LakeEvent[] = [];
    const values = { a: { x: [] as number[], y: [] as number[] }, b: { x: [] as number[], y: [] as number[] } };
    for (let u = 0; u < 2000; u++) {
      const arm = u % 2 === 0 ? 'a' : 'b';
      const user = `u${u}`;
      const x = 1e8 + r.normal(0, 1.2);
      const y = x + r.normal(arm === 'b' ? 0.5 : 0, 0.6);
      values[arm].x.push(x);
      values[arm].y.push(y);
      events.push({ time: at(0), user_id: user, event: 'purchase', props: { amount: x }, experiments: {} });
      events.push({ time: at(60), user_id: user, event: 'experiment_exposure', props: { experiment: 'exp', arm }, experiments: { exp: arm } });
      events.push({ time: at(61), user_id: user, event: 'purchase', props: { amount: y }, experiments: { exp: arm } });
    }
    const lake = await memoryLake(events);
    try {
      const stats = await experimentStatsFromLake(lake, e, metrics);
      for (const arm of ['a', 'b'] as const) {
        const s = stats.arms.find((x) => x.arm === arm)!.metrics.revenue!;
        const want = twoPass(values[arm].x, values[arm].y);
        const my = moments({ n: s.n, sum: s.sumY, sumSquares: s.sumY2, shift: s.shiftY! });
        const mx = moments({ n: s.n, sum: s.sumX, sumSquares: s.sumX2, shift: s.shiftX! });
        const cov = (s.sumXY - (s.sumX * s.sumY) / s.n) / (s.n - 1);
        assert.equal(s.n, 1000);
        for (const [got, expected, what] of [
          [my.variance, want.varY, 'var Y'],
          [mx.variance, want.varX, 'var X'],
          [cov, want.cov, 'cov XY'],
        ] as const)
          assert.ok(Math.abs(got - expected) <= 1e-9 * expected, `${arm} ${what}: ${got} vs two-pass ${expected}`);
        assert.ok(Math.abs(my.mean - want.meanY) <= 1e-15 * want.meanY && Math.abs(mx.mean - want.meanX) <= 1e-15 * want.meanX);
      }
      // CUPED reads the same sums: the pre-period value explains Y up to its N(0, 0.6) noise (theta near 1, 80% of the variance).
      const [a, b] = ['a', 'b'].map((arm) => stats.arms.find((x) => x.arm === arm)!.metrics.revenue!);
      const c = cuped([a!, b!]);
      assert.ok(Math.abs(c.theta - 1) < 0.05 && Math.abs(c.varianceReduction - 0.8) < 0.03, `theta ${c.theta}, reduction ${c.varianceReduction}`);
      assert.ok(Math.abs(c.arms[1]!.mean - c.arms[0]!.mean - 0.5) < 0.1);
    } finally {
      lake.close();
    }
  });
});
