import { dict } from '../dict.js';
import { InputError } from '../errors.js';

/**
 * Runs: every training run (a notebook's or a job's) recorded with its parameters, the data it read,
 * the code it ran, its metrics over time and its artefacts, as MLflow tracking does. One small
 * interface, two implementations (SQLite in the data dir, PostgreSQL when WB_OLTP_URL names one),
 * one conformance suite (test/workbench/runs/conformance.ts).
 *
 * Everything a run holds comes from a notebook or from `--param key=value`: names are data (kept
 * in SQL rows and prototype-free objects, never as plain-object keys) and every size is bounded, so
 * a run cannot fill the database or slow every listing.
 */

/** Where a run is: `running` until `end`, then how it ended. */
export type RunStatus = 'running' | 'finished' | 'failed' | 'killed';
export const RUN_STATUSES: readonly RunStatus[] = ['running', 'finished', 'failed', 'killed'];

/** A run parameter's value: kept with its JSON type, so `0.01` and `'0.01'` stay apart. */
export type ParamValue = string | number | boolean | null;

/** A JSON value: what an artefact holds. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** One value of a metric at a step (an epoch, a fold, 0 for a single value). NaN is kept as NaN. */
export interface MetricPoint {
  key: string;
  value: number;
  step: number;
  /** ISO-8601 UTC instant it was logged. */
  at: string;
}

/** A small JSON document a run produced (a model's version, a gate's decision), optionally with a reference others can look it up by. */
export interface RunArtifact {
  name: string;
  /** What it points at, searchable: a model version is `model:<name>@<version>`. */
  ref: string | null;
  value: JsonValue;
  at: string;
}

/** A recorded run: what it was given, what it read, how it ended, its metrics' last values and its artefacts (see `runsTable`). */
export interface TrackedRun {
  /** 16 hex digits; commands accept any unique prefix of 4 or more. */
  id: string;
  /** What is being trained, e.g. the model's name: runs of one name are compared. */
  name: string;
  /** The notebook path or `job:<dag>` that made it. */
  source: string | null;
  /** What the model is for, in a sentence (a model card's purpose). */
  description: string | null;
  status: RunStatus;
  startedAt: string;
  endedAt: string | null;
  /** The code: `git rev-parse HEAD`, `+dirty` when files differed from it. */
  gitCommit: string | null;
  /** The data: the lakehouse snapshot it read (`dataSnapshot(lake)`). */
  dataSnapshot: string | null;
  /** By name (a prototype-free object: any name is an ordinary key). */
  params: Record<string, ParamValue>;
  /** Each metric's value at its highest step, by name (prototype-free). */
  metrics: Record<string, number>;
  artifacts: RunArtifact[];
}

/** What a run starts with. */
export interface NewRun {
  id: string;
  name: string;
  source: string | null;
  description: string | null;
  startedAt: string;
  gitCommit: string | null;
  dataSnapshot: string | null;
  params: ReadonlyMap<string, ParamValue>;
}

/** Which runs `listRuns` returns: of one name, one status, or those with an artefact referring to something (a model version); newest first. */
export interface RunFilter {
  name?: string;
  status?: RunStatus;
  /** Only runs with an artefact of this ref, e.g. `modelRef(name, version)`. */
  ref?: string;
  /** At most this many (default 100, at most 1000). */
  limit?: number;
}

/** The run store: SQLite in the data dir or PostgreSQL (see `openTracking`). */
export interface TrackingStore {
  /** `sqlite` or `postgres`. */
  readonly kind: string;
  /** Where it is, with any password removed: safe to print. */
  readonly location: string;
  /** Creates the tables if they do not exist. Safe to call on every open. */
  migrate(): Promise<void>;
  /** Records a new run, running. */
  createRun(run: NewRun): Promise<void>;
  /** Adds parameters to a running run; a parameter keeps its first value (changing one is a ConflictError). */
  logParams(id: string, params: ReadonlyMap<string, ParamValue>): Promise<void>;
  /** Records the data a running run reads, once (a different snapshot later is a ConflictError): for a run started before its data was known. */
  logData(id: string, dataSnapshot: string): Promise<void>;
  /** Adds metric values to a running run; a value at a (key, step) that has one replaces it. */
  logMetrics(id: string, points: readonly MetricPoint[]): Promise<void>;
  /** Stores an artefact of a running run, replacing one of the same name. */
  putArtifact(id: string, artifact: RunArtifact): Promise<void>;
  /** Ends a running run (a ConflictError if it has ended). */
  endRun(id: string, status: Exclude<RunStatus, 'running'>, endedAt: string): Promise<void>;
  /** A run by id or unique id prefix (NotFoundError; InputError when the prefix is ambiguous). */
  getRun(idOrPrefix: string): Promise<TrackedRun>;
  /** Runs, newest first. */
  listRuns(filter?: RunFilter): Promise<TrackedRun[]>;
  /** Every value of one metric of a run, by step. */
  metricHistory(id: string, key: string): Promise<MetricPoint[]>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Limits: MLflow's where it has one (names 250, parameter values 6000 characters).

export const LIMITS = {
  name: 200,
  source: 500,
  description: 2000,
  key: 250,
  paramValue: 6000,
  paramsPerRun: 500,
  pointsPerCall: 1000,
  pointsPerRun: 100_000,
  artifactsPerRun: 100,
  artifactBytes: 1_000_000,
  ref: 300,
  step: 2 ** 31 - 1,
  listLimit: 1000,
} as const;

const ID = /^[0-9a-f]{16}$/;
const PREFIX = /^[0-9a-f]{4,16}$/;

/** A run id as given, checked: 16 hex digits. */
export function checkRunId(id: string): string {
  if (typeof id !== 'string' || !ID.test(id)) throw new InputError(`${JSON.stringify(String(id).slice(0, 40))} is not a run id (16 hex digits)`);
  return id;
}

/** A run id or prefix as typed: 4 to 16 hex digits. */
export function checkRunPrefix(prefix: string): string {
  if (typeof prefix !== 'string' || !PREFIX.test(prefix))
    throw new InputError(`${JSON.stringify(String(prefix).slice(0, 40))} is not a run id or prefix (4 to 16 hex digits)`);
  return prefix;
}

/** Text from outside, checked: a string of at most `max` characters, no NUL, no lone surrogate (which no database keeps as given). */
export function checkText(value: unknown, what: string, max: number, { empty = false } = {}): string {
  if (typeof value !== 'string') throw new InputError(`${what} must be a string, not ${value === null ? 'null' : typeof value}`);
  if (!empty && value.length === 0) throw new InputError(`${what} must not be empty`);
  if (value.length > max) throw new InputError(`${what} is ${value.length} characters long, more than ${max}: ${JSON.stringify(value.slice(0, 40))}...`);
  if (value.includes('\0')) throw new InputError(`${what} contains a NUL character: ${JSON.stringify(value.slice(0, 40))}`);
  if (LONE_SURROGATE.test(value)) throw new InputError(`${what} contains a lone UTF-16 surrogate (not text): ${JSON.stringify(value.slice(0, 40))}`);
  return value;
}
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** A parameter value, checked: finite numbers, booleans, null, and bounded text. */
export function checkParamValue(key: string, value: unknown): ParamValue {
  if (value === null) return null;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new InputError(`parameter ${JSON.stringify(key)} is ${value}: a parameter is a finite number, text, a boolean or null`);
    return value;
  }
  if (typeof value === 'string') return checkText(value, `parameter ${JSON.stringify(key)}`, LIMITS.paramValue, { empty: true });
  throw new InputError(
    `parameter ${JSON.stringify(key)} is ${Array.isArray(value) ? 'a list' : typeof value}: a parameter is a number, text, a boolean or null`,
  );
}

/** Parameters given as a Map or an object (own properties only: `__proto__` from JSON is an ordinary name), checked, in a Map. */
export function paramMap(params: ReadonlyMap<string, unknown> | Readonly<Record<string, unknown>> | undefined): Map<string, ParamValue> {
  const out = new Map<string, ParamValue>();
  if (params === undefined || params === null) return out;
  const entries = params instanceof Map ? [...(params as ReadonlyMap<string, unknown>).entries()] : Object.entries(params);
  if (entries.length > LIMITS.paramsPerRun) throw new InputError(`${entries.length} parameters: a run keeps at most ${LIMITS.paramsPerRun}`);
  for (const [key, value] of entries) out.set(checkText(key, 'a parameter name', LIMITS.key), checkParamValue(key, value));
  return out;
}

/** Metric values given as a Map or an object, checked (numbers; NaN allowed, as a metric can be undefined on some data). */
export function metricEntries(metrics: ReadonlyMap<string, unknown> | Readonly<Record<string, unknown>>): [string, number][] {
  const entries = metrics instanceof Map ? [...(metrics as ReadonlyMap<string, unknown>).entries()] : Object.entries(metrics ?? {});
  if (entries.length > LIMITS.pointsPerCall) throw new InputError(`${entries.length} metrics in one call: at most ${LIMITS.pointsPerCall}`);
  return entries.map(([key, value]) => {
    checkText(key, 'a metric name', LIMITS.key);
    if (typeof value !== 'number') throw new InputError(`metric ${JSON.stringify(key)} is ${value === null ? 'null' : typeof value}, not a number`);
    return [key, value];
  });
}

/** A step, checked: a whole number from 0. */
export function checkStep(step: unknown): number {
  if (typeof step !== 'number' || !Number.isInteger(step) || step < 0 || step > LIMITS.step)
    throw new InputError(`step ${String(step)}: a step is a whole number from 0 to ${LIMITS.step}`);
  return step;
}

/** An artefact's value as JSON text, checked: JSON-serialisable, without non-finite numbers, at most 1 MB. */
export function artifactJson(name: string, value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value, (_k, v: unknown) => {
      if (typeof v === 'number' && !Number.isFinite(v)) throw new InputError(`artefact ${JSON.stringify(name)} holds the number ${v}, which JSON cannot keep`);
      if (typeof v === 'bigint') throw new InputError(`artefact ${JSON.stringify(name)} holds a bigint, which JSON cannot keep`);
      return v;
    });
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`artefact ${JSON.stringify(name)} is not JSON-serialisable: ${(err as Error).message}`);
  }
  if (text === undefined) throw new InputError(`artefact ${JSON.stringify(name)} has no JSON value (${typeof value})`);
  const bytes = Buffer.byteLength(text);
  if (bytes > LIMITS.artifactBytes) throw new InputError(`artefact ${JSON.stringify(name)} is ${bytes} bytes of JSON, more than ${LIMITS.artifactBytes}`);
  checkText(text, `artefact ${JSON.stringify(name)}`, LIMITS.artifactBytes);
  return text;
}

/**
 * The ref of a model version's artefact: what `listRuns({ ref })` finds the run that made it by.
 *
 * @example
 * ```ts
 * const [madeIt] = await runsTable({ ref: modelRef(bundle.name, bundle.version), limit: 1 });
 * ```
 */
export function modelRef(name: string, version: string): string {
  return `model:${name}@${version}`;
}

/** A prototype-free copy of parsed JSON, all the way down: an artefact's keys are data. */
export function jsonData(value: unknown): JsonValue {
  if (Array.isArray(value)) return value.map(jsonData);
  if (value !== null && typeof value === 'object') return dict(Object.entries(value).map(([k, v]) => [k, jsonData(v)] as const));
  return value as JsonValue;
}
