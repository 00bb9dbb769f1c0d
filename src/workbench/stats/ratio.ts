import { InputError } from '../errors.js';
import { normalCdf, normalPdf } from './distributions.js';
import { infer, welchDf, type Estimate, type TestOptions } from './two-sample.js';

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
  /** Sums of (M - shiftM), (M - shiftM)^2, (D - shiftD), (D - shiftD)^2 and their product: deviations keep precision at large means. */
  sumM: number;
  sumM2: number;
  sumD: number;
  sumD2: number;
  sumMD: number;
  shiftM?: number;
  shiftD?: number;
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
  const fields = [s.sumM, s.sumM2, s.sumD, s.sumD2, s.sumMD, s.shiftM ?? 0, s.shiftD ?? 0];
  if (!(Number.isInteger(s.n) && s.n >= 0) || !fields.every(Number.isFinite) || s.sumM2 < 0 || s.sumD2 < 0)
    throw new InputError(`bad ratio sufficient statistics: ${JSON.stringify(s)}`);
  if (s.n < 2) return `an arm has fewer than 2 users (${s.n})`;
  // Deviations from the shifts for the (co)variances, which do not depend on them; the shifts back for the means.
  const dM = s.sumM / s.n;
  const dD = s.sumD / s.n;
  const mM = (s.shiftM ?? 0) + dM;
  const mD = (s.shiftD ?? 0) + dD;
  if (mD === 0) return 'the denominator is 0 in an arm';
  const vM = (s.sumM2 - s.sumM * dM) / (s.n - 1);
  const vD = (s.sumD2 - s.sumD * dD) / (s.n - 1);
  const cMD = (s.sumMD - s.sumM * dD) / (s.n - 1);
  const variance = Math.max(0, (vM / mD ** 2 - (2 * mM * cMD) / mD ** 3 + (mM * mM * vD) / mD ** 4) / s.n);
  return { n: s.n, ratio: mM / mD, variance };
}

/**
 * Difference of two arms' ratios (absolute, or relative: over the control's |ratio|), with a t
 * interval at the Welch degrees of freedom of the two ratio estimates (GrowthBook's convention; `z`
 * in the options for the normal).
 *
 * @example
 * ```ts
 * const lift = ratioDifference(controlSums, treatmentSums, { relative: true }); // revenue per order, relative
 * ```
 */
export function ratioDifference(control: RatioSums, treatment: RatioSums, options: { relative?: boolean } & TestOptions = {}): Estimate {
  const a = ratioMoments(control);
  const b = ratioMoments(treatment);
  if (typeof a === 'string') return { reason: a };
  if (typeof b === 'string') return { reason: b };
  if (a.variance === 0 && b.variance === 0) return { reason: 'no variance in either arm' };
  let estimate: number;
  let se: number;
  if (options.relative) {
    if (a.ratio === 0) return { reason: 'the control ratio is 0: a relative lift is undefined' };
    estimate = (b.ratio - a.ratio) / Math.abs(a.ratio);
    se = Math.sqrt(b.variance / a.ratio ** 2 + (b.ratio ** 2 * a.variance) / a.ratio ** 4);
  } else {
    estimate = b.ratio - a.ratio;
    se = Math.sqrt(a.variance + b.variance);
  }
  return infer(estimate, se, welchDf(a.variance, a.n, b.variance, b.n), options);
}

/**
 * A Bayesian reading of an effect estimated as normal (mean `estimate`, sd `se`; the normal
 * approximation GrowthBook's engine also uses): the chance the treatment is better, and the
 * expected loss of choosing each arm, E[max(0, -delta)] = s phi(mu/s) - mu Phi(-mu/s) for the
 * treatment and E[max(0, delta)] for the control, with mu and s the posterior's mean and sd.
 * Without `prior` the prior is flat (the posterior is the estimate); with a proper normal prior
 * N(mean, variance) on the effect (GrowthBook's `GaussianPrior`) the posterior is the conjugate
 * one: precision 1/se^2 + 1/variance, mean the precision-weighted average. `better: 'lower'` for
 * metrics where less is better.
 *
 * @example
 * ```ts
 * const { chanceToWin } = bayesianSummary(relativeLift(moments(control), moments(treatment)));
 * ```
 */
export function bayesianSummary(
  e: Estimate,
  better: 'higher' | 'lower' = 'higher',
  prior?: { mean: number; variance: number },
): { chanceToWin?: number; expectedLossTreatment?: number; expectedLossControl?: number; posterior?: { mean: number; sd: number }; reason?: string } {
  if (e.estimate === undefined || e.se === undefined || !(e.se > 0)) return { reason: e.reason ?? 'no estimate' };
  if (prior && !(Number.isFinite(prior.mean) && prior.variance > 0 && Number.isFinite(prior.variance)))
    throw new InputError(`a proper prior has a finite mean and a finite variance > 0, not ${JSON.stringify(prior)}`);
  const precision = 1 / e.se ** 2 + (prior ? 1 / prior.variance : 0);
  const mean = (e.estimate / e.se ** 2 + (prior ? prior.mean / prior.variance : 0)) / precision;
  const s = Math.sqrt(1 / precision);
  const mu = better === 'higher' ? mean : -mean;
  const z = mu / s;
  return {
    posterior: { mean, sd: s },
    chanceToWin: normalCdf(z),
    expectedLossTreatment: s * normalPdf(z) - mu * normalCdf(-z),
    expectedLossControl: s * normalPdf(z) + mu * normalCdf(z),
  };
}
