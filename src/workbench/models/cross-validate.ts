import { defaultProgress, silentProgress, type Progress } from '../progress.js';
import { applyCalibration, chooseCalibration, type Calibration } from './calibration.js';
import { evaluate, stratifiedFolds, type Evaluation } from './evaluate.js';
import type { ColumnSpec, Row } from './preprocess.js';
import { labelsOf, trainClassifier, type TrainOptions } from './train.js';

/** One cross-validation fold's metrics. */
export interface FoldResult {
  fold: number;
  n: number;
  rocAuc: number;
  prAuc: number;
  logLoss: number;
  bestEpoch: number;
}

/** What `crossValidate` found: each fold's metrics, their mean ROC AUC and the out-of-fold scores. */
export interface CrossValidation {
  folds: FoldResult[];
  /** Mean and standard deviation of the folds' ROC AUC. */
  rocAuc: { mean: number; sd: number };
  /** Every row scored by the model that did not see it (out of fold), evaluated together. */
  outOfFold: Evaluation;
  scores: Float32Array;
  /** With `calibrate`: each fold's calibration, and the out-of-fold scores and metrics before it. */
  calibrations?: Calibration[];
  uncalibrated?: { outOfFold: Evaluation; scores: Float32Array };
}

/**
 * Stratified k-fold cross-validation: each fold is scored by a model trained (preprocessing
 * included) on the other folds only. With `calibrate`, a stratified fifth of those other folds is
 * held out of the training to choose a calibration (`chooseCalibration`), applied to the fold's
 * scores: for data without time, where no later slice exists.
 *
 * @example
 * ```ts
 * const cv = await crossValidate(data.train, 'churned', columnsFor(data.features), { folds: 5, seed: 1 });
 * show(cv.folds, { caption: `ROC AUC ${cv.rocAuc.mean.toFixed(3)}` });
 * ```
 */
export async function crossValidate(
  rows: readonly Row[],
  label: string,
  columns: readonly ColumnSpec[],
  options: TrainOptions & { folds?: number; calibrate?: boolean } = {},
): Promise<CrossValidation> {
  const { calibrate = false, ...train } = options;
  const k = options.folds ?? 5;
  const labels = labelsOf(rows, label);
  const fold = stratifiedFolds(labels, k, options.seed ?? 1);
  const scores = new Float32Array(rows.length);
  const raw = new Float32Array(rows.length);
  const calibrations: Calibration[] = [];
  const results: FoldResult[] = [];
  const progress: Progress = options.progress ?? defaultProgress();
  const task = progress.task(`cross-validating on ${rows.length.toLocaleString('en-US')} rows`, k, 'folds');
  for (let f = 0; f < k; f++) {
    let trainRows = rows.filter((_, i) => fold[i] !== f);
    const testIndex = rows.flatMap((_, i) => (fold[i] === f ? [i] : []));
    let validation: Row[] = [];
    if (calibrate) {
      const inner = stratifiedFolds(labelsOf(trainRows, label), 5, (options.seed ?? 1) + f + 1);
      validation = trainRows.filter((_, i) => inner[i] === 0);
      trainRows = trainRows.filter((_, i) => inner[i] !== 0);
    }
    const model = await trainClassifier(trainRows, label, columns, { ...train, progress: silentProgress });
    try {
      const own = model.predict(testIndex.map((i) => rows[i]!));
      const calibration = calibrate ? chooseCalibration(labelsOf(validation, label), model.predict(validation)) : undefined;
      const predicted = calibration ? Float32Array.from(applyCalibration(calibration, own)) : own;
      if (calibration) calibrations.push(calibration);
      testIndex.forEach((row, j) => {
        scores[row] = predicted[j]!;
        raw[row] = own[j]!;
      });
      const e = evaluate(
        testIndex.map((i) => labels[i]!),
        predicted,
      );
      results.push({ fold: f + 1, n: testIndex.length, rocAuc: e.rocAuc, prAuc: e.prAuc, logLoss: e.logLoss, bestEpoch: model.bestEpoch });
      task.update(f + 1);
      progress.log(`fold ${f + 1} of ${k}: ROC AUC ${e.rocAuc.toFixed(4)} on ${testIndex.length} rows (best epoch ${model.bestEpoch})`);
    } finally {
      model.dispose();
    }
  }
  const aucs = results.map((r) => r.rocAuc);
  const mean = aucs.reduce((a, b) => a + b, 0) / k;
  const sd = Math.sqrt(aucs.reduce((a, b) => a + (b - mean) ** 2, 0) / (k - 1));
  task.finish(`ROC AUC ${mean.toFixed(4)} ± ${sd.toFixed(4)} over ${k} folds`);
  return {
    folds: results,
    rocAuc: { mean, sd },
    outOfFold: evaluate(labels, scores),
    scores,
    ...(calibrate ? { calibrations, uncalibrated: { outOfFold: evaluate(labels, raw), scores: raw } } : {}),
  };
}
