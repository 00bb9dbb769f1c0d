import { appFeatures } from '../features/catalog.js';
import { InputError } from '../errors.js';
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

const DAY_MS = 86_400_000;

/**
 * Churn on the simulated app, the code notebook 04 and the `app-churn` job share: one row per user
 * and moment (users signed up at least a week before, not churned yet); the label is churning within
 * the horizon, in (as_of, as_of + horizon], while the features see the events strictly before as_of;
 * `true_p` is the simulator's true probability of that, for checking (never an input).
 */
export interface AppChurnOptions {
  horizonDays?: number;
  stepDays?: number;
  /** Share of the moments (the earliest) to train on. */
  trainShare?: number;
  progress?: Progress;
}

/** The app churn pipeline's training and test rows, in (as_of, user_id) order, and the features they hold (see `appChurnData`). */
export interface AppChurnData {
  features: readonly Feature[];
  train: Row[];
  test: Row[];
  buildSeconds: number;
}

/**
 * The very short windows say nothing at moments chosen by the calendar. `user_age` (time since the
 * first event) is left out too: it grows with the calendar for every user, so the test moments hold
 * ages the training moments never saw (on the default lake their mean is 1.7 training standard
 * deviations above the training mean), and the weight it learns early on, standing in for 30-day
 * windows still cut short by the start of the log, then pushes every later score up: with it the
 * test scores averaged 0.116 against a true 0.084, beyond what a calibration fitted on earlier
 * moments can correct.
 */
export const APP_CHURN_FEATURES: readonly Feature[] = appFeatures.filter((f) => !['events_10m', 'events_1h', 'user_age'].includes(f.name));

/**
 * The app churn training and test sets: a spine of users every `stepDays`, the app features as of each moment, and whether the user churned within `horizonDays`.
 *
 * @example
 * ```ts
 * const data = await appChurnData(lake, { horizonDays: 14, stepDays: 2 });
 * show(data.train.slice(0, 5));
 * ```
 */
export async function appChurnData(lake: Lakehouse, options: AppChurnOptions = {}): Promise<AppChurnData> {
  const horizon = options.horizonDays ?? 14;
  const step = options.stepDays ?? 2;
  const every = days(step, 'stepDays');
  const within = days(horizon, 'horizonDays');
  const [span] = await lake.query<{ first: Date; last: Date }>(sql`SELECT min(time) AS first, max(time) AS last FROM app_events`);
  if (!span?.first || !span.last) throw new InputError('the lakehouse has no app events: build it with the simulated app (wb lake build)');
  // The label is the simulator's record of the churn (app_truth), not an event: a free user who
  // churns just stops coming, and only pro users log a subscription_cancelled, so neither an event
  // nor a quiet spell (an occasional user) would say who churned. It is what a real product reads
  // from its account records; true_p, also from app_truth, is for checking and never an input.
  const truth = sql`SELECT user_id, CAST(churned_at AS TIMESTAMP) AS time FROM app_truth WHERE churned_at IS NOT NULL`;
  // Users from a week after signup until they churn: no row at or after the churn.
  const users = sql`SELECT u.user_id, CAST(u.first_seen AS TIMESTAMP) + INTERVAL 7 DAY AS settled, CAST(t.churned_at AS TIMESTAMP) AS churned_at
                    FROM users u JOIN app_truth t USING (user_id)`;
  const grid = spine({
    entities: users,
    from: new Date(span.first.getTime() + 14 * DAY_MS),
    to: new Date(span.last.getTime() - horizon * DAY_MS),
    every,
    since: 'settled',
    until: 'churned_at',
  });
  const labelled = labels(grid, { name: 'churned', within, events: truth });
  const withTruth = sql`(
    SELECT l.*,
           1 - power(1 - CASE WHEN t.upgraded_at IS NOT NULL AND CAST(t.upgraded_at AS TIMESTAMP) < l.as_of
                              THEN 1 / (1 + exp(1.0 - ln(t.churn_hazard / (1 - t.churn_hazard)))) ELSE t.churn_hazard END, ${horizon}) AS true_p
    FROM ${labelled} l JOIN app_truth t USING (user_id)
    ORDER BY l.as_of, l.user_id)`;
  const started = Date.now();
  options.progress?.log(`building the training set: ${APP_CHURN_FEATURES.length} features every ${step} days, horizon ${horizon} days`);
  const rows = await buildTrainingSet(lake, APP_CHURN_FEATURES, { spine: withTruth, events: sql`(SELECT * FROM events WHERE source = 'app')` });
  const moments = [...new Set(rows.map((r) => (r.as_of as Date).getTime()))].sort((a, b) => a - b);
  const cut = moments[Math.floor(moments.length * (options.trainShare ?? 0.5))] ?? Number.POSITIVE_INFINITY;
  return {
    features: APP_CHURN_FEATURES,
    train: rows.filter((r) => (r.as_of as Date).getTime() < cut),
    test: rows.filter((r) => (r.as_of as Date).getTime() >= cut),
    buildSeconds: (Date.now() - started) / 1000,
  };
}

/** The trained app churn model with its test evaluation and the oracle (see `trainAppChurn`). */
export interface AppChurnModel {
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
  /** The true probabilities as scores: the best any model could do on these labels. */
  oracle: Evaluation;
}

/**
 * Trains the app churn model on the earlier training moments, calibrates it on the latest
 * `calibrationShare` of them (default 0.3; 0 for none) and evaluates it on the test set, next to the
 * simulator's true probabilities (the oracle).
 *
 * @example
 * ```ts
 * const { model, evaluation, oracle } = await trainAppChurn(await appChurnData(lake), { seed: 1 });
 * console.log(evaluation.rocAuc, oracle.rocAuc);
 * ```
 */
export async function trainAppChurn(data: AppChurnData, options: TrainOptions & { calibrationShare?: number } = {}): Promise<AppChurnModel> {
  const trained = await trainCalibrated(data.train, 'churned', columnsFor(data.features), { seed: 1, learningRate: 0.03, patience: 8, ...options });
  const { model } = trained;
  const labels = data.test.map((r) => r.churned as number);
  return {
    ...trained,
    evaluation: evaluate(labels, model.predict(data.test)),
    uncalibrated: evaluate(labels, uncalibrated(model).predict(data.test)),
    oracle: evaluate(
      labels,
      data.test.map((r) => r.true_p as number),
    ),
  };
}
