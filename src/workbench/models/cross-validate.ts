import { defaultProgress, silentProgress, type Progress } from '../progress.js';
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
}

/**
 * Stratified k-fold cross-validation: each fold is scored by a model trained (preprocessing
 * included) on the other folds only.
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
  options: TrainOptions & { folds?: number } = {},
): Promise<CrossValidation> {
  const k = options.folds ?? 5;
  const labels = labelsOf(rows, label);
  const fold = stratifiedFolds(labels, k, options.seed ?? 1);
  const scores = new Float32Array(rows.length);
  const results: FoldResult[] = [];
  const progress: Progress = options.progress ?? defaultProgress();
  const task = progress.task(`cross-validating on ${rows.length.toLocaleString('en-US')} rows`, k, 'folds');
  for (let f = 0; f < k; f++) {
    const trainRows = rows.filter((_, i) => fold[i] !== f);
    const testIndex = rows.flatMap((_, i) => (fold[i] === f ? [i] : []));
    const model = await trainClassifier(trainRows, label, columns, { ...options, progress: silentProgress });
    try {
      const predicted = model.predict(testIndex.map((i) => rows[i]!));
      testIndex.forEach((row, j) => (scores[row] = predicted[j]!));
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
  return { folds: results, rocAuc: { mean, sd }, outOfFold: evaluate(labels, scores), scores };
}
