import { InputError } from '../errors.js';
import { Random } from '../random.js';

/**
 * Evaluation of binary classifiers: pure functions over labels (0/1) and scores, each with the
 * definition it follows. Tested against published values and against a second method.
 */

/**
 * ROC AUC: the probability that a random positive scores above a random negative, ties counting
 * half (the Mann-Whitney U statistic over n1 * n0; Hanley & McNeil 1982). Computed from average
 * ranks, O(n log n).
 *
 * @example
 * ```ts
 * rocAuc([0, 1, 1, 0], [0.1, 0.9, 0.6, 0.4]); // 1
 * ```
 */
export function rocAuc(labels: ArrayLike<number>, scores: ArrayLike<number>): number {
  const n = check(labels, scores);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]!);
  let rankSumPositives = 0;
  let positives = 0;
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]!] === scores[order[i]!]) j++;
    const rank = (i + j) / 2 + 1; // average rank of the tied group
    for (let k = i; k <= j; k++)
      if (labels[order[k]!] === 1) {
        rankSumPositives += rank;
        positives++;
      }
    i = j + 1;
  }
  const negatives = n - positives;
  if (positives === 0 || negatives === 0) return Number.NaN;
  return (rankSumPositives - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/**
 * The ROC curve: (false positive rate, true positive rate) at each distinct score, from the top.
 *
 * @example
 * ```ts
 * const curve = rocCurve(outcomes, scores);
 * show({ data: [{ type: 'scatter', mode: 'lines', x: curve.map((p) => p.fpr), y: curve.map((p) => p.tpr) }] });
 * ```
 */
export function rocCurve(labels: ArrayLike<number>, scores: ArrayLike<number>): { fpr: number; tpr: number; threshold: number }[] {
  const n = check(labels, scores);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  let positives = 0;
  for (let i = 0; i < n; i++) positives += labels[i] === 1 ? 1 : 0;
  const negatives = n - positives;
  const points = [{ fpr: 0, tpr: 0, threshold: Number.POSITIVE_INFINITY }];
  let tp = 0;
  let fp = 0;
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]!] === scores[order[i]!]) j++;
    for (let k = i; k <= j; k++) {
      if (labels[order[k]!] === 1) tp++;
      else fp++;
    }
    points.push({ fpr: negatives > 0 ? fp / negatives : 0, tpr: positives > 0 ? tp / positives : 0, threshold: scores[order[i]!]! });
    i = j + 1;
  }
  return points;
}

/**
 * PR AUC as average precision: sum over thresholds of (R_k - R_{k-1}) * P_k, thresholds at the
 * distinct scores from high to low (the definition scikit-learn's average_precision_score uses; no
 * interpolation).
 *
 * @example
 * ```ts
 * averagePrecision([0, 1, 1, 0], [0.1, 0.9, 0.6, 0.4]); // 1
 * ```
 */
export function averagePrecision(labels: ArrayLike<number>, scores: ArrayLike<number>): number {
  const n = check(labels, scores);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  let totalPositives = 0;
  for (let i = 0; i < n; i++) totalPositives += labels[i] === 1 ? 1 : 0;
  if (totalPositives === 0) return Number.NaN;
  let tp = 0;
  let seen = 0;
  let lastRecall = 0;
  let ap = 0;
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]!] === scores[order[i]!]) j++;
    for (let k = i; k <= j; k++) tp += labels[order[k]!] === 1 ? 1 : 0;
    seen = j + 1;
    const recall = tp / totalPositives;
    ap += (recall - lastRecall) * (tp / seen);
    lastRecall = recall;
    i = j + 1;
  }
  return ap;
}

/**
 * Mean negative log-likelihood of the labels, probabilities clipped to [eps, 1 - eps].
 *
 * @example
 * ```ts
 * logLoss([0, 1], [0.2, 0.7]); // about 0.290
 * ```
 */
export function logLoss(labels: ArrayLike<number>, probabilities: ArrayLike<number>, eps = 1e-15): number {
  const n = check(labels, probabilities);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const p = Math.min(1 - eps, Math.max(eps, probabilities[i]!));
    sum -= labels[i] === 1 ? Math.log(p) : Math.log(1 - p);
  }
  return sum / n;
}

/**
 * Mean squared difference between probability and label (Brier 1950).
 *
 * @example
 * ```ts
 * brierScore([0, 1], [0.2, 0.7]); // 0.065
 * ```
 */
export function brierScore(labels: ArrayLike<number>, probabilities: ArrayLike<number>): number {
  const n = check(labels, probabilities);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += (probabilities[i]! - labels[i]!) ** 2;
  return sum / n;
}

export interface CalibrationBin {
  lower: number;
  upper: number;
  n: number;
  meanPredicted: number;
  observedRate: number;
}

/**
 * Reliability table: predictions in equal-width bins of [0, 1], each bin's mean prediction and observed rate.
 *
 * @example
 * ```ts
 * show(calibrationTable(outcomes, model.predict(test), 10), { caption: 'Calibration' });
 * ```
 */
export function calibrationTable(labels: ArrayLike<number>, probabilities: ArrayLike<number>, bins = 10): CalibrationBin[] {
  const n = check(labels, probabilities);
  const table = Array.from({ length: bins }, (_, b) => ({ lower: b / bins, upper: (b + 1) / bins, n: 0, sumP: 0, positives: 0 }));
  for (let i = 0; i < n; i++) {
    const p = probabilities[i]!;
    const bin = table[Math.min(bins - 1, Math.max(0, Math.floor(p * bins)))]!;
    bin.n++;
    bin.sumP += p;
    bin.positives += labels[i] === 1 ? 1 : 0;
  }
  return table.filter((b) => b.n > 0).map((b) => ({ lower: b.lower, upper: b.upper, n: b.n, meanPredicted: b.sumP / b.n, observedRate: b.positives / b.n }));
}

export interface LiftRow {
  /** 1 = the tenth with the highest scores. */
  decile: number;
  n: number;
  positives: number;
  rate: number;
  /** rate / overall rate. */
  lift: number;
  /** Share of all positives found in this decile and those above it. */
  cumulativeCapture: number;
}

/**
 * Lift by decile of score (ties broken by position, so deciles have equal sizes).
 *
 * @example
 * ```ts
 * show(liftByDecile(outcomes, scores), { caption: 'Lift by decile' });
 * ```
 */
export function liftByDecile(labels: ArrayLike<number>, scores: ArrayLike<number>): LiftRow[] {
  const n = check(labels, scores);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]! || a - b);
  let total = 0;
  for (let i = 0; i < n; i++) total += labels[i] === 1 ? 1 : 0;
  const overall = total / n;
  const rows: LiftRow[] = [];
  let captured = 0;
  for (let d = 0; d < 10; d++) {
    const from = Math.floor((d * n) / 10);
    const to = Math.floor(((d + 1) * n) / 10);
    let positives = 0;
    for (let k = from; k < to; k++) positives += labels[order[k]!] === 1 ? 1 : 0;
    captured += positives;
    const size = to - from;
    const rate = size > 0 ? positives / size : 0;
    rows.push({
      decile: d + 1,
      n: size,
      positives,
      rate,
      lift: overall > 0 ? rate / overall : Number.NaN,
      cumulativeCapture: total > 0 ? captured / total : Number.NaN,
    });
  }
  return rows;
}

/** A binary classifier's metrics on one set of rows (see `evaluate`). */
export interface Evaluation {
  n: number;
  positives: number;
  rocAuc: number;
  prAuc: number;
  logLoss: number;
  brier: number;
  calibration: CalibrationBin[];
  lift: LiftRow[];
}

/**
 * Every metric of a binary classifier at once: ROC AUC, PR AUC, log loss, Brier score, calibration and lift by decile.
 *
 * @example
 * ```ts
 * const ev = evaluate(test.map((r) => Number(r.churned)), model.predict(test));
 * console.log(ev.rocAuc, ev.prAuc, ev.logLoss);
 * ```
 */
export function evaluate(labels: ArrayLike<number>, probabilities: ArrayLike<number>): Evaluation {
  let positives = 0;
  for (let i = 0; i < labels.length; i++) positives += labels[i] === 1 ? 1 : 0;
  return {
    n: labels.length,
    positives,
    rocAuc: rocAuc(labels, probabilities),
    prAuc: averagePrecision(labels, probabilities),
    logLoss: logLoss(labels, probabilities),
    brier: brierScore(labels, probabilities),
    calibration: calibrationTable(labels, probabilities),
    lift: liftByDecile(labels, probabilities),
  };
}

/**
 * Stratified k-fold: each row's fold (0..k-1), positives and negatives each dealt round-robin in a
 * seeded random order, so every fold has the same class balance up to one row.
 *
 * @example
 * ```ts
 * const folds = stratifiedFolds(rows.map((r) => Number(r.churned)), 5, 1);
 * const firstFold = rows.filter((_, i) => folds[i] === 0);
 * ```
 */
export function stratifiedFolds(labels: ArrayLike<number>, k: number, seed = 1): Int32Array {
  if (!Number.isInteger(k) || k < 2) throw new InputError(`k-fold needs k of at least 2, got ${k}`);
  const random = new Random(seed);
  const folds = new Int32Array(labels.length);
  for (const cls of [0, 1]) {
    const rows: number[] = [];
    for (let i = 0; i < labels.length; i++) if ((labels[i] === 1 ? 1 : 0) === cls) rows.push(i);
    random.shuffle(rows).forEach((row, i) => (folds[row] = i % k));
  }
  return folds;
}

function check(labels: ArrayLike<number>, scores: ArrayLike<number>): number {
  if (labels.length !== scores.length) throw new InputError(`${labels.length} labels but ${scores.length} scores`);
  if (labels.length === 0) throw new InputError('nothing to evaluate: no rows');
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] !== 0 && labels[i] !== 1) throw new InputError(`label ${i} is ${labels[i]}: labels are 0 or 1`);
    if (!Number.isFinite(scores[i]!)) throw new InputError(`score ${i} is ${scores[i]}: scores must be finite numbers`);
  }
  return labels.length;
}
