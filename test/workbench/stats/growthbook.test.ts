import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cupedDifference } from '../../../src/workbench/stats/cuped.js';
import { sequential } from '../../../src/workbench/stats/sequential.js';
import { moments, proportionMoments, relativeLift, welch, type Estimate, type Moments } from '../../../src/workbench/stats/two-sample.js';

/**
 * The values GrowthBook publishes for its frequentist engine, in its statistics tests:
 * growthbook/growthbook, packages/stats/tests/frequentist/test_tests.py (gbstats; the expected
 * values there come from scipy.stats.t). Its tests round both sides to 5 decimals (DECIMALS = 5);
 * so do these, for every value printed there. Where a value is printed to full precision it is
 * also checked to 1e-9. The same two sets of sufficient statistics serve every case:
 *   SampleMeanStatistic(sum=1396.87, sum_squares=52377.9767, n=3407 or 3000),
 *   SampleMeanStatistic(sum=2422.7, sum_squares=134698.29, n=3461),
 * and ProportionStatistic(sum=14, n=28) / (16, 30), (1396, 3000) / (2422, 3461); and the
 * regression-adjusted (CUPED) case of TestSequentialTwoSidedTTest.
 */
const round5 = (x: number) => Math.round(x * 1e5) / 1e5;
const a3407 = moments({ n: 3407, sum: 1396.87, sumSquares: 52377.9767 });
const a3000 = moments({ n: 3000, sum: 1396.87, sumSquares: 52377.9767 });
const b = moments({ n: 3461, sum: 2422.7, sumSquares: 134698.29 });

/** expected, ci, uplift stddev and p-value, each rounded to 5 decimals (an open end of a one-sided interval stays infinite). */
const rounded = (e: Estimate) => ({
  expected: round5(e.estimate!),
  ci: e.ci!.map((x) => (Number.isFinite(x) ? round5(x) : x)),
  stddev: round5(e.se!),
  ...(e.pValue !== undefined ? { pValue: round5(e.pValue) } : {}),
});
const near = (got: number, want: number, tol = 1e-9) => assert.ok(Math.abs(got - want) <= tol * Math.max(1, Math.abs(want)), `${got} vs ${want}`);

describe("GrowthBook's published frequentist values (packages/stats/tests/frequentist/test_tests.py)", () => {
  it('TestTwoSidedTTest.test_two_sided_ttest: relative, Student t at Welch df', () => {
    assert.deepEqual(rounded(relativeLift(a3407, b)), { expected: 0.70732, ci: [-0.03526, 1.44989], stddev: 0.37879, pValue: 0.06191 });
  });

  it('TestTwoSidedTTest.test_two_sided_ttest_absolute', () => {
    assert.deepEqual(rounded(welch(a3407, b)), { expected: 0.29, ci: [0.04538, 0.53462], stddev: 0.12478, pValue: 0.02016 });
  });

  it('TestTwoSidedTTest.test_two_sided_ttest_binom: a proportion has variance p (1 - p)', () => {
    const r = relativeLift(proportionMoments({ n: 28, conversions: 14 }), proportionMoments({ n: 30, conversions: 16 }));
    assert.deepEqual(rounded(r), { expected: round5((16 / 30 - 0.5) / 0.5), ci: [-0.47767, 0.61101], stddev: 0.2717, pValue: 0.80707 });
  });

  it('TestOneSidedGreaterTTest and TestOneSidedLesserTTest: relative and absolute, printed to full precision', () => {
    const greater = relativeLift(a3000, b, { alternative: 'greater' });
    near(greater.estimate!, 0.5033610858562358);
    near(greater.se!, 0.3334122146400735);
    near(greater.ci![0], -0.045136675850396046);
    assert.equal(greater.ci![1], Number.POSITIVE_INFINITY);
    near(greater.pValue!, 0.06558262868467746);
    const greaterAbs = welch(a3000, b, { alternative: 'greater' });
    near(greaterAbs.estimate!, 0.23437666666666668);
    near(greaterAbs.se!, 0.12983081254184736);
    near(greaterAbs.ci![0], 0.020791480063255735);
    near(greaterAbs.pValue!, 0.03554272489873023);
    const lesser = relativeLift(a3000, b, { alternative: 'less' });
    assert.equal(lesser.ci![0], Number.NEGATIVE_INFINITY);
    near(lesser.ci![1], 1.0518588475628676);
    near(lesser.pValue!, 0.9344173713153225);
    const lesserAbs = welch(a3000, b, { alternative: 'less' });
    near(lesserAbs.ci![1], 0.44796185327007765);
    near(lesserAbs.pValue!, 0.9644572751012698);
  });

  it('TestSequentialTTest.test_sequential_test_runs (tuning 1000) and _prop (default tuning 5000)', () => {
    const seq = (x: Moments, y: Moments, tuning: number) => sequential(relativeLift(x, y), x.n + y.n, 0.05, tuning);
    const means = rounded(seq(a3000, b, 1000));
    assert.deepEqual({ expected: means.expected, ci: means.ci, stddev: means.stddev }, { expected: 0.50336, ci: [-0.55844, 1.56516], stddev: 0.33341 });
    const props = seq(proportionMoments({ n: 3000, conversions: 1396 }), proportionMoments({ n: 3461, conversions: 2422 }), 5000);
    assert.deepEqual(rounded(props), { expected: 0.50386, ci: [0.40098, 0.60675], stddev: 0.03386, pValue: 0 });
  });

  it('TestSequentialTwoSidedTTest.test_sequential_test_runs_ra: CUPED, theta from both arms joint sums, relative to the unadjusted control mean', () => {
    // RegressionAdjustedStatistic(post=(1396.87, 52377.9767), pre=(16.87, 527.9767), post_pre_sum_of_products=1, n=3000; theta=None)
    // against (2422.7, 134698.29), (22.7, 1348.29), 1, n=3461: gbstats computes theta from the arms joint sums (compute_theta).
    const a = { n: 3000, sumY: 1396.87, sumY2: 52377.9767, sumX: 16.87, sumX2: 527.9767, sumXY: 1 };
    const b = { n: 3461, sumY: 2422.7, sumY2: 134698.29, sumX: 22.7, sumX2: 1348.29, sumXY: 1 };
    const adjusted = cupedDifference(a, b, { theta: 'joint', relative: true });
    const seq = rounded(sequential(adjusted, 3000 + 3461, 0.05, 5000));
    assert.deepEqual({ expected: seq.expected, ci: seq.ci, stddev: seq.stddev }, { expected: 0.50338, ci: [-0.50969, 1.51646], stddev: 0.33341 });
  });

  it('TestSequentialOneSided{Greater,Lesser}TTest: one-sided confidence sequences, relative and absolute', () => {
    // (Their p-values, 0.4999, are the clamp of a bisection on [1e-5, 0.4999]; ours is the exact inversion, so only the intervals are compared.)
    const n = 3000 + 3461;
    near(sequential(relativeLift(a3000, b), n, 0.05, 5000, 'greater').ci![0], -0.42356454602790883);
    near(sequential(welch(a3000, b), n, 0.05, 5000, 'greater').ci![0], -0.12656844172804982);
    near(sequential(relativeLift(a3000, b), n, 0.05, 5000, 'less').ci![1], 1.4302867177403806);
    near(sequential(welch(a3000, b), n, 0.05, 5000, 'less').ci![1], 0.5953217750613832);
  });
});
