import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Random } from '../../../src/workbench/random.js';
import { normalCdf, normalPdf } from '../../../src/workbench/stats/distributions.js';
import { bayesianSummary, ratioDifference, ratioMoments, type RatioSums } from '../../../src/workbench/stats/ratio.js';
import { moments, welch } from '../../../src/workbench/stats/two-sample.js';

/** Users with a Poisson-ish number of orders (denominator) and revenue per order (numerator sum). */
function users(r: Random, n: number, revenuePerOrder: number): RatioSums {
  const s: RatioSums = { n, sumM: 0, sumM2: 0, sumD: 0, sumD2: 0, sumMD: 0 };
  for (let i = 0; i < n; i++) {
    const orders = 1 + r.int(4);
    let revenue = 0;
    for (let k = 0; k < orders; k++) revenue += Math.max(0, r.normal(revenuePerOrder, revenuePerOrder / 2));
    s.sumM += revenue;
    s.sumM2 += revenue * revenue;
    s.sumD += orders;
    s.sumD2 += orders * orders;
    s.sumMD += revenue * orders;
  }
  return s;
}

describe('ratio metrics by the delta method', () => {
  it('reduce to the mean and its variance when every denominator is 1', () => {
    const values = [3, 5, 8, 2, 9, 4];
    const s: RatioSums = { n: 6, sumM: 31, sumM2: values.reduce((a, v) => a + v * v, 0), sumD: 6, sumD2: 6, sumMD: 31 };
    const m = ratioMoments(s);
    assert.ok(typeof m !== 'string');
    const plain = moments({ n: 6, sum: 31, sumSquares: s.sumM2 });
    assert.ok(Math.abs(m.ratio - plain.mean) < 1e-12 && Math.abs(m.variance - plain.variance / 6) < 1e-12);
  });

  it('cover the true difference and the true relative lift 95% of the time (simulation)', () => {
    const r = new Random(5);
    const runs = 1000;
    // The true revenue per order: the mean of max(0, N(m, m/2)), which is m Phi(2) + (m/2) phi(2).
    const truth = (m: number) => m * normalCdf(2) + (m / 2) * normalPdf(2);
    const [trueDifference, trueLift] = [truth(21) - truth(20), truth(21) / truth(20) - 1];
    let absolute = 0;
    let relative = 0;
    for (let i = 0; i < runs; i++) {
      const [a, b] = [users(r, 400, 20), users(r, 400, 21)];
      const d = ratioDifference(a, b);
      if (d.ci![0] <= trueDifference && trueDifference <= d.ci![1]) absolute++;
      const l = ratioDifference(a, b, { relative: true });
      if (l.ci![0] <= trueLift && trueLift <= l.ci![1]) relative++;
    }
    const tol = 3 * Math.sqrt((0.05 * 0.95) / runs);
    assert.ok(Math.abs(absolute / runs - 0.95) < tol, `absolute coverage ${absolute / runs}`);
    assert.ok(Math.abs(relative / runs - 0.95) < tol, `relative coverage ${relative / runs}`);
  });

  it('give no estimate, with the reason, for degenerate arms', () => {
    const one: RatioSums = { n: 1, sumM: 3, sumM2: 9, sumD: 1, sumD2: 1, sumMD: 3 };
    const zero: RatioSums = { n: 5, sumM: 0, sumM2: 0, sumD: 0, sumD2: 0, sumMD: 0 };
    const ok = users(new Random(1), 50, 10);
    assert.deepEqual(ratioDifference(one, ok), { reason: 'an arm has fewer than 2 users (1)' });
    assert.deepEqual(ratioDifference(ok, zero), { reason: 'the denominator is 0 in an arm' });
  });
});

describe('Bayesian summary', () => {
  it('matches a Monte Carlo draw of the normal posterior', () => {
    const estimate = welch({ n: 1000, mean: 10, variance: 9 }, { n: 1000, mean: 10.15, variance: 9 });
    const summary = bayesianSummary(estimate);
    const r = new Random(9);
    const draws = 400_000;
    let wins = 0;
    let lossT = 0;
    let lossC = 0;
    for (let i = 0; i < draws; i++) {
      const delta = r.normal(estimate.estimate!, estimate.se!);
      if (delta > 0) wins++;
      lossT += Math.max(0, -delta);
      lossC += Math.max(0, delta);
    }
    assert.ok(Math.abs(summary.chanceToWin! - wins / draws) < 0.003, `${summary.chanceToWin} vs ${wins / draws}`);
    assert.ok(Math.abs(summary.expectedLossTreatment! - lossT / draws) < 0.001, `${summary.expectedLossTreatment} vs ${lossT / draws}`);
    assert.ok(Math.abs(summary.expectedLossControl! - lossC / draws) < 0.001);
    const lower = bayesianSummary(estimate, 'lower');
    assert.ok(Math.abs(lower.chanceToWin! - (1 - summary.chanceToWin!)) < 1e-12, 'for a metric where lower is better the chances flip');
    assert.deepEqual(bayesianSummary({ reason: 'no variance in either arm' }), { reason: 'no variance in either arm' });
  });
});
