/**
 * The workbench: what notebooks, jobs and the service import. One line per concept.
 */
export { dataDir, lakeDir, oltpUrl, registryDir } from './config.js';
export { displayHtml, htmlTable, plotHtml, show, type Figure, type Tabular } from './display.js';
export { ConflictError, IntegrityError, InputError, NotebookError, NotFoundError, SqlError, WorkbenchError } from './errors.js';
export { EventSchema, type Event } from './event.js';
export {
  AGGREGATIONS,
  feature,
  featureSet,
  featureSetVersion,
  WINDOWS,
  type Feature,
  type FeatureInput,
  type FeatureValue,
} from './features/definition.js';
export { buildTrainingSet, trainingSetSql, type TrainingSetSource } from './features/offline.js';
export { OnlineFeatures, type FeatureEvent, type FeatureRead, type UserState } from './features/online.js';
export { appFeatures, retailFeatures } from './features/catalog.js';
export { featureParity, type ParityReport } from './features/parity.js';
export { skewReport, type SkewReport } from './features/skew.js';
export { BUNDLE_FORMAT, createBundle, loadClassifier, verifyBundle, type Lineage, type ModelBundle } from './models/bundle.js';
export {
  averagePrecision,
  brierScore,
  calibrationTable,
  evaluate,
  liftByDecile,
  logLoss,
  rocAuc,
  rocCurve,
  stratifiedFolds,
  type Evaluation,
} from './models/evaluate.js';
export { crossValidate, type CrossValidation, type FoldResult } from './models/cross-validate.js';
export { columnsFor, fitPreprocessing, transform, type ColumnSpec, type Preprocessing } from './models/preprocess.js';
export { dataSnapshot, lineageOf } from './models/lineage.js';
export { publish, PublishError, type PublishOptions, type PublishResult } from './models/publish.js';
export { ModelRegistry, type AliasMove, type VersionInfo } from './models/registry.js';
export { trainClassifier, type Classifier, type TrainOptions } from './models/train.js';
export { APP_CHURN_FEATURES, appChurnData, trainAppChurn, type AppChurnData, type AppChurnModel } from './pipelines/app-churn.js';
export { retailPropensityData, trainRetailPropensity, type RetailPropensityData, type RetailPropensityModel } from './pipelines/retail-propensity.js';
export { findDag, TRAINING_DAGS } from './jobs/training.js';
export { runDag, RunStore, type Dag, type Job, type RunRecord } from './jobs/dag.js';
export { assign, checkExperiment, ExperimentSchema, MetricSchema, type Experiment, type ExperimentInput, type Metric } from './experiments/definition.js';
export { bucketRanges, chooseArm, fnv1a32, hashBucket } from './experiments/hash.js';
export { ExperimentClient, ServiceError, type StoredExperimentView } from './experiments/client.js';
export { decide, fmtDays, fmtLift, type Decision, type DecisionRecord } from './experiments/decide.js';
export { experimentStatsFromLake, experimentStatsSql, type LakehouseExperimentStats } from './experiments/lakehouse-stats.js';
export { METRICS, metricCatalog } from './experiments/metrics.js';
export { experimentResults, type ArmStats, type Comparison, type ExperimentReport, type ExperimentResults, type ExperimentStats, type MetricResult, type MetricSums } from './experiments/results.js';
export { chiSquareSf, normalCdf, normalQuantile, tCdf, tQuantile } from './stats/distributions.js';
export { cuped, type CovariateSums, type CupedResult } from './stats/cuped.js';
export { daysToDecision, powerForSize, sampleSizePerArm } from './stats/power.js';
export { bayesianSummary, ratioDifference, ratioMoments, type RatioSums } from './stats/ratio.js';
export { sequential, sequentialHalfwidth } from './stats/sequential.js';
export { benjaminiHochberg, holm, moments, relativeLift, sampleRatioMismatch, welch, type Estimate, type Moments, type Sums } from './stats/two-sample.js';
export { Random } from './random.js';
export { buildLakehouse, fingerprintOf, type AppHistory, type BuildOptions, type BuildReport } from './lakehouse/build.js';
export { Lakehouse, type ArchiveSource, type Row, type ViewInfo } from './lakehouse.js';
export { openOltp, TABLE_NAMES, type OltpStore, type Prediction, type Tier, type User } from './oltp/index.js';
export { consoleProgress, defaultProgress, notebookProgress, silentProgress, type Progress, type ProgressTask } from './progress.js';
export { ident, join, raw, sql, Sql, type SqlValue } from './sql.js';
export { agg, describe, groupBy, head, pivot, quantile, rowsOf, valueCounts, type Aggregation, type AggregationName, type DescribeRow, type FrameLike, type PivotOptions } from './frames.js';
export { labels, spine, type Duration, type LabelOptions, type Relation, type SpineOptions } from './spine.js';

import { lakeDir } from './config.js';
import { Lakehouse } from './lakehouse.js';

/** The lakehouse of this project's data dir, opened and verified: the first line of most notebooks. */
export const openLakehouse = (root: string = lakeDir()): Promise<Lakehouse> => Lakehouse.open(root);
