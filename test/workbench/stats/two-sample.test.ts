import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InputError } from '../../../src/workbench/errors.js';
import { daysToDecision, powerForSize, sampleSizePerArm } from '../../../src/workbench/stats/power.js';
import { bayesianSummary, ratioDifference } from '../../../src/workbench/stats/ratio.js';
import {
  benjaminiHochberg,
  holm,
  moments,
  relativeLift,
  sampleRatioMismatch,
  twoProportionZTest,
  welch,
  welchDf,
  type Moments,
} from '../../../src/workbench/stats/two-sample.js';
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

/**
 * P(|T| > t) for Student's t with (fractional) df, by an independent method: with x = sqrt(df) tan(u)
 * the density is proportional to cos(u)^(df - 1) on (-pi/2, pi/2), integrated by Simpson's rule.
 */
function tTwoSidedByIntegration(t: number, df: number): number {
  const simpson = (to: number) => {
    const steps = 20_000;
    const h = to / steps;
    let s = 0;
    for (let i = 0; i <= steps; i++) s += (i === 0 || i === steps ? 1 : i % 2 === 1 ? 4 : 2) * Math.cos(i * h) ** (df - 1);
    return (s * h) / 3;
  };
  return 1 - simpson(Math.atan(Math.abs(t) / Math.sqrt(df))) / simpson(Math.PI / 2);
}

describe('relative effects', () => {
  it('are (m_t - m_c) / |m_c|: a negative metric that rises is an improvement', () => {
    // Control -10, treatment -8, higher is better: +20%, not -20%.
    const c = { n: 1000, mean: -10, variance: 4 };
    const t = { n: 1000, mean: -8, variance: 4 };
    const r = relativeLift(c, t);
    near(r.estimate!, 0.2);
    assert.ok(r.ci![0] > 0, `${r.ci}`);
    assert.ok(bayesianSummary(r, 'higher').chanceToWin! > 0.999);
    const ratio = ratioDifference(
      { n: 2, sumM: -20, sumM2: 200, sumD: 2, sumD2: 2, sumMD: -20 + 0 },
      { n: 2, sumM: -16, sumM2: 130, sumD: 2, sumD2: 2, sumMD: -16 },
      { relative: true },
    );
    near(ratio.estimate!, 0.2);
  });

  it("use Student's t at the arms' Welch degrees of freedom, not the normal, for intervals and p-values", () => {
    // df about 3.3: the normal would say p < 0.001; the t says over 0.02.
    const c = { n: 4, mean: 10, variance: 0.2 };
    const t = { n: 4, mean: 14, variance: 4 };
    const df = (0.05 + 1) ** 2 / (0.05 ** 2 / 3 + 1 / 3);
    near(welchDf(0.05, 4, 1, 4), df);
    const r = relativeLift(c, t);
    near(r.df!, df);
    assert.ok(df > 3.2 && df < 3.4, `df ${df}`);
    const z = 0.4 / Math.sqrt(1 / 100 + (196 * 0.05) / 10 ** 4);
    near(r.pValue!, tTwoSidedByIntegration(z, df), 1e-8);
    assert.ok(r.pValue! > 0.02, `${r.pValue}`);
    // The normal is an option ('z'), and then has no degrees of freedom.
    assert.equal(relativeLift(c, t, { distribution: 'z' }).df, undefined);
    assert.ok(relativeLift(c, t, { distribution: 'z' }).pValue! < 0.001);
  });

  it('keep p-values far in the tail (no 2 (1 - cdf) = 0)', () => {
    // z = 9 with a million users per arm: p = 2 Q(9) = 2.2571768119076845e-19 (python3 math.erfc), df ~ 2e6.
    const se = Math.sqrt(2 / 1e6);
    const r = welch({ n: 1e6, mean: 0, variance: 1 }, { n: 1e6, mean: 9 * se, variance: 1 });
    assert.ok(r.pValue! > 0, 'not 0');
    near(r.pValue!, 2.2571768119076845e-19, 1e-5); // t at df 2e6 differs from the normal in the 6th digit
  });
});

describe('sufficient statistics with a large mean', () => {
  it('keep the variance when taken from a shift near the mean (mean 1e8)', () => {
    const r = new Random(11);
    const values = Array.from({ length: 5000 }, () => 1e8 + r.normal(0, 1.2));
    const mean = values.reduce((s, v) => s + v, 0) / values.length;
    const twoPass = values.reduce((s, v) => s + (v - mean) ** 2, 0) / (values.length - 1);
    const shift = values[0]!;
    const shifted = moments({
      n: values.length,
      sum: values.reduce((s, v) => s + (v - shift), 0),
      sumSquares: values.reduce((s, v) => s + (v - shift) ** 2, 0),
      shift,
    });
    near(shifted.variance, twoPass, 1e-9);
    near(shifted.mean, mean, 1e-14);
    // Raw sums of squares (about 5e19) have nothing left of a variance of 1.44.
    const raw = moments({ n: values.length, sum: values.reduce((s, v) => s + v, 0), sumSquares: values.reduce((s, v) => s + v * v, 0) });
    assert.ok(Math.abs(raw.variance - twoPass) > 0.1, `raw ${raw.variance} vs ${twoPass}`);
  });
});

describe('invalid input is a clear error, never a number', () => {
  it('a negative variance, a NaN, a count that is not a whole number', () => {
    assert.throws(
      () => welch({ n: 10, mean: 1, variance: -1 }, { n: 10, mean: 2, variance: 1 }),
      (e: unknown) => e instanceof InputError && /variance/.test(e.message),
    );
    assert.throws(() => relativeLift({ n: 10, mean: Number.NaN, variance: 1 }, { n: 10, mean: 2, variance: 1 }), InputError);
    assert.throws(() => welch({ n: 10.5, mean: 1, variance: 1 }, { n: 10, mean: 2, variance: 1 }), InputError);
    assert.throws(() => moments({ n: 3, sum: 1, sumSquares: -1 }), InputError);
    assert.throws(() => welch({ n: 10, mean: 1, variance: 1 }, { n: 10, mean: 2, variance: 1 }, { alpha: 1.5 }), InputError);
  });

  it('Holm and Benjamini-Hochberg refuse a NaN or a p-value outside [0, 1] instead of spreading it', () => {
    assert.throws(
      () => holm([0.01, Number.NaN, 0.03]),
      (e: unknown) => e instanceof InputError && /p-value 1 is NaN/.test(e.message),
    );
    assert.throws(() => benjaminiHochberg([0.01, Number.NaN]), InputError);
    assert.throws(() => holm([0.01, 1.5]), InputError);
  });

  it('power and alpha outside (0, 1) are refused', () => {
    assert.throws(
      () => sampleSizePerArm({ mean: 10, sd: 4, mde: 0.05, power: 1.2 }),
      (e: unknown) => e instanceof InputError && /power/.test(e.message),
    );
    assert.throws(() => sampleSizePerArm({ mean: 10, sd: 4, mde: 0.05, power: 0 }), InputError);
    assert.throws(() => powerForSize({ mean: 10, sd: 4, mde: 0.05, nPerArm: 100, alpha: Number.NaN }), InputError);
    assert.throws(() => sampleSizePerArm({ mean: 10, sd: -4, mde: 0.05 }), InputError);
  });
});

describe('sample ratio mismatch with a paused arm (weight 0)', () => {
  it('leaves the arm out of the test and of its degrees of freedom', () => {
    // 1000 / 1160 / 0 at 0.5 / 0.5 / 0: chi-square 11.85 with 1 df, p = 0.000576 (python3: math.erfc(sqrt(x / 2))); with 2 df it would be 0.00267.
    const r = sampleRatioMismatch([1000, 1160, 0], [0.5, 0.5, 0]);
    near(r.chiSquare, (2 * 80 * 80) / 1080);
    near(r.pValue, 0.0005760403386062815, 1e-10);
    assert.ok(r.pValue < 0.001, 'flagged');
  });

  it('flags users found in an arm of weight 0: no working assignment puts them there', () => {
    const r = sampleRatioMismatch([1000, 1000, 3], [0.5, 0.5, 0]);
    assert.equal(r.pValue, 0);
    assert.match(r.reason!, /3 users in arms of weight 0/);
  });
});

describe('the two-proportion z-test', () => {
  it("pooled: z^2 is Pearson's chi-square of the 2x2 table; unpooled: each arm's p (1 - p)", () => {
    const [a, b, n] = [100, 130, 1000];
    const r = twoProportionZTest({ n, conversions: a }, { n, conversions: b }, { pooled: true });
    // Pearson's chi-square without continuity correction, by hand from the table's expected counts.
    const p = (a + b) / (2 * n);
    const cells = [
      [a, n * p],
      [n - a, n * (1 - p)],
      [b, n * p],
      [n - b, n * (1 - p)],
    ];
    const chi = cells.reduce((s, [o, e]) => s + (o! - e!) ** 2 / e!, 0);
    near(r.pValue!, Math.exp(-0) * 0 + chiSquareSf1(chi), 1e-9);
    near(r.estimate!, 0.03);
    const unpooled = twoProportionZTest({ n, conversions: a }, { n, conversions: b });
    near(unpooled.se!, Math.sqrt((0.1 * 0.9 + 0.13 * 0.87) / n));
    assert.ok(unpooled.pValue! < r.pValue!, 'the unpooled standard error is the smaller one here');
  });
});

/** P(chi-square with 1 df > x) = 2 Q(sqrt(x)), by Simpson on the normal density (independent of the engine's gamma functions). */
function chiSquareSf1(x: number): number {
  const to = Math.sqrt(x);
  const steps = 20_000;
  const h = to / steps;
  let s = 0;
  for (let i = 0; i <= steps; i++) s += (i === 0 || i === steps ? 1 : i % 2 === 1 ? 4 : 2) * Math.exp(-((i * h) ** 2) / 2);
  return 1 - (2 * ((s * h) / 3)) / Math.sqrt(2 * Math.PI);
}
