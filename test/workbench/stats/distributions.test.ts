import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InputError } from '../../../src/workbench/errors.js';
import { chiSquareSf, logGamma, normalCdf, normalQuantile, normalSf, tCdf, tQuantile, tSf } from '../../../src/workbench/stats/distributions.js';

const near = (got: number, want: number, tol = 1e-12) => assert.ok(Math.abs(got - want) <= tol * Math.max(1, Math.abs(want)), `${got} vs ${want}`);

describe('distributions against published table values and closed forms', () => {
  it('log-gamma: ln Γ(n) = ln (n-1)!, ln Γ(1/2) = ln √π', () => {
    near(logGamma(10), Math.log(362880));
    near(logGamma(0.5), 0.5 * Math.log(Math.PI));
    near(logGamma(171), 706.5730622457874, 1e-13);
  });

  it('the standard normal CDF and quantile', () => {
    near(normalCdf(1.959963984540054), 0.975);
    near(normalCdf(-1), 0.15865525393145707);
    near(normalCdf(3), 0.9986501019683699);
    near(normalCdf(-8), 6.220960574271785e-16, 1e-9);
    near(normalQuantile(0.975), 1.959963984540054);
    near(normalQuantile(0.8), 0.8416212335729143);
    near(normalQuantile(0.05), -1.6448536269514729);
    near(normalQuantile(1e-10), -6.361340902404056, 1e-10);
  });

  it("Student's t: closed forms for 1 and 2 degrees of freedom, and table quantiles", () => {
    for (const t of [-3, -0.5, 0.2, 1, 4.5]) {
      near(tCdf(t, 1), 0.5 + Math.atan(t) / Math.PI); // Cauchy
      near(tCdf(t, 2), 0.5 + t / (2 * Math.sqrt(2 + t * t)));
    }
    near(tQuantile(0.975, 10), 2.2281388519649385, 1e-10);
    near(tQuantile(0.975, 30), 2.0422724563012373, 1e-10);
    near(tQuantile(0.995, 5), 4.032142983557536, 1e-10);
    near(tCdf(2.2281388519649385, 10), 0.975, 1e-12);
    near(tQuantile(0.975, 1e9), 1.959963984540054, 1e-9);
  });

  it('chi-square: the 5% critical values of 1, 2 and 3 degrees of freedom, and exp(-x/2) for 2', () => {
    near(chiSquareSf(3.841458820694124, 1), 0.05, 1e-11);
    near(chiSquareSf(5.991464547107979, 2), 0.05, 1e-11);
    near(chiSquareSf(7.814727903251178, 3), 0.05, 1e-11);
    for (const x of [0.1, 1, 7, 30]) near(chiSquareSf(x, 2), Math.exp(-x / 2), 1e-12);
  });

  it('tails come from the complementary functions: exact where 1 - cdf has no digit left', () => {
    // Q(9) and Q(20) (python3: 0.5 * math.erfc(z / math.sqrt(2))); 1 - normalCdf(9) is 0.
    near(normalSf(9), 1.1285884059538422e-19, 1e-12);
    near(normalSf(20), 2.7536241186063314e-89, 1e-12);
    near(normalSf(-1), 0.8413447460685429, 1e-12);
    // Closed forms, written without cancellation: df 1, P(T > t) = atan(1/t) / pi; df 2, 1 / (sqrt(2 + t^2) (sqrt(2 + t^2) + t)).
    for (const t of [3, 1e3, 1e6, 1e9]) {
      near(tSf(t, 1), Math.atan(1 / t) / Math.PI, 1e-12);
      const r = Math.sqrt(2 + t * t);
      near(tSf(t, 2), 1 / (r * (r + t)), 1e-12);
    }
  });

  it('invalid degrees of freedom are an error, not the normal in disguise', () => {
    assert.throws(() => tCdf(1, Number.NaN), InputError);
    assert.throws(() => tCdf(1, 0), InputError);
    assert.throws(() => tQuantile(0.975, Number.NaN), InputError);
    assert.throws(() => tQuantile(1.2, 10), InputError);
    near(tCdf(1, Number.POSITIVE_INFINITY), normalCdf(1));
  });
});
