import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { metricCatalog } from '../../../src/workbench/experiments/metrics.js';
import { experimentResults, SEQUENTIAL_TUNING, sequentialTuningOf, type ArmStats, type MetricSums } from '../../../src/workbench/experiments/results.js';
import { Random } from '../../../src/workbench/random.js';
import { cupedDifferences } from '../../../src/workbench/stats/cuped.js';
import { sampleSizePerArm } from '../../../src/workbench/stats/power.js';
import { sequential } from '../../../src/workbench/stats/sequential.js';
import { moments } from '../../../src/workbench/stats/two-sample.js';
import { correlatedSums, twoArmExperiment } from '../../helpers/stats.js';

const metrics = metricCatalog();
const experiment = twoArmExperiment;
const sums = (r: Random, n: number, mean: number, sd = 2): MetricSums => correlatedSums(r, n, 0.7, mean, sd);
const stats = (arms: [string, MetricSums][]) => ({
  arms: arms.map(([arm, logins]): ArmStats => ({ arm, users: logins.n, metrics: { logins } })),
  firstExposure: '2026-01-01T00:00:00.000Z',
  asOf: '2026-01-08T00:00:00.000Z',
});

describe('the plan of a one-sided experiment', () => {
  it('is planned one-sided towards the objective goal (z at 1 - alpha): fewer users than two-sided', () => {
    const r = new Random(41);
    const data = stats([
      ['control', sums(r, 2000, 10, 4)],
      ['b', sums(r, 2000, 10, 4)],
    ]);
    const twoSided = experimentResults(experiment(), metrics, data);
    const oneSided = experimentResults(experiment({ analysis: { alternative: 'one-sided' } }), metrics, data);
    assert.equal(twoSided.plan.alternative, 'two-sided');
    assert.equal(oneSided.plan.alternative, 'one-sided');
    // The same inputs the plan reads (control moments, CUPED's variance cut), planned 'greater' by the planner itself.
    const c = data.arms[0]!.metrics.logins!;
    const mc = moments({ n: c.n, sum: c.sumY, sumSquares: c.sumY2 });
    const reduction = oneSided.metrics[0]!.comparisons[0]!.cuped!.varianceReduction;
    const planned = (alternative: 'two-sided' | 'greater') =>
      sampleSizePerArm({ mean: mc.mean, sd: Math.sqrt(mc.variance * (1 - reduction)), mde: 0.05, effect: 'relative', alternative });
    assert.equal(oneSided.plan.usersPerArm, planned('greater'));
    assert.equal(twoSided.plan.usersPerArm, planned('two-sided'));
    assert.ok(oneSided.plan.usersPerArm! < 0.85 * twoSided.plan.usersPerArm!, `${oneSided.plan.usersPerArm} vs ${twoSided.plan.usersPerArm}`);
  });

  it("an objective meant to go down is planned 'less'; a negative metric that should rise is planned 'greater'", () => {
    const r = new Random(42);
    const down = experimentResults(
      experiment({ objectiveGoal: 'decrease', analysis: { alternative: 'one-sided' } }),
      metrics,
      stats([
        ['control', sums(r, 2000, 10, 4)],
        ['b', sums(r, 2000, 10, 4)],
      ]),
    );
    assert.ok(down.plan.usersPerArm! > 0, JSON.stringify(down.plan));
    // Control mean -10, higher is better: the planned effect is +5% of |m_c|, a rise to -9.5 (before, -10.5: a fall).
    const negative = experimentResults(
      experiment({ analysis: { alternative: 'one-sided' } }),
      metrics,
      stats([
        ['control', sums(r, 2000, -10, 4)],
        ['b', sums(r, 2000, -10, 4)],
      ]),
    );
    assert.ok(negative.plan.usersPerArm! > 0, JSON.stringify(negative.plan));
  });

  it("a conversion's planned fall below 0 is a reason, not a crash", () => {
    const e = experiment({ objective: 'upgrade', objectiveGoal: 'decrease', mde: 1.5 });
    const conv = (n: number, k: number): MetricSums => ({ n, sumY: k, sumY2: k, sumX: 0, sumX2: 0, sumXY: 0 });
    const res = experimentResults(e, metrics, {
      arms: [
        { arm: 'control', users: 1000, metrics: { upgrade: conv(1000, 100) } },
        { arm: 'b', users: 1000, metrics: { upgrade: conv(1000, 90) } },
      ],
    });
    assert.match(res.plan.reason ?? '', /150% fall of a 10.0% rate is not a rate/);
  });
});

describe('the always-valid tuning follows the plan', () => {
  it("is the experiment's planned users of the two arms, an explicit setting over it, else GrowthBook's 5,000", () => {
    assert.equal(sequentialTuningOf(experiment(), 'b'), SEQUENTIAL_TUNING);
    assert.equal(sequentialTuningOf(experiment({ plannedUsersPerArm: 1200 }), 'b'), 2400);
    assert.equal(sequentialTuningOf(experiment({ plannedUsersPerArm: 1200, analysis: { sequentialTuning: 800 } }), 'b'), 800);
    // Weights 0.2 / 0.4 / 0.4: the smallest arm (control) reaches 1,200 when each treatment has 2,400.
    const threeArms = experiment({
      plannedUsersPerArm: 1200,
      arms: [
        { key: 'control', weight: 0.2 },
        { key: 'b', weight: 0.4 },
        { key: 'c', weight: 0.4 },
      ],
    });
    assert.ok(Math.abs(sequentialTuningOf(threeArms, 'c') - 3600) < 1e-9);
  });

  it('the results read the sequential interval at that tuning', () => {
    const r = new Random(43);
    const data = stats([
      ['control', sums(r, 1200, 10, 4)],
      ['b', sums(r, 1200, 10.3, 4)],
    ]);
    const [c, b] = [data.arms[0]!.metrics.logins!, data.arms[1]!.metrics.logins!];
    const basis = cupedDifferences(c, b).relative;
    for (const [over, tuning] of [
      [{}, 5000],
      [{ plannedUsersPerArm: 1200 }, 2400],
      [{ plannedUsersPerArm: 1200, analysis: { sequentialTuning: 800 } }, 800],
    ] as const) {
      const got = experimentResults(experiment(over), metrics, data).metrics[0]!.comparisons[0]!.sequential;
      assert.deepEqual(got, sequential(basis, 2400, 0.05, tuning), JSON.stringify(over));
    }
    // At the planned size the interval is narrower than at the default tuning.
    const width = (e: ReturnType<typeof experiment>) => {
      const [lo, hi] = experimentResults(e, metrics, data).metrics[0]!.comparisons[0]!.sequential.ci!;
      return hi - lo;
    };
    assert.ok(width(experiment({ plannedUsersPerArm: 1200 })) < width(experiment()));
  });

  it('keeps an A/A experiment tuned to its plan at most 5% "better" or "worse", watched every 50 users per arm to 4x the plan (simulation)', () => {
    const r = new Random(44);
    const e = experiment({ plannedUsersPerArm: 250 });
    const runs = 300;
    let decided = 0;
    const add = (s: MetricSums, more: MetricSums): MetricSums => ({
      n: s.n + more.n,
      sumY: s.sumY + more.sumY,
      sumY2: s.sumY2 + more.sumY2,
      sumX: s.sumX + more.sumX,
      sumX2: s.sumX2 + more.sumX2,
      sumXY: s.sumXY + more.sumXY,
    });
    for (let i = 0; i < runs; i++) {
      let c: MetricSums = { n: 0, sumY: 0, sumY2: 0, sumX: 0, sumX2: 0, sumXY: 0 };
      let b = c;
      for (let look = 0; look < 20; look++) {
        c = add(c, sums(r, 50, 10, 4));
        b = add(b, sums(r, 50, 10, 4));
        const verdict = experimentResults(
          e,
          metrics,
          stats([
            ['control', c],
            ['b', b],
          ]),
        ).metrics[0]!.comparisons[0]!.verdict;
        if (verdict === 'better' || verdict === 'worse') {
          decided++;
          break;
        }
      }
    }
    assert.ok(decided / runs <= 0.05 + 3 * Math.sqrt((0.05 * 0.95) / runs), `A/A decided in ${decided / runs}`);
  });
});
