import { InputError } from '../errors.js';
import { infer, welch, welchDf, type Estimate, type Moments, type TestOptions } from './two-sample.js';

/**
 * CUPED (Deng, Xu, Kohavi & Walker, WSDM 2013): a metric Y adjusted with its pre-exposure value X,
 * Y - theta (X - mean X), with theta = cov(X, Y) / var(X) pooled over the arms (so the same
 * adjustment applies to every arm and the difference stays unbiased). The adjusted variance is
 * var(Y) (1 - rho^2) when theta is the pooled one: what the pre-period correlation predicts.
 * Works from per-arm sufficient statistics, as the pipeline keeps them.
 *
 * Two conventions for theta, both standard: `within` (default) pools each arm's (co)variances
 * around its own means, so a true effect on Y cannot leak into theta; `joint` (GrowthBook's) takes
 * the (co)variances of both arms' sums together, as one sample.
 */
export interface CovariateSums {
  n: number;
  /** Sums of (Y - shiftY), (Y - shiftY)^2, (X - shiftX), (X - shiftX)^2 and their product (shifts default 0). */
  sumY: number;
  sumY2: number;
  sumX: number;
  sumX2: number;
  sumXY: number;
  /** References the sums are taken from: values near the means keep the variances' precision at large means. Every arm has the same. */
  shiftY?: number;
  shiftX?: number;
}

/** How CUPED's theta is estimated: within arms, pooled (default), or from both arms' joint sums (GrowthBook); or a given number. */
export type CupedTheta = 'within' | 'joint' | number;

/** What `cuped` returns: the pooled theta, each arm's adjusted moments and the variance reduction. */
export interface CupedResult {
  theta: number;
  /** Each arm's adjusted moments, in the input order. */
  arms: Moments[];
  /** Variance of Y removed, pooled: 1 - var(adjusted) / var(Y). */
  varianceReduction: number;
}

/**
 * CUPED (Deng et al. 2013): each arm's metric adjusted by its pre-exposure covariate, with one pooled theta; less variance, same expected lift.
 *
 * @example
 * ```ts
 * const control = { n: 1000, sumY: 520, sumY2: 900, sumX: 480, sumX2: 800, sumXY: 600 };
 * const treatment = { n: 1000, sumY: 560, sumY2: 950, sumX: 490, sumX2: 810, sumXY: 620 };
 * console.log(cuped([control, treatment]));
 * ```
 */
export function cuped(arms: readonly CovariateSums[], theta: CupedTheta = 'within'): CupedResult {
  for (const a of arms) {
    if (
      !(Number.isInteger(a.n) && a.n >= 0) ||
      ![a.sumY, a.sumY2, a.sumX, a.sumX2, a.sumXY, a.shiftY ?? 0, a.shiftX ?? 0].every(Number.isFinite) ||
      a.sumY2 < 0 ||
      a.sumX2 < 0
    )
      throw new InputError(`bad CUPED sufficient statistics: ${JSON.stringify(a)}`);
  }
  // Every arm's sums from the same shifts (those of the first arm with users): re-centred exactly where they differ.
  const ref = arms.find((a) => a.n > 0) ?? arms[0];
  const shiftY = ref?.shiftY ?? 0;
  const shiftX = ref?.shiftX ?? 0;
  return cupedOf(
    arms.map((a) => recenter(a, shiftY, shiftX)),
    theta,
    shiftY,
  );
}

/** The same sums taken from other shifts: sum (v - k') = sum (v - k) + n (k - k'), and so on for the squares and the product. */
function recenter(a: CovariateSums, ky: number, kx: number): CovariateSums {
  const dy = (a.shiftY ?? 0) - ky;
  const dx = (a.shiftX ?? 0) - kx;
  if (dy === 0 && dx === 0) return a;
  return {
    n: a.n,
    sumY: a.sumY + a.n * dy,
    sumY2: a.sumY2 + 2 * dy * a.sumY + a.n * dy * dy,
    sumX: a.sumX + a.n * dx,
    sumX2: a.sumX2 + 2 * dx * a.sumX + a.n * dx * dx,
    sumXY: a.sumXY + dx * a.sumY + dy * a.sumX + a.n * dx * dy,
    shiftY: ky,
    shiftX: kx,
  };
}

function cupedOf(arms: readonly CovariateSums[], convention: CupedTheta, shiftY: number): CupedResult {
  const pooled = arms.reduce(
    (p, a) => ({ n: p.n + a.n, sumY: p.sumY + a.sumY, sumY2: p.sumY2 + a.sumY2, sumX: p.sumX + a.sumX, sumX2: p.sumX2 + a.sumX2, sumXY: p.sumXY + a.sumXY }),
    { n: 0, sumY: 0, sumY2: 0, sumX: 0, sumX2: 0, sumXY: 0 },
  );
  // Within-arm (co)variances, pooled, so that a true effect on Y does not leak into theta.
  let covXY = 0;
  let varX = 0;
  let varY = 0;
  let dof = 0;
  for (const a of arms) {
    if (a.n < 2) continue;
    const mx = a.sumX / a.n;
    const my = a.sumY / a.n;
    covXY += a.sumXY - a.sumX * my;
    varX += a.sumX2 - a.sumX * mx;
    varY += a.sumY2 - a.sumY * my;
    dof += a.n - 1;
  }
  // The means below are of the deviations from the shifts: (co)variances and mean differences do not depend on them.
  const meanX = pooled.n > 0 ? pooled.sumX / pooled.n : 0;
  let theta = varX > 0 ? covXY / varX : 0;
  if (typeof convention === 'number') {
    if (!Number.isFinite(convention)) throw new InputError(`a given CUPED theta must be a finite number, not ${convention}`);
    theta = convention;
  } else if (convention === 'joint') {
    const meanY = pooled.n > 0 ? pooled.sumY / pooled.n : 0;
    const jointVarX = pooled.sumX2 - pooled.sumX * meanX;
    theta = jointVarX > 0 ? (pooled.sumXY - pooled.sumX * meanY) / jointVarX : 0;
  }
  const adjusted = arms.map((a): Moments => {
    if (a.n === 0) return { n: 0, mean: 0, variance: 0 };
    const mx = a.sumX / a.n;
    const my = a.sumY / a.n;
    const vy = a.n > 1 ? (a.sumY2 - a.sumY * my) / (a.n - 1) : 0;
    const vx = a.n > 1 ? (a.sumX2 - a.sumX * mx) / (a.n - 1) : 0;
    const cxy = a.n > 1 ? (a.sumXY - a.sumX * my) / (a.n - 1) : 0;
    return { n: a.n, mean: shiftY + my - theta * (mx - meanX), variance: Math.max(0, vy + theta * theta * vx - 2 * theta * cxy) };
  });
  // The variance removed is measured within arms under either convention.
  const pooledVarY = dof > 0 ? varY / dof : 0;
  const pooledAdjusted = dof > 0 ? (varY - 2 * theta * covXY + theta * theta * varX) / dof : 0;
  return { theta, arms: adjusted, varianceReduction: pooledVarY > 0 ? 1 - pooledAdjusted / pooledVarY : 0 };
}

/**
 * The CUPED-adjusted difference of two arms (control first), as GrowthBook's engine reads it:
 * absolute, the difference of the adjusted means by Welch's test; relative, that difference over
 * the control's unadjusted |mean|, with the delta-method variance of that ratio (gbstats'
 * `frequentist_variance_relative_cuped`): per arm, the adjusted variance over n, and for the
 * control the covariance of its mean with its covariate's in the denominator's term. t at the
 * Welch degrees of freedom of the adjusted variances (the normal with `distribution: 'z'`).
 *
 * @example
 * ```ts
 * const control = { n: 1000, sumY: 520, sumY2: 900, sumX: 480, sumX2: 800, sumXY: 600 };
 * const treatment = { n: 1000, sumY: 560, sumY2: 950, sumX: 490, sumX2: 810, sumXY: 620 };
 * const lift = cupedDifference(control, treatment, { relative: true });
 * ```
 */
export function cupedDifference(
  control: CovariateSums,
  treatment: CovariateSums,
  options: { theta?: CupedTheta; relative?: boolean } & TestOptions = {},
): Estimate & { theta: number; varianceReduction: number } {
  const both = cupedDifferences(control, treatment, options);
  const extra = { theta: both.theta, varianceReduction: both.varianceReduction };
  return { ...(options.relative ? both.relative : both.absolute), ...extra };
}

/** Both readings of the CUPED-adjusted difference from one adjustment (what the experiment's results show side by side). */
export interface CupedDifferences {
  absolute: Estimate;
  relative: Estimate;
  theta: number;
  varianceReduction: number;
}

/**
 * The absolute and the relative CUPED-adjusted difference at once (see `cupedDifference`): one
 * theta, one adjustment and one Welch test shared by both readings.
 */
export function cupedDifferences(control: CovariateSums, treatment: CovariateSums, options: { theta?: CupedTheta } & TestOptions = {}): CupedDifferences {
  const res = cuped([control, treatment], options.theta ?? 'within');
  const [a, b] = res.arms as [Moments, Moments];
  const extra = { theta: res.theta, varianceReduction: res.varianceReduction };
  const absolute = welch(a, b, options);
  return { absolute, relative: absolute.estimate === undefined ? absolute : relativeOf(control, treatment, a, b, res.theta, options), ...extra };
}

/** The adjusted difference over the control's unadjusted |mean|, given the adjusted moments of both arms. */
function relativeOf(control: CovariateSums, treatment: CovariateSums, a: Moments, b: Moments, t: number, options: TestOptions): Estimate {
  // Unadjusted means and (co)variances of each arm, from the same shifts as the adjusted ones.
  const plain = (s: CovariateSums, shiftY: number) => {
    const my = s.sumY / s.n;
    const mx = s.sumX / s.n;
    return {
      mean: shiftY + my,
      varY: (s.sumY2 - s.sumY * my) / (s.n - 1),
      varX: (s.sumX2 - s.sumX * mx) / (s.n - 1),
      cov: (s.sumXY - s.sumX * my) / (s.n - 1),
    };
  };
  const ca = plain(control, control.shiftY ?? 0);
  const cb = plain(treatment, treatment.shiftY ?? 0);
  if (ca.mean === 0) return { reason: 'the control mean is 0: a relative lift is undefined' };
  const vTreatment = b.variance / (b.n * ca.mean ** 2);
  const vControl = (ca.varY * (cb.mean / ca.mean) ** 2 - (2 * t * ca.cov * cb.mean) / ca.mean + t * t * ca.varX) / (a.n * ca.mean ** 2);
  const se = Math.sqrt(Math.max(0, vTreatment + vControl));
  if (!(se > 0)) return { reason: 'no variance in either arm' };
  return infer((b.mean - a.mean) / Math.abs(ca.mean), se, welchDf(a.variance / a.n, a.n, b.variance / b.n, b.n), options);
}
