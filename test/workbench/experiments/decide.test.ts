import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decide } from '../../../src/workbench/experiments/decide.js';
import type { ExperimentInput } from '../../../src/workbench/experiments/definition.js';
import { metricCatalog } from '../../../src/workbench/experiments/metrics.js';
import { experimentResults, type ArmStats, type MetricSums } from '../../../src/workbench/experiments/results.js';
import { Random } from '../../../src/workbench/random.js';
import { correlatedSums, twoArmExperiment } from '../../helpers/stats.js';
import { normalCdf } from '../../../src/workbench/stats/distributions.js';
import { bayesianSummary } from '../../../src/workbench/stats/ratio.js';
import { sequential } from '../../../src/workbench/stats/sequential.js';
import { moments, relativeLift, welch } from '../../../src/workbench/stats/two-sample.js';

const metrics = metricCatalog();
const experiment = (over: Partial<ExperimentInput> = {}) =>
  twoArmExperiment({
    guardrails: [{ metric: 'feature_uses', bad: 'decrease', tolerance: 0.05 }],
    minRunDays: 7,
    decisions: { ship: 'auto', rollback: 'auto' },
    ...over,
  });

/** n users whose metric is normal(mean, sd), with a pre-period covariate correlated 0.7. */
const sums = (r: Random, n: number, mean: number, sd = 2): MetricSums => correlatedSums(r, n, 0.7, mean, sd);
const arm = (name: string, users: number, logins: MetricSums, features: MetricSums): ArmStats => ({
  arm: name,
  users,
  metrics: { logins, feature_uses: features },
});
const stats = (arms: ArmStats[], days = 10) => ({
  arms,
  firstExposure: '2026-01-01T00:00:00.000Z',
  asOf: new Date(Date.parse('2026-01-01T00:00:00.000Z') + days * 86_400_000).toISOString(),
});

describe('experiment results', () => {
  it('compare each arm with the first, by the engine functions, from the sums', () => {
    const r = new Random(3);
    const e = experiment();
    const c = sums(r, 3000, 10);
    const b = sums(r, 3000, 10.5);
    const res = experimentResults(e, metrics, stats([arm('control', 3000, c, sums(r, 3000, 5)), arm('b', 3000, b, sums(r, 3000, 5))]));
    const logins = res.metrics[0]!.comparisons[0]!;
    const m = (s: MetricSums) => moments({ n: s.n, sum: s.sumY, sumSquares: s.sumY2 });
    assert.deepEqual(logins.absolute, welch(m(c), m(b)));
    assert.deepEqual(logins.relative, relativeLift(m(c), m(b)));
    // CUPED removes about rho^2 = 0.49 of the variance and narrows the always-valid interval accordingly.
    assert.ok(Math.abs(logins.cuped!.varianceReduction - 0.49) < 0.05);
    assert.equal(logins.verdict, 'better');
    assert.equal(res.control, 'control');
    assert.equal(res.srm.mismatch, false);
    assert.ok(res.plan.usersPerArm! > 0);
  });

  it('test each metric one-sided when the experiment says so: the objective towards its goal, a guard-rail towards its bad direction (sequential too)', () => {
    const r = new Random(31);
    const c = sums(r, 3000, 10);
    const b = sums(r, 3000, 10.3);
    const [fc, fb] = [sums(r, 3000, 5), sums(r, 3000, 4.95)];
    const data = stats([arm('control', 3000, c, fc), arm('b', 3000, b, fb)]);
    const m = (s: MetricSums) => moments({ n: s.n, sum: s.sumY, sumSquares: s.sumY2 });
    const twoSided = experimentResults(experiment(), metrics, data);
    const oneSided = experimentResults(experiment({ analysis: { alternative: 'one-sided' } }), metrics, data);
    const [objective, guardrail] = [oneSided.metrics[0]!.comparisons[0]!, oneSided.metrics[1]!.comparisons[0]!];
    assert.deepEqual(objective.relative, relativeLift(m(c), m(b), { alternative: 'greater' }));
    assert.deepEqual(objective.absolute, welch(m(c), m(b), { alternative: 'greater' }));
    assert.equal(objective.sequential.ci![1], Number.POSITIVE_INFINITY);
    const cupedRelative = objective.cuped!.relative;
    assert.deepEqual(objective.sequential, sequential(cupedRelative, 6000, 0.05, 5000, 'greater'));
    // feature_uses must not decrease: its one-sided test looks down.
    assert.deepEqual(guardrail.relative, relativeLift(m(fc), m(fb), { alternative: 'less' }));
    assert.equal(guardrail.sequential.ci![0], Number.NEGATIVE_INFINITY);
    // Looking one way only, the p-value is half the two-sided one when the estimate is on that side.
    const two = twoSided.metrics[0]!.comparisons[0]!.relative.pValue!;
    assert.ok(objective.relative.estimate! > 0 && Math.abs(objective.relative.pValue! - two / 2) < 1e-12);
    // An objective meant to go down looks down.
    const down = experimentResults(experiment({ objectiveGoal: 'decrease', analysis: { alternative: 'one-sided' } }), metrics, data);
    assert.equal(down.metrics[0]!.comparisons[0]!.sequential.ci![0], Number.NEGATIVE_INFINITY);
    assert.match(decide(experiment({ analysis: { alternative: 'one-sided' } }), oneSided, 10).reason, /\+∞\]/);
  });

  it("read the chance to win with the experiment's prior when it sets one (conjugate normal), flat otherwise", () => {
    const r = new Random(32);
    const data = stats([arm('control', 400, sums(r, 400, 10), sums(r, 400, 5)), arm('b', 400, sums(r, 400, 10.3), sums(r, 400, 5))]);
    const prior = { mean: 0, variance: 0.01 };
    const flat = experimentResults(experiment(), metrics, data).metrics[0]!.comparisons[0]!;
    const withPrior = experimentResults(experiment({ analysis: { prior } }), metrics, data).metrics[0]!.comparisons[0]!;
    const basis = flat.cuped!.relative;
    assert.equal(flat.chanceToWin, bayesianSummary(basis, 'higher').chanceToWin);
    assert.equal(withPrior.chanceToWin, bayesianSummary(basis, 'higher', prior).chanceToWin);
    // The posterior mean by hand: precision-weighted, the prior's mean 0 pulls the estimate in.
    const w = 1 / basis.se! ** 2;
    const mean = (w * basis.estimate!) / (w + 1 / prior.variance);
    const sd = Math.sqrt(1 / (w + 1 / prior.variance));
    assert.ok(Math.abs(withPrior.chanceToWin! - normalCdf(mean / sd)) < 1e-12);
    assert.ok(withPrior.chanceToWin! < flat.chanceToWin!);
    assert.throws(() => experiment({ analysis: { prior: { mean: 0, variance: 0 } } }), /variance/);
  });

  it('give no estimate and a reason for an arm without users, and flag the split', () => {
    const r = new Random(4);
    const e = experiment();
    const res = experimentResults(e, metrics, stats([arm('control', 500, sums(r, 500, 10), sums(r, 500, 5))]));
    const c = res.metrics[0]!.comparisons[0]!;
    assert.equal(c.verdict, 'no estimate');
    assert.match(c.sequential.reason!, /fewer than 2 users \(500 and 0\)/);
    assert.equal(res.srm.mismatch, true);
    assert.equal(decide(e, res, 10).action, 'continue');
  });
});

describe('decisions', () => {
  const r = new Random(5);
  const base = (objectiveLift: number, guardLift: number, users = 4000) =>
    stats([
      arm('control', users, sums(r, users, 10), sums(r, users, 5)),
      arm('b', users, sums(r, users, 10 * (1 + objectiveLift)), sums(r, users, 5 * (1 + guardLift))),
    ]);

  it('ship a clearly better arm once the minimum run time has passed, and not before', () => {
    const e = experiment();
    const s = base(0.08, 0);
    const early = decide(e, experimentResults(e, metrics, s), 3);
    assert.equal(early.action, 'continue');
    assert.match(early.reason, /minimum run time has not passed \(3\.0 days of 7\.0 days\)/);
    const ship = decide(e, experimentResults(e, metrics, s), 10);
    assert.deepEqual([ship.action, ship.arm, ship.mode], ['ship', 'b', 'auto']);
    assert.ok(ship.evidence!.interval![0] > 0);
    assert.equal(decide(experiment({ decisions: { ship: 'recommend', rollback: 'auto' } }), experimentResults(e, metrics, s), 10).mode, 'recommend');
  });

  it('roll back when a guard-rail is worse beyond its tolerance, even while the objective looks better', () => {
    const e = experiment();
    const d = decide(e, experimentResults(e, metrics, base(0.08, -0.3)), 1);
    assert.deepEqual([d.action, d.arm], ['rollback', 'b']);
    assert.match(d.reason, /guard-rail feature_uses is worse in b beyond its tolerance of -5\.00%/);
    // Worse, but within the tolerance: no rollback, and no ship either (a guard-rail is significantly worse).
    const within = decide(e, experimentResults(e, metrics, base(0.08, -0.03, 40_000)), 10);
    assert.equal(within.action, 'continue');
    assert.match(within.reason, /guard-rail feature_uses is significantly worse/);
  });

  it('for an objective meant to go down, ship the arm that lowers it', () => {
    const e = experiment({ objectiveGoal: 'decrease', guardrails: [] });
    const d = decide(e, experimentResults(e, metrics, base(-0.08, 0)), 10);
    assert.deepEqual([d.action, d.arm], ['ship', 'b']);
    assert.equal(decide(e, experimentResults(e, metrics, base(0.08, 0)), 10).action, 'continue');
  });

  it('never act on a sample ratio mismatch', () => {
    const e = experiment();
    const s = stats([arm('control', 5000, sums(r, 5000, 10), sums(r, 5000, 5)), arm('b', 4000, sums(r, 4000, 12), sums(r, 4000, 1))]);
    const d = decide(e, experimentResults(e, metrics, s), 10);
    assert.equal(d.action, 'continue');
    assert.match(d.reason, /sample ratio mismatch/);
  });
});

describe('experiments with several treatment arms', () => {
  it('keep the chance of shipping a useless arm at 5%: Bonferroni across arms, checked by an A/A/A/A simulation', () => {
    const r = new Random(17);
    const e = experiment({
      arms: [
        { key: 'control', weight: 0.25 },
        { key: 'b', weight: 0.25 },
        { key: 'c', weight: 0.25 },
        { key: 'd', weight: 0.25 },
      ],
      guardrails: [],
    });
    const runs = 400;
    let shipped = 0;
    let anyRawBetter = 0;
    for (let k = 0; k < runs; k++) {
      const arms = ['control', 'b', 'c', 'd'].map((a) => arm(a, 400, sums(r, 400, 10), sums(r, 400, 5)));
      const res = experimentResults(e, metrics, stats(arms));
      if (decide(e, res, 10).action === 'ship') shipped++;
      // Without the correction: any arm whose uncorrected fixed-horizon p-value is under 5% and better.
      if (res.metrics[0]!.comparisons.some((c) => (c.relative.pValue ?? 1) < 0.05 && (c.relative.estimate ?? 0) > 0)) anyRawBetter++;
    }
    console.log(`A/A/A/A: ${shipped} of ${runs} shipped; uncorrected, some arm better in ${anyRawBetter}`);
    assert.ok(shipped / runs <= 0.05 + 3 * Math.sqrt((0.05 * 0.95) / runs), `false ships ${shipped}/${runs}`);
    assert.ok(anyRawBetter / runs > 0.05, `uncorrected, some arm looks better in ${anyRawBetter}/${runs} runs`);
  });

  it('report Holm-adjusted p-values across arms, as R p.adjust gives them', () => {
    const r = new Random(18);
    const e = experiment({
      arms: [
        { key: 'control', weight: 0.25 },
        { key: 'b', weight: 0.25 },
        { key: 'c', weight: 0.25 },
        { key: 'd', weight: 0.25 },
      ],
      guardrails: [],
    });
    const res = experimentResults(e, metrics, stats(['control', 'b', 'c', 'd'].map((a, i) => arm(a, 1000, sums(r, 1000, 10 + 0.1 * i), sums(r, 1000, 5)))));
    const raw = res.metrics[0]!.comparisons.map((c) => c.relative.pValue!);
    // p.adjust(p, "holm"): sorted ascending, p_(i) * (m - i + 1), running maximum, capped at 1.
    const order = raw.map((p, i) => [p, i] as const).sort((a, b) => a[0] - b[0]);
    const expected: number[] = [];
    let running = 0;
    order.forEach(([p, i], k) => {
      running = Math.max(running, Math.min(1, (raw.length - k) * p));
      expected[i] = running;
    });
    assert.deepEqual(
      res.metrics[0]!.comparisons.map((c) => c.holmPValue),
      expected,
    );
  });
});

describe('guard-rails and decisions, issue 13', () => {
  const conversions = (n: number, k: number): MetricSums => ({ n, sumY: k, sumY2: k, sumX: 0, sumX2: 0, sumXY: 0 });
  /** n users (n even), half at mean - d and half at mean + d: the mean exactly `mean`. */
  const exact = (n: number, mean: number, d: number): MetricSums => ({
    n,
    sumY: n * mean,
    sumY2: (n / 2) * ((mean - d) ** 2 + (mean + d) ** 2),
    sumX: 0,
    sumX2: 0,
    sumXY: 0,
  });

  it('a guard-rail whose values are negative and rise (higher is better) is no reason to roll back', () => {
    // Control -10, treatment -8: (m_t - m_c) / |m_c| = +20%, better; m_t / m_c - 1 = -20% rolled an improvement back.
    const r = new Random(21);
    const e = experiment({ guardrails: [{ metric: 'feature_uses', bad: 'decrease', tolerance: 0.05 }] });
    const res = experimentResults(
      e,
      metrics,
      stats([arm('control', 2000, sums(r, 2000, 10), exact(2000, -10, 2)), arm('b', 2000, sums(r, 2000, 10), exact(2000, -8, 2))]),
    );
    const g = res.metrics[1]!.comparisons[0]!;
    assert.ok(Math.abs(g.relative.estimate! - 0.2) < 1e-12, `${g.relative.estimate}`);
    assert.equal(g.verdict, 'better');
    assert.ok(g.chanceToWin! > 0.999);
    assert.notEqual(decide(e, res, 10).action, 'rollback');
  });

  it('a guard-rail whose control mean is 0 is judged on the absolute difference', () => {
    // No cancellations in control, 40 of 2000 in the treatment: the relative change is undefined, the rise is not.
    const r = new Random(22);
    const e = experiment({ guardrails: [{ metric: 'cancellation', bad: 'increase', tolerance: 0.5 }] });
    const armOf = (name: string, k: number) => ({ arm: name, users: 2000, metrics: { logins: sums(r, 2000, 10), cancellation: conversions(2000, k) } });
    const res = experimentResults(e, metrics, stats([armOf('control', 0), armOf('b', 40)]));
    const g = res.metrics[1]!.comparisons[0]!;
    assert.equal(g.relative.estimate, undefined);
    assert.equal(g.effect, 'absolute');
    assert.ok(Math.abs(g.sequential.estimate! - 0.02) < 1e-12);
    assert.equal(g.verdict, 'worse');
    const d = decide(e, res, 10);
    assert.deepEqual([d.action, d.arm], ['rollback', 'b']);
    assert.match(d.reason, /control mean is 0: judged on the absolute difference/);
  });

  it('the decision text never says "no guard-rail worse" while one has no estimate', () => {
    const r = new Random(23);
    const e = experiment({ guardrails: [{ metric: 'cancellation', bad: 'increase', tolerance: 0.5 }] });
    const armOf = (name: string, mean: number) => ({ arm: name, users: 4000, metrics: { logins: sums(r, 4000, mean), cancellation: conversions(4000, 0) } });
    const d = decide(e, experimentResults(e, metrics, stats([armOf('control', 10), armOf('b', 10.8)])), 10);
    assert.equal(d.action, 'ship');
    assert.doesNotMatch(d.reason, /no guard-rail worse/);
    assert.match(d.reason, /no guard-rail has an estimate yet: cancellation \(no variance in either arm\)/);
  });

  it('a decision before the planned users says why: planned users against users so far', () => {
    const r = new Random(24);
    const e = experiment({ guardrails: [] });
    // A 25% lift against a 5% MDE: the always-valid interval excludes 0 long before the fixed-horizon plan.
    const res = experimentResults(
      e,
      metrics,
      stats([arm('control', 300, sums(r, 300, 10, 4), sums(r, 300, 5)), arm('b', 300, sums(r, 300, 12.5, 4), sums(r, 300, 5))]),
    );
    assert.equal(res.plan.usersSoFar, 300);
    assert.ok(res.plan.usersPerArm! > 300, `${res.plan.usersPerArm}`);
    assert.ok(Math.abs(res.plan.progress! - 300 / res.plan.usersPerArm!) < 1e-12);
    const d = decide(e, res, 10);
    assert.equal(d.action, 'ship');
    assert.match(d.reason, new RegExp(`decided at 300 of the ${res.plan.usersPerArm!.toLocaleString('en-US')} users per arm planned`));
    assert.match(d.reason, /larger than the MDE/);
  });

  it('a rollback before the planned users says why too', () => {
    const r = new Random(26);
    const e = experiment();
    // feature_uses down 30% at 300 users per arm, the objective flat: the plan (for a 5% lift of logins) is far off.
    const res = experimentResults(
      e,
      metrics,
      stats([arm('control', 300, sums(r, 300, 10, 4), sums(r, 300, 5)), arm('b', 300, sums(r, 300, 10, 4), sums(r, 300, 3.5))]),
    );
    assert.ok(res.plan.usersPerArm! > 300, `${res.plan.usersPerArm}`);
    const d = decide(e, res, 1);
    assert.deepEqual([d.action, d.arm], ['rollback', 'b']);
    assert.match(d.reason, new RegExp(`rolled back at 300 of the ${res.plan.usersPerArm!.toLocaleString('en-US')} users per arm planned`));
    assert.match(d.reason, /as soon as it lies wholly past the tolerance/);
  });

  it('a paused arm (weight 0) counts in no degree of freedom of the sample-ratio check', () => {
    const r = new Random(25);
    const e = experiment({
      arms: [
        { key: 'control', weight: 0.5 },
        { key: 'b', weight: 0.5 },
        { key: 'paused', weight: 0 },
      ],
    });
    const res = experimentResults(
      e,
      metrics,
      stats([arm('control', 1000, sums(r, 1000, 10), sums(r, 1000, 5)), arm('b', 1160, sums(r, 1160, 10), sums(r, 1160, 5))]),
    );
    assert.ok(Math.abs(res.srm.pValue - 0.0005760403386062815) < 1e-12, `${res.srm.pValue}`);
    assert.equal(res.srm.mismatch, true);
  });

  it('conversions are read with the binomial variance p (1 - p), and planned with each arm its own', () => {
    const e = experiment({ objective: 'upgrade', guardrails: [] });
    const armOf = (name: string, k: number) => ({ arm: name, users: 3000, metrics: { upgrade: conversions(3000, k) } });
    const res = experimentResults(e, metrics, stats([armOf('control', 300), armOf('b', 330)]));
    const c = res.metrics[0]!.comparisons[0]!;
    assert.ok(Math.abs(c.absolute.se! - Math.sqrt((0.1 * 0.9 + 0.11 * 0.89) / 3000)) < 1e-15);
    // Relative, 5% of 10%: bigger than the one-variance plan 2 (z + z)^2 0.09 / 0.005^2 = 56,512.
    assert.ok(res.plan.usersPerArm! > 56_512, `${res.plan.usersPerArm}`);
  });
});
