import { z } from 'zod';
import { InputError } from '../errors.js';
import { brierScore, logLoss } from './evaluate.js';
import type { ColumnSpec, Row } from './preprocess.js';
import { labelsOf, trainClassifier, type Classifier, type TrainOptions } from './train.js';

/**
 * Post-hoc calibration of a binary classifier's scores: a monotone map from score to probability,
 * fitted on rows the model did not train on (a validation slice, later in time than the training
 * rows and earlier than the test rows), kept in the model bundle and applied wherever the model
 * scores, the service included. A model can rank well and still be wrong about how likely things
 * are: trained on a period with more churn, or on features that drift with time, its scores run
 * high. A calibration map learns the correction from the latest labelled rows.
 *
 * - `platt`: a logistic regression on the logit of the score, p = 1 / (1 + exp(a * logit(s) + b))
 *   (Platt 1999, with his target smoothing; a = -1, b = 0 is the identity).
 * - `isotonic`: the least-squares non-decreasing step function of the score, by pool adjacent
 *   violators, interpolated linearly between steps and clipped at the ends (scikit-learn's
 *   `IsotonicRegression(out_of_bounds='clip')`).
 * - `none`: the scores as they are.
 */
export type CalibrationMethod = 'none' | 'platt' | 'isotonic';

/** The map itself, what `applyCalibration` needs. */
export type CalibrationMap = { method: 'none' } | { method: 'platt'; a: number; b: number } | { method: 'isotonic'; x: number[]; y: number[] };

/** One candidate map, as it did out of fold on the validation rows (see `chooseCalibration`). */
export interface CalibrationCandidate {
  method: CalibrationMethod;
  logLoss: number;
  brier: number;
  /**
   * Its mean log loss per row minus that of the scores as they are (`none`), and the standard error
   * of that paired difference (clustered by entity when the rows were given `groups`).
   */
  vsNone: { difference: number; standardError: number };
}

/** How a calibration was chosen: the validation rows, the folds and each candidate's out-of-fold scores. */
export interface CalibrationFit {
  rows: number;
  positives: number;
  folds: number;
  /**
   * The candidate with the lowest out-of-fold log loss wins (ties to the simpler, in the order none,
   * platt, isotonic), a map only with a gain over none of at least two standard errors.
   */
  criterion: 'logLoss';
  candidates: CalibrationCandidate[];
  /** Where the validation rows came from, e.g. `as_of in [2025-02-16, 2025-03-02)`. */
  source?: string;
}

/** A calibration map with, when chosen by `chooseCalibration`, how it was chosen: plain JSON, kept in model bundles. */
export type Calibration = CalibrationMap & { fit?: CalibrationFit };

/** Scores are clipped to [EPS, 1 - EPS] before their logit: a float32 sigmoid reaches 0 and 1 exactly. */
const EPS = 1e-15;
/** Knots of an isotonic map past which a bundle is refused (a map has at most one per distinct validation score). */
const MAX_KNOTS = 1_000_000;

/** The log-odds of a probability, clipped to [1e-15, 1 - 1e-15] first. */
export function logit(p: number): number {
  const q = Math.min(1 - EPS, Math.max(EPS, p));
  return Math.log(q / (1 - q));
}

/**
 * Platt's sigmoid on decision values: the A and B minimising the cross-entropy of
 * P(y = 1 | f) = 1 / (1 + exp(A f + B)) against smoothed targets, (N+ + 1) / (N+ + 2) for positives
 * and 1 / (N- + 2) for negatives (Platt 1999), by Newton's method with a backtracking line search
 * (Lin, Lin & Weng 2007, the algorithm of LIBSVM). Labels are 0/1 (or -1/1: anything above 0 is
 * positive).
 *
 * @example
 * ```ts
 * fitSigmoid([5, -4, 1], [1, 0, 0]); // { a: -0.2026, b: 0.6524 } (scikit-learn's test_sigmoid_calibration)
 * ```
 */
export function fitSigmoid(values: ArrayLike<number>, labels: ArrayLike<number>): { a: number; b: number } {
  const n = values.length;
  if (n !== labels.length) throw new InputError(`${n} values but ${labels.length} labels`);
  if (n === 0) throw new InputError('nothing to calibrate on: no rows');
  let prior1 = 0;
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(values[i]!)) throw new InputError(`value ${i} is ${values[i]}: values must be finite numbers`);
    if (labels[i]! > 0) prior1++;
  }
  const prior0 = n - prior1;
  const hi = (prior1 + 1) / (prior1 + 2);
  const lo = 1 / (prior0 + 2);
  const t = Float64Array.from({ length: n }, (_, i) => (labels[i]! > 0 ? hi : lo));
  const f = Float64Array.from(values as ArrayLike<number>);
  const objective = (a: number, b: number) => {
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const z = f[i]! * a + b;
      // -[t log p + (1 - t) log(1 - p)] with p = 1 / (1 + e^z), written to never overflow.
      sum += z >= 0 ? t[i]! * z + Math.log1p(Math.exp(-z)) : (t[i]! - 1) * z + Math.log1p(Math.exp(z));
    }
    return sum;
  };
  let a = 0;
  let b = Math.log((prior0 + 1) / (prior1 + 1));
  let value = objective(a, b);
  for (let iteration = 0; iteration < 100; iteration++) {
    let h11 = 1e-12; // Lin et al.'s sigma: keeps the Hessian positive definite
    let h22 = 1e-12;
    let h21 = 0;
    let g1 = 0;
    let g2 = 0;
    for (let i = 0; i < n; i++) {
      const z = f[i]! * a + b;
      const e = Math.exp(-Math.abs(z));
      const p = z >= 0 ? e / (1 + e) : 1 / (1 + e);
      const q = 1 - p;
      const d2 = p * q;
      h11 += f[i]! * f[i]! * d2;
      h22 += d2;
      h21 += f[i]! * d2;
      const d1 = t[i]! - p;
      g1 += f[i]! * d1;
      g2 += d1;
    }
    if (Math.abs(g1) < 1e-5 && Math.abs(g2) < 1e-5) break;
    const det = h11 * h22 - h21 * h21;
    const da = -(h22 * g1 - h21 * g2) / det;
    const db = -(-h21 * g1 + h11 * g2) / det;
    const gd = g1 * da + g2 * db;
    let step = 1;
    for (; step >= 1e-10; step /= 2) {
      const next = objective(a + step * da, b + step * db);
      if (next < value + 1e-4 * step * gd) {
        a += step * da;
        b += step * db;
        value = next;
        break;
      }
    }
    if (step < 1e-10) break; // the line search found no descent: as close as it gets
  }
  return { a, b };
}

/**
 * Platt scaling of probabilities: `fitSigmoid` on the logit of each score, so that the identity
 * (a = -1, b = 0) is one of the maps it can find and a well calibrated model keeps its scores.
 *
 * @example
 * ```ts
 * // outcomes: the 0/1 labels of held-out validation rows (never the test rows), in the rows' order
 * const platt = fitPlatt(outcomes, model.predict(rows));
 * const probabilities = applyCalibration(platt, model.predict(test));
 * ```
 */
export function fitPlatt(labels: ArrayLike<number>, scores: ArrayLike<number>): Calibration & { method: 'platt' } {
  checkBinary(labels, scores);
  const { a, b } = fitSigmoid(Float64Array.from(scores as ArrayLike<number>, logit), labels);
  return { method: 'platt', a, b };
}

/**
 * Weighted isotonic regression of y on x: the non-decreasing function of x nearest y in weighted
 * least squares, by pool adjacent violators over the distinct x (equal x pooled first: their
 * weighted mean and summed weight, scikit-learn's ties rule). Returns the fitted value of every
 * point and the knots to interpolate between: the first and last x of each constant block, as
 * scikit-learn's `X_thresholds_` and `y_thresholds_`.
 *
 * @example
 * ```ts
 * isotonicRegression([0, 1, 2, 3, 4, 5, 6], [3, 7, 5, 9, 8, 7, 10]).fitted; // [3, 6, 6, 8, 8, 8, 10]
 * ```
 */
export function isotonicRegression(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  weights?: ArrayLike<number>,
): { fitted: Float64Array; knots: { x: number[]; y: number[] } } {
  const n = x.length;
  if (n !== y.length || (weights && weights.length !== n))
    throw new InputError(`isotonic regression needs as many x, y and weights: ${n}, ${y.length}, ${weights?.length ?? n}`);
  if (n === 0) throw new InputError('nothing to fit: no rows');
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(x[i]!) || !Number.isFinite(y[i]!)) throw new InputError(`point ${i} is (${x[i]}, ${y[i]}): x and y must be finite numbers`);
    if (weights && !(weights[i]! > 0 && Number.isFinite(weights[i]!)))
      throw new InputError(`weight ${i} is ${weights[i]}: weights must be positive finite numbers`);
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => x[i]! - x[j]! || i - j);
  // Distinct x, each with its weighted sum of y and its weight.
  const ux: number[] = [];
  const uwy: number[] = [];
  const uw: number[] = [];
  for (const i of order) {
    const w = weights ? weights[i]! : 1;
    if (ux.length > 0 && ux[ux.length - 1] === x[i]) {
      uwy[uwy.length - 1]! += w * y[i]!;
      uw[uw.length - 1]! += w;
    } else {
      ux.push(x[i]!);
      uwy.push(w * y[i]!);
      uw.push(w);
    }
  }
  // Pool adjacent violators: blocks of distinct x on a stack, merged while a block's mean is not
  // below the next one's (equal means merge too, so the blocks' values strictly increase).
  const start: number[] = [];
  const sumWY: number[] = [];
  const sumW: number[] = [];
  for (let j = 0; j < ux.length; j++) {
    start.push(j);
    sumWY.push(uwy[j]!);
    sumW.push(uw[j]!);
    while (sumW.length >= 2) {
      const k = sumW.length - 1;
      if (sumWY[k - 1]! / sumW[k - 1]! < sumWY[k]! / sumW[k]!) break;
      sumWY[k - 1]! += sumWY[k]!;
      sumW[k - 1]! += sumW[k]!;
      start.pop();
      sumWY.pop();
      sumW.pop();
    }
  }
  const value = new Float64Array(ux.length);
  const knots = { x: [] as number[], y: [] as number[] };
  for (let k = 0; k < start.length; k++) {
    const from = start[k]!;
    const to = k + 1 < start.length ? start[k + 1]! : ux.length;
    const mean = sumWY[k]! / sumW[k]!;
    value.fill(mean, from, to);
    knots.x.push(ux[from]!);
    knots.y.push(mean);
    if (to - 1 > from) {
      knots.x.push(ux[to - 1]!);
      knots.y.push(mean);
    }
  }
  const fitted = new Float64Array(n);
  for (let j = 0, u = 0; j < n; j++) {
    const i = order[j]!;
    while (ux[u] !== x[i]) u++;
    fitted[i] = value[u]!;
  }
  return { fitted, knots };
}

/**
 * Isotonic calibration: `isotonicRegression` of the labels on the scores; a new score is
 * interpolated between the knots and clipped to the fitted range outside them.
 *
 * @example
 * ```ts
 * const isotonic = fitIsotonic(outcomes, model.predict(rows)); // validation labels and scores
 * ```
 */
export function fitIsotonic(labels: ArrayLike<number>, scores: ArrayLike<number>): Calibration & { method: 'isotonic' } {
  checkBinary(labels, scores);
  const { knots } = isotonicRegression(scores, labels);
  return { method: 'isotonic', x: knots.x, y: knots.y };
}

/**
 * The calibrated probabilities of some scores. Platt: 1 / (1 + exp(a * logit(s) + b)); isotonic:
 * linear interpolation between the knots (`np.interp`), the end values beyond them.
 *
 * @example
 * ```ts
 * applyCalibration({ method: 'platt', a: -1, b: 0 }, [0.2, 0.7]); // [0.2, 0.7]: the identity
 * ```
 */
export function applyCalibration(calibration: CalibrationMap, scores: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(scores as ArrayLike<number>);
  switch (calibration.method) {
    case 'none':
      return out;
    case 'platt': {
      const { a, b } = calibration as { a: number; b: number };
      for (let i = 0; i < out.length; i++) out[i] = 1 / (1 + Math.exp(a * logit(out[i]!) + b));
      return out;
    }
    case 'isotonic': {
      const { x, y } = calibration as { x: number[]; y: number[] };
      for (let i = 0; i < out.length; i++) out[i] = interpolate(x, y, out[i]!);
      return out;
    }
    default:
      throw new InputError(`unknown calibration method ${JSON.stringify((calibration as { method: unknown }).method)}`);
  }
}

function interpolate(x: readonly number[], y: readonly number[], t: number): number {
  const last = x.length - 1;
  if (!(t > x[0]!)) return y[0]!; // NaN lands here too, and is scored as the lowest score
  if (t >= x[last]!) return y[last]!;
  let lo = 0;
  let hi = last;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (x[mid]! <= t) lo = mid;
    else hi = mid;
  }
  const x0 = x[lo]!;
  const x1 = x[hi]!;
  return y[lo]! + ((y[hi]! - y[lo]!) * (t - x0)) / (x1 - x0);
}

/**
 * Chooses among none, Platt and isotonic on validation rows (labels and the model's scores, in
 * time order): each candidate is fitted on all folds but one and scored on that one (contiguous
 * folds, so with rows in time order each fold is a later or earlier period than what was fitted),
 * and the lowest out-of-fold **log loss** wins, ties going to the simpler, among `none` and the maps
 * whose gain over `none` is at least `MIN_GAIN_STANDARD_ERRORS` (2) standard errors (`vsNone`). Log
 * loss rather than Brier: it punishes a confident 0 or 1 that a held-out row contradicts
 * (isotonic's flat ends on thin data), which Brier barely notices. Out of fold, because fitting and
 * judging on the same rows would always pick isotonic, which minimises in-sample squared error among
 * all monotone maps. The gain must be clear because a map fitted on a slice also moves the scores'
 * level to that slice's share of positives, noise included: on the app's default lake the latest
 * logins' churn rate came out 21% below their true probability, and Platt scaling, 1.2 standard
 * errors better there, took the test scores' mean from 0.3% to 22% below the truth. Give `groups`
 * (the entity of each row) when rows are moments of the same users: their losses are not
 * independent, and the standard errors are then clustered by entity (row-level ones were half as
 * wide on that slice, 6,333 logins of 1,353 users). The winner is refitted on every validation row.
 * Too few rows (fewer than 2 per fold of either class) give `none`.
 *
 * @example
 * ```ts
 * const calibration = chooseCalibration(outcomes, model.predict(rows)); // validation labels and scores
 * console.log(calibration.method, calibration.fit?.candidates);
 * ```
 */
export function chooseCalibration(
  labels: ArrayLike<number>,
  scores: ArrayLike<number>,
  options: { folds?: number; methods?: readonly CalibrationMethod[]; source?: string; groups?: ArrayLike<string> } = {},
): Calibration {
  const n = checkBinary(labels, scores);
  const k = options.folds ?? 5;
  if (!Number.isInteger(k) || k < 2) throw new InputError(`folds must be a whole number of at least 2, got ${k}`);
  const methods = ORDER.filter((m) => (options.methods ?? ORDER).includes(m));
  if (methods.length === 0) throw new InputError(`no calibration method to choose from (methods: ${ORDER.join(', ')})`);
  let positives = 0;
  for (let i = 0; i < n; i++) positives += labels[i]!;
  const fit = (candidates: CalibrationCandidate[]): CalibrationFit => ({
    rows: n,
    positives,
    folds: k,
    criterion: 'logLoss',
    candidates,
    ...(options.source ? { source: options.source } : {}),
  });
  if (positives < 2 * k || n - positives < 2 * k) return { method: 'none', fit: fit([]) };
  const outOfFold = new Map<CalibrationMethod, Float64Array>(methods.map((m) => [m, new Float64Array(n)]));
  const foldOf = options.groups ? groupFolds(options.groups, k) : timeFolds(n, k);
  for (let f = 0; f < k; f++) {
    const fitLabels: number[] = [];
    const fitScores: number[] = [];
    const held: number[] = [];
    for (let i = 0; i < n; i++) {
      if (foldOf[i] === f) held.push(i);
      else {
        fitLabels.push(labels[i]!);
        fitScores.push(scores[i]!);
      }
    }
    const heldScores = held.map((i) => scores[i]!);
    for (const m of methods) {
      const calibratedScores = applyCalibration(fitMethod(m, fitLabels, fitScores), heldScores);
      const target = outOfFold.get(m)!;
      held.forEach((i, j) => (target[i] = calibratedScores[j]!));
    }
  }
  const identity = rowLogLoss(labels, scores);
  const candidates = methods.map((m): CalibrationCandidate => {
    const p = outOfFold.get(m)!;
    const own = rowLogLoss(labels, p);
    let sum = 0;
    let sumSq = 0;
    for (let i = 0; i < n; i++) {
      const d = own[i]! - identity[i]!;
      sum += d;
      sumSq += d * d;
    }
    const difference = sum / n;
    const variance = Math.max(0, (sumSq - n * difference * difference) / (n - 1));
    const standardError = options.groups ? clusteredStandardError(own, identity, options.groups) : Math.sqrt(variance / n);
    return { method: m, logLoss: logLoss(labels, p), brier: brierScore(labels, p), vsNone: { difference, standardError } };
  });
  const canKeepScores = methods.includes('none');
  const eligible = candidates.filter((c) => !canKeepScores || c.method === 'none' || c.vsNone.difference <= -MIN_GAIN_STANDARD_ERRORS * c.vsNone.standardError);
  const best = eligible.reduce((a, b) => (b.logLoss < a.logLoss ? b : a));
  return { ...fitMethod(best.method, labels, scores), fit: fit(candidates) };
}

const ORDER: readonly CalibrationMethod[] = ['none', 'platt', 'isotonic'];

/** How many standard errors of out-of-fold log loss a map must gain over the scores as they are to replace them. */
export const MIN_GAIN_STANDARD_ERRORS = 2;

/** Contiguous folds: with rows in time order, each fold is a period. */
function timeFolds(n: number, k: number): Int32Array {
  const foldOf = new Int32Array(n);
  for (let f = 0; f < k; f++) foldOf.fill(f, Math.floor((f * n) / k), Math.floor(((f + 1) * n) / k));
  return foldOf;
}

/**
 * Folds of whole groups: a user's rows all in one fold, or a map fitted on some of their moments
 * would be judged on others (isotonic regression learns a user's outcome from their scores: on
 * honest scores it won 60 slices of 60 with rows split across folds). Groups are taken in the order
 * of their first row, so with rows in time order the earlier users fill the earlier folds.
 */
function groupFolds(groups: ArrayLike<string>, k: number): Int32Array {
  const n = groups.length;
  const sizes = new Map<string, number>();
  for (let i = 0; i < n; i++) sizes.set(groups[i]!, (sizes.get(groups[i]!) ?? 0) + 1);
  const foldOfGroup = new Map<string, number>();
  let before = 0;
  for (const [group, size] of sizes) {
    foldOfGroup.set(group, Math.min(k - 1, Math.floor((before * k) / n)));
    before += size;
  }
  return Int32Array.from({ length: n }, (_, i) => foldOfGroup.get(groups[i]!)!);
}

/**
 * The standard error of the mean paired difference a - b when rows of one group (a user's many
 * moments) are not independent: the cluster-robust (Liang-Zeger) variance of a mean,
 * G / (G - 1) * sum over groups of (the group's summed deviations)^2 / n^2.
 */
function clusteredStandardError(a: ArrayLike<number>, b: ArrayLike<number>, groups: ArrayLike<string>): number {
  const n = a.length;
  if (groups.length !== n) throw new InputError(`${groups.length} groups for ${n} rows`);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += a[i]! - b[i]!;
  const mean = sum / n;
  const deviations = new Map<string, number>();
  for (let i = 0; i < n; i++) deviations.set(groups[i]!, (deviations.get(groups[i]!) ?? 0) + a[i]! - b[i]! - mean);
  const g = deviations.size;
  if (g < 2) return Number.POSITIVE_INFINITY;
  let squares = 0;
  for (const d of deviations.values()) squares += d * d;
  return Math.sqrt((g / (g - 1)) * squares) / n;
}

/** Each row's log loss, probabilities clipped as `logLoss` clips them. */
function rowLogLoss(labels: ArrayLike<number>, probabilities: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: labels.length }, (_, i) => {
    const p = Math.min(1 - EPS, Math.max(EPS, probabilities[i]!));
    return labels[i] === 1 ? -Math.log(p) : -Math.log(1 - p);
  });
}

function fitMethod(method: CalibrationMethod, labels: ArrayLike<number>, scores: ArrayLike<number>): CalibrationMap {
  if (method === 'platt') return fitPlatt(labels, scores);
  if (method === 'isotonic') return fitIsotonic(labels, scores);
  return { method: 'none' };
}

/**
 * The classifier with a calibration applied to every score it gives (`predict`), and kept with it
 * (`calibration`), so that `createBundle` stores it and the loaded bundle serves calibrated
 * probabilities. The model, preprocessing and the rest are the same objects.
 *
 * @example
 * ```ts
 * const served = calibrated(model, chooseCalibration(outcomes, model.predict(rows)));
 * served.predict(test); // calibrated probabilities
 * ```
 */
export function calibrated(model: Classifier, calibration: Calibration): Classifier {
  const base = model.calibration ? uncalibrated(model) : model;
  return {
    ...base,
    calibration,
    uncalibrated: base,
    predict: (rows: readonly Row[]) => Float32Array.from(applyCalibration(calibration, base.predict(rows))),
  };
}

/**
 * The classifier's own scores, before any calibration (`calibrated`'s input).
 *
 * @example
 * ```ts
 * const raw = uncalibrated(model);
 * console.log(raw.predict(test), model.predict(test)); // before and after calibration
 * ```
 */
export function uncalibrated(model: Classifier): Classifier {
  return model.uncalibrated ?? model;
}

/**
 * Splits rows in time: those at the latest `share` of the distinct moments (`column`, a Date)
 * apart, for fitting a calibration on a period after the one the model trains on. Keeps the order.
 *
 * @example
 * ```ts
 * const { earlier, later } = splitInTime(data.train, 0.3); // train on earlier, calibrate on later
 * ```
 */
export function splitInTime(rows: readonly Row[], share: number, column = 'as_of'): { earlier: Row[]; later: Row[]; from?: Date } {
  if (!(share > 0 && share < 1)) throw new InputError(`the share of moments to hold out must be between 0 and 1, got ${share}`);
  const time = (r: Row) => {
    const v = r[column];
    if (!(v instanceof Date))
      throw new InputError(`column ${column} is ${v === undefined ? 'missing' : `not a time (${String(v)})`}: cannot split the rows in time`);
    return v.getTime();
  };
  const moments = [...new Set(rows.map(time))].sort((a, b) => a - b);
  const cut = moments[Math.max(1, Math.ceil(moments.length * (1 - share)))];
  if (cut === undefined) throw new InputError(`only ${moments.length} distinct ${column} moment(s): too few to hold the latest ones out`);
  return { earlier: rows.filter((r) => time(r) < cut), later: rows.filter((r) => time(r) >= cut), from: new Date(cut) };
}

/** A model trained on the earlier rows and calibrated on the later ones (see `trainCalibrated`). */
export interface CalibratedTraining {
  /** The calibrated classifier (its `uncalibrated` is the model's own scores). */
  model: Classifier;
  calibration: Calibration;
  /** Rows the model was fitted on, and rows the calibration was chosen on. */
  fitRows: number;
  validationRows: number;
}

/**
 * Trains a classifier on all but the latest `calibrationShare` of the moments (`timeColumn`), then
 * chooses its calibration (`chooseCalibration`) on those latest moments: a validation slice in time,
 * after the rows the model learns from and before any test rows. `groupColumn` names the entity
 * whose rows are not independent (a user's many moments): the choice's standard errors are then
 * clustered by it. A share of 0 trains on every row and calibrates nothing (`none`).
 *
 * @example
 * ```ts
 * const { model, calibration } = await trainCalibrated(data.train, 'churned', columnsFor(data.features), { seed: 1, calibrationShare: 0.3, groupColumn: 'user_id' });
 * ```
 */
export async function trainCalibrated(
  rows: readonly Row[],
  label: string,
  columns: readonly ColumnSpec[],
  options: TrainOptions & { calibrationShare?: number; timeColumn?: string; groupColumn?: string } = {},
): Promise<CalibratedTraining> {
  const { calibrationShare = 0.3, timeColumn = 'as_of', groupColumn, ...train } = options;
  if (calibrationShare === 0) {
    const model = await trainClassifier(rows, label, columns, train);
    return { model, calibration: { method: 'none' }, fitRows: rows.length, validationRows: 0 };
  }
  const { earlier, later, from } = splitInTime(rows, calibrationShare, timeColumn);
  const model = await trainClassifier(earlier, label, columns, train);
  try {
    const calibration = chooseCalibration(labelsOf(later, label), model.predict(later), {
      ...(groupColumn === undefined ? {} : { groups: later.map((r) => String(r[groupColumn])) }),
      source: `${later.length} rows at ${timeColumn} from ${from!.toISOString()}, after the ${earlier.length} the model was fitted on`,
    });
    train.progress?.log(`calibration: ${calibration.method}, chosen on ${later.length} rows from ${from!.toISOString().slice(0, 10)}`);
    return { model: calibrated(model, calibration), calibration, fitRows: earlier.length, validationRows: later.length };
  } catch (err) {
    model.dispose();
    throw err;
  }
}

function checkBinary(labels: ArrayLike<number>, scores: ArrayLike<number>): number {
  if (labels.length !== scores.length) throw new InputError(`${labels.length} labels but ${scores.length} scores`);
  if (labels.length === 0) throw new InputError('nothing to calibrate on: no rows');
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] !== 0 && labels[i] !== 1) throw new InputError(`label ${i} is ${labels[i]}: labels are 0 or 1`);
    if (!Number.isFinite(scores[i]!)) throw new InputError(`score ${i} is ${scores[i]}: scores must be finite numbers`);
  }
  return labels.length;
}

const finite = z.number().finite();
const Fit = z
  .object({
    rows: z.number().int().nonnegative(),
    positives: z.number().int().nonnegative(),
    folds: z.number().int().min(2),
    criterion: z.literal('logLoss'),
    candidates: z
      .array(
        z
          .object({
            method: z.enum(ORDER),
            logLoss: z.number(),
            brier: z.number(),
            vsNone: z.object({ difference: z.number(), standardError: z.number() }).strict(),
          })
          .strict(),
      )
      .max(ORDER.length),
    source: z.string().max(1000).optional(),
  })
  .strict();

/**
 * The shape of a calibration read from a bundle: a known method, finite parameters, and for
 * isotonic as many knots as values, strictly increasing scores and non-decreasing probabilities in
 * [0, 1] (what `fitIsotonic` makes, and what `applyCalibration` needs to be monotone).
 */
export const CalibrationSchema = z
  .discriminatedUnion('method', [
    z.object({ method: z.literal('none'), fit: Fit.optional() }).strict(),
    z.object({ method: z.literal('platt'), a: finite, b: finite, fit: Fit.optional() }).strict(),
    z
      .object({
        method: z.literal('isotonic'),
        x: z.array(finite).min(1).max(MAX_KNOTS),
        y: z.array(z.number().min(0).max(1)).min(1).max(MAX_KNOTS),
        fit: Fit.optional(),
      })
      .strict(),
  ])
  .superRefine((c, ctx) => {
    if (c.method !== 'isotonic') return;
    if (c.x.length !== c.y.length) return void ctx.addIssue({ code: 'custom', path: ['y'], message: `${c.x.length} knots in x but ${c.y.length} in y` });
    for (let i = 1; i < c.x.length; i++) {
      if (!(c.x[i]! > c.x[i - 1]!)) return void ctx.addIssue({ code: 'custom', path: ['x', i], message: 'knots must strictly increase' });
      if (!(c.y[i]! >= c.y[i - 1]!)) return void ctx.addIssue({ code: 'custom', path: ['y', i], message: 'an isotonic map never decreases' });
    }
  });
