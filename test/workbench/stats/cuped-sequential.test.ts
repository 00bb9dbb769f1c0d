import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Random } from '../../../src/workbench/random.js';
import { correlatedSums } from '../../helpers/stats.js';
import { cuped, cupedDifference, cupedDifferences, type CovariateSums } from '../../../src/workbench/stats/cuped.js';
import { sequential, sequentialHalfwidth } from '../../../src/workbench/stats/sequential.js';
import { moments, welch } from '../../../src/workbench/stats/two-sample.js';

/** Users whose metric Y has correlation rho with its pre-period value X; Y is shifted by `effect`. */
const arm = (r: Random, n: number, rho: number, effect = 0): CovariateSums => correlatedSums(r, n, rho, 10 + effect);
const plain = (s: CovariateSums) => moments({ n: s.n, sum: s.sumY, sumSquares: s.sumY2 });
const within = (rate: number, p: number, runs: number) => Math.abs(rate - p) < 3 * Math.sqrt((p * (1 - p)) / runs);

describe('CUPED', () => {
  it('removes the share of variance the pre-period correlation predicts (rho^2)', () => {
    const r = new Random(1);
    for (const rho of [0.3, 0.7, 0.9]) {
      const res = cuped([arm(r, 20_000, rho), arm(r, 20_000, rho, 0.5)]);
      assert.ok(Math.abs(res.varianceReduction - rho * rho) < 0.02, `rho ${rho}: reduction ${res.varianceReduction}`);
      assert.ok(Math.abs(res.theta - rho) < 0.03, `theta ${res.theta}`);
      // The effect estimate stays unbiased: the adjusted difference is near the true 0.5.
      assert.ok(Math.abs(res.arms[1]!.mean - res.arms[0]!.mean - 0.5) < 0.05);
    }
  });

  it('keeps the A/A false-positive rate at 5% and detects a true effect more often (simulation)', () => {
    const r = new Random(2);
    const runs = 1000;
    let aaPlain = 0;
    let aaCuped = 0;
    let hitPlain = 0;
    let hitCuped = 0;
    for (let i = 0; i < runs; i++) {
      const [a, b] = [arm(r, 300, 0.7), arm(r, 300, 0.7)];
      if (welch(plain(a), plain(b)).pValue! < 0.05) aaPlain++;
      const adj = cuped([a, b]).arms;
      if (welch(adj[0]!, adj[1]!).pValue! < 0.05) aaCuped++;
      const [c, d] = [arm(r, 300, 0.7), arm(r, 300, 0.7, 0.3)];
      if (welch(plain(c), plain(d)).pValue! < 0.05) hitPlain++;
      const adj2 = cuped([c, d]).arms;
      if (welch(adj2[0]!, adj2[1]!).pValue! < 0.05) hitCuped++;
    }
    assert.ok(within(aaPlain / runs, 0.05, runs) && within(aaCuped / runs, 0.05, runs), `A/A: plain ${aaPlain / runs}, CUPED ${aaCuped / runs}`);
    assert.ok(hitCuped > hitPlain * 1.2, `detections: plain ${hitPlain}, CUPED ${hitCuped}`);
  });
});

describe('CUPED differences', () => {
  it('both readings from one adjustment are the two single readings, number for number, under either theta', () => {
    const r = new Random(4);
    for (const theta of ['within', 'joint'] as const) {
      const [a, b] = [arm(r, 2000, 0.7), arm(r, 2000, 0.7, 0.3)];
      const both = cupedDifferences(a, b, { theta, alternative: 'greater' });
      const { theta: t1, varianceReduction: v1, ...relative } = cupedDifference(a, b, { theta, alternative: 'greater', relative: true });
      const { theta: t2, varianceReduction: v2, ...absolute } = cupedDifference(a, b, { theta, alternative: 'greater' });
      assert.deepEqual(both, { relative, absolute, theta: t1, varianceReduction: v1 });
      assert.equal(t1, t2);
      assert.equal(v1, v2);
    }
  });
});

describe('always-valid (sequential) intervals', () => {
  it('are wider than the fixed-horizon interval at every n, and shrink as data comes in', () => {
    const v = 4 / 1000;
    for (const n of [100, 1000, 5000, 50_000]) assert.ok(sequentialHalfwidth(v * (1000 / n), n) > 1.96 * Math.sqrt(v * (1000 / n)));
    assert.ok(sequentialHalfwidth(4 / 5000, 10_000) < sequentialHalfwidth(4 / 500, 1000));
  });

  it('keep the false-positive rate at most 5% when an A/A test is checked after every batch, where peeking at the fixed-horizon test does not (simulation)', () => {
    const r = new Random(3);
    const runs = 500;
    const looks = 20;
    let everSequential = 0;
    let everFixed = 0;
    for (let i = 0; i < runs; i++) {
      let a = { n: 0, sum: 0, sumSquares: 0 };
      let b = { n: 0, sum: 0, sumSquares: 0 };
      let seqHit = false;
      let fixHit = false;
      for (let look = 0; look < looks; look++) {
        for (let k = 0; k < 100; k++) {
          const x = r.normal(5, 2);
          const y = r.normal(5, 2);
          a = { n: a.n + 1, sum: a.sum + x, sumSquares: a.sumSquares + x * x };
          b = { n: b.n + 1, sum: b.sum + y, sumSquares: b.sumSquares + y * y };
        }
        const w = welch(moments(a), moments(b));
        if (w.pValue! < 0.05) fixHit = true;
        if (sequential(w, a.n + b.n).pValue! < 0.05) seqHit = true;
      }
      if (seqHit) everSequential++;
      if (fixHit) everFixed++;
    }
    assert.ok(everSequential / runs <= 0.05 + 3 * Math.sqrt((0.05 * 0.95) / runs), `sequential: ${everSequential / runs}`);
    assert.ok(everFixed / runs > 0.12, `peeking at the fixed-horizon test: ${everFixed / runs}`);
  });

  it('stay at most 5% false positives when tuned to a planned size that the looks run far past, two-sided and one-sided (simulation)', () => {
    // The experiment's tuning is its planned users (2 x 500 here): the interval is tightest there,
    // so the early looks are the riskiest; the looks go on to 4x the plan.
    const r = new Random(33);
    const runs = 600;
    const tuning = 1000;
    let twoSided = 0;
    let greater = 0;
    let defaultTuning = 0;
    for (let i = 0; i < runs; i++) {
      let a = { n: 0, sum: 0, sumSquares: 0 };
      let b = { n: 0, sum: 0, sumSquares: 0 };
      const hit = { twoSided: false, greater: false, defaultTuning: false };
      for (let look = 0; look < 40; look++) {
        for (let k = 0; k < 50; k++) {
          const x = r.normal(5, 2);
          const y = r.normal(5, 2);
          a = { n: a.n + 1, sum: a.sum + x, sumSquares: a.sumSquares + x * x };
          b = { n: b.n + 1, sum: b.sum + y, sumSquares: b.sumSquares + y * y };
        }
        const w = welch(moments(a), moments(b));
        const [lo, hi] = sequential(w, a.n + b.n, 0.05, tuning).ci!;
        if (lo > 0 || hi < 0) hit.twoSided = true;
        if (sequential(w, a.n + b.n, 0.05, tuning, 'greater').ci![0] > 0) hit.greater = true;
        if (sequential(w, a.n + b.n).pValue! < 0.05) hit.defaultTuning = true;
      }
      if (hit.twoSided) twoSided++;
      if (hit.greater) greater++;
      if (hit.defaultTuning) defaultTuning++;
    }
    console.log(`A/A over 40 looks: tuned to 1,000 users ${twoSided / runs} (one-sided ${greater / runs}); tuned to 5,000 ${defaultTuning / runs}`);
    const bound = 0.05 + 3 * Math.sqrt((0.05 * 0.95) / runs);
    assert.ok(twoSided / runs <= bound, `two-sided at tuning ${tuning}: ${twoSided / runs}`);
    assert.ok(greater / runs <= bound, `one-sided at tuning ${tuning}: ${greater / runs}`);
    assert.ok(defaultTuning / runs <= bound, `default tuning: ${defaultTuning / runs}`);
    // The tuning moves where the interval is tightest: at the planned 1,000 users it is narrower than at the default's.
    assert.ok(sequentialHalfwidth(4 / 500, 1000, 0.05, 1000) < sequentialHalfwidth(4 / 500, 1000, 0.05, 5000));
  });

  it('give the p-value at which the sequence just excludes 0, consistent with the interval', () => {
    const w = welch({ n: 5000, mean: 10, variance: 4 }, { n: 5000, mean: 10.2, variance: 4 });
    const s = sequential(w, 10_000);
    assert.ok(s.pValue! > w.pValue!, 'always-valid p-values are larger');
    // The sequence's shape (rho) stays the one of the experiment's alpha, 0.05; only the level moves.
    const half = (a: number) => sequentialHalfwidth(w.se! ** 2, 10_000, a, 5000, 0.05);
    assert.ok(w.estimate! - half(s.pValue! * 1.0001) > 0, 'at alpha just above p the interval excludes 0');
    assert.ok(w.estimate! - half(s.pValue! * 0.9999) <= 0, 'just below, it does not');
    assert.ok(s.ci![0] > 0 === s.pValue! < 0.05);
  });
});
