import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExactSum, RollingWindow, SortedValues } from '../../../src/serving/observability/rolling-stats.js';
import { median, robustSpread } from '../../../src/serving/observability/series-detector.js';

/** mulberry32: deterministic uniforms in [0, 1). */
function uniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Value streams of the kinds a detector's residuals take: continuous, heavy ties, mostly zeros (a MAD of 0), signed. */
const STREAMS: Record<string, (u: () => number) => number> = {
  continuous: (u) => (u() - 0.5) * 10 + (u() < 0.01 ? 500 : 0),
  ties: (u) => Math.floor(u() * 4) - 1,
  sparse: (u) => (u() < 0.8 ? 0 : Math.floor(u() * 5) + 0.25),
  tiny: (u) => (u() - 0.5) * 1e-9,
};

describe('rolling order statistics (rolling-stats.ts)', () => {
  for (const [name, draw] of Object.entries(STREAMS)) {
    it(`over a sliding window equal those computed from scratch (${name} values)`, () => {
      for (const capacity of [1, 2, 7, 60]) {
        const u = uniform(capacity * 31 + name.length);
        const w = new RollingWindow(capacity);
        const all: number[] = [];
        for (let i = 0; i < 400; i++) {
          const v = draw(u);
          w.push(v);
          all.push(v);
          const recent = all.slice(-capacity);
          assert.equal(w.size, recent.length);
          const m = median(recent);
          const mad = median(recent.map((x) => Math.abs(x - m)));
          const spread = w.robustSpread();
          if (mad > 0) assert.equal(spread, robustSpread(recent), `${name}, capacity ${capacity}, step ${i}: 1.4826 * MAD, exactly`);
          else {
            // The fallback sums |v - m| in sorted order rather than arrival order: the last bits may differ.
            const reference = robustSpread(recent);
            assert.ok(Math.abs(spread - reference) <= 1e-12 * Math.abs(reference), `${name}, capacity ${capacity}, step ${i}: ${spread} vs ${reference}`);
          }
          const meanAbs = recent.reduce((a, x) => a + Math.abs(x), 0) / recent.length;
          assert.ok(Math.abs(w.meanAbs() - meanAbs) <= 1e-12 * meanAbs, `${name}, capacity ${capacity}, step ${i}: mean |v|`);
        }
      }
    });
  }

  it('the MAD of sorted values is the k-th smallest deviation (checked by brute force, odd and even sizes, ties)', () => {
    const u = uniform(11);
    for (let trial = 0; trial < 300; trial++) {
      const n = 1 + Math.floor(u() * 25);
      const values = Array.from({ length: n }, () => (u() < 0.3 ? 2 : Math.round(u() * 8 * 4) / 4));
      const s = new SortedValues(2);
      for (const v of values) s.insert(v);
      const m = median(values);
      assert.equal(s.median(), m);
      assert.equal(s.medianAbsoluteDeviation(m), median(values.map((v) => Math.abs(v - m))), JSON.stringify(values));
    }
  });

  it('removes one occurrence of a value, duplicates and NaN included', () => {
    const s = new SortedValues(1);
    for (const v of [3, 1, 2, 2, Number.NaN, 5]) s.insert(v);
    s.remove(2);
    s.remove(Number.NaN);
    assert.deepEqual(
      Array.from({ length: s.size }, (_, i) => s.at(i)),
      [1, 2, 3, 5],
    );
  });

  it('keeps the sum of |v| exact: correctly rounded, and back to 0 once the values that made it have left', () => {
    // Python's documented example: sum([.1] * 10) is 0.9999999999999999, math.fsum of it is 1.0.
    const tenth = new ExactSum();
    for (let i = 0; i < 10; i++) tenth.add(0.1);
    assert.equal(tenth.value(), 1);
    const big = new ExactSum();
    for (const v of [1e100, 1, -1e100]) big.add(v);
    assert.equal(big.value(), 1, 'a loop would say 0');
    // A window of zeros after values that do not sum exactly in doubles: exactly 0 (a running sum keeps crumbs).
    const w = new RollingWindow(3);
    for (const v of [0.1, 0.2, 0.7, 1e-17, 0, 0, 0]) w.push(v);
    assert.equal(w.meanAbs(), 0);
    assert.equal(w.robustSpread(), 0);
  });
});
