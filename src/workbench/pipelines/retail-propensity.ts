import { retailFeatures } from '../features/catalog.js';
import type { Feature } from '../features/definition.js';
import { buildTrainingSet } from '../features/offline.js';
import type { Lakehouse, Row } from '../lakehouse.js';
import { trainCalibrated, uncalibrated, type Calibration } from '../models/calibration.js';
import { evaluate, type Evaluation } from '../models/evaluate.js';
import { columnsFor } from '../models/preprocess.js';
import type { Classifier, TrainOptions } from '../models/train.js';
import type { Progress } from '../progress.js';
import { days, labels, spine } from '../spine.js';
import { sql } from '../sql.js';

/**
 * Purchase propensity on the retail log, the code notebook 02 and the `retail-propensity` job share:
 * will a customer who has bought before buy again within the horizon? One row per customer and
 * moment; features point in time (events strictly before the moment), the label a purchase in
 * (moment, moment + horizon]; trained on moments before `testFrom`, evaluated after it.
 */
export interface RetailPropensityOptions {
  /** First and last moment (ISO dates) and the days between moments. */
  from?: string;
  to?: string;
  stepDays?: number;
  horizonDays?: number;
  testFrom?: string;
  features?: readonly Feature[];
  train?: TrainOptions;
  progress?: Progress;
}

/** The retail propensity pipeline's training and test rows, in (as_of, user_id) order, and the features they hold (see `retailPropensityData`). */
export interface RetailPropensityData {
  features: readonly Feature[];
  train: Row[];
  test: Row[];
  /** Seconds to compute the training set. */
  buildSeconds: number;
}

export const RETAIL_PROPENSITY_DEFAULTS = { from: '2011-02-01', to: '2011-11-01', stepDays: 14, horizonDays: 30, testFrom: '2011-08-01' };

/**
 * The retail purchase-propensity training and test sets: customers every `stepDays`, the retail features as of each moment, and whether they bought within `horizonDays`.
 *
 * @example
 * ```ts
 * const data = await retailPropensityData(lake, { stepDays: 14, horizonDays: 30, testFrom: '2011-08-01' });
 * ```
 */
export async function retailPropensityData(lake: Lakehouse, options: RetailPropensityOptions = {}): Promise<RetailPropensityData> {
  const o = { ...RETAIL_PROPENSITY_DEFAULTS, ...options };
  const features = o.features ?? retailFeatures;
  const retail = sql`SELECT * FROM events WHERE source = 'retail'`;
  // Customers enter the grid once they have bought (strictly before the moment: the features see
  // that purchase); `bought` is a purchase in (as_of, as_of + horizon], after everything they see.
  const customers = sql`SELECT user_id, min(time) AS first FROM (${retail}) r WHERE event = 'purchase' GROUP BY user_id`;
  const grid = spine({ entities: customers, from: o.from, to: o.to, every: days(o.stepDays, 'stepDays'), since: 'first' });
  const labelled = labels(grid, { name: 'bought', within: days(o.horizonDays, 'horizonDays'), event: 'purchase', events: retail });
  const started = Date.now();
  o.progress?.log(`building the training set: ${features.length} features every ${o.stepDays} days from ${o.from} to ${o.to}`);
  const rows = await buildTrainingSet(lake, features, { spine: labelled, events: sql`(${retail})` });
  const cut = Date.parse(o.testFrom);
  return {
    features,
    train: rows.filter((r) => (r.as_of as Date).getTime() < cut),
    test: rows.filter((r) => (r.as_of as Date).getTime() >= cut),
    buildSeconds: (Date.now() - started) / 1000,
  };
}

/** The trained retail propensity model with its test evaluation and the recency baseline (see `trainRetailPropensity`). */
export interface RetailPropensityModel {
  /** Calibrated: its `predict` gives calibrated probabilities, and its bundle keeps the calibration. */
  model: Classifier;
  /** Test metrics of the calibrated scores. */
  evaluation: Evaluation;
  /** Test metrics of the model's own scores, before calibration. */
  uncalibrated: Evaluation;
  /** Chosen on the latest training moments (`calibrationShare`), never on the test ones. */
  calibration: Calibration;
  /** Rows the model was fitted on and rows its calibration was chosen on. */
  fitRows: number;
  validationRows: number;
  /** Recency alone on the same test rows. */
  baseline: Evaluation;
}

/**
 * Trains the retail purchase-propensity model on the earlier training moments, calibrates it on the
 * latest `calibrationShare` of them (default 0.3; 0 for none) and evaluates it on the test period,
 * next to a recency-only baseline.
 *
 * @example
 * ```ts
 * const { model, evaluation, baseline } = await trainRetailPropensity(await retailPropensityData(lake), { seed: 1 });
 * console.log(evaluation.rocAuc, baseline.rocAuc);
 * ```
 */
export async function trainRetailPropensity(
  data: RetailPropensityData,
  options: TrainOptions & { calibrationShare?: number } = {},
): Promise<RetailPropensityModel> {
  const trained = await trainCalibrated(data.train, 'bought', columnsFor(data.features), {
    seed: 1,
    batchSize: 512,
    learningRate: 0.03,
    patience: 5,
    groupColumn: 'user_id',
    ...options,
  });
  const { model } = trained;
  const labels = data.test.map((r) => r.bought as number);
  return {
    ...trained,
    evaluation: evaluate(labels, model.predict(data.test)),
    uncalibrated: evaluate(labels, uncalibrated(model).predict(data.test)),
    baseline: evaluate(
      labels,
      data.test.map((r) => 1 / (1 + (r.since_last_purchase as number) / 86_400)),
    ),
  };
}
