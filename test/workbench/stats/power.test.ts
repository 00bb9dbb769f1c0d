import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InputError } from '../../../src/workbench/errors.js';
import { Random } from '../../../src/workbench/random.js';
import { powerForSize, sampleSizePerArm } from '../../../src/workbench/stats/power.js';
import { proportionMoments, relativeLift, twoProportionZTest, type Moments } from '../../../src/workbench/stats/two-sample.js';

const near = (got: number, want: number, tol = 1e-9) => assert.ok(Math.abs(got - want) <= tol * Math.max(1, Math.abs(want)), `${got} vs ${want}`);
// Typed in from tables, not computed by the engine: z(0.975), z(0.95) and z(0.8).
const Z975 = 1.959963984540054;
const Z95 = 1.6448536269514722;
const Z80 = 0.8416212335729143;

describe('sample sizes', () => {
  it("conversions: each arm's own binomial variance (unpooled), or the pooled null (Fleiss, R's power.prop.test)", () => {
    // 10% -> 11%: (z + z)^2 (p1 q1 + p2 q2) / delta^2 = 14,748.05; one variance for both arms gave 14,128.
    const unpooled = sampleSizePerArm({ kind: 'conversion', mean: 0.1, mde: 0.1 });
    assert.equal(unpooled, Math.ceil((Z975 + Z80) ** 2 * ((0.1 * 0.9 + 0.11 * 0.89) / 0.01 ** 2)));
    assert.equal(unpooled, 14749);
    // R's documentation of power.prop.test: p1 = .50, p2 = .75 -> power 0.740 at n = 50, n = 76.7 for power .90.
    near(powerForSize({ kind: 'conversion', mean: 0.5, mde: 0.5, pooled: true, nPerArm: 50 }), 0.74, 0.5e-3 / 0.74);
    assert.equal(sampleSizePerArm({ kind: 'conversion', mean: 0.5, mde: 0.5, pooled: true, power: 0.9 }), 77);
  });

  it('one variance for both arms plans too few users: the power it delivers is 0.76-0.78, not 0.80', () => {
    for (const [p, mde] of [
      [0.1, 0.1],
      [0.05, 0.2],
      [0.3, 0.05],
    ] as const) {
      const oneVariance = Math.ceil((2 * (Z975 + Z80) ** 2 * p * (1 - p)) / (p * mde) ** 2);
      const delivered = powerForSize({ kind: 'conversion', mean: p, mde, nPerArm: oneVariance });
      assert.ok(delivered < 0.795 && delivered > 0.75, `p ${p}, mde ${mde}: ${delivered}`);
      assert.ok(sampleSizePerArm({ kind: 'conversion', mean: p, mde }) > oneVariance);
    }
  });

  it('the relative effect: the z of (m_t - m_c) / |m_c| over its delta-method se, to first order in both estimates', () => {
    // For a > 0 the statistic is f = sqrt(n) (b - a) a / D, D = sqrt(vb a^2 + b^2 va); by hand,
    // df/db = sqrt(n) [a / D - (b - a) a b va / D^3], df/da = sqrt(n) [(b - 2a) / D - (b - a) a^2 vb / D^3].
    const [a, b, va, vb] = [10, 10.5, 16, 16];
    const byHand = (n: number) => {
      const D = Math.sqrt(vb * a * a + b * b * va);
      const f = (Math.sqrt(n) * (b - a) * a) / D;
      const fb = Math.sqrt(n) * (a / D - ((b - a) * a * b * va) / D ** 3);
      const fa = Math.sqrt(n) * ((b - 2 * a) / D - ((b - a) * a * a * vb) / D ** 3);
      const sd = Math.sqrt((fa * fa * va + fb * fb * vb) / n);
      const phi = (x: number) => 0.5 * (1 + erf(x / Math.SQRT2));
      return phi((f - Z975) / sd) + phi((-f - Z975) / sd);
    };
    near(powerForSize({ mean: 10, sd: 4, mde: 0.05, effect: 'relative', nPerArm: 1000 }), byHand(1000), 1e-6);
    const n = sampleSizePerArm({ mean: 10, sd: 4, mde: 0.05, effect: 'relative' });
    assert.ok(byHand(n) >= 0.8 && byHand(n - 1) < 0.8, `${n}: ${byHand(n - 1)}, ${byHand(n)}`);
    // A fixed standard error would plan (z + z)^2 (0.16 + 1.05^2 0.16) / 0.05^2 = 1,057: more than needed, since the se grows with the estimate.
    assert.ok(n < 1057);
    // A decrease is planned as well as an increase.
    assert.ok(sampleSizePerArm({ mean: 10, sd: 4, mde: -0.05, effect: 'relative' }) > 0);
  });

  it('exact two-tailed power: both tails, so a test of no effect has power alpha', () => {
    near(powerForSize({ mean: 10, sd: 4, mde: 1e-9, nPerArm: 100 }), 0.05, 1e-6);
    const n = 50;
    const d = (0.5 * Math.sqrt(n)) / Math.sqrt(2 * 16);
    const phi = (x: number) => 0.5 * (1 + erf(x / Math.SQRT2));
    near(powerForSize({ mean: 10, sd: 4, mde: 0.05, nPerArm: n }), phi(d - Z975) + phi(-d - Z975), 1e-7);
  });
});

describe('one-sided planning', () => {
  const phi = (x: number) => 0.5 * (1 + erf(x / Math.SQRT2));

  it('one tail at z(1 - alpha): the closed form, exact for the difference of means', () => {
    // Power Phi(d - z_{0.95}) with d = delta sqrt(n) / sqrt(2 sd^2); no second tail.
    for (const n of [50, 400]) {
      const d = (0.5 * Math.sqrt(n)) / Math.sqrt(2 * 16);
      near(powerForSize({ mean: 10, sd: 4, mde: 0.05, nPerArm: n, alternative: 'greater' }), phi(d - Z95), 1e-7);
      near(powerForSize({ mean: 10, sd: 4, mde: -0.05, nPerArm: n, alternative: 'less' }), phi(d - Z95), 1e-7);
    }
    // n = ceil((z_{0.95} + z_{0.8})^2 2 sd^2 / delta^2) = ceil(791.35...) per arm, against 1,005 two-sided.
    const oneSided = sampleSizePerArm({ mean: 10, sd: 4, mde: 0.05, alternative: 'greater' });
    assert.equal(oneSided, Math.ceil(((Z95 + Z80) ** 2 * 32) / 0.25));
    assert.equal(oneSided, 792);
    assert.equal(sampleSizePerArm({ mean: 10, sd: 4, mde: -0.05, alternative: 'less' }), 792);
    assert.equal(sampleSizePerArm({ mean: 10, sd: 4, mde: 0.05 }), Math.ceil(((Z975 + Z80) ** 2 * 32) / 0.25));
    // Conversions, each arm its own variance: (z_{0.95} + z_{0.8})^2 (p1 q1 + p2 q2) / delta^2, 10% -> 11%.
    assert.equal(
      sampleSizePerArm({ kind: 'conversion', mean: 0.1, mde: 0.1, alternative: 'greater' }),
      Math.ceil(((Z95 + Z80) ** 2 * (0.09 + 0.11 * 0.89)) / 0.01 ** 2),
    );
  });

  it('a one-sided test away from the effect cannot be planned: an error, not a size', () => {
    assert.throws(() => sampleSizePerArm({ mean: 10, sd: 4, mde: 0.05, alternative: 'less' }), InputError);
    assert.throws(() => powerForSize({ mean: 10, sd: 4, mde: -0.05, alternative: 'greater', nPerArm: 100 }), InputError);
    // A negative mean that rises (mde < 0 of a negative mean) is planned 'greater'.
    assert.ok(sampleSizePerArm({ mean: -10, sd: 4, mde: -0.05, alternative: 'greater', effect: 'relative' }) > 0);
  });

  it('the promised one-sided power is delivered (simulation, seeded): conversion and mean, relative effect, t', () => {
    const runs = 4000;
    const within = (rate: number, what: string) =>
      assert.ok(Math.abs(rate - 0.8) < 3 * Math.sqrt((0.8 * 0.2) / runs), `${what}: detected ${rate} for a target of 0.8`);
    const r = new Random(2025);
    const [p, mde] = [0.1, 0.3];
    const nConversion = sampleSizePerArm({ kind: 'conversion', mean: p, mde, effect: 'relative', alternative: 'greater' });
    assert.ok(nConversion < 0.85 * sampleSizePerArm({ kind: 'conversion', mean: p, mde, effect: 'relative' }));
    const binomial = (n: number, rate: number) => {
      let k = 0;
      for (let i = 0; i < n; i++) if (r.next() < rate) k++;
      return k;
    };
    let detected = 0;
    for (let i = 0; i < runs; i++) {
      const c = proportionMoments({ n: nConversion, conversions: binomial(nConversion, p) });
      const t = proportionMoments({ n: nConversion, conversions: binomial(nConversion, p * (1 + mde)) });
      if (relativeLift(c, t, { alternative: 'greater' }).pValue! < 0.05) detected++;
    }
    within(detected / runs, `conversion, one-sided, ${nConversion} per arm`);
    // A decrease of a mean metric, tested 'less'.
    const nMean = sampleSizePerArm({ mean: 10, sd: 4, mde: -0.05, effect: 'relative', alternative: 'less' });
    const arm = (n: number, mean: number): Moments => {
      let sum = 0;
      let sumSquares = 0;
      for (let i = 0; i < n; i++) {
        const x = r.normal(mean, 4);
        sum += x;
        sumSquares += x * x;
      }
      return { n, mean: sum / n, variance: (sumSquares - (sum * sum) / n) / (n - 1) };
    };
    detected = 0;
    for (let i = 0; i < runs; i++) if (relativeLift(arm(nMean, 10), arm(nMean, 9.5), { alternative: 'less' }).pValue! < 0.05) detected++;
    within(detected / runs, `mean, one-sided, ${nMean} per arm`);
  });
});

/** erf by its Maclaurin series (converges for the small arguments used here): independent of the engine's gamma functions. */
function erf(x: number): number {
  let sum = 0;
  let term = x;
  for (let k = 0; k < 200; k++) {
    sum += term / (2 * k + 1);
    term *= (-x * x) / (k + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

describe('the promised power is delivered (simulation, seeded)', () => {
  const runs = 4000;
  const within = (rate: number, target: number, what: string) =>
    assert.ok(Math.abs(rate - target) < 3 * Math.sqrt((target * (1 - target)) / runs), `${what}: detected ${rate} for a target of ${target}`);
  const binomial = (r: Random, n: number, p: number) => {
    let k = 0;
    for (let i = 0; i < n; i++) if (r.next() < p) k++;
    return k;
  };
  const normalArm = (r: Random, n: number, mean: number, sd: number): Moments => {
    let sum = 0;
    let sumSquares = 0;
    for (let i = 0; i < n; i++) {
      const x = r.normal(mean, sd);
      sum += x;
      sumSquares += x * x;
    }
    return { n, mean: sum / n, variance: (sumSquares - (sum * sum) / n) / (n - 1) };
  };

  it('conversions, absolute effect (unpooled z-test) and relative effect (delta method, t)', () => {
    const r = new Random(2024);
    const [p, mde] = [0.1, 0.3];
    const nAbs = sampleSizePerArm({ kind: 'conversion', mean: p, mde });
    let detected = 0;
    for (let i = 0; i < runs; i++) {
      const test = twoProportionZTest({ n: nAbs, conversions: binomial(r, nAbs, p) }, { n: nAbs, conversions: binomial(r, nAbs, p * (1 + mde)) });
      if (test.pValue! < 0.05) detected++;
    }
    within(detected / runs, 0.8, `conversion, absolute, ${nAbs} per arm`);
    const nRel = sampleSizePerArm({ kind: 'conversion', mean: p, mde, effect: 'relative' });
    assert.ok(nRel > nAbs);
    detected = 0;
    for (let i = 0; i < runs; i++) {
      const c = proportionMoments({ n: nRel, conversions: binomial(r, nRel, p) });
      const t = proportionMoments({ n: nRel, conversions: binomial(r, nRel, p * (1 + mde)) });
      if (relativeLift(c, t).pValue! < 0.05) detected++;
    }
    within(detected / runs, 0.8, `conversion, relative, ${nRel} per arm`);
  });

  it('a mean metric, relative effect', () => {
    const r = new Random(7);
    const n = sampleSizePerArm({ mean: 10, sd: 4, mde: 0.05, effect: 'relative', power: 0.8 });
    let detected = 0;
    for (let i = 0; i < runs; i++) if (relativeLift(normalArm(r, n, 10, 4), normalArm(r, n, 10.5, 4)).pValue! < 0.05) detected++;
    within(detected / runs, 0.8, `mean, relative, ${n} per arm`);
  });
});
