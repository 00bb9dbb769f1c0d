import { InputError } from '../errors.js';
import { chiSquareSf, normalQuantile, normalSf, tQuantile, tSf } from './distributions.js';

/**
 * Two-sample inference on per-user values, from sufficient statistics (aggregate in the database,
 * infer here). One rule for degenerate input, everywhere: an arm with fewer than 2 users, a
 * standard error of 0 (no variance in either arm), or, for relative lift, a control mean of 0,
 * gives no estimate (`undefined` estimate, p-value and interval) and a `reason`; never a number
 * that looks meaningful. Invalid input (a negative variance, a NaN) is an `InputError`, never a
 * number either.
 *
 * Conventions (GrowthBook's frequentist engine, gbstats): the relative effect is
 * (m_t - m_c) / |m_c|, so a metric whose values are negative still reads "up is up"; intervals and
 * p-values use Student's t with the Welch-Satterthwaite degrees of freedom, for the relative effect
 * too; a conversion's variance is p (1 - p) (`proportionMoments`).
 */
export interface Sums {
  n: number;
  /** Sum of (value - shift). */
  sum: number;
  /** Sum of (value - shift)^2. */
  sumSquares: number;
  /**
   * The reference the sums are taken from (default 0). Sums of deviations from a value near the
   * mean keep the variance's precision when the mean is large against the spread (mean 1e8,
   * sd 1.2: raw sums of squares leave no correct digit of the variance).
   */
  shift?: number;
}

/** Count, mean and sample variance of a metric in one arm. */
export interface Moments {
  n: number;
  mean: number;
  /** Sample variance (n - 1 in the denominator; p (1 - p) for a proportion). */
  variance: number;
}

/**
 * Mean and sample variance from sufficient statistics (n, sum, sum of squares, optionally of deviations from `shift`).
 *
 * @example
 * ```ts
 * const m = moments({ n: 4, sum: 10, sumSquares: 30 }); // mean 2.5, variance 5/3
 * ```
 */
export function moments(s: Sums): Moments {
  const shift = s.shift ?? 0;
  if (!(Number.isInteger(s.n) && s.n >= 0) || !Number.isFinite(s.sum) || !Number.isFinite(s.sumSquares) || !Number.isFinite(shift) || s.sumSquares < 0)
    throw new InputError(`bad sufficient statistics: ${JSON.stringify(s)}`);
  const d = s.n > 0 ? s.sum / s.n : 0;
  // Rounding can leave the difference a hair below 0 when every value is equal.
  const variance = s.n > 1 ? Math.max(0, (s.sumSquares - s.sum * d) / (s.n - 1)) : 0;
  return { n: s.n, mean: shift + d, variance };
}

/**
 * A proportion's moments: mean p and variance p (1 - p), the binomial variance GrowthBook's engine uses for conversions.
 *
 * @example
 * ```ts
 * proportionMoments({ n: 28, conversions: 14 }); // { n: 28, mean: 0.5, variance: 0.25 }
 * ```
 */
export function proportionMoments(s: { n: number; conversions: number }): Moments {
  if (!(Number.isInteger(s.n) && s.n >= 0) || !(s.conversions >= 0 && s.conversions <= s.n))
    throw new InputError(`a proportion needs 0 <= conversions <= n (whole users), not ${JSON.stringify(s)}`);
  const p = s.n > 0 ? s.conversions / s.n : 0;
  return { n: s.n, mean: p, variance: p * (1 - p) };
}

/** An estimated difference (absolute or relative) with its standard error, p-value and confidence interval. */
export interface Estimate {
  /** Treatment minus control (absolute), or (treatment - control) / |control| (relative). */
  estimate?: number;
  se?: number;
  pValue?: number;
  /** One-sided tests have an open end: -Infinity or Infinity (null in JSON). */
  ci?: [number, number];
  /** Welch-Satterthwaite degrees of freedom of the arms (absolute and relative effects). */
  df?: number;
  reason?: string;
}

/** How a test is read: its level, its alternative, and its reference distribution. */
export interface TestOptions {
  /** Level of the test; the interval is at 1 - alpha (default 0.05). */
  alpha?: number;
  /** `greater`: the treatment is greater than the control (one-sided); `less` the other way. Default `two-sided`. */
  alternative?: 'two-sided' | 'greater' | 'less';
  /** `t` (default, GrowthBook's): Student's t with the Welch degrees of freedom; `z`: the normal. */
  distribution?: 't' | 'z';
}

const noEstimate = (reason: string): Estimate => ({ reason });

/** Checks a level or a probability: strictly between 0 and 1. */
export function checkProbability(p: number, what: string): number {
  if (!(p > 0 && p < 1)) throw new InputError(`${what} must be strictly between 0 and 1, not ${p}`);
  return p;
}

function checkMoments(m: Moments, arm: string): void {
  if (!(Number.isInteger(m.n) && m.n >= 0)) throw new InputError(`the ${arm} arm's count must be a whole number of users, not ${m.n}`);
  if (!Number.isFinite(m.mean)) throw new InputError(`the ${arm} arm's mean must be a finite number, not ${m.mean}`);
  if (!(m.variance >= 0 && Number.isFinite(m.variance))) throw new InputError(`the ${arm} arm's variance must be a finite number >= 0, not ${m.variance}`);
}

function degenerate(a: Moments, b: Moments): string | undefined {
  checkMoments(a, 'control');
  checkMoments(b, 'treatment');
  if (a.n < 2 || b.n < 2) return `an arm has fewer than 2 users (${a.n} and ${b.n})`;
  if (a.variance === 0 && b.variance === 0) return 'no variance in either arm';
  return undefined;
}

/**
 * Welch-Satterthwaite degrees of freedom of two arms, from each arm's variance of the mean (variance / n) and its count.
 *
 * @example
 * ```ts
 * welchDf(1 / 10, 10, 1 / 10, 10); // 18
 * ```
 */
export function welchDf(varianceOfMeanA: number, nA: number, varianceOfMeanB: number, nB: number): number {
  return (varianceOfMeanA + varianceOfMeanB) ** 2 / (varianceOfMeanA ** 2 / (nA - 1) + varianceOfMeanB ** 2 / (nB - 1));
}

/**
 * The p-value and interval of an estimate with standard error `se`, by the options: two-sided or
 * one-sided, Student's t at `df` or the normal. Tails come from the survival functions (never 1 - cdf).
 *
 * @example
 * ```ts
 * const e = infer(0.29, 0.12478, 6000, { alpha: 0.05 }); // p about 0.02
 * ```
 */
export function infer(estimate: number, se: number, df: number | undefined, options: TestOptions = {}): Estimate {
  const alpha = checkProbability(options.alpha ?? 0.05, 'alpha');
  const z = options.distribution === 'z' || df === undefined;
  if (!z && !(df > 0)) throw new InputError(`degrees of freedom must be positive, not ${df}`);
  const sf = (x: number) => (z ? normalSf(x) : tSf(x, df));
  const q = (p: number) => (z ? normalQuantile(1 - p) : tQuantile(1 - p, df));
  const stat = estimate / se;
  const base = { estimate, se, ...(z ? {} : { df }) };
  switch (options.alternative ?? 'two-sided') {
    case 'greater':
      return { ...base, pValue: sf(stat), ci: [estimate - q(alpha) * se, Number.POSITIVE_INFINITY] };
    case 'less':
      return { ...base, pValue: sf(-stat), ci: [Number.NEGATIVE_INFINITY, estimate + q(alpha) * se] };
    default: {
      const half = q(alpha / 2) * se;
      return { ...base, pValue: Math.min(1, 2 * sf(Math.abs(stat))), ci: [estimate - half, estimate + half] };
    }
  }
}

const optionsOf = (o: number | TestOptions): TestOptions => (typeof o === 'number' ? { alpha: o } : o);

/**
 * Welch's t-test for the difference of means (unequal variances; Welch 1947, with the
 * Welch-Satterthwaite degrees of freedom), two-sided by default, and its 1 - alpha confidence
 * interval. The third argument is alpha or the test's options. `equalVariance: true` is Student's
 * pooled-variance t-test instead (one variance for both arms, n_c + n_t - 2 degrees of freedom;
 * scipy's `ttest_ind` default, `equal_var=True`): a convention choice for a library caller, never
 * the experiments' (the arms of an experiment need not have one variance; GrowthBook's engine is
 * Welch's).
 *
 * @example
 * ```ts
 * const diff = welch(moments({ n: 1000, sum: 100, sumSquares: 100 }), moments({ n: 1000, sum: 120, sumSquares: 120 }));
 * console.log(diff.estimate, diff.pValue);
 * ```
 */
export function welch(control: Moments, treatment: Moments, options: number | (TestOptions & { equalVariance?: boolean }) = {}): Estimate {
  const why = degenerate(control, treatment);
  if (why) return noEstimate(why);
  const o: TestOptions & { equalVariance?: boolean } = typeof options === 'number' ? { alpha: options } : options;
  const estimate = treatment.mean - control.mean;
  if (o.equalVariance) {
    const df = control.n + treatment.n - 2;
    const pooled = ((control.n - 1) * control.variance + (treatment.n - 1) * treatment.variance) / df;
    return infer(estimate, Math.sqrt(pooled * (1 / control.n + 1 / treatment.n)), df, o);
  }
  const va = control.variance / control.n;
  const vb = treatment.variance / treatment.n;
  return infer(estimate, Math.sqrt(va + vb), welchDf(va, control.n, vb, treatment.n), o);
}

/**
 * Relative lift, (treatment - control) / |control|, with its delta-method standard error (the
 * variance of a ratio of independent means: Var(B)/A^2 + B^2 Var(A)/A^4, each Var the variance of
 * the mean), and a t interval at the arms' Welch degrees of freedom (GrowthBook's default; `z` in
 * the options for the normal).
 *
 * @example
 * ```ts
 * const lift = relativeLift(moments({ n: 1000, sum: 100, sumSquares: 100 }), moments({ n: 1000, sum: 120, sumSquares: 120 }));
 * console.log(lift.estimate, lift.ci);
 * ```
 */
export function relativeLift(control: Moments, treatment: Moments, options: number | TestOptions = {}): Estimate {
  const why = degenerate(control, treatment);
  if (why) return noEstimate(why);
  if (control.mean === 0) return noEstimate('the control mean is 0: a relative lift is undefined');
  const a = control.mean;
  const b = treatment.mean;
  const va = control.variance / control.n;
  const vb = treatment.variance / treatment.n;
  const se = Math.sqrt(vb / (a * a) + (b * b * va) / a ** 4);
  return infer((b - a) / Math.abs(a), se, welchDf(va, control.n, vb, treatment.n), optionsOf(options));
}

/**
 * The two-proportion z-test: `pooled` (the classical test: the null's common rate in the standard
 * error; its z^2 is Pearson's chi-square of the 2x2 table) or unpooled (each arm's own p (1 - p)).
 * Absolute difference of the rates; the interval always uses the unpooled standard error.
 *
 * @example
 * ```ts
 * const z = twoProportionZTest({ n: 1000, conversions: 100 }, { n: 1000, conversions: 130 }, { pooled: true });
 * ```
 */
export function twoProportionZTest(
  control: { n: number; conversions: number },
  treatment: { n: number; conversions: number },
  options: { pooled?: boolean } & Omit<TestOptions, 'distribution'> = {},
): Estimate {
  const a = proportionMoments(control);
  const b = proportionMoments(treatment);
  const why = degenerate(a, b);
  if (why) return noEstimate(why);
  const estimate = b.mean - a.mean;
  const se = Math.sqrt(a.variance / a.n + b.variance / b.n);
  const interval = infer(estimate, se, undefined, { ...options, distribution: 'z' });
  if (!options.pooled) return interval;
  const p = (control.conversions + treatment.conversions) / (a.n + b.n);
  const se0 = Math.sqrt(p * (1 - p) * (1 / a.n + 1 / b.n));
  return { ...interval, pValue: infer(estimate, se0, undefined, { ...options, distribution: 'z' }).pValue! };
}

/**
 * Sample ratio mismatch: a chi-square goodness-of-fit test of the users per arm against the
 * weights. A small p-value (GrowthBook and others use 0.001) means assignment or logging is broken
 * and no result of the experiment can be trusted. Arms of weight 0 (paused) are no category of the
 * test: they count in neither its users nor its degrees of freedom; users found in one cannot come
 * from a working assignment, so they are a mismatch by themselves (p-value 0, with the reason).
 *
 * @example
 * ```ts
 * const { pValue } = sampleRatioMismatch([5030, 4970], [0.5, 0.5]);
 * ```
 */
export function sampleRatioMismatch(counts: readonly number[], weights: readonly number[]): { pValue: number; chiSquare: number; reason?: string } {
  if (counts.length !== weights.length || counts.length < 2)
    throw new InputError(`SRM needs a count and a weight per arm (got ${counts.length} counts, ${weights.length} weights)`);
  counts.forEach((c, i) => {
    if (!(Number.isInteger(c) && c >= 0)) throw new InputError(`SRM: arm ${i} has ${c} users, not a whole number >= 0`);
    if (!(weights[i]! >= 0 && Number.isFinite(weights[i]!))) throw new InputError(`SRM: arm ${i} has weight ${weights[i]}, not a number >= 0`);
  });
  const live = counts.map((c, i) => [c, weights[i]!] as const).filter(([, w]) => w > 0);
  if (live.length === 0) throw new InputError('SRM: every arm has weight 0');
  const stray = counts.reduce((s, c, i) => s + (weights[i] === 0 ? c : 0), 0);
  const total = live.reduce((s, [c]) => s + c, 0);
  const wsum = live.reduce((s, [, w]) => s + w, 0);
  let chiSquare = 0;
  for (const [c, w] of live) {
    const expected = (total * w) / wsum;
    if (expected > 0) chiSquare += (c - expected) ** 2 / expected;
  }
  if (stray > 0) return { chiSquare, pValue: 0, reason: `${stray} users in arms of weight 0` };
  if (total === 0 || live.length < 2) return { pValue: 1, chiSquare: 0 };
  return { chiSquare, pValue: chiSquareSf(chiSquare, live.length - 1) };
}

function checkPValues(pValues: readonly number[], what: string): void {
  pValues.forEach((p, i) => {
    if (!(p >= 0 && p <= 1)) throw new InputError(`${what}: p-value ${i} is ${p}, not a number from 0 to 1`);
  });
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
  checkPValues(pValues, 'Holm');
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
  checkPValues(pValues, 'Benjamini-Hochberg');
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
