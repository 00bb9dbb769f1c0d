import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bootstrapIntervals, pairedBootstrap, quantile, weightedAuc } from '../../../src/workbench/models/bootstrap.js';
import { brierScore, rocAuc } from '../../../src/workbench/models/evaluate.js';
import { normalCdf } from '../../../src/workbench/stats/distributions.js';
import { Random } from '../../../src/workbench/random.js';

/** Binormal scores: negatives N(0, 1), positives N(d, 1); the true AUC is Phi(d / sqrt 2). */
function binormal(r: Random, positives: number, negatives: number, d: number) {
  const labels: number[] = [];
  const scores: number[] = [];
  for (let i = 0; i < positives; i++) {
    labels.push(1);
    scores.push(r.normal(d, 1));
  }
  for (let i = 0; i < negatives; i++) {
    labels.push(0);
    scores.push(r.normal(0, 1));
  }
  return { labels, scores };
}

/**
 * DeLong, DeLong & Clarke-Pearson (1988): the AUCs of several score vectors on the same rows and
 * the covariance matrix of those AUCs, from the structural components V10 (per positive) and V01
 * (per negative). Written from the paper, O(positives x negatives): independent of the bootstrap.
 */
function delong(labels: number[], scoreSets: number[][]): { auc: number[]; cov: number[][] } {
  const pos = labels.flatMap((l, i) => (l === 1 ? [i] : []));
  const neg = labels.flatMap((l, i) => (l === 0 ? [i] : []));
  const psi = (x: number, y: number) => (x > y ? 1 : x === y ? 0.5 : 0);
  const v10 = scoreSets.map((s) => pos.map((i) => neg.reduce((a, j) => a + psi(s[i]!, s[j]!), 0) / neg.length));
  const v01 = scoreSets.map((s) => neg.map((j) => pos.reduce((a, i) => a + psi(s[i]!, s[j]!), 0) / pos.length));
  const auc = v10.map((v) => v.reduce((a, b) => a + b, 0) / v.length);
  const cov = (a: number[], b: number[]) => {
    const ma = a.reduce((x, y) => x + y, 0) / a.length;
    const mb = b.reduce((x, y) => x + y, 0) / b.length;
    return a.reduce((s, x, i) => s + (x - ma) * (b[i]! - mb), 0) / (a.length - 1);
  };
  const k = scoreSets.length;
  const matrix = Array.from({ length: k }, (_, r) =>
    Array.from({ length: k }, (_, c) => cov(v10[r]!, v10[c]!) / pos.length + cov(v01[r]!, v01[c]!) / neg.length),
  );
  return { auc, cov: matrix };
}

/** Hanley & McNeil (1982), equation 2: the standard error of an AUC from the AUC and the class sizes alone. */
function hanleyMcNeil(auc: number, positives: number, negatives: number): number {
  const q1 = auc / (2 - auc);
  const q2 = (2 * auc * auc) / (1 + auc);
  return Math.sqrt((auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (positives * negatives));
}

describe('bootstrap intervals', () => {
  it('compute ROC AUC from weights as evaluate does, ties counting half', () => {
    const r = new Random(3);
    const labels = Array.from({ length: 500 }, () => (r.bernoulli(0.3) ? 1 : 0));
    // Rounded scores: many ties.
    const scores = labels.map((l) => Math.round((r.normal(l, 1) + 3) * 4) / 4);
    const order = Int32Array.from(scores.keys()).sort((a, b) => scores[a]! - scores[b]!);
    assert.ok(Math.abs(weightedAuc(order, labels, scores, new Float64Array(500).fill(1)) - rocAuc(labels, scores)) < 1e-12);
    // Weights of 2 are the rows written twice.
    const weights = labels.map((_, i) => (i % 3 === 0 ? 2 : i % 3 === 1 ? 1 : 0));
    const expanded = labels.flatMap((l, i) => Array<number>(weights[i]!).fill(l));
    const expandedScores = scores.flatMap((s, i) => Array<number>(weights[i]!).fill(s));
    assert.ok(Math.abs(weightedAuc(order, labels, scores, weights) - rocAuc(expanded, expandedScores)) < 1e-12);
  });

  it('give the estimate on the rows, the same intervals for the same seed, and other ones for another', () => {
    const { labels, scores } = binormal(new Random(1), 150, 350, 1);
    const probabilities = scores.map((s) => 1 / (1 + Math.exp(-s)));
    const a = bootstrapIntervals(labels, probabilities, { resamples: 500, seed: 7 });
    assert.equal(a.rocAuc.estimate, rocAuc(labels, probabilities));
    assert.ok(Math.abs(a.brier.estimate - brierScore(labels, probabilities)) < 1e-12);
    assert.deepEqual(bootstrapIntervals(labels, probabilities, { resamples: 500, seed: 7 }), a);
    assert.notDeepEqual(bootstrapIntervals(labels, probabilities, { resamples: 500, seed: 8 }).rocAuc, a.rocAuc);
    assert.ok(a.rocAuc.lower < a.rocAuc.estimate && a.rocAuc.estimate < a.rocAuc.upper);
    assert.ok(a.brier.lower < a.brier.estimate && a.brier.estimate < a.brier.upper);
    assert.equal(a.n, 500);
    assert.equal(a.positives, 150);
    assert.equal(a.level, 0.95);
  });

  it("has the standard error of ROC AUC DeLong's method gives, and near Hanley & McNeil's", () => {
    for (const [seed, d, m, n] of [
      [11, 1, 300, 300],
      [12, 0.5, 120, 480],
      [13, 1.5, 400, 150],
    ] as const) {
      const { labels, scores } = binormal(new Random(seed), m, n, d);
      const boot = bootstrapIntervals(labels, scores, { resamples: 4000, seed });
      const dl = delong(labels, [scores]);
      const delongSe = Math.sqrt(dl.cov[0]![0]!);
      const hm = hanleyMcNeil(dl.auc[0]!, m, n);
      assert.ok(Math.abs(dl.auc[0]! - boot.rocAuc.estimate) < 1e-12);
      assert.ok(Math.abs(boot.rocAuc.se / delongSe - 1) < 0.05, `d=${d}: bootstrap SE ${boot.rocAuc.se.toFixed(5)} vs DeLong ${delongSe.toFixed(5)}`);
      // Hanley & McNeil assume exponential score distributions: for binormal scores they are an
      // approximation, a few percent low at moderate AUC and up to a fifth low at high AUC.
      console.log(`d=${d}, ${m}/${n}: bootstrap SE ${boot.rocAuc.se.toFixed(5)}, DeLong ${delongSe.toFixed(5)}, Hanley-McNeil ${hm.toFixed(5)}`);
      assert.ok(Math.abs(boot.rocAuc.se / hm - 1) < 0.2, `d=${d}: bootstrap SE ${boot.rocAuc.se.toFixed(5)} vs Hanley-McNeil ${hm.toFixed(5)}`);
      // The percentile interval is about estimate +- 1.96 SE when the AUC is far from 1.
      assert.ok(Math.abs((boot.rocAuc.upper - boot.rocAuc.lower) / (2 * 1.96 * delongSe) - 1) < 0.12);
    }
  });

  it('covers the true AUC about 95% of the time, with a standard error near the spread of the estimates', () => {
    const truth = normalCdf(1 / Math.SQRT2);
    const r = new Random(99);
    let covered = 0;
    const estimates: number[] = [];
    const ses: number[] = [];
    const reps = 300;
    for (let k = 0; k < reps; k++) {
      const { labels, scores } = binormal(r, 80, 120, 1);
      const b = bootstrapIntervals(labels, scores, { resamples: 400, seed: k });
      if (b.rocAuc.lower <= truth && truth <= b.rocAuc.upper) covered++;
      estimates.push(b.rocAuc.estimate);
      ses.push(b.rocAuc.se);
    }
    const coverage = covered / reps;
    console.log(`coverage of the true AUC ${truth.toFixed(4)}: ${coverage}`);
    assert.ok(coverage > 0.9 && coverage < 0.985, `coverage ${coverage}`);
    const mean = estimates.reduce((a, b) => a + b, 0) / reps;
    const spread = Math.sqrt(estimates.reduce((a, x) => a + (x - mean) ** 2, 0) / (reps - 1));
    const meanSe = ses.reduce((a, b) => a + b, 0) / reps;
    assert.ok(Math.abs(meanSe / spread - 1) < 0.15, `mean bootstrap SE ${meanSe.toFixed(4)} vs the estimates' spread ${spread.toFixed(4)}`);
  });

  it('has the standard error of the Brier score that the mean of squared errors has', () => {
    const r = new Random(21);
    const p = Array.from({ length: 2000 }, () => r.next() * 0.6);
    const labels = p.map((x) => (r.bernoulli(x) ? 1 : 0));
    const b = bootstrapIntervals(labels, p, { resamples: 3000, seed: 2 });
    const sq = p.map((x, i) => (x - labels[i]!) ** 2);
    const mean = sq.reduce((a, x) => a + x, 0) / sq.length;
    const se = Math.sqrt(sq.reduce((a, x) => a + (x - mean) ** 2, 0) / (sq.length - 1) / sq.length);
    assert.ok(Math.abs(b.brier.se / se - 1) < 0.08, `bootstrap ${b.brier.se} vs analytic ${se}`);
  });

  it("compares a challenger with the champion on the same resamples: the difference's SE is DeLong's paired one", () => {
    const r = new Random(5);
    const { labels, scores } = binormal(r, 250, 350, 1);
    const champion = scores.map((s) => s + r.normal(0, 0.8));
    const paired = pairedBootstrap(labels, scores, champion, { resamples: 4000, seed: 3 });
    const dl = delong(labels, [scores, champion]);
    const diffSe = Math.sqrt(dl.cov[0]![0]! + dl.cov[1]![1]! - 2 * dl.cov[0]![1]!);
    assert.ok(Math.abs(paired.difference.rocAuc.estimate - (dl.auc[0]! - dl.auc[1]!)) < 1e-12);
    console.log(`paired difference SE: bootstrap ${paired.difference.rocAuc.se.toFixed(5)}, DeLong ${diffSe.toFixed(5)}`);
    assert.ok(Math.abs(paired.difference.rocAuc.se / diffSe - 1) < 0.1, `bootstrap ${paired.difference.rocAuc.se} vs DeLong ${diffSe}`);
    // Pairing matters: the difference is far tighter than two independent intervals would say.
    assert.ok(paired.difference.rocAuc.se < 0.8 * Math.hypot(paired.challenger.rocAuc.se, paired.champion.rocAuc.se));
    assert.ok(paired.difference.rocAuc.lower > 0, 'the champion is the challenger plus noise: the challenger is better');
    // A model against itself: exactly no difference.
    const self = pairedBootstrap(labels, scores, scores, { resamples: 200 });
    assert.deepEqual([self.difference.rocAuc.lower, self.difference.rocAuc.upper, self.difference.brier.se], [0, 0, 0]);
  });

  it('refuses what has no interval: one class, mismatched lengths, non-finite scores, silly settings', () => {
    assert.throws(() => bootstrapIntervals([1, 1, 1], [0.1, 0.2, 0.3]), /one class only/);
    assert.throws(() => bootstrapIntervals([1, 0], [0.1]), /2 labels but 1/);
    assert.throws(() => bootstrapIntervals([1, 0], [0.1, Number.NaN]), /finite/);
    assert.throws(() => bootstrapIntervals([1, 0], [0.1, 0.2], { resamples: 5 }), /resamples/);
    assert.throws(() => bootstrapIntervals([1, 0], [0.1, 0.2], { level: 95 }), /level/);
    assert.throws(() => bootstrapIntervals([2, 0], [0.1, 0.2]), /labels are 0 or 1/);
  });

  it('interpolates quantiles as R does (type 7)', () => {
    // R: quantile(c(1, 2, 4, 8), c(0.025, 0.5, 0.975)) = 1.075, 3.000, 7.700
    const q = [0.025, 0.5, 0.975].map((p) => quantile([1, 2, 4, 8], p));
    assert.deepEqual(
      q.map((x) => Number(x.toFixed(3))),
      [1.075, 3, 7.7],
    );
  });
});
