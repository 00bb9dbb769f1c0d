import { appFeatures } from '../features/catalog.js';
import { InputError } from '../errors.js';
import { WINDOWS, type Feature } from '../features/definition.js';
import { buildTrainingSet } from '../features/offline.js';
import type { Lakehouse, Row } from '../lakehouse.js';
import { trainCalibrated, uncalibrated, type Calibration } from '../models/calibration.js';
import { evaluate, type Evaluation } from '../models/evaluate.js';
import { columnsFor } from '../models/preprocess.js';
import type { Classifier, TrainOptions } from '../models/train.js';
import type { Progress } from '../progress.js';
import { days, eventSpine, labels } from '../spine.js';
import { sql } from '../sql.js';

const DAY_MS = 86_400_000;

/**
 * Churn on the simulated app, the code notebook 04 and the `app-churn` job share. The model is used
 * at logins (the service's precompute scores each user when they log in, and the churn-offer
 * experiment reads that score), so it is trained on logins: one row per login of a user not churned
 * yet, from their first, its features as the service sees them at that login (the
 * login included); the label is churning within the horizon, in (as_of, as_of + horizon]; `true_p`
 * is the simulator's true probability of that, for checking (never an input).
 */
export interface AppChurnOptions {
  horizonDays?: number;
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
 * The app features a login says something about. Left out: what the login itself sets (the time since
 * the last login is 0 at every login; the last 10 minutes' and hour's events are the login and what the
 * service folded in before it read, which depends on its lag, not the user), and `user_age`, the time
 * since the first event: it grows with the calendar, so the test moments hold ages the training ones
 * never saw, and the weight it learns early on, standing in for 30-day windows still cut short by the
 * start of the log, then pushes every later score up (a mean of 0.116 against a true 0.084 when it was
 * in), beyond what a calibration fitted on earlier moments can correct.
 */
export const APP_CHURN_FEATURES: readonly Feature[] = appFeatures.filter((f) => !['events_10m', 'events_1h', 'since_last_login', 'user_age'].includes(f.name));

/**
 * How far into the history the moments start: the features' longest window (30 days). Before it
 * every window is cut short by the start of the log, so the early moments' counts run low for
 * everyone, and a model fitted on them takes the later, whole windows for users far safer than they
 * are (served at the end of a 60-day history, logins_30d had a PSI of 1.1 against such a training
 * set). A service replaying the history (npm start) scores from there on too.
 */
export const APP_CHURN_WARM_UP_MS = Math.max(...APP_CHURN_FEATURES.map((f) => WINDOWS[f.window].ms).filter(Number.isFinite));

/**
 * The app churn training and test sets: every login (see `eventSpine`), the app features as the service sees them at it, and whether the user churned within `horizonDays`.
 *
 * @example
 * ```ts
 * const data = await appChurnData(lake, { horizonDays: 14 });
 * show(data.train.slice(0, 5));
 * ```
 */
export async function appChurnData(lake: Lakehouse, options: AppChurnOptions = {}): Promise<AppChurnData> {
  const horizon = options.horizonDays ?? 14;
  const within = days(horizon, 'horizonDays');
  const [span] = await lake.query<{ first: Date; last: Date }>(sql`SELECT min(time) AS first, max(time) AS last FROM app_events`);
  if (!span?.first || !span.last) throw new InputError('the lakehouse has no app events: build it with the simulated app (wb lake build)');
  // The label is the simulator's record of the churn (app_truth), not an event: a free user who
  // churns just stops coming, and only pro users log a subscription_cancelled, so neither an event
  // nor a quiet spell (an occasional user) would say who churned. It is what a real product reads
  // from its account records; true_p, also from app_truth, is for checking and never an input.
  const truth = sql`SELECT user_id, CAST(churned_at AS TIMESTAMP) AS time FROM app_truth WHERE churned_at IS NOT NULL`;
  // Users from their first login (the service scores new users too) until they churn: no row at or after the churn.
  const users = sql`SELECT u.user_id, CAST(u.first_seen AS TIMESTAMP) AS signed_up, CAST(t.churned_at AS TIMESTAMP) AS churned_at
                    FROM users u JOIN app_truth t USING (user_id)`;
  const grid = eventSpine({
    event: 'login',
    events: 'app_events',
    entities: users,
    from: new Date(span.first.getTime() + APP_CHURN_WARM_UP_MS),
    to: new Date(span.last.getTime() - horizon * DAY_MS),
    since: 'signed_up',
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
  options.progress?.log(`building the training set: ${APP_CHURN_FEATURES.length} features at every login, horizon ${horizon} days`);
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
  const trained = await trainCalibrated(data.train, 'churned', columnsFor(data.features), {
    seed: 1,
    learningRate: 0.03,
    patience: 8,
    groupColumn: 'user_id',
    ...options,
  });
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
