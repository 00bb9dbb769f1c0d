import { InputError } from '../errors.js';

/**
 * Ordinary least squares (with an optional ridge penalty): the linear predictor of a target from
 * features, y = intercept + sum_j b_j x_j, minimising the squared error (+ ridge * sum_j b_j^2 on
 * standardised features). Solved from the normal equations of the centred, standardised features by
 * Cholesky, which keeps the precision when features have very different scales. It is the simplest
 * CUPAC model (Tang et al., DoorDash 2020): a regression of a metric on pre-period features, whose
 * prediction made before exposure is the metric's covariate (see the metric's `covariate`).
 */
export interface LinearPredictor {
  intercept: number;
  coefficients: number[];
  /** Share of the target's variance the fit explains on the rows it was fitted on. */
  rSquared: number;
  predict(features: readonly number[]): number;
}

/**
 * Fits y on the rows' features by least squares (`ridge` > 0 shrinks the coefficients).
 *
 * @example
 * ```ts
 * const fit = leastSquares([[1, 0], [2, 1], [3, 0], [4, 1]], [3, 4, 7, 8]);
 * console.log(fit.intercept, fit.coefficients, fit.predict([5, 0])); // 1, [2, -1], 11
 * ```
 */
export function leastSquares(rows: readonly (readonly number[])[], y: readonly number[], options: { ridge?: number } = {}): LinearPredictor {
  const n = rows.length;
  const p = rows[0]?.length ?? 0;
  const ridge = options.ridge ?? 0;
  if (y.length !== n) throw new InputError(`least squares needs one target per row (${n} rows, ${y.length} targets)`);
  if (n <= p + 1) throw new InputError(`least squares with ${p} features needs more than ${p + 1} rows, not ${n}`);
  if (!(ridge >= 0 && Number.isFinite(ridge))) throw new InputError(`the ridge penalty must be a finite number >= 0, not ${ridge}`);
  rows.forEach((r, i) => {
    if (r.length !== p || !r.every(Number.isFinite) || !Number.isFinite(y[i]!))
      throw new InputError(`least squares: row ${i} has ${r.length} features (want ${p}) or a value that is not a finite number`);
  });
  // Two passes: means, then standard deviations, so the normal equations are of centred, unit-scale columns.
  const mean = new Array<number>(p).fill(0);
  let my = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < p; j++) mean[j] = mean[j]! + rows[i]![j]! / n;
    my += y[i]! / n;
  }
  const scale = new Array<number>(p).fill(0);
  for (const r of rows) for (let j = 0; j < p; j++) scale[j] = scale[j]! + (r[j]! - mean[j]!) ** 2;
  for (let j = 0; j < p; j++) scale[j] = Math.sqrt(scale[j]! / n) || 1;
  const a = Array.from({ length: p }, () => new Array<number>(p).fill(0));
  const b = new Array<number>(p).fill(0);
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const z = rows[i]!.map((v, j) => (v - mean[j]!) / scale[j]!);
    const dy = y[i]! - my;
    syy += dy * dy;
    for (let j = 0; j < p; j++) {
      b[j] = b[j]! + z[j]! * dy;
      const row = a[j]!;
      for (let k = 0; k <= j; k++) row[k] = row[k]! + z[j]! * z[k]!;
    }
  }
  for (let j = 0; j < p; j++) a[j]![j] = a[j]![j]! + ridge * n;
  const beta = choleskySolve(a, b);
  const coefficients = beta.map((v, j) => v / scale[j]!);
  const intercept = my - coefficients.reduce((s, c, j) => s + c * mean[j]!, 0);
  let sse = 0;
  const predict = (features: readonly number[]) => features.reduce((s, v, j) => s + (coefficients[j] ?? 0) * v, intercept);
  for (let i = 0; i < n; i++) sse += (y[i]! - predict(rows[i]!)) ** 2;
  return { intercept, coefficients, rSquared: syy > 0 ? 1 - sse / syy : 0, predict };
}

/** Solves A x = b for a symmetric positive definite A given by its lower triangle. */
function choleskySolve(a: number[][], b: number[]): number[] {
  const p = b.length;
  const l = Array.from({ length: p }, () => new Array<number>(p).fill(0));
  for (let j = 0; j < p; j++) {
    let d = a[j]![j]!;
    for (let k = 0; k < j; k++) d -= l[j]![k]! ** 2;
    if (!(d > 1e-12 * (a[j]![j]! || 1)))
      throw new InputError(`least squares: feature ${j} is a linear combination of the others (or constant); drop it or add a ridge penalty`);
    l[j]![j] = Math.sqrt(d);
    for (let i = j + 1; i < p; i++) {
      let s = a[i]![j]!;
      for (let k = 0; k < j; k++) s -= l[i]![k]! * l[j]![k]!;
      l[i]![j] = s / l[j]![j]!;
    }
  }
  const z = new Array<number>(p).fill(0);
  for (let i = 0; i < p; i++) {
    let s = b[i]!;
    for (let k = 0; k < i; k++) s -= l[i]![k]! * z[k]!;
    z[i] = s / l[i]![i]!;
  }
  const x = new Array<number>(p).fill(0);
  for (let i = p - 1; i >= 0; i--) {
    let s = z[i]!;
    for (let k = i + 1; k < p; k++) s -= l[k]![i]! * x[k]!;
    x[i] = s / l[i]![i]!;
  }
  return x;
}
