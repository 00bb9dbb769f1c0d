/**
 * The workbench: what notebooks, jobs and the service import. One line per concept.
 */
export { dataDir, lakeDir, oltpUrl } from './config.js';
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
export { buildLakehouse, fingerprintOf, type AppHistory, type BuildOptions, type BuildReport } from './lakehouse/build.js';
export { Lakehouse, type Row, type ViewInfo } from './lakehouse.js';
export { openOltp, TABLE_NAMES, type OltpStore, type Prediction, type Tier, type User } from './oltp/index.js';
export { consoleProgress, silentProgress, type Progress } from './progress.js';
export { ident, join, raw, sql, Sql } from './sql.js';

import { lakeDir } from './config.js';
import { Lakehouse } from './lakehouse.js';

/** The lakehouse of this project's data dir, opened and verified: the first line of most notebooks. */
export const openLakehouse = (root: string = lakeDir()): Promise<Lakehouse> => Lakehouse.open(root);
