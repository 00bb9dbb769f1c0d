import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { daysToDecision, powerForSize, sampleSizePerArm } from '../../../src/workbench/stats/power.js';
import { benjaminiHochberg, holm, moments, relativeLift, sampleRatioMismatch, welch, type Moments } from '../../../src/workbench/stats/two-sample.js';
import { Random } from '../../../src/workbench/random.js';

const near = (got: number, want: number, tol = 1e-9) => assert.ok(Math.abs(got - want) <= tol * Math.max(1, Math.abs(want)), `${got} vs ${want}`);

/** Moments of n draws from a normal(mean, sd). */
function draw(r: Random, n: number, mean: number, sd: number): Moments {
  let sum = 0;
  let sumSquares = 0;
  for (let i = 0; i < n; i++) {
    const x = r.normal(mean, sd);
    sum += x;
    sumSquares += x * x;
  }
  return moments({ n, sum, sumSquares });
}

describe('two-sample tests', () => {
  it("Welch's test with equal variances and sizes is Student's t with 2n - 2 degrees of freedom: at t = t(0.975, 18), p = 0.05", () => {
    const se = Math.sqrt(1 / 10 + 1 / 10);
    const r = welch({ n: 10, mean: 0, variance: 1 }, { n: 10, mean: 2.10092204024096 * se, variance: 1 });
    near(r.df!, 18);
    near(r.pValue!, 0.05, 1e-9);
    near(r.ci![0], 0, 1e-9); // the interval's edge touches 0 exactly at p = 0.05
  });

  it("matches GrowthBook's published two-sided t-test case (gbstats tests/frequentist/test_tests.py)", () => {
    // stat_a = Statistic(value=0.41, stddev=3.9, n=3407), stat_b = (0.7, 6.2, 3461): expected 0.29,
    // ci [0.04538, 0.53462], p_value 0.02016, rounded to 5 decimals.
    const r = welch({ n: 3407, mean: 0.41, variance: 3.9 ** 2 }, { n: 3461, mean: 0.7, variance: 6.2 ** 2 });
    const round5 = (x: number) => Math.round(x * 1e5) / 1e5;
    assert.deepEqual([round5(r.estimate!), round5(r.ci![0]), round5(r.ci![1]), round5(r.pValue!)], [0.29, 0.04538, 0.53462, 0.02016]);
  });

  it('moments from sums match the definitions', () => {
    const m = moments({ n: 4, sum: 10, sumSquares: 30 }); // 1, 2, 3, 4
    near(m.mean, 2.5);
    near(m.variance, 5 / 3);
  });

  it('A/A: about 5% false positives at alpha 0.05, and 95% interval coverage (simulation)', () => {
    const r = new Random(42);
    let positives = 0;
    let covered = 0;
    const runs = 2000;
    for (let i = 0; i < runs; i++) {
      const res = welch(draw(r, 200, 10, 3), draw(r, 200, 10, 3));
      if (res.pValue! < 0.05) positives++;
      if (res.ci![0] <= 0 && 0 <= res.ci![1]) covered++;
    }
    const se = Math.sqrt((0.05 * 0.95) / runs);
    assert.ok(Math.abs(positives / runs - 0.05) < 3 * se, `false positive rate ${positives / runs}`);
    assert.ok(Math.abs(covered / runs - 0.95) < 3 * se, `coverage ${covered / runs}`);
  });

  it('relative lift: the delta-method interval covers the true lift 95% of the time (simulation)', () => {
    const r = new Random(7);
    let covered = 0;
    const runs = 2000;
    for (let i = 0; i < runs; i++) {
      const res = relativeLift(draw(r, 300, 20, 6), draw(r, 300, 21, 6)); // true lift 5%
      if (res.ci![0] <= 0.05 && 0.05 <= res.ci![1]) covered++;
    }
    assert.ok(Math.abs(covered / runs - 0.95) < 3 * Math.sqrt((0.05 * 0.95) / runs), `coverage ${covered / runs}`);
  });

  it('degenerate input gives no estimate and says why, by one rule', () => {
    assert.deepEqual(welch({ n: 1, mean: 3, variance: 0 }, { n: 50, mean: 2, variance: 1 }), { reason: 'an arm has fewer than 2 users (1 and 50)' });
    assert.deepEqual(welch({ n: 0, mean: 0, variance: 0 }, { n: 0, mean: 0, variance: 0 }).estimate, undefined);
    assert.deepEqual(welch({ n: 10, mean: 1, variance: 0 }, { n: 10, mean: 1, variance: 0 }), { reason: 'no variance in either arm' });
    assert.deepEqual(relativeLift({ n: 10, mean: 0, variance: 1 }, { n: 10, mean: 1, variance: 1 }), {
      reason: 'the control mean is 0: a relative lift is undefined',
    });
  });
});

describe('sample ratio mismatch', () => {
  it('is the chi-square goodness of fit against the weights', () => {
    near(sampleRatioMismatch([1000, 1000], [0.5, 0.5]).pValue, 1);
    const r = sampleRatioMismatch([1000, 1100], [0.5, 0.5]);
    near(r.chiSquare, ((50 * 50) / 1050) * 2);
    assert.ok(r.pValue > 0.028 && r.pValue < 0.03, `${r.pValue}`);
    assert.ok(sampleRatioMismatch([5000, 5600], [0.5, 0.5]).pValue < 0.001);
    near(sampleRatioMismatch([700, 300], [0.7, 0.3]).pValue, 1);
  });
});

describe('multiple-comparison corrections', () => {
  // R: p.adjust(c(0.01, 0.02, 0.03, 0.04, 0.05), "holm") and "BH".
  it("match R's p.adjust", () => {
    assert.deepEqual(
      holm([0.01, 0.02, 0.03, 0.04, 0.05]).map((x) => Math.round(x * 1e9) / 1e9),
      [0.05, 0.08, 0.09, 0.09, 0.09],
    );
    assert.deepEqual(
      benjaminiHochberg([0.01, 0.02, 0.03, 0.04, 0.05]).map((x) => Math.round(x * 1e9) / 1e9),
      [0.05, 0.05, 0.05, 0.05, 0.05],
    );
    // Input order is kept; values above 1 are capped.
    assert.deepEqual(
      holm([0.04, 0.5, 0.001]).map((x) => Math.round(x * 1e9) / 1e9),
      [0.08, 0.5, 0.003],
    );
    assert.deepEqual(
      benjaminiHochberg([0.04, 0.5, 0.001]).map((x) => Math.round(x * 1e9) / 1e9),
      [0.06, 0.5, 0.003],
    );
  });
});

describe('power planning', () => {
  it('sizes a test by the normal formula, and the planned power is the detection rate (simulation)', () => {
    // 10% conversion, 10% relative lift: the formula by hand, 2 (1.95996 + 0.84162)^2 0.09 / 0.01^2 = 14,128.
    const n = sampleSizePerArm({ mean: 0.1, sd: Math.sqrt(0.09), mde: 0.1 });
    assert.equal(n, 14128);
    near(powerForSize({ mean: 0.1, sd: Math.sqrt(0.09), mde: 0.1, nPerArm: n }), 0.8, 1e-3);
    // Simulate normal data planned for 80% power: the share of significant results is 0.8.
    const r = new Random(3);
    const plan = sampleSizePerArm({ mean: 10, sd: 4, mde: 0.05, power: 0.8 });
    let detected = 0;
    const runs = 1000;
    for (let i = 0; i < runs; i++) if (welch(draw(r, plan, 10, 4), draw(r, plan, 10.5, 4)).pValue! < 0.05) detected++;
    assert.ok(Math.abs(detected / runs - 0.8) < 3 * Math.sqrt((0.8 * 0.2) / runs), `detected ${detected / runs} with ${plan} per arm`);
    assert.equal(daysToDecision(plan, 2, 100, 0), Math.ceil((2 * plan) / 100));
    assert.equal(daysToDecision(100, 2, 0), Number.POSITIVE_INFINITY);
  });
});
