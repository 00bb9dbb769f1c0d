import { InputError } from '../errors.js';
import { chiSquareSf, normalCdf, normalQuantile, tCdf, tQuantile } from './distributions.js';

/**
 * Two-sample inference on per-user values, from sufficient statistics (aggregate in the database,
 * infer here). One rule for degenerate input, everywhere: an arm with fewer than 2 users, a
 * standard error of 0 (no variance in either arm), or, for relative lift, a control mean of 0,
 * gives no estimate (`undefined` estimate, p-value and interval) and a `reason`; never a number
 * that looks meaningful.
 */
export interface Sums {
  n: number;
  sum: number;
  sumSquares: number;
}

/** Count, mean and sample variance of a metric in one arm. */
export interface Moments {
  n: number;
  mean: number;
  /** Sample variance (n - 1 in the denominator). */
  variance: number;
}

/**
 * Mean and sample variance from sufficient statistics (n, sum, sum of squares).
 *
 * @example
 * ```ts
 * const m = moments({ n: 4, sum: 10, sumSquares: 30 }); // mean 2.5, variance 5/3
 * ```
 */
export function moments(s: Sums): Moments {
  if (s.n < 0 || !Number.isFinite(s.sum) || !Number.isFinite(s.sumSquares)) throw new InputError(`bad sufficient statistics: ${JSON.stringify(s)}`);
  const mean = s.n > 0 ? s.sum / s.n : 0;
  const variance = s.n > 1 ? Math.max(0, (s.sumSquares - s.n * mean * mean) / (s.n - 1)) : 0;
  return { n: s.n, mean, variance };
}

/** An estimated difference (absolute or relative) with its standard error, p-value and confidence interval. */
export interface Estimate {
  /** Treatment minus control (absolute), or treatment / control - 1 (relative). */
  estimate?: number;
  se?: number;
  pValue?: number;
  ci?: [number, number];
  /** Degrees of freedom of the Welch test (absolute differences). */
  df?: number;
  reason?: string;
}

const noEstimate = (reason: string): Estimate => ({ reason });

function degenerate(a: Moments, b: Moments): string | undefined {
  if (a.n < 2 || b.n < 2) return `an arm has fewer than 2 users (${a.n} and ${b.n})`;
  if (a.variance === 0 && b.variance === 0) return 'no variance in either arm';
  return undefined;
}

/**
 * Welch's t-test for the difference of means (unequal variances; Welch 1947, with the
 * Welch-Satterthwaite degrees of freedom), two-sided, and its 1 - alpha confidence interval.
 *
 * @example
 * ```ts
 * const diff = welch(moments({ n: 1000, sum: 100, sumSquares: 100 }), moments({ n: 1000, sum: 120, sumSquares: 120 }));
 * console.log(diff.estimate, diff.pValue);
 * ```
 */
export function welch(control: Moments, treatment: Moments, alpha = 0.05): Estimate {
  const why = degenerate(control, treatment);
  if (why) return noEstimate(why);
  const va = control.variance / control.n;
  const vb = treatment.variance / treatment.n;
  const se = Math.sqrt(va + vb);
  const df = (va + vb) ** 2 / ((va * va) / (control.n - 1) + (vb * vb) / (treatment.n - 1));
  const estimate = treatment.mean - control.mean;
  const t = estimate / se;
  const pValue = 2 * (1 - tCdf(Math.abs(t), df));
  const q = tQuantile(1 - alpha / 2, df);
  return { estimate, se, df, pValue, ci: [estimate - q * se, estimate + q * se] };
}

/**
 * Relative lift, treatment / control - 1, with its delta-method standard error (the variance of a
 * ratio of independent means: Var(B)/A^2 + B^2 Var(A)/A^4, each Var the variance of the mean) and
 * a normal interval.
 *
 * @example
 * ```ts
 * const lift = relativeLift(moments({ n: 1000, sum: 100, sumSquares: 100 }), moments({ n: 1000, sum: 120, sumSquares: 120 }));
 * console.log(lift.estimate, lift.ci);
 * ```
 */
export function relativeLift(control: Moments, treatment: Moments, alpha = 0.05): Estimate {
  const why = degenerate(control, treatment);
  if (why) return noEstimate(why);
  if (control.mean === 0) return noEstimate('the control mean is 0: a relative lift is undefined');
  const a = control.mean;
  const b = treatment.mean;
  const va = control.variance / control.n;
  const vb = treatment.variance / treatment.n;
  const se = Math.sqrt(vb / (a * a) + (b * b * va) / a ** 4);
  const estimate = b / a - 1;
  const z = normalQuantile(1 - alpha / 2);
  const pValue = 2 * (1 - normalCdf(Math.abs(estimate / se)));
  return { estimate, se, pValue, ci: [estimate - z * se, estimate + z * se] };
}

/**
 * Sample ratio mismatch: a chi-square goodness-of-fit test of the users per arm against the
 * weights. A small p-value (GrowthBook and others use 0.001) means assignment or logging is broken
 * and no result of the experiment can be trusted.
 *
 * @example
 * ```ts
 * const { pValue } = sampleRatioMismatch([5030, 4970], [0.5, 0.5]);
 * ```
 */
export function sampleRatioMismatch(counts: readonly number[], weights: readonly number[]): { pValue: number; chiSquare: number } {
  if (counts.length !== weights.length || counts.length < 2)
    throw new InputError(`SRM needs a count and a weight per arm (got ${counts.length} counts, ${weights.length} weights)`);
  const total = counts.reduce((s, c) => s + c, 0);
  const wsum = weights.reduce((s, w) => s + w, 0);
  if (total === 0) return { pValue: 1, chiSquare: 0 };
  let chiSquare = 0;
  counts.forEach((c, i) => {
    const expected = (total * weights[i]!) / wsum;
    if (expected > 0) chiSquare += (c - expected) ** 2 / expected;
  });
  return { chiSquare, pValue: chiSquareSf(chiSquare, counts.length - 1) };
}

/**
 * Holm's step-down adjustment (Holm 1979): adjusted p-values, in the input order.
 *
 * @example
 * ```ts
 * holm([0.01, 0.04, 0.03]); // [0.03, 0.06, 0.06]
 * ```
 */
export function holm(pValues: readonly number[]): number[] {
  const m = pValues.length;
  const order = pValues.map((p, i) => [p, i] as const).sort((x, y) => x[0] - y[0]);
  const out = new Array<number>(m);
  let running = 0;
  order.forEach(([p, i], k) => {
    running = Math.max(running, Math.min(1, (m - k) * p));
    out[i] = running;
  });
  return out;
}

/**
 * Benjamini-Hochberg step-up adjustment (1995), controlling the false discovery rate.
 *
 * @example
 * ```ts
 * benjaminiHochberg([0.01, 0.04, 0.03]); // [0.03, 0.04, 0.04]
 * ```
 */
export function benjaminiHochberg(pValues: readonly number[]): number[] {
  const m = pValues.length;
  const order = pValues.map((p, i) => [p, i] as const).sort((x, y) => x[0] - y[0]);
  const out = new Array<number>(m);
  let running = 1;
  for (let k = m - 1; k >= 0; k--) {
    const [p, i] = order[k]!;
    running = Math.min(running, Math.min(1, (m / (k + 1)) * p));
    out[i] = running;
  }
  return out;
}
