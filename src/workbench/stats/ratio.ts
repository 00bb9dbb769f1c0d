import { normalCdf, normalPdf, normalQuantile } from './distributions.js';
import type { Estimate } from './two-sample.js';

/**
 * Ratio metrics (revenue per order, errors per session): sum of a numerator over sum of a
 * denominator across an arm's users, whose users are the randomisation unit, so the ratio's
 * variance comes from the delta method on per-user sums (Deng, Knoblich & Lu, "Applying the Delta
 * Method in Metric Analytics", KDD 2018):
 *   Var(M/D) = (1/n) [ Var(M)/mu_D^2 - 2 mu_M Cov(M, D)/mu_D^3 + mu_M^2 Var(D)/mu_D^4 ].
 * Degenerate input follows the engine's one rule: fewer than 2 users in an arm, a denominator mean
 * of 0, or no variance gives no estimate and a reason.
 */
export interface RatioSums {
  n: number;
  sumM: number;
  sumM2: number;
  sumD: number;
  sumD2: number;
  sumMD: number;
}

export interface RatioMoments {
  n: number;
  ratio: number;
  /** Variance of the ratio estimate (already divided by n). */
  variance: number;
}

/**
 * The ratio of sums of an arm (sum M / sum D) and its delta-method variance; a string saying why when it is undefined.
 *
 * @example
 * ```ts
 * const m = ratioMoments({ n: 100, sumM: 250, sumM2: 900, sumD: 100, sumD2: 120, sumMD: 300 });
 * if (typeof m !== 'string') console.log(m.ratio);
 * ```
 */
export function ratioMoments(s: RatioSums): RatioMoments | string {
  if (s.n < 2) return `an arm has fewer than 2 users (${s.n})`;
  const mM = s.sumM / s.n;
  const mD = s.sumD / s.n;
  if (mD === 0) return 'the denominator is 0 in an arm';
  const vM = (s.sumM2 - s.n * mM * mM) / (s.n - 1);
  const vD = (s.sumD2 - s.n * mD * mD) / (s.n - 1);
  const cMD = (s.sumMD - s.n * mM * mD) / (s.n - 1);
  const variance = Math.max(0, (vM / mD ** 2 - (2 * mM * cMD) / mD ** 3 + (mM * mM * vD) / mD ** 4) / s.n);
  return { n: s.n, ratio: mM / mD, variance };
}

/**
 * Difference of two arms' ratios (absolute, or relative to the control's), with a normal interval.
 *
 * @example
 * ```ts
 * const lift = ratioDifference(controlSums, treatmentSums, { relative: true }); // revenue per order, relative
 * ```
 */
export function ratioDifference(control: RatioSums, treatment: RatioSums, options: { relative?: boolean; alpha?: number } = {}): Estimate {
  const a = ratioMoments(control);
  const b = ratioMoments(treatment);
  if (typeof a === 'string') return { reason: a };
  if (typeof b === 'string') return { reason: b };
  if (a.variance === 0 && b.variance === 0) return { reason: 'no variance in either arm' };
  let estimate: number;
  let se: number;
  if (options.relative) {
    if (a.ratio === 0) return { reason: 'the control ratio is 0: a relative lift is undefined' };
    estimate = b.ratio / a.ratio - 1;
    se = Math.sqrt(b.variance / a.ratio ** 2 + (b.ratio ** 2 * a.variance) / a.ratio ** 4);
  } else {
    estimate = b.ratio - a.ratio;
    se = Math.sqrt(a.variance + b.variance);
  }
  const z = normalQuantile(1 - (options.alpha ?? 0.05) / 2);
  return { estimate, se, pValue: 2 * (1 - normalCdf(Math.abs(estimate / se))), ci: [estimate - z * se, estimate + z * se] };
}

/**
 * A Bayesian reading of an effect estimated as normal (mean `estimate`, sd `se`; a flat prior, the
 * normal approximation GrowthBook's engine also uses): the chance the treatment is better, and the
 * expected loss of choosing each arm, E[max(0, -delta)] = se phi(mu/se) - mu Phi(-mu/se) for the
 * treatment and E[max(0, delta)] for the control. `better: 'lower'` for metrics where less is better.
 *
 * @example
 * ```ts
 * const { chanceToWin } = bayesianSummary(relativeLift(moments(control), moments(treatment)));
 * ```
 */
export function bayesianSummary(
  e: Estimate,
  better: 'higher' | 'lower' = 'higher',
): { chanceToWin?: number; expectedLossTreatment?: number; expectedLossControl?: number; reason?: string } {
  if (e.estimate === undefined || e.se === undefined || !(e.se > 0)) return { reason: e.reason ?? 'no estimate' };
  const mu = better === 'higher' ? e.estimate : -e.estimate;
  const s = e.se;
  const z = mu / s;
  return {
    chanceToWin: normalCdf(z),
    expectedLossTreatment: s * normalPdf(z) - mu * normalCdf(-z),
    expectedLossControl: s * normalPdf(z) + mu * normalCdf(z),
  };
}
