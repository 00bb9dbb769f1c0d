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

/** One bin of a reliability diagram: the scores' mean against the observed rate of positives. */
export interface CalibrationBin {
  lower: number;
  upper: number;
  n: number;
  meanPredicted: number;
  observedRate: number;
}

/**
 * How reliability bins are drawn: `uniform`, equal widths of [0, 1]; `quantile`, equal numbers of
 * rows (scikit-learn's calibration_curve strategies).
 */
export type BinStrategy = 'uniform' | 'quantile';

/**
 * Reliability table: predictions in bins, each bin's mean prediction and observed rate (the mean
 * label; or the mean true probability, when true probabilities are given as outcomes). `uniform`
 * (the default) cuts [0, 1] into equal widths; `quantile` sorts the predictions and cuts them into
 * equal counts, never splitting a run of equal predictions (so the bins do not depend on row order,
 * and may be fewer or uneven where predictions tie).
 *
 * @example
 * ```ts
 * show(calibrationTable(outcomes, model.predict(test), 10), { caption: 'Calibration' });
 * ```
 */
export function calibrationTable(labels: ArrayLike<number>, probabilities: ArrayLike<number>, bins = 10, strategy: BinStrategy = 'uniform'): CalibrationBin[] {
  checkOutcomes(labels, probabilities);
  return reliabilityBins(labels, probabilities, bins, strategy);
}

/**
 * Expected calibration error: the row-weighted mean over reliability bins of |mean prediction -
 * observed rate| (Naeini, Cooper & Hauskrecht 2015; Guo et al. 2017). Bins are equal-mass by
 * default (`quantile`, 10 bins, see `calibrationTable`): churn and purchase scores crowd the low end
 * of [0, 1], where equal widths would put nearly every row in one bin and hide the error inside it.
 * `outcomes` are labels (0/1) or, where they are known (a simulator's), the true probabilities:
 * then the observed rate of a bin is its mean true probability, free of label noise.
 *
 * @example
 * ```ts
 * expectedCalibrationError([0, 1, 0, 1], [0.1, 0.9, 0.3, 0.7], { bins: 2 }); // 0.2
 * ```
 */
export function expectedCalibrationError(
  outcomes: ArrayLike<number>,
  probabilities: ArrayLike<number>,
  options: { bins?: number; strategy?: BinStrategy } = {},
): number {
  const n = checkOutcomes(outcomes, probabilities);
  let sum = 0;
  for (const b of reliabilityBins(outcomes, probabilities, options.bins ?? 10, options.strategy ?? 'quantile'))
    sum += b.n * Math.abs(b.meanPredicted - b.observedRate);
  return sum / n;
}

function reliabilityBins(outcomes: ArrayLike<number>, probabilities: ArrayLike<number>, bins: number, strategy: BinStrategy): CalibrationBin[] {
  if (!Number.isInteger(bins) || bins < 1) throw new InputError(`bins must be a whole number of at least 1, got ${bins}`);
  const n = outcomes.length;
  const table: { lower: number; upper: number; n: number; sumP: number; sumY: number }[] = [];
  if (strategy === 'uniform') {
    for (let b = 0; b < bins; b++) table.push({ lower: b / bins, upper: (b + 1) / bins, n: 0, sumP: 0, sumY: 0 });
    for (let i = 0; i < n; i++) {
      const p = probabilities[i]!;
      const bin = table[Math.min(bins - 1, Math.max(0, Math.floor(p * bins)))]!;
      bin.n++;
      bin.sumP += p;
      bin.sumY += outcomes[i]!;
    }
    return table.filter((b) => b.n > 0).map((b) => ({ lower: b.lower, upper: b.upper, n: b.n, meanPredicted: b.sumP / b.n, observedRate: b.sumY / b.n }));
  }
  if (strategy !== 'quantile') throw new InputError(`unknown bin strategy ${JSON.stringify(strategy)}: uniform or quantile`);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => probabilities[a]! - probabilities[b]!);
  for (let start = 0, b = 1; start < n; b++) {
    let end = Math.max(start + 1, Math.floor((b * n) / bins));
    while (end < n && probabilities[order[end]!] === probabilities[order[end - 1]!]) end++;
    const bin = { lower: probabilities[order[start]!]!, upper: probabilities[order[end - 1]!]!, n: end - start, sumP: 0, sumY: 0 };
    for (let k = start; k < end; k++) {
      bin.sumP += probabilities[order[k]!]!;
      bin.sumY += outcomes[order[k]!]!;
    }
    table.push(bin);
    start = end;
  }
  return table.map((b) => ({ lower: b.lower, upper: b.upper, n: b.n, meanPredicted: b.sumP / b.n, observedRate: b.sumY / b.n }));
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
  /** Share of positives: the constant prediction every model must beat. */
  baseRate: number;
  /** Brier score of predicting the base rate for every row: baseRate * (1 - baseRate). */
  baseRateBrier: number;
  /** 1 - brier / baseRateBrier: above 0 only when the scores beat the constant (Brier skill score). */
  brierSkill: number;
  /** Mean prediction, to set against `baseRate`. */
  meanScore: number;
  /** Expected calibration error over 10 equal-mass bins (`expectedCalibrationError`). */
  ece: number;
  calibration: CalibrationBin[];
  lift: LiftRow[];
}

/**
 * Every metric of a binary classifier at once: ROC AUC, PR AUC, log loss, Brier score against the
 * base rate's (the test rows' own share of positives, the hardest constant to beat), ECE, the
 * reliability table and lift by decile.
 *
 * @example
 * ```ts
 * const ev = evaluate(test.map((r) => Number(r.churned)), model.predict(test));
 * console.log(ev.rocAuc, ev.prAuc, ev.logLoss);
 * ```
 */
export function evaluate(labels: ArrayLike<number>, probabilities: ArrayLike<number>): Evaluation {
  let positives = 0;
  let sumP = 0;
  for (let i = 0; i < labels.length; i++) {
    positives += labels[i] === 1 ? 1 : 0;
    sumP += probabilities[i]!;
  }
  const brier = brierScore(labels, probabilities);
  const baseRate = positives / labels.length;
  const baseRateBrier = baseRate * (1 - baseRate);
  return {
    n: labels.length,
    positives,
    rocAuc: rocAuc(labels, probabilities),
    prAuc: averagePrecision(labels, probabilities),
    logLoss: logLoss(labels, probabilities),
    brier,
    baseRate,
    baseRateBrier,
    brierSkill: baseRateBrier > 0 ? 1 - brier / baseRateBrier : Number.NaN,
    meanScore: sumP / labels.length,
    ece: expectedCalibrationError(labels, probabilities),
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

/** Like `check`, for outcomes that may be true probabilities in [0, 1] as well as labels. */
function checkOutcomes(outcomes: ArrayLike<number>, probabilities: ArrayLike<number>): number {
  if (outcomes.length !== probabilities.length) throw new InputError(`${outcomes.length} outcomes but ${probabilities.length} probabilities`);
  if (outcomes.length === 0) throw new InputError('nothing to evaluate: no rows');
  for (let i = 0; i < outcomes.length; i++) {
    const y = outcomes[i]!;
    if (!(y >= 0 && y <= 1)) throw new InputError(`outcome ${i} is ${y}: outcomes are labels (0/1) or probabilities in [0, 1]`);
    if (!Number.isFinite(probabilities[i]!)) throw new InputError(`probability ${i} is ${probabilities[i]}: probabilities must be finite numbers`);
  }
  return outcomes.length;
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
