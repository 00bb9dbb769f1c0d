import { type Moments } from './two-sample.js';

/**
 * CUPED (Deng, Xu, Kohavi & Walker, WSDM 2013): a metric Y adjusted with its pre-exposure value X,
 * Y - theta (X - mean X), with theta = cov(X, Y) / var(X) pooled over the arms (so the same
 * adjustment applies to every arm and the difference stays unbiased). The adjusted variance is
 * var(Y) (1 - rho^2) when theta is the pooled one: what the pre-period correlation predicts.
 * Works from per-arm sufficient statistics, as the pipeline keeps them.
 */
export interface CovariateSums {
  n: number;
  sumY: number;
  sumY2: number;
  sumX: number;
  sumX2: number;
  sumXY: number;
}

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
export function cuped(arms: readonly CovariateSums[]): CupedResult {
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
    covXY += a.sumXY - a.n * mx * my;
    varX += a.sumX2 - a.n * mx * mx;
    varY += a.sumY2 - a.n * my * my;
    dof += a.n - 1;
  }
  const theta = varX > 0 ? covXY / varX : 0;
  const meanX = pooled.n > 0 ? pooled.sumX / pooled.n : 0;
  const adjusted = arms.map((a): Moments => {
    if (a.n === 0) return { n: 0, mean: 0, variance: 0 };
    const mx = a.sumX / a.n;
    const my = a.sumY / a.n;
    const vy = a.n > 1 ? (a.sumY2 - a.n * my * my) / (a.n - 1) : 0;
    const vx = a.n > 1 ? (a.sumX2 - a.n * mx * mx) / (a.n - 1) : 0;
    const cxy = a.n > 1 ? (a.sumXY - a.n * mx * my) / (a.n - 1) : 0;
    return { n: a.n, mean: my - theta * (mx - meanX), variance: Math.max(0, vy + theta * theta * vx - 2 * theta * cxy) };
  });
  const pooledVarY = dof > 0 ? varY / dof : 0;
  const pooledAdjusted = dof > 0 ? (varY - 2 * theta * covXY + theta * theta * varX) / dof : 0;
  return { theta, arms: adjusted, varianceReduction: pooledVarY > 0 ? 1 - pooledAdjusted / pooledVarY : 0 };
}
