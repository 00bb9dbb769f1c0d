import { randomBytes } from 'node:crypto';
import { dataDir as defaultDataDir, oltpUrl } from '../config.js';
import { ConflictError, InputError } from '../errors.js';
import type { Lakehouse } from '../lakehouse.js';
import type { ModelBundle } from '../models/bundle.js';
import { dataSnapshot, lineageOf } from '../models/lineage.js';
import { openTracking } from './index.js';
import {
  LIMITS,
  artifactJson,
  checkStep,
  checkText,
  jsonData,
  metricEntries,
  modelRef,
  paramMap,
  type MetricPoint,
  type ParamValue,
  type RunStatus,
  type TrackedRun,
  type TrackingStore,
} from './store.js';

/** What a run starts with (see `startRun`). */
export interface StartRunOptions {
  /** What is trained: runs of one name are listed and compared together (e.g. the model's name). */
  name: string;
  /** The run's parameters by name: hyperparameters, data options, seeds. */
  params?: ReadonlyMap<string, ParamValue> | Readonly<Record<string, ParamValue>>;
  /** The notebook path or `job:<dag>`. */
  source?: string;
  /** What the model is for, in a sentence: its card's purpose. */
  description?: string;
  /** The lakehouse the run reads: its snapshot (`dataSnapshot(lake)`) is recorded. */
  lake?: Lakehouse;
  /** The data snapshot, when there is no lakehouse to read it from. */
  dataSnapshot?: string;
  /**
   * The data dir to record in when no `store` is given: its `tracking.sqlite` (or PostgreSQL when
   * WB_OLTP_URL names one). Default `dataDir()`; a notebook passes its `dataDir` parameter, so a
   * run on the CI lake is recorded next to it.
   */
  dataDir?: string;
  /** Where to record instead (not with `dataDir`); default `openTracking(oltpUrl(), dataDir)`, closed when the run ends. */
  store?: TrackingStore;
}

/**
 * A run being recorded (see `startRun`): log metrics, parameters and artefacts as they come, then
 * `end` it. Every method writes at once, so a run that crashes leaves what it had logged, marked
 * `running`.
 *
 * @example
 * ```ts
 * const run = await startRun({ name: 'app-churn', params: { learningRate: 0.03, seed: 1 }, source: 'notebooks/04-app-churn.ipynb', lake });
 * await run.log({ roc_auc: 0.84, brier: 0.07 });
 * await run.model(bundle);
 * await run.end();
 * ```
 */
export class ActiveRun {
  private readonly steps = new Map<string, number>();
  private done = false;

  /** @internal Made by `startRun`. */
  constructor(
    readonly id: string,
    readonly name: string,
    private readonly store: TrackingStore,
    private readonly ownsStore: boolean,
  ) {}

  /** Whether `end` was called. */
  get ended(): boolean {
    return this.done;
  }

  /**
   * Logs metric values. Without a step, each metric's next step (0 for its first value), so
   * logging a metric every epoch keeps its history and the run shows its last value.
   */
  async log(metrics: ReadonlyMap<string, number> | Readonly<Record<string, number>>, options: { step?: number } = {}): Promise<void> {
    const at = new Date().toISOString();
    const step = options.step === undefined ? undefined : checkStep(options.step);
    const points: MetricPoint[] = metricEntries(metrics).map(([key, value]) => {
      const s = step ?? this.steps.get(key) ?? 0;
      return { key, value, step: s, at };
    });
    await this.store.logMetrics(this.id, points);
    for (const p of points) this.steps.set(p.key, Math.max(this.steps.get(p.key) ?? 0, p.step + 1));
  }

  /** Adds parameters; one that is recorded keeps its first value (a different one is a ConflictError). */
  async logParams(params: ReadonlyMap<string, ParamValue> | Readonly<Record<string, ParamValue>>): Promise<void> {
    await this.store.logParams(this.id, paramMap(params));
  }

  /** Records the data the run reads, when it was not known at the start: a lakehouse (its `dataSnapshot`) or the snapshot's text. */
  async data(source: Lakehouse | string): Promise<void> {
    const snapshot = typeof source === 'string' ? checkText(source, 'a data snapshot', LIMITS.source) : dataSnapshot(source);
    await this.store.logData(this.id, snapshot);
  }

  /** Stores a small JSON document (at most 1 MB) under a name, with an optional ref to find the run by. */
  async artifact(name: string, value: unknown, options: { ref?: string } = {}): Promise<void> {
    checkText(name, 'an artefact name', LIMITS.key);
    const ref = options.ref === undefined ? null : checkText(options.ref, `artefact ${JSON.stringify(name)}'s ref`, LIMITS.ref);
    const text = artifactJson(name, value);
    await this.store.putArtifact(this.id, { name, ref, value: jsonData(JSON.parse(text)), at: new Date().toISOString() });
  }

  /** Records the model version the run made (artefact `model`, ref `model:<name>@<version>`): its card finds the run by it. */
  async model(bundle: ModelBundle): Promise<void> {
    await this.artifact(
      'model',
      { name: bundle.name, version: bundle.version, kind: bundle.kind, label: bundle.label, features: bundle.features.map((f) => f.name) },
      { ref: modelRef(bundle.name, bundle.version) },
    );
  }

  /** Ends the run (default `finished`) and returns its record; closes the store `startRun` opened. */
  async end(status: Exclude<RunStatus, 'running'> = 'finished'): Promise<TrackedRun> {
    if (this.done) throw new ConflictError(`run ${this.id} has ended already`);
    if (!['finished', 'failed', 'killed'].includes(status)) throw new InputError(`a run ends finished, failed or killed, not ${JSON.stringify(status)}`);
    try {
      await this.store.endRun(this.id, status, new Date().toISOString());
      this.done = true;
      return await this.store.getRun(this.id);
    } finally {
      if (this.ownsStore && this.done) await this.store.close();
    }
  }
}

/**
 * Starts recording a training run, MLflow-style: its parameters, the lakehouse snapshot it reads,
 * the git commit, and then whatever it logs. Recorded in the data dir (`tracking.sqlite`), or in
 * PostgreSQL when WB_OLTP_URL names one; listed with `wb runs list` and `runsTable`.
 *
 * @example
 * ```ts
 * const run = await startRun({ name: 'app-churn', params: { learningRate: 0.03 }, source: 'notebooks/04-app-churn.ipynb', lake, dataDir: '.wb' });
 * const trained = await trainAppChurn(data, { learningRate: 0.03 });
 * await run.log({ roc_auc: trained.evaluation.rocAuc, brier: trained.evaluation.brier });
 * await run.end();
 * ```
 */
export async function startRun(options: StartRunOptions): Promise<ActiveRun> {
  const name = checkText(options?.name, 'a run name', LIMITS.name);
  const source = options.source === undefined ? null : checkText(options.source, 'a run source', LIMITS.source);
  const description = options.description === undefined ? null : checkText(options.description, 'a run description', LIMITS.description);
  const params = paramMap(options.params);
  const lineage = lineageOf(source ?? name);
  const snapshot = options.lake
    ? dataSnapshot(options.lake)
    : options.dataSnapshot === undefined
      ? null
      : checkText(options.dataSnapshot, 'a data snapshot', LIMITS.source);
  if (options.store && options.dataDir !== undefined) throw new InputError('a run is recorded in a store or in a data dir, not both');
  const store = options.store ?? (await openTracking(oltpUrl(), defaultDataDir(options.dataDir)));
  const id = randomBytes(8).toString('hex');
  try {
    await store.createRun({
      id,
      name,
      source,
      description,
      startedAt: new Date().toISOString(),
      gitCommit: lineage.gitCommit ?? null,
      dataSnapshot: snapshot,
      params,
    });
  } catch (err) {
    if (!options.store) await store.close().catch(() => undefined);
    throw err;
  }
  return new ActiveRun(id, name, store, !options.store);
}
