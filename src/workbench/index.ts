/**
 * The workbench: what notebooks, jobs and the service import, grouped by the task at hand. Every
 * function and class below has a summary and an example at its definition (hover it in an editor);
 * test/workbench/public-api.test.ts keeps it that way.
 *
 * In a notebook: `import { openLakehouse, sql, show } from './src/workbench/index';`
 */
import { lakeDir } from './config.js';
import { Lakehouse } from './lakehouse.js';

// ---------------------------------------------------------------------------------------------
// Lakehouse: where the data is, opening and querying it
// ---------------------------------------------------------------------------------------------

/**
 * The lakehouse of this project's data dir, opened and verified: the first line of most notebooks.
 *
 * @example
 * ```ts
 * const lake = await openLakehouse(); // the lakehouse of WB_DATA_DIR or .wb
 * show(lake.views.map((v) => ({ view: v.name, holds: v.description })));
 * ```
 */
export const openLakehouse = (root: string = lakeDir()): Promise<Lakehouse> => Lakehouse.open(root);
export { Lakehouse, type ArchiveSource, type Row, type ViewInfo } from './lakehouse.js';
export type { Scalar } from './duckdb.js';
export { dataDir, lakeDir, oltpUrl, registryDir } from './config.js';

// SQL builder: values escaped, identifiers quoted, fragments nested.
export { ident, join, raw, sql, Sql, type SqlValue } from './sql.js';

// Sources: building the lakehouse from the shipped data, the event shape, country vocabulary.
export { buildLakehouse, fingerprintOf, type AppHistory, type BuildOptions, type BuildReport } from './lakehouse/build.js';
export { EventSchema, type Event } from './event.js';
export { countryCode, countryName } from './countries.js';

// Frames: the pandas habits (describe, value counts, group-by, pivot, head) over query rows.
export {
  agg,
  describe,
  groupBy,
  head,
  pivot,
  quantile,
  rowsOf,
  valueCounts,
  type Aggregation,
  type AggregationName,
  type DescribeRow,
  type FrameLike,
  type PivotOptions,
} from './frames.js';

// Spines and labels: who is scored when, and what happened next.
export { eventSpine, labels, spine, type Duration, type EventSpineOptions, type LabelOptions, type Relation, type SpineOptions } from './spine.js';

// ---------------------------------------------------------------------------------------------
// Features: definitions, point-in-time training sets, online state, parity and skew
// ---------------------------------------------------------------------------------------------

export { AGGREGATIONS, feature, featureSet, featureSetVersion, WINDOWS, type Feature, type FeatureInput, type FeatureValue } from './features/definition.js';
export { appFeatures, retailFeatures } from './features/catalog.js';
export { buildTrainingSet, trainingSetSql, type TrainingSetSource } from './features/offline.js';
export { OnlineFeatures, type FeatureEvent, type FeatureRead, type UserState } from './features/online.js';
export { featureParity, type FeatureParity, type ParityOptions, type ParityReport } from './features/parity.js';
export { skewReport, type SkewReport } from './features/skew.js';

// ---------------------------------------------------------------------------------------------
// Models: train, evaluate, bundle, register, publish; the project's two pipelines
// ---------------------------------------------------------------------------------------------

// Train.
export { trainClassifier, type Classifier, type EpochRecord, type ModelKind, type TrainOptions } from './models/train.js';
export { columnsFor, fitPreprocessing, transform, type ColumnSpec, type Preprocessing } from './models/preprocess.js';

// Evaluate.
export {
  averagePrecision,
  brierScore,
  calibrationTable,
  evaluate,
  expectedCalibrationError,
  liftByDecile,
  logLoss,
  rocAuc,
  rocCurve,
  stratifiedFolds,
  type BinStrategy,
  type CalibrationBin,
  type Evaluation,
} from './models/evaluate.js';
export {
  applyCalibration,
  calibrated,
  chooseCalibration,
  fitIsotonic,
  fitPlatt,
  fitSigmoid,
  isotonicRegression,
  splitInTime,
  trainCalibrated,
  uncalibrated,
  type Calibration,
  type CalibrationCandidate,
  type CalibrationFit,
  type CalibrationMap,
  type CalibrationMethod,
  type CalibratedTraining,
} from './models/calibration.js';
export { crossValidate, type CrossValidation, type FoldResult } from './models/cross-validate.js';

// Bundles and lineage.
export { BUNDLE_FORMAT, createBundle, loadClassifier, verifyBundle, type Lineage, type ModelBundle } from './models/bundle.js';
export { dataSnapshot, lineageOf } from './models/lineage.js';

// Model cards, and the bootstrap intervals they show.
export {
  bootstrapIntervals,
  pairedBootstrap,
  type BootstrapOptions,
  type MetricInterval,
  type MetricIntervals,
  type PairedComparison,
} from './models/bootstrap.js';
export {
  cardBlocks,
  cardHtml,
  cardMarkdown,
  loadModelCard,
  modelCard,
  type CardBlock,
  type CardFeature,
  type CardMetric,
  type ChampionRecord,
  type GateRecord,
  type ModelCard,
} from './models/card.js';

// Registry and publishing.
export { ModelRegistry, type AliasMove, type VersionInfo } from './models/registry.js';
export { publish, type PublishOptions, type PublishResult } from './models/publish.js';

// Pipelines: the jobs' own data and training, shared with notebooks 02 and 04.
export { APP_CHURN_FEATURES, appChurnData, trainAppChurn, type AppChurnData, type AppChurnModel } from './pipelines/app-churn.js';
export { retailPropensityData, trainRetailPropensity, type RetailPropensityData, type RetailPropensityModel } from './pipelines/retail-propensity.js';

// ---------------------------------------------------------------------------------------------
// Experiments: definitions, assignment, the service client, results and decisions
// ---------------------------------------------------------------------------------------------

// Definitions and metrics.
export { assign, checkExperiment, ExperimentSchema, MetricSchema, type Experiment, type ExperimentInput, type Metric } from './experiments/definition.js';
export { METRICS, metricCatalog } from './experiments/metrics.js';
export { bucketRanges, chooseArm, fnv1a32, hashBucket } from './experiments/hash.js';

// Client: the experiment API of a running service.
export { ExperimentClient, type StoredExperimentView } from './experiments/client.js';

// Results: from the service's live sums or recomputed from the lakehouse; decisions.
export {
  experimentResults,
  type ArmStats,
  type Comparison,
  type ExperimentReport,
  type ExperimentResults,
  type ExperimentStats,
  type MetricResult,
  type MetricSums,
} from './experiments/results.js';
export { experimentStatsFromLake, experimentStatsSql, type LakehouseExperimentStats } from './experiments/lakehouse-stats.js';
export { decide, fmtDays, fmtLift, type Decision, type DecisionRecord } from './experiments/decide.js';

// ---------------------------------------------------------------------------------------------
// Stats: pure functions over sufficient statistics, each with its reference
// ---------------------------------------------------------------------------------------------

export {
  benjaminiHochberg,
  holm,
  moments,
  proportionMoments,
  relativeLift,
  sampleRatioMismatch,
  twoProportionZTest,
  welch,
  welchDf,
  type Estimate,
  type Moments,
  type Sums,
  type TestOptions,
} from './stats/two-sample.js';
export { cuped, cupedDifference, type CovariateSums, type CupedResult, type CupedTheta } from './stats/cuped.js';
export { leastSquares, type LinearPredictor } from './stats/least-squares.js';
export { bayesianSummary, ratioDifference, ratioMoments, type RatioSums } from './stats/ratio.js';
export { sequential, sequentialHalfwidth } from './stats/sequential.js';
export { daysToDecision, powerForSize, sampleSizePerArm } from './stats/power.js';
export { chiSquareSf, normalCdf, normalQuantile, normalSf, tCdf, tQuantile, tSf } from './stats/distributions.js';
export { Random } from './random.js';

// ---------------------------------------------------------------------------------------------
// Runs: every training run recorded (parameters, data snapshot, metrics, artefacts) and compared
// ---------------------------------------------------------------------------------------------

export { ActiveRun, startRun, type StartRunOptions } from './runs/run.js';
export { compareRuns, flattenRuns, runsPlot, runsTable, type ComparedValue, type FlatRun, type RunComparison, type RunsTableOptions } from './runs/table.js';
export {
  modelRef,
  openTracking,
  type JsonValue,
  type MetricPoint,
  type ParamValue,
  type RunArtifact,
  type RunFilter,
  type RunStatus,
  type TrackedRun,
  type TrackingStore,
} from './runs/index.js';

// ---------------------------------------------------------------------------------------------
// Jobs: training DAGs and their runs
// ---------------------------------------------------------------------------------------------

export { findDag, TRAINING_DAGS } from './jobs/training.js';
export { runDag, RunStore, type Dag, type Job, type RunRecord } from './jobs/dag.js';
export { openJobRuns } from './jobs/open-runs.js';
export { PostgresRunStore } from './jobs/run-store-postgres.js';
export type { JobRunStore } from './jobs/run-store.js';

// ---------------------------------------------------------------------------------------------
// Display and progress
// ---------------------------------------------------------------------------------------------

export { displayHtml, displayMarkdown, htmlTable, plotHtml, PLOTLY_SCRIPT_PATH, show, type Figure, type Tabular } from './display.js';
export { consoleProgress, defaultProgress, notebookProgress, silentProgress, type Progress, type ProgressTask } from './progress.js';

// ---------------------------------------------------------------------------------------------
// OLTP: the product database the service writes (users, predictions, assignments)
// ---------------------------------------------------------------------------------------------

export { openOltp, TABLE_NAMES, type OltpStore, type Prediction, type Tier, type User } from './oltp/index.js';

// ---------------------------------------------------------------------------------------------
// Errors: one type per failure, each with a stable code and HTTP status
// ---------------------------------------------------------------------------------------------

export { ConflictError, IntegrityError, InputError, NotebookError, NotFoundError, SqlError, WorkbenchError } from './errors.js';
export { PublishError } from './models/publish.js';
export { ServiceError } from './experiments/client.js';
