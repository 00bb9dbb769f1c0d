import type { Estimate } from './two-sample.js';

/**
 * Always-valid confidence intervals (asymptotic confidence sequences; Waudby-Smith, Arbour,
 * Sinha, Kennedy & Ramdas, "Time-uniform central limit theory", 2023; the form GrowthBook uses):
 * for an estimate with variance v after n users in all, s^2 = v n and
 *   halfwidth = s sqrt( 2 (n rho^2 + 1) / (n^2 rho^2) * ln( sqrt(n rho^2 + 1) / alpha ) ),
 *   rho = sqrt( (-2 ln alpha + ln(-2 ln alpha + 1)) / N ),
 * where N (the tuning parameter) is the sample size at which the interval is tightest. The
 * interval holds at every look at once, so results can be watched continuously without inflating
 * false positives.
 *
 * @example
 * ```ts
 * const halfwidth = sequentialHalfwidth(0.25, 1000); // at alpha 0.05
 * ```
 */
export function sequentialHalfwidth(variance: number, n: number, alpha = 0.05, tuning = 5000, rhoAlpha = alpha): number {
  // rho is set by the experiment's alpha; inverting for a p-value varies only the alpha in the log.
  const rho = Math.sqrt((-2 * Math.log(rhoAlpha) + Math.log(-2 * Math.log(rhoAlpha) + 1)) / tuning);
  const s2 = variance * n;
  return Math.sqrt(s2) * Math.sqrt(((2 * (n * rho * rho + 1)) / (n * n * rho * rho)) * Math.log(Math.sqrt(n * rho * rho + 1) / alpha));
}

/**
 * An estimate (absolute or relative, with its standard error) made always valid: the interval
 * widened to the confidence sequence, and the p-value the smallest alpha whose sequence excludes 0
 * (found by bisection; 1 when none does).
 *
 * @example
 * ```ts
 * const alwaysValid = sequential(relativeLift(moments(control), moments(treatment)), 2000);
 * console.log(alwaysValid.ci);
 * ```
 */
export function sequential(estimate: Estimate, n: number, alpha = 0.05, tuning = 5000): Estimate {
  if (estimate.estimate === undefined || estimate.se === undefined) return estimate;
  const variance = estimate.se ** 2;
  const half = sequentialHalfwidth(variance, n, alpha, tuning);
  const excludes = (a: number) => Math.abs(estimate.estimate!) > sequentialHalfwidth(variance, n, a, tuning, alpha);
  let pValue = 1;
  if (excludes(1 - 1e-12)) {
    let lo = 1e-300;
    let hi = 1 - 1e-12;
    if (excludes(lo)) pValue = lo;
    else {
      for (let i = 0; i < 200; i++) {
        const mid = Math.sqrt(lo * hi); // geometric: p-values span many orders of magnitude
        if (excludes(mid)) hi = mid;
        else lo = mid;
      }
      pValue = hi;
    }
  }
  return { ...estimate, ci: [estimate.estimate - half, estimate.estimate + half], pValue, df: undefined };
}
