import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { IntegrityError } from '../../../src/workbench/errors.js';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { createBundle, loadClassifier, verifyBundle, type ModelBundle } from '../../../src/workbench/models/bundle.js';
import {
  applyCalibration,
  calibrated,
  CalibrationSchema,
  chooseCalibration,
  MIN_GAIN_STANDARD_ERRORS,
  fitIsotonic,
  fitPlatt,
  fitSigmoid,
  isotonicRegression,
  splitInTime,
  uncalibrated,
  type Calibration,
} from '../../../src/workbench/models/calibration.js';
import { brierScore, calibrationTable, evaluate, expectedCalibrationError } from '../../../src/workbench/models/evaluate.js';
import { columnsFor } from '../../../src/workbench/models/preprocess.js';
import { trainClassifier, type Classifier } from '../../../src/workbench/models/train.js';
import { Random } from '../../../src/workbench/random.js';
import { rehashed } from './hostile.js';

const near = (a: number, b: number, tol: number, what = '') => assert.ok(Math.abs(a - b) <= tol, `${what} ${a} vs ${b} (tolerance ${tol})`);
const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));
const mean = (a: ArrayLike<number>) => Array.from(a).reduce((s, v) => s + v, 0) / a.length;

describe('isotonic regression against published values', () => {
  // scikit-learn's sklearn/tests/test_isotonic.py, with the values it asserts (R's isotone package
  // gpava, ties = "secondary", for the last two).
  it('test_isotonic_regression: [3, 7, 5, 9, 8, 7, 10] -> [3, 6, 6, 8, 8, 8, 10]', () => {
    assert.deepEqual([...isotonicRegression([0, 1, 2, 3, 4, 5, 6], [3, 7, 5, 9, 8, 7, 10]).fitted], [3, 6, 6, 8, 8, 8, 10]);
  });
  it('test_isotonic_regression_ties_min and _ties_max: equal x are pooled', () => {
    assert.deepEqual([...isotonicRegression([1, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6]).fitted], [1.5, 1.5, 3, 4, 5, 6]);
    assert.deepEqual([...isotonicRegression([1, 2, 3, 4, 5, 5], [1, 2, 3, 4, 5, 6]).fitted], [1, 2, 3, 4, 5.5, 5.5]);
  });
  it('test_isotonic_sample_weight: weights [1..7] give [1, 13.95 x 5, 24]', () => {
    const fitted = isotonicRegression([1, 2, 3, 4, 5, 6, 7], [1, 41, 51, 1, 2, 5, 24], [1, 2, 3, 4, 5, 6, 7]).fitted;
    [1, 13.95, 13.95, 13.95, 13.95, 13.95, 24].forEach((v, i) => near(fitted[i]!, v, 1e-12, `point ${i}`));
  });
  it('test_isotonic_regression_ties_secondary_ (pituitary data): 22.22222 x 9, 24.25 x 2', () => {
    const fitted = isotonicRegression([8, 8, 8, 10, 10, 10, 12, 12, 12, 14, 14], [21, 23.5, 23, 24, 21, 25, 21.5, 22, 19, 23.5, 25]).fitted;
    [...Array<number>(9).fill(22.22222), 24.25, 24.25].forEach((v, i) => near(fitted[i]!, v, 1e-5, `point ${i}`));
  });
  it('test_isotonic_regression_with_ties_in_differently_sized_groups', () => {
    const fitted = isotonicRegression([0, 1, 1, 2, 3, 4], [0, 0, 1, 0, 0, 1]).fitted;
    [0, 0.25, 0.25, 0.25, 0.25, 1].forEach((v, i) => near(fitted[i]!, v, 1e-12, `point ${i}`));
  });
  it('test_isotonic_make_unique_tolerance: knots [0, 1, 2] -> [0, 1.5, 3], interpolated between them', () => {
    // 1 + 1e-16 is 1 in a double: pooled with it.
    const { knots } = isotonicRegression([0, 1, 1 + 1e-16, 2], [0, 1, 2, 3]);
    assert.deepEqual(knots, { x: [0, 1, 2], y: [0, 1.5, 3] });
    assert.deepEqual([...applyCalibration({ method: 'isotonic', ...knots }, [0, 0.5, 1, 1.5, 2])], [0, 0.75, 1.5, 2.25, 3]);
  });
  it('test_isotonic_regression_oob_clip: beyond the knots, the end values', () => {
    const { knots } = isotonicRegression([0, 1, 2, 3, 4, 5, 6], [3, 7, 5, 9, 8, 7, 10]);
    assert.deepEqual([...applyCalibration({ method: 'isotonic', ...knots }, [-10, 16])], [3, 10]);
    // The knots are each block's first and last x (scikit-learn's X_thresholds_).
    assert.deepEqual(knots, { x: [0, 1, 2, 3, 5, 6], y: [3, 6, 6, 8, 8, 10] });
  });
});

/** Isotonic least squares by brute force: every partition of the distinct x into runs, the best one with non-decreasing run means. */
function bruteForceIsotonic(x: number[], y: number[], w: number[]): number[] {
  const distinct = [...new Set(x)].sort((a, b) => a - b);
  const m = distinct.length;
  let best = { sse: Number.POSITIVE_INFINITY, fitted: [] as number[] };
  for (let mask = 0; mask < 2 ** (m - 1); mask++) {
    // Bit j set: a new run starts at distinct value j + 1.
    const runOf = new Map<number, number>();
    let run = 0;
    distinct.forEach((v, j) => {
      if (j > 0 && mask & (1 << (j - 1))) run++;
      runOf.set(v, run);
    });
    const sumWY = new Array<number>(run + 1).fill(0);
    const sumW = new Array<number>(run + 1).fill(0);
    x.forEach((v, i) => {
      sumWY[runOf.get(v)!]! += w[i]! * y[i]!;
      sumW[runOf.get(v)!]! += w[i]!;
    });
    const means = sumWY.map((s, k) => s / sumW[k]!);
    if (means.some((v, k) => k > 0 && v < means[k - 1]!)) continue;
    const fitted = x.map((v) => means[runOf.get(v)!]!);
    const sse = fitted.reduce((s, f, i) => s + w[i]! * (y[i]! - f) ** 2, 0);
    if (sse < best.sse) best = { sse, fitted };
  }
  return best.fitted;
}

/** The min-max formula: f_j = max over a <= j of min over b >= j of the weighted mean of a..b (Barlow et al. 1972). */
function minMaxIsotonic(x: number[], y: number[], w: number[]): number[] {
  const distinct = [...new Set(x)].sort((a, b) => a - b);
  const wy = distinct.map((v) => x.reduce((s, xi, i) => s + (xi === v ? w[i]! * y[i]! : 0), 0));
  const ww = distinct.map((v) => x.reduce((s, xi, i) => s + (xi === v ? w[i]! : 0), 0));
  const value = distinct.map((_, j) => {
    let outer = Number.NEGATIVE_INFINITY;
    for (let a = 0; a <= j; a++) {
      let inner = Number.POSITIVE_INFINITY;
      for (let b = j; b < distinct.length; b++) {
        let s = 0;
        let t = 0;
        for (let k = a; k <= b; k++) {
          s += wy[k]!;
          t += ww[k]!;
        }
        inner = Math.min(inner, s / t);
      }
      outer = Math.max(outer, inner);
    }
    return outer;
  });
  return x.map((v) => value[distinct.indexOf(v)]!);
}

describe('isotonic regression against second methods', () => {
  const point = fc.record({
    x: fc.integer({ min: 0, max: 7 }),
    y: fc.double({ min: -10, max: 10, noNaN: true }),
    w: fc.double({ min: 0.1, max: 5, noNaN: true }),
  });

  it('pool adjacent violators equals the best of every monotone partition (exhaustive search)', () => {
    fc.assert(
      fc.property(fc.array(point, { minLength: 1, maxLength: 14 }), (points) => {
        const [x, y, w] = [points.map((p) => p.x), points.map((p) => p.y), points.map((p) => p.w)];
        const pav = isotonicRegression(x, y, w).fitted;
        const brute = bruteForceIsotonic(x, y, w);
        // The objective, not the values: where y differs by ~1e-9, two partitions' sums of squares
        // tie to the last bit and the search may keep either, a nanometre apart.
        const sse = (f: ArrayLike<number>) => x.reduce((s, _, i) => s + w[i]! * (y[i]! - f[i]!) ** 2, 0);
        assert.ok(sse(pav) <= sse(brute) + 1e-12 * (1 + sse(brute)), `PAV's ${sse(pav)} against the best partition's ${sse(brute)}`);
        x.forEach((xi, i) => x.forEach((xj, j) => assert.ok(xi >= xj || pav[i]! <= pav[j]! + 1e-12, `monotone at ${i}, ${j}`)));
        brute.forEach((v, i) => near(pav[i]!, v, 1e-6, `point ${i}`));
      }),
      { numRuns: 300 },
    );
  });

  it('pool adjacent violators equals the min-max formula on longer sequences, and its knots interpolate monotonically', () => {
    const longer = fc.record({ x: fc.integer({ min: 0, max: 40 }), y: fc.integer({ min: 0, max: 1 }), w: fc.constant(1) });
    fc.assert(
      fc.property(
        fc.array(longer, { minLength: 1, maxLength: 80 }),
        fc.array(fc.double({ min: -5, max: 45, noNaN: true }), { maxLength: 20 }),
        (points, probes) => {
          const [x, y, w] = [points.map((p) => p.x), points.map((p) => p.y), points.map((p) => p.w)];
          const { fitted, knots } = isotonicRegression(x, y);
          minMaxIsotonic(x, y, w).forEach((v, i) => near(fitted[i]!, v, 1e-9, `point ${i}`));
          // At every training x the map gives the fitted value; between, it never decreases.
          const atX = applyCalibration({ method: 'isotonic', ...knots }, x);
          x.forEach((_, i) => near(atX[i]!, fitted[i]!, 1e-12));
          const sorted = [...probes].sort((a, b) => a - b);
          const out = applyCalibration({ method: 'isotonic', ...knots }, sorted);
          for (let i = 1; i < out.length; i++) assert.ok(out[i]! >= out[i - 1]! - 1e-12);
          assert.ok(CalibrationSchema.safeParse({ method: 'isotonic', ...knots }).success);
        },
      ),
      { numRuns: 200 },
    );
  });
});

/** Platt's objective, written out on its own: the smoothed-target cross-entropy of 1 / (1 + exp(A f + B)). */
function plattObjective(f: number[], labels: number[], a: number, b: number): number {
  const positives = labels.filter((y) => y === 1).length;
  const hi = (positives + 1) / (positives + 2);
  const lo = 1 / (labels.length - positives + 2);
  return f.reduce((s, fi, i) => {
    const p = 1 / (1 + Math.exp(a * fi + b));
    const t = labels[i] === 1 ? hi : lo;
    return s - (t * Math.log(p) + (1 - t) * Math.log(1 - p));
  }, 0);
}

function goldenMin(g: (v: number) => number, lo: number, hi: number): number {
  const r = (Math.sqrt(5) - 1) / 2;
  let [a, b] = [lo, hi];
  let c = b - r * (b - a);
  let d = a + r * (b - a);
  let [gc, gd] = [g(c), g(d)];
  for (let i = 0; i < 80; i++) {
    if (gc < gd) {
      [b, d, gd] = [d, c, gc];
      c = b - r * (b - a);
      gc = g(c);
    } else {
      [a, c, gc] = [c, d, gd];
      d = a + r * (b - a);
      gd = g(d);
    }
  }
  return (a + b) / 2;
}

/** The minimum by a grid over A and B, then golden section on A of the golden-section minimum over B (the objective is convex). */
function directMinimum(f: number[], labels: number[]): { a: number; b: number } {
  let start = { a: 0, b: 0, value: Number.POSITIVE_INFINITY };
  for (let a = -6; a <= 6; a += 0.25)
    for (let b = -6; b <= 6; b += 0.25) {
      const value = plattObjective(f, labels, a, b);
      if (value < start.value) start = { a, b, value };
    }
  const bestB = (a: number) => goldenMin((b) => plattObjective(f, labels, a, b), start.b - 1, start.b + 1);
  const a = goldenMin((v) => plattObjective(f, labels, v, bestB(v)), start.a - 1, start.a + 1);
  return { a, b: bestB(a) };
}

describe('Platt scaling', () => {
  it("matches LIBSVM's sigmoid on scikit-learn's test_sigmoid_calibration example", () => {
    // exF = [5, -4, 1], exY = [1, -1, -1]: AB_lin_libsvm = [-0.20261354391187855, 0.65236314980010512].
    const { a, b } = fitSigmoid([5, -4, 1], [1, -1, -1]);
    near(a, -0.20261354391187855, 1e-9, 'A');
    near(b, 0.65236314980010512, 1e-9, 'B');
    assert.deepEqual(fitSigmoid([5, -4, 1], [1, 0, 0]), { a, b });
  });

  it('finds the minimum that a grid and golden-section search of the same objective find', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000_000 }), fc.integer({ min: 20, max: 120 }), (seed, n) => {
        const r = new Random(seed);
        const slope = 0.3 + r.next() * 2;
        const shift = r.normal(0, 1);
        const scores = Array.from({ length: n }, () => sigmoid(r.normal(-1, 1.5)));
        const labels = scores.map((s) => (r.bernoulli(sigmoid(slope * Math.log(s / (1 - s)) + shift)) ? 1 : 0));
        const f = scores.map((s) => Math.log(s / (1 - s)));
        const ours = fitPlatt(labels, scores);
        const direct = directMinimum(f, labels);
        near(ours.a, direct.a, 1e-4, 'A');
        near(ours.b, direct.b, 1e-4, 'B');
        assert.ok(plattObjective(f, labels, ours.a, ours.b) <= plattObjective(f, labels, direct.a, direct.b) + 1e-9);
      }),
      { numRuns: 12 },
    );
  });

  it('keeps calibrated scores nearly as they are (a = -1, b = 0 is the identity)', () => {
    const r = new Random(3);
    const scores = Array.from({ length: 50_000 }, () => sigmoid(r.normal(-1.5, 1.2)));
    const labels = scores.map((s) => (r.bernoulli(s) ? 1 : 0));
    const platt = fitPlatt(labels, scores);
    near(platt.a, -1, 0.05, 'a');
    near(platt.b, 0, 0.05, 'b');
    assert.deepEqual(
      [...applyCalibration({ method: 'platt', a: -1, b: 0 }, [0.2, 0.7])].map((v) => +v.toFixed(12)),
      [0.2, 0.7],
    );
  });
});

describe('expected calibration error', () => {
  it('is the row-weighted mean gap between prediction and outcome over bins, by definition', () => {
    // Two equal-mass bins: {0.1, 0.3} predicts 0.2 and sees 0; {0.7, 0.9} predicts 0.8 and sees 1.
    near(expectedCalibrationError([0, 1, 0, 1], [0.1, 0.9, 0.3, 0.7], { bins: 2 }), 0.2, 1e-15);
    // Uniform bins of width 0.5: [0.1, 0.2, 0.4] predict 0.7/3 and see 1/3 (gap 0.1); [0.6, 0.9] predict 0.75 and see 0.5 (gap 0.25).
    near(expectedCalibrationError([0, 1, 0, 1, 0], [0.1, 0.2, 0.4, 0.6, 0.9], { bins: 2, strategy: 'uniform' }), (3 / 5) * 0.1 + (2 / 5) * 0.25, 1e-15);
    // Against true probabilities: the gap of each bin's mean prediction to its mean truth.
    near(expectedCalibrationError([0.1, 0.3, 0.5, 0.5], [0.2, 0.2, 0.6, 0.6], { bins: 2 }), 0.5 * 0 + 0.5 * 0.1, 1e-15);
    assert.throws(() => expectedCalibrationError([1.5], [0.5]), /outcomes are labels \(0\/1\) or probabilities in \[0, 1\]/);
  });

  it('never splits a run of equal predictions across equal-mass bins, whatever the row order', () => {
    const table = calibrationTable([1, 0, 0, 1, 1], [0.2, 0.2, 0.2, 0.8, 0.2], 2, 'quantile');
    assert.deepEqual(
      table.map((b) => [b.n, b.lower, b.upper]),
      [
        [4, 0.2, 0.2],
        [1, 0.8, 0.8],
      ],
    );
    near(expectedCalibrationError([1, 0, 0, 1, 1], [0.2, 0.2, 0.2, 0.8, 0.2], { bins: 2 }), (4 / 5) * 0.3 + (1 / 5) * 0.2, 1e-15);
  });

  it('is reported by evaluate(), beside the Brier score of the base rate', () => {
    const labels = [0, 0, 0, 1, 1, 0, 0, 0, 1, 0];
    const scores = [0.1, 0.2, 0.1, 0.7, 0.4, 0.3, 0.2, 0.1, 0.6, 0.3];
    const e = evaluate(labels, scores);
    near(e.baseRate, 0.3, 1e-15);
    near(e.baseRateBrier, brierScore(labels, new Array<number>(10).fill(0.3)), 1e-15);
    near(e.brierSkill, 1 - e.brier / e.baseRateBrier, 1e-15);
    near(e.meanScore, 0.3, 1e-15);
    near(e.ece, expectedCalibrationError(labels, scores), 0);
  });
});

/** Rows of a known truth: true probabilities, labels drawn from them, and scores bent from them by a known monotone map. */
function simulate(seed: number, n: number, distort: (p: number) => number) {
  const r = new Random(seed);
  const truth = Array.from({ length: n }, () => sigmoid(r.normal(-2.2, 1)));
  return { truth, labels: truth.map((p) => (r.bernoulli(p) ? 1 : 0)), scores: truth.map(distort) };
}

describe('calibration with a known truth', () => {
  const distortions: [string, (p: number) => number][] = [
    ['overconfident and high (a sigmoid of the logit: Platt can undo it exactly)', (p) => sigmoid(1.8 * Math.log(p / (1 - p)) + 3)],
    ['a power (outside the Platt family)', (p) => p ** 0.4],
  ];
  for (const [name, distort] of distortions) {
    it(`undoes a known distortion, ${name}: ECE against the truth under 0.01 on new rows`, () => {
      const validation = simulate(1, 20_000, distort);
      const test = simulate(2, 20_000, distort);
      const calibration = chooseCalibration(validation.labels, validation.scores);
      assert.notEqual(calibration.method, 'none');
      const before = expectedCalibrationError(test.truth, test.scores);
      const after = applyCalibration(calibration, test.scores);
      assert.ok(before > 0.08, `the distortion is visible: ECE ${before}`);
      const ece = expectedCalibrationError(test.truth, after);
      assert.ok(ece < 0.01, `${calibration.method}: ECE ${ece}`);
      near(mean(after), mean(test.truth), 0.05 * mean(test.truth), 'mean');
      // Judged out of fold: three candidates, the chosen one the lowest log loss, each with its gain over none.
      const candidates = calibration.fit!.candidates;
      assert.deepEqual(
        candidates.map((c) => c.method),
        ['none', 'platt', 'isotonic'],
      );
      assert.equal(calibration.method, candidates.reduce((a, b) => (b.logLoss < a.logLoss ? b : a)).method);
      const chosen = candidates.find((c) => c.method === calibration.method)!;
      assert.ok(chosen.vsNone.difference < -3 * chosen.vsNone.standardError, 'a clear gain on 20,000 rows');
      const none = candidates[0]!;
      for (const c of candidates) near(c.vsNone.difference, c.logLoss - none.logLoss, 1e-12, c.method);
    });
  }

  it('leaves honest scores honest, and calibrates nothing on too few rows', () => {
    const validation = simulate(3, 20_000, (p) => p);
    const test = simulate(4, 20_000, (p) => p);
    const calibration = chooseCalibration(validation.labels, validation.scores);
    assert.ok(expectedCalibrationError(test.truth, applyCalibration(calibration, test.scores)) < 0.01);
    const few = chooseCalibration([1, 0, 0, 0, 1, 0, 0, 0], [0.9, 0.1, 0.2, 0.3, 0.8, 0.1, 0.2, 0.4]);
    assert.deepEqual([few.method, few.fit!.candidates], ['none', []]);
  });

  it('is chosen out of fold: fitted on its own rows, isotonic would always look best', () => {
    const v = simulate(5, 3000, (p) => p);
    const inSample = (c: Calibration) => brierScore(v.labels, applyCalibration(c, v.scores));
    assert.ok(inSample(fitIsotonic(v.labels, v.scores)) <= Math.min(inSample(fitPlatt(v.labels, v.scores)), inSample({ method: 'none' })));
    assert.notEqual(chooseCalibration(v.labels, v.scores).method, 'isotonic');
  });
});

/**
 * A slice of moments of the same users, as a login spine gives: `users` users with `moments` rows
 * each, interleaved in time, one label per user (they churn or not) and one score per user, the
 * truth bent by `distort`.
 */
function usersSlice(seed: number, users: number, moments: number, distort: (p: number) => number) {
  const r = new Random(seed);
  const truth = Array.from({ length: users }, () => sigmoid(r.normal(-2.2, 1)));
  const outcome = truth.map((p) => (r.bernoulli(p) ? 1 : 0));
  const rows = Array.from({ length: users * moments }, (_, i) => i % users);
  return { labels: rows.map((u) => outcome[u]!), scores: rows.map((u) => distort(truth[u]!)), groups: rows.map((u) => `u${u}`) };
}

describe('choosing a calibration when rows are moments of the same users', () => {
  it('clustered standard errors match the spread of the gain over repeated slices; row-level ones understate it', () => {
    const gains: number[] = [];
    const clustered: number[] = [];
    const rowLevel: number[] = [];
    for (let seed = 1; seed <= 150; seed++) {
      const s = usersSlice(seed, 200, 10, (p) => sigmoid(1.3 * Math.log(p / (1 - p)) + 0.6));
      const platt = (c: Calibration) => c.fit!.candidates.find((x) => x.method === 'platt')!.vsNone;
      const byUser = platt(chooseCalibration(s.labels, s.scores, { groups: s.groups }));
      gains.push(byUser.difference);
      clustered.push(byUser.standardError);
      rowLevel.push(platt(chooseCalibration(s.labels, s.scores)).standardError);
    }
    const spread = Math.sqrt(gains.reduce((a, g) => a + (g - mean(gains)) ** 2, 0) / (gains.length - 1));
    assert.ok(Math.abs(mean(clustered) / spread - 1) < 0.25, `clustered SE ${mean(clustered)} against the spread ${spread}`);
    assert.ok(mean(rowLevel) < 0.5 * spread, `row-level SE ${mean(rowLevel)} understates the spread ${spread}`);
  });

  it('with one row per user, clustered and row-level standard errors are the same formula', () => {
    const s = usersSlice(7, 2000, 1, (p) => p ** 0.7);
    const plain = chooseCalibration(s.labels, s.scores).fit!.candidates;
    const byUser = chooseCalibration(s.labels, s.scores, { groups: s.groups }).fit!.candidates;
    byUser.forEach((c, i) => near(c.vsNone.standardError, plain[i]!.vsNone.standardError, 1e-12 * (1 + plain[i]!.vsNone.standardError), c.method));
  });

  it('keeps honest scores unless a map gains two standard errors, judged on users it was not fitted on: the lowest log loss alone would often pick one', () => {
    let mapped = 0;
    let lowestIsAMap = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const s = usersSlice(1000 + seed, 150, 8, (p) => p);
      const calibration = chooseCalibration(s.labels, s.scores, { groups: s.groups });
      const candidates = calibration.fit!.candidates;
      if (calibration.method !== 'none') mapped++;
      if (candidates.reduce((a, b) => (b.logLoss < a.logLoss ? b : a)).method !== 'none') lowestIsAMap++;
      const chosen = candidates.find((c) => c.method === calibration.method)!;
      if (chosen.method !== 'none') assert.ok(chosen.vsNone.difference <= -MIN_GAIN_STANDARD_ERRORS * chosen.vsNone.standardError);
    }
    assert.ok(mapped <= 6, `${mapped} of 60 honest slices got a map`);
    assert.ok(lowestIsAMap >= 8, `the lowest log loss was a map on ${lowestIsAMap} of 60`);
  });
});

describe('splitting rows in time', () => {
  it('holds out the latest share of the moments, keeping order', () => {
    const day = (d: number) => new Date(Date.UTC(2025, 0, d));
    const rows = [1, 1, 2, 3, 3, 4, 5, 5, 6, 7].map((d, i) => ({ as_of: day(d), i }));
    // 7 moments: the latest 2 (2/7, the nearest to 0.3 from below) are held out.
    const { earlier, later, from } = splitInTime(rows, 0.3);
    assert.deepEqual(
      later.map((r) => r.i),
      [8, 9],
    );
    assert.deepEqual(
      earlier.map((r) => r.i),
      [0, 1, 2, 3, 4, 5, 6, 7],
    );
    assert.deepEqual(from, day(6));
    assert.deepEqual(
      splitInTime(rows, 0.5).later.map((r) => r.i),
      [6, 7, 8, 9],
    );
    assert.throws(() => splitInTime(rows, 1), /between 0 and 1/);
    assert.throws(() => splitInTime([{ as_of: 'yesterday' }], 0.3), /not a time/);
  });
});

describe('the calibration schema a bundle is checked against', () => {
  const refused: [string, unknown, RegExp][] = [
    ['an unknown method', { method: 'beta', a: 1 }, /method/],
    ['a non-finite Platt parameter', { method: 'platt', a: Number.POSITIVE_INFINITY, b: 0 }, /a/],
    ['knots that do not increase', { method: 'isotonic', x: [0.1, 0.1], y: [0.2, 0.3] }, /strictly increase/],
    ['a map that decreases', { method: 'isotonic', x: [0.1, 0.2], y: [0.3, 0.2] }, /never decreases/],
    ['a probability above 1', { method: 'isotonic', x: [0.1], y: [1.5] }, /y/],
    ['x and y of different lengths', { method: 'isotonic', x: [0.1, 0.2], y: [0.3] }, /knots in x but 1 in y/],
    ['an extra key', { method: 'none', code: 'x' }, /code/],
  ];
  for (const [what, value, message] of refused) {
    it(`refuses ${what}`, () => {
      const result = CalibrationSchema.safeParse(value);
      assert.equal(result.success, false);
      assert.match(JSON.stringify(result.error!.issues), message);
    });
  }
});

describe('a calibrated model in a bundle', { timeout: 60_000 }, () => {
  const features = featureSet([{ name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 }]);
  const r = new Random(8);
  const rows = Array.from({ length: 800 }, () => {
    const logins = r.int(10);
    return { logins_7d: logins, churned: r.bernoulli(sigmoid(-0.4 * logins)) ? 1 : 0 };
  });
  let trained: Classifier;
  let model: Classifier;
  let bundle: ModelBundle;
  const lineage = { createdAt: '2026-11-30T00:00:00.000Z' };
  before(async () => {
    trained = await trainClassifier(rows, 'churned', columnsFor(features), { seed: 1, maxEpochs: 15 });
    // A deliberate bend, so that calibrated and raw scores differ.
    model = calibrated(trained, { method: 'platt', a: -0.5, b: 1 });
    bundle = await createBundle('app-churn', model, features, { lineage });
  });
  after(() => trained?.dispose());

  it('keeps the calibration, covered by the version, and serves calibrated scores when loaded', async () => {
    assert.deepEqual(bundle.calibration, { method: 'platt', a: -0.5, b: 1 });
    const raw = trained.predict(rows.slice(0, 30));
    const expected = Float32Array.from(applyCalibration(bundle.calibration!, raw));
    assert.deepEqual([...model.predict(rows.slice(0, 30))], [...expected]);
    assert.ok(
      expected.some((v, i) => Math.abs(v - raw[i]!) > 0.01),
      'the calibration changes the scores',
    );
    const loaded = await loadClassifier(verifyBundle(JSON.parse(JSON.stringify(bundle))));
    try {
      assert.deepEqual([...loaded.predict(rows.slice(0, 30))], [...expected]);
      assert.deepEqual([...uncalibrated(loaded).predict(rows.slice(0, 30))], [...raw]);
      assert.deepEqual(loaded.calibration, bundle.calibration);
    } finally {
      loaded.dispose();
    }
    // Without a calibration the bundle has no such field, and another version.
    const plain = await createBundle('app-churn', trained, features, { lineage });
    assert.equal('calibration' in plain, false);
    assert.notEqual(plain.version, bundle.version);
    // Calibrating twice replaces the calibration rather than stacking it.
    const again = calibrated(model, { method: 'none' });
    assert.deepEqual([...again.predict(rows.slice(0, 5))], [...raw.slice(0, 5)]);
  });

  it('refuses a calibration changed after the bundle was made, and a malformed one even with a matching version', () => {
    const changed = JSON.parse(JSON.stringify(bundle)) as ModelBundle;
    (changed.calibration as { a: number }).a = -2;
    assert.throws(
      () => verifyBundle(changed),
      (err: Error) => err instanceof IntegrityError && /changed after it was made/.test(err.message),
    );
    const decreasing = rehashed(bundle, (b) => {
      b.calibration = { method: 'isotonic', x: [0.1, 0.5], y: [0.9, 0.1] };
    });
    assert.throws(() => verifyBundle(decreasing), /calibration\.y\.1: an isotonic map never decreases/);
    const missing = rehashed(bundle, (b) => {
      b.calibration = { method: 'platt', a: 1 } as unknown as Calibration;
    });
    assert.throws(() => verifyBundle(missing), /calibration\.b/);
  });
});
