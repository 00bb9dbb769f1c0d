import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Random, sigmoid } from '../../../src/workbench/random.js';
import { cuped, type CovariateSums } from '../../../src/workbench/stats/cuped.js';
import { leastSquares } from '../../../src/workbench/stats/least-squares.js';
import { moments, welch } from '../../../src/workbench/stats/two-sample.js';

/**
 * CUPAC against CUPED on users whose truth is known: a latent engagement sets each user's daily
 * login probability p (as in the app simulator); the metric Y is logins in the 14 days after
 * exposure. CUPED's covariate is the metric's own 7-day pre-period count; CUPAC's is a model's
 * prediction of Y from 56 days of history (logins by period, feature uses), fitted by least squares
 * on other users (a training period), as a served model would be. Known truth: E[Y | p] = 14 p, so
 * no covariate can remove more than Var(14 p) / Var(Y) of the variance; a treatment multiplies p by
 * 1.05, so the true effect is 14 E[min(1, 1.05 p) - p] over the users.
 */
interface User {
  p: number;
  features: number[];
  pre7: number;
}
const DAYS_BEFORE = 56;
function user(r: Random): User {
  const p = sigmoid(-0.2 + 1.2 * r.normal());
  const usesPerLogin = sigmoid(-1 + 2 * (p - 0.5));
  let [d7, d28, d56, uses] = [0, 0, 0, 0];
  for (let day = 1; day <= DAYS_BEFORE; day++) {
    if (!r.bernoulli(p)) continue;
    if (day <= 7) d7++;
    else if (day <= 28) d28++;
    else d56++;
    if (r.bernoulli(usesPerLogin)) uses++;
  }
  return { p, features: [d7, d28, d56, uses], pre7: d7 };
}
const outcome = (r: Random, p: number) => {
  let y = 0;
  for (let day = 0; day < 14; day++) if (r.bernoulli(p)) y++;
  return y;
};
const add = (s: CovariateSums, x: number, y: number) => {
  s.n++;
  s.sumY += y;
  s.sumY2 += y * y;
  s.sumX += x;
  s.sumX2 += x * x;
  s.sumXY += x * y;
};
const empty = (): CovariateSums => ({ n: 0, sumY: 0, sumY2: 0, sumX: 0, sumX2: 0, sumXY: 0 });

// The model: fitted once on a training period's users (their history, then their next 14 days).
const train = new Random(101);
const trainingUsers = Array.from({ length: 5000 }, () => user(train));
const model = leastSquares(
  trainingUsers.map((u) => u.features),
  trainingUsers.map((u) => outcome(train, u.p)),
);

describe('CUPAC (a prediction made before exposure as the covariate)', () => {
  it('fits the least-squares predictor exactly on exact data, and refuses collinear features', () => {
    const fit = leastSquares(
      [
        [1, 0],
        [2, 1],
        [3, 0],
        [4, 1],
      ],
      [3, 4, 7, 8],
    );
    assert.ok(Math.abs(fit.intercept - 1) < 1e-12 && Math.abs(fit.coefficients[0]! - 2) < 1e-12 && Math.abs(fit.coefficients[1]! + 1) < 1e-12);
    assert.ok(Math.abs(fit.predict([5, 0]) - 11) < 1e-12 && Math.abs(fit.rSquared - 1) < 1e-12);
    // Simple regression: the slope is cov / var, at any scale of the feature (here 1e8 + a small spread).
    const xs = Array.from({ length: 50 }, (_, i) => 1e8 + (i % 7) * 0.5 + i * 0.01);
    const ys = xs.map((x, i) => 3 * (x - 1e8) + Math.sin(i));
    const mx = xs.reduce((s, x) => s + (x - 1e8), 0) / 50;
    const my = ys.reduce((s, y) => s + y, 0) / 50;
    const slope = xs.reduce((s, x, i) => s + (x - 1e8 - mx) * (ys[i]! - my), 0) / xs.reduce((s, x) => s + (x - 1e8 - mx) ** 2, 0);
    assert.ok(
      Math.abs(
        leastSquares(
          xs.map((x) => [x]),
          ys,
        ).coefficients[0]! - slope,
      ) <
        1e-6 * Math.abs(slope),
    );
    assert.throws(
      () =>
        leastSquares(
          xs.map((x) => [x, 2 * x]),
          ys,
        ),
      /linear combination/,
    );
  });

  it('removes more variance than CUPED on the 7-day pre-period, and no more than the truth allows', () => {
    const r = new Random(7);
    const [cupedArms, cupacArms] = [
      [empty(), empty()],
      [empty(), empty()],
    ];
    let varTruth = 0;
    const ys: number[] = [];
    const ps: number[] = [];
    for (let i = 0; i < 40_000; i++) {
      const u = user(r);
      const y = outcome(r, u.p);
      ys.push(y);
      ps.push(u.p);
      add(cupedArms[i % 2]!, u.pre7, y);
      add(cupacArms[i % 2]!, model.predict(u.features), y);
    }
    const m = moments({ n: ys.length, sum: ys.reduce((s, y) => s + y, 0), sumSquares: ys.reduce((s, y) => s + y * y, 0) });
    const meanP = ps.reduce((s, p) => s + p, 0) / ps.length;
    varTruth = ps.reduce((s, p) => s + (14 * (p - meanP)) ** 2, 0) / (ps.length - 1);
    const bound = varTruth / m.variance;
    const plain = cuped(cupedArms).varianceReduction;
    const cupac = cuped(cupacArms).varianceReduction;
    // Closed forms for Bin(7, p) and Bin(14, p) given p: rho^2 of the 7-day count about 0.52; of the 56-day model about 0.74; the bound about 0.8.
    assert.ok(plain > 0.45 && plain < 0.58, `CUPED ${plain}`);
    assert.ok(cupac > plain + 0.15, `CUPAC ${cupac} vs CUPED ${plain}`);
    assert.ok(cupac <= bound + 0.01 && cupac > bound - 0.08, `CUPAC ${cupac}, truth's bound ${bound}`);
    // theta of a calibrated prediction is near 1.
    assert.ok(Math.abs(cuped(cupacArms).theta - 1) < 0.05);
  });

  it('is unbiased, covers the true effect 95% of the time, and keeps the A/A false-positive rate at 5% (simulation)', () => {
    const r = new Random(8);
    const runs = 400;
    const n = 1000;
    let sumCupac = 0;
    let sumPlain = 0;
    let sumSq = 0;
    let covered = 0;
    let aaPositives = 0;
    let hitsCupac = 0;
    let hitsPlain = 0;
    let truth = 0;
    for (let run = 0; run < runs; run++) {
      const [a, b, aa1, aa2] = [empty(), empty(), empty(), empty()];
      let shift = 0;
      for (let i = 0; i < n; i++) {
        const u = user(r);
        add(a, model.predict(u.features), outcome(r, u.p));
        const v = user(r);
        const p1 = Math.min(1, 1.05 * v.p);
        shift += 14 * (p1 - v.p);
        add(b, model.predict(v.features), outcome(r, p1));
        const w = user(r);
        add(i % 2 ? aa1 : aa2, model.predict(w.features), outcome(r, w.p));
      }
      truth += shift / n / runs;
      const adj = cuped([a, b]);
      const est = welch(adj.arms[0]!, adj.arms[1]!);
      const plain = welch(moments({ n, sum: a.sumY, sumSquares: a.sumY2 }), moments({ n, sum: b.sumY, sumSquares: b.sumY2 }));
      sumCupac += est.estimate!;
      sumSq += est.estimate! ** 2;
      sumPlain += plain.estimate!;
      // The truth of this run: its treated users' own expected shift.
      if (est.ci![0] <= shift / n && shift / n <= est.ci![1]) covered++;
      if (est.pValue! < 0.05) hitsCupac++;
      if (plain.pValue! < 0.05) hitsPlain++;
      const aa = cuped([aa1, aa2]);
      if (welch(aa.arms[0]!, aa.arms[1]!).pValue! < 0.05) aaPositives++;
    }
    const mean = sumCupac / runs;
    const sd = Math.sqrt(sumSq / runs - mean * mean);
    assert.ok(Math.abs(mean - truth) < 3 * (sd / Math.sqrt(runs)), `CUPAC mean ${mean}, truth ${truth} (sd ${sd})`);
    assert.ok(Math.abs(sumPlain / runs - truth) < 3 * Math.sqrt((2 * 11.9) / n / runs), `plain mean ${sumPlain / runs}, truth ${truth}`);
    const within = (rate: number, p: number) => Math.abs(rate - p) < 3 * Math.sqrt((p * (1 - p)) / runs);
    assert.ok(within(covered / runs, 0.95), `coverage ${covered / runs}`);
    assert.ok(within(aaPositives / runs, 0.05), `A/A ${aaPositives / runs}`);
    assert.ok(hitsCupac > 1.3 * hitsPlain, `detections: CUPAC ${hitsCupac}, plain ${hitsPlain}`);
  });
});
