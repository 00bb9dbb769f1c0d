import { InputError } from '../errors.js';
import { checkProbability, type Estimate } from './two-sample.js';

/**
 * Always-valid confidence intervals (asymptotic confidence sequences; Waudby-Smith, Arbour,
 * Sinha, Kennedy & Ramdas, "Time-uniform central limit theory", 2023; the form GrowthBook uses):
 * for an estimate with variance v after n users in all, s^2 = v n and
 *   halfwidth = s sqrt( 2 (n rho^2 + 1) / (n^2 rho^2) * ln( sqrt(n rho^2 + 1) / alpha ) ),
 *   rho = sqrt( (-2 ln alpha + ln(-2 ln alpha + 1)) / N ),
 * where N (the tuning parameter) is the sample size at which the interval is tightest. The
 * interval holds at every look at once, so results can be watched continuously without inflating
 * false positives. One-sided (GrowthBook's one-sided sequential tests): rho at 2 alpha, and
 * ln(1 + sqrt(n rho^2 + 1) / (2 alpha)) in place of the logarithm.
 *
 * @example
 * ```ts
 * const halfwidth = sequentialHalfwidth(0.25, 1000); // at alpha 0.05
 * ```
 */
export function sequentialHalfwidth(variance: number, n: number, alpha = 0.05, tuning = 5000, rhoAlpha = alpha): number {
  const rho2 = rhoSquared(rhoAlpha, tuning);
  return Math.sqrt(variance * n) * Math.sqrt(((2 * (n * rho2 + 1)) / (n * n * rho2)) * Math.log(Math.sqrt(n * rho2 + 1) / alpha));
}

/** The one-sided halfwidth (the distance from the estimate to the interval's one finite end). */
function oneSidedHalfwidth(variance: number, n: number, alpha: number, tuning: number): number {
  const rho2 = rhoSquared(2 * alpha, tuning);
  return Math.sqrt(variance * n) * Math.sqrt(((2 * (n * rho2 + 1)) / (n * n * rho2)) * Math.log1p(Math.sqrt(n * rho2 + 1) / (2 * alpha)));
}

function rhoSquared(alpha: number, tuning: number): number {
  if (!(tuning > 0)) throw new InputError(`the sequential tuning parameter must be a positive sample size, not ${tuning}`);
  return (-2 * Math.log(alpha) + Math.log(-2 * Math.log(alpha) + 1)) / tuning;
}

/**
 * An estimate (absolute or relative, with its standard error) made always valid: the interval
 * widened to the confidence sequence, and the p-value the smallest alpha whose sequence excludes 0
 * (rho kept at the experiment's alpha), in closed form: for two sides
 *   p = min(1, sqrt(n rho^2 + 1) exp(-rho^2 n (estimate / se)^2 / (2 (n rho^2 + 1))))
 * (GrowthBook's e-value, 1/p); for one side the same inversion of the one-sided interval.
 *
 * @example
 * ```ts
 * const alwaysValid = sequential(relativeLift(moments(control), moments(treatment)), 2000);
 * console.log(alwaysValid.ci);
 * ```
 */
export function sequential(estimate: Estimate, n: number, alpha = 0.05, tuning = 5000, alternative: 'two-sided' | 'greater' | 'less' = 'two-sided'): Estimate {
  checkProbability(alpha, 'alpha');
  if (estimate.estimate === undefined || estimate.se === undefined) return estimate;
  if (!(n > 0)) throw new InputError(`a sequential interval needs the users so far (n > 0), not ${n}`);
  const e = estimate.estimate;
  const variance = estimate.se ** 2;
  // The fixed-horizon degrees of freedom do not apply to the confidence sequence.
  const rest: Estimate = { ...estimate };
  delete rest.df;
  if (alternative === 'two-sided') {
    const half = sequentialHalfwidth(variance, n, alpha, tuning);
    const rho2 = rhoSquared(alpha, tuning);
    const pValue = Math.min(1, Math.sqrt(n * rho2 + 1) * Math.exp((-rho2 * n * (e * e)) / variance / (2 * (n * rho2 + 1))));
    return { ...rest, ci: [e - half, e + half], pValue };
  }
  const half = oneSidedHalfwidth(variance, n, alpha, tuning);
  const rho2 = rhoSquared(2 * alpha, tuning);
  // The finite end passes 0 at alpha = sqrt(n rho^2 + 1) / (2 expm1(L)), L = rho^2 n (e/se)^2 / (2 (n rho^2 + 1)), when e is on the tested side.
  const towards = alternative === 'greater' ? e : -e;
  const L = (rho2 * n * (e * e)) / variance / (2 * (n * rho2 + 1));
  const pValue = towards > 0 ? Math.min(1, Math.sqrt(n * rho2 + 1) / (2 * Math.expm1(L))) : 1;
  const ci: [number, number] = alternative === 'greater' ? [e - half, Number.POSITIVE_INFINITY] : [Number.NEGATIVE_INFINITY, e + half];
  return { ...rest, ci, pValue };
}
