import { lakeDir, oltpUrl } from '../config.js';
import { InputError } from '../errors.js';
import type { Feature } from '../features/definition.js';
import { Lakehouse, type Row } from '../lakehouse.js';
import { buildLakehouse } from '../lakehouse/build.js';
import { createBundle, loadClassifier } from '../models/bundle.js';
import type { Calibration } from '../models/calibration.js';
import { evaluate, type Evaluation } from '../models/evaluate.js';
import { lineageOf } from '../models/lineage.js';
import { publish } from '../models/publish.js';
import type { Classifier } from '../models/train.js';
import { openOltp } from '../oltp/index.js';
import { INTERVALS_STATE, trackRuns } from '../runs/job.js';
import { appChurnData, trainAppChurn } from '../pipelines/app-churn.js';
import { retailPropensityData, trainRetailPropensity } from '../pipelines/retail-propensity.js';
import type { Progress } from '../progress.js';
import type { Dag } from './dag.js';

/**
 * The training DAGs: snapshot the OLTP replica -> build the training set -> train (and calibrate on
 * the latest training moments) -> evaluate against the current champion -> publish. The gate: the
 * new model's test ROC AUC is at least `minAuc` and no more than `tolerance` below the champion's on
 * the same test rows, and its test Brier score (of the calibrated probabilities) is below the base
 * rate's: a model that predicts worse than the test rows' share of positives is not published. A model that
 * passes becomes the champion when there is none, else the challenger (or `--param alias=...`).
 * It is published to the service when `url` and `key` are given (params, or WB_URL and
 * WB_ADMIN_KEY), else saved to the data dir's registry, which a running service re-reads.
 */
interface TrainingSpec {
  dag: string;
  model: string;
  description: string;
  label: string;
  minAuc: number;
  data(lake: Lakehouse, progress: Progress): Promise<{ features: readonly Feature[]; train: Row[]; test: Row[]; buildSeconds: number }>;
  train(data: {
    features: readonly Feature[];
    train: Row[];
    test: Row[];
    buildSeconds: number;
  }): Promise<{ model: Classifier; evaluation: Evaluation; uncalibrated?: Evaluation; calibration?: Calibration; baseline: Evaluation; baselineName: string }>;
}

const TOLERANCE = 0.005;

/** Each run of a training DAG is recorded as a run (`wb runs list`): see trackRuns. */
function trainingDag(spec: TrainingSpec): Dag {
  return trackRuns(
    { dag: spec.dag, model: spec.model, label: spec.label, description: spec.description, minAuc: spec.minAuc, tolerance: TOLERANCE },
    untrackedDag(spec),
  );
}

function untrackedDag(spec: TrainingSpec): Dag {
  return {
    name: spec.dag,
    description: spec.description,
    jobs: [
      {
        name: 'snapshot-replica',
        async run({ dataDir, params, progress }) {
          const oltp = await openOltp(params.oltp ?? oltpUrl(), dataDir);
          try {
            const report = await buildLakehouse({ lakeDir: lakeDir(dataDir), oltp, progress });
            return { tables: report.sources.map((s) => s.name), rows: report.sources.reduce((n, s) => n + s.accepted, 0) };
          } finally {
            await oltp.close();
          }
        },
      },
      {
        name: 'training-set',
        needs: ['snapshot-replica'],
        async run({ dataDir, state, progress }) {
          const lake = await Lakehouse.open(lakeDir(dataDir));
          state.set('lake', lake);
          const data = await spec.data(lake, progress);
          if (data.train.length === 0 || data.test.length === 0)
            throw new InputError(`the training set is empty (train ${data.train.length}, test ${data.test.length} rows): build the lakehouse with more data`);
          state.set('data', data);
          return { train_rows: data.train.length, test_rows: data.test.length, features: data.features.length, seconds: data.buildSeconds };
        },
      },
      {
        name: 'train',
        needs: ['training-set'],
        async run({ state }) {
          const result = await spec.train(state.get('data') as Parameters<TrainingSpec['train']>[0]);
          state.set('trained', result);
          return {
            roc_auc: result.evaluation.rocAuc,
            pr_auc: result.evaluation.prAuc,
            log_loss: result.evaluation.logLoss,
            brier: result.evaluation.brier,
            base_rate_brier: result.evaluation.baseRateBrier,
            ece: result.evaluation.ece,
            calibration: result.calibration?.method ?? 'none',
            ...(result.uncalibrated ? { uncalibrated_brier: result.uncalibrated.brier, uncalibrated_ece: result.uncalibrated.ece } : {}),
            [`${result.baselineName}_roc_auc`]: result.baseline.rocAuc,
            best_epoch: result.model.bestEpoch,
          };
        },
      },
      {
        name: 'evaluate-vs-champion',
        needs: ['train'],
        async run({ params, state, registry: openRegistry }) {
          const { evaluation } = state.get('trained') as Awaited<ReturnType<TrainingSpec['train']>>;
          const data = state.get('data') as { test: Row[] };
          const minAuc = params.minAuc !== undefined ? Number(params.minAuc) : spec.minAuc;
          const registry = await openRegistry();
          const championVersion = registry.resolve(spec.model, 'champion');
          let championAuc: number | null = null;
          if (championVersion) {
            const bundle = await registry.getAsync(championVersion);
            if (bundle.features.every((f) => f.name in data.test[0]!)) {
              const champion = await loadClassifier(bundle);
              try {
                championAuc = evaluate(
                  data.test.map((r) => r[spec.label] as number),
                  champion.predict(data.test),
                ).rocAuc;
              } finally {
                champion.dispose();
              }
            }
          }
          const reasons = gateReasons(evaluation, { minAuc, championAuc });
          const passed = reasons.length === 0;
          state.set('gate', { passed, championVersion });
          return {
            passed,
            challenger_roc_auc: evaluation.rocAuc,
            challenger_brier: evaluation.brier,
            base_rate_brier: evaluation.baseRateBrier,
            champion_version: championVersion ?? null,
            champion_roc_auc: championAuc,
            reason: passed ? 'passes the gate' : reasons.join('; '),
          };
        },
      },
      {
        name: 'publish',
        needs: ['evaluate-vs-champion'],
        async run({ params, state, registry: openRegistry }) {
          const gate = state.get('gate') as { passed: boolean; championVersion?: string };
          if (!gate.passed) return { published: false, reason: 'the model did not pass the gate' };
          const { model, evaluation, uncalibrated, baseline, baselineName } = state.get('trained') as Awaited<ReturnType<TrainingSpec['train']>>;
          const data = state.get('data') as { features: readonly Feature[]; train: Row[]; test: Row[] };
          const bundle = await createBundle(spec.model, model, data.features, {
            metrics: {
              rocAuc: evaluation.rocAuc,
              prAuc: evaluation.prAuc,
              logLoss: evaluation.logLoss,
              brier: evaluation.brier,
              baseRateBrier: evaluation.baseRateBrier,
              ece: evaluation.ece,
              ...(uncalibrated ? { uncalibratedBrier: uncalibrated.brier, uncalibratedEce: uncalibrated.ece } : {}),
              [`${baselineName}RocAuc`]: baseline.rocAuc,
              trainRows: data.train.length,
              testRows: data.test.length,
              // The test rows' bootstrap intervals of ROC AUC and Brier (trackRuns computes them after training; seeded).
              intervals: state.get(INTERVALS_STATE),
            },
            lineage: lineageOf(`job:${spec.dag}`, state.get('lake') as Lakehouse, gate.championVersion),
          });
          const registry = await openRegistry();
          const alias = params.alias ?? (gate.championVersion ? 'challenger' : 'champion');
          const url = params.url ?? process.env.WB_URL;
          const key = params.key ?? process.env.WB_ADMIN_KEY;
          // Publishing what is already there moves nothing: the answer says unchanged.
          const outcome =
            url && key
              ? await publish(bundle, { url, key, alias, reason: `job ${spec.dag}` })
              : await registry.publish(bundle, alias, { by: `job ${spec.dag}` });
          return {
            published: true,
            to: url && key ? url : 'registry',
            version: outcome.version,
            alias,
            unchanged: outcome.unchanged,
            message: outcome.message,
          };
        },
      },
    ],
    cleanup(state) {
      (state.get('trained') as { model?: Classifier } | undefined)?.model?.dispose();
      (state.get('lake') as Lakehouse | undefined)?.close();
    },
  };
}

/**
 * Why a challenger fails the gate (none: it passes): its test ROC AUC under `minAuc` or more than
 * the tolerance under the champion's on the same rows, or its test Brier score not below the base
 * rate's (the Brier of predicting the test rows' share of positives for every row).
 *
 * @example
 * ```ts
 * gateReasons(evaluate(labels, scores), { minAuc: 0.65, championAuc: null }); // [] when it passes
 * ```
 */
export function gateReasons(evaluation: Evaluation, limits: { minAuc: number; championAuc: number | null; tolerance?: number }): string[] {
  const tolerance = limits.tolerance ?? TOLERANCE;
  const reasons: string[] = [];
  if (!(evaluation.rocAuc >= limits.minAuc)) reasons.push(`ROC AUC ${evaluation.rocAuc.toFixed(4)} is below the minimum ${limits.minAuc}`);
  if (limits.championAuc !== null && evaluation.rocAuc < limits.championAuc - tolerance)
    reasons.push(`ROC AUC ${evaluation.rocAuc.toFixed(4)} is below the champion's ${limits.championAuc.toFixed(4)} (tolerance ${tolerance})`);
  if (!(evaluation.brier < evaluation.baseRateBrier))
    reasons.push(
      `Brier score ${evaluation.brier.toFixed(5)} is not better than the base rate's ${evaluation.baseRateBrier.toFixed(5)} (predicting ${evaluation.baseRate.toFixed(4)} for every row)`,
    );
  return reasons;
}

/** The training DAGs `wb jobs run` and the scheduler know, by name (see `findDag`). */
export const TRAINING_DAGS: readonly Dag[] = [
  trainingDag({
    dag: 'retail-propensity',
    model: 'purchase-propensity',
    description: 'purchase propensity on the retail log (notebook 02 as a job)',
    label: 'bought',
    minAuc: 0.65,
    data: (lake, progress) => retailPropensityData(lake, { progress }),
    train: async (data) => ({ ...(await trainRetailPropensity(data)), baselineName: 'recency' }),
  }),
  trainingDag({
    dag: 'app-churn',
    model: 'app-churn',
    description: 'churn on the simulated app (notebook 04 as a job)',
    label: 'churned',
    minAuc: 0.65,
    data: (lake, progress) => appChurnData(lake, { progress }),
    train: async (data) => {
      const r = await trainAppChurn(data);
      return { model: r.model, evaluation: r.evaluation, uncalibrated: r.uncalibrated, calibration: r.calibration, baseline: r.oracle, baselineName: 'oracle' };
    },
  }),
];

/**
 * A training DAG by name (`wb jobs run <name>`); the error lists the names that exist.
 *
 * @example
 * ```ts
 * const run = await runDag(findDag('app-churn'), { dataDir: dataDir() });
 * ```
 */
export function findDag(name: string): Dag {
  const dag = TRAINING_DAGS.find((d) => d.name === name);
  if (!dag) throw new InputError(`no DAG named ${JSON.stringify(name)} (DAGs: ${TRAINING_DAGS.map((d) => d.name).join(', ')})`);
  return dag;
}
