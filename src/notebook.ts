/**
 * What a notebook imports: the whole workbench, plus what a notebook needs from outside it to be
 * self-contained: a service in the process, a client for the service's events, features and
 * predictions, and an experiment run on the simulated product. They live here, not in
 * src/workbench, because the workbench imports neither the service nor the app (DESIGN.md,
 * dependency direction): like the CLI, this module sits above all three.
 *
 * In a notebook: `import { openLakehouse, startEmbeddedService, show } from './src/notebook';`
 */
import { z } from 'zod';
import { runSimulatedExperiment as runOnSimulator, type SimulatedExperiment as SimulatorRun } from './app/experiment-run.js';
import { startEmbeddedService as startInProcess } from './serving/embedded.js';
import type { RunningService, ServiceConfig } from './serving/service.js';
import { dict } from './workbench/dict.js';
import { InputError, NotFoundError } from './workbench/errors.js';
import { ServiceError } from './workbench/experiments/client.js';
import type { FeatureValue } from './workbench/features/definition.js';

export * from './workbench/index.js';

// ---------------------------------------------------------------------------------------------
// A service in this process
// ---------------------------------------------------------------------------------------------

/** What `startEmbeddedService` may set beside its data dir: any of the service's settings (the port and host are chosen for it). */
export type EmbeddedServiceConfig = Partial<ServiceConfig>;

/** A service started in this process by `startEmbeddedService`: where it listens, its keys, its data dir, and how to stop it. */
export interface EmbeddedService {
  /** Where it listens: `http://127.0.0.1:<a free port>`. */
  url: string;
  /** Its own data dir: its lakehouse is `lakeDir(dataDir)` (the events it archived, `source = 'live'`), its registry `registryDir(dataDir)`. */
  dataDir: string;
  /** Two API keys: `admin` may do anything (send events, publish, create experiments); `read` may read and predict. */
  keys: { admin: string; read: string };
  /** The running service's parts (stores, consumers, registry), for what the HTTP API does not show. */
  service: RunningService;
  /** Stops taking requests, drains the consumers and closes everything. */
  stop(): Promise<void>;
}

/**
 * Starts the service in this process on a fresh data dir (emptied first) and a free port, with an
 * admin and a read key: for a notebook that needs a service when none is running. Talk to it with
 * `ServiceClient`, `publish` or `ExperimentClient`; stop it with `stop()`.
 *
 * @example
 * ```ts
 * const embedded = await startEmbeddedService('.wb/notebook-05');
 * const client = new ExperimentClient(embedded.url, embedded.keys.admin);
 * console.log(await client.metrics());
 * await embedded.stop();
 * ```
 */
export const startEmbeddedService = (dataDir: string, config: EmbeddedServiceConfig = {}): Promise<EmbeddedService> => startInProcess(dataDir, config);

// ---------------------------------------------------------------------------------------------
// The service's events, online features and predictions, with typed answers
// ---------------------------------------------------------------------------------------------

/** An event as a notebook sends it (see `EventSchema`): `time` an ISO-8601 instant or a Date; `event_id` makes a resend harmless. */
export interface EventInput {
  event_id: string;
  time: string | Date;
  user_id: string;
  /** lower_snake_case, e.g. `login`, `feature_used`. */
  event: string;
  /** Shallow, small JSON values, e.g. `{ feature: 'reports', duration_s: 120 }`; default `{}`. */
  props?: Record<string, unknown>;
}

/** The service's answer to `sendEvents`: events appended, resends recognised, and each rejected event with why. */
export interface IngestReport {
  /** Events appended to the event log by this call. */
  accepted: number;
  /** Events whose event_id the log already held: acknowledged, not appended again. */
  duplicates: number;
  /** The events refused, by their index in the batch, with the reason (and the field at fault, when one is). */
  rejected: { index: number; event_id?: string; reason: string; field?: string }[];
}

/** A user's values in the online store at a moment, as the service serves them to models. */
export interface ServedFeatures {
  user_id: string;
  /** The moment read (ISO-8601): the request's `at`, or the service's now. */
  at: string;
  /** The version of the served feature set (`featureSetVersion`). */
  feature_set: string;
  /** Every served feature's value, by name. */
  values: Record<string, FeatureValue>;
  /** Features without a matching event in their window, showing their declared default. */
  defaulted: string[];
  /** Events in the log the online store had not folded in yet when it answered (0: up to date). */
  lag: number;
}

/** What `predict` asks: a model by name, its alias (default `champion`) or a version, the user, and optional request-time feature values. */
export interface PredictRequest {
  model: string;
  alias?: string;
  version?: string;
  user_id: string;
  /** Values that override (or stand in for) the online store's, by feature name. */
  values?: Record<string, FeatureValue>;
}

/** A served prediction: the score, the model version that gave it, and the feature values it read. */
export interface ServedPrediction {
  /** The probability of the model's label, a finite number. */
  score: number;
  model: { name: string; version: string; alias?: string };
  /** The values the model read: the online store's at the moment of the prediction, overridden by the request's. */
  features: Record<string, FeatureValue>;
  /** Features that had no value and used their declared default. */
  defaulted: string[];
  /** The experiment arm that chose the alias, when an experiment runs on this model. */
  experiment?: { key: string; arm: string };
}

const FeatureValueSchema = z.union([z.number(), z.array(z.string())]);
const IngestReportSchema = z.object({
  accepted: z.number(),
  duplicates: z.number(),
  rejected: z.array(z.object({ index: z.number(), event_id: z.string().optional(), reason: z.string(), field: z.string().optional() })),
});
const ServedFeaturesSchema = z.object({
  user_id: z.string(),
  at: z.string(),
  feature_set: z.string(),
  values: z.unknown(),
  defaulted: z.array(z.string()),
  lag: z.number(),
});
const ServedPredictionSchema = z.object({
  score: z.number(),
  model: z.object({ name: z.string(), version: z.string(), alias: z.string().optional() }),
  features: z.unknown(),
  defaulted: z.array(z.string()),
  experiment: z.object({ key: z.string(), arm: z.string() }).optional(),
});
const LogSchema = z.object({ next: z.number(), consumers: z.array(z.object({ name: z.string(), lag: z.number() })) });
/** Longer than the service batches prediction events before appending them (100 ms). */
const QUIET_MS = 250;
const ErrorSchema = z.object({ error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }) });

/**
 * The service's data API from a notebook, with typed, checked answers: send events, read a user's
 * online features, request a prediction, and wait until the service has processed what was sent.
 * Sending needs a key with the ingest (or admin) scope; reading and predicting a read key.
 *
 * @example
 * ```ts
 * const service = new ServiceClient(embedded.url, embedded.keys.admin);
 * await service.sendEvents([{ event_id: 'e1', time: new Date(), user_id: 'u1', event: 'login' }]);
 * await service.waitForConsumers(); // the online store has folded the event in
 * const prediction = await service.predict({ model: 'app-churn', user_id: 'u1' });
 * console.log(prediction.score, prediction.features);
 * ```
 */
export class ServiceClient {
  private readonly base: string;
  constructor(
    url: string,
    private readonly key: string,
  ) {
    if (!/^https?:\/\//.test(url)) throw new InputError(`the service URL must start with http:// or https://, not ${JSON.stringify(url)}`);
    this.base = url.replace(/\/$/, '');
  }

  /**
   * Sends a batch of events. Resolves once the accepted ones are durable in the event log; the
   * online store and the archive fold them in a moment later (`waitForConsumers`). Good events are
   * accepted even when others are rejected: check `rejected`. A batch with every event rejected
   * is a `ServiceError` (400, invalid_events).
   *
   * @example
   * ```ts
   * const service = new ServiceClient(embedded.url, embedded.keys.admin);
   * const report = await service.sendEvents([{ event_id: 'e2', time: '2025-03-01T10:00:00Z', user_id: 'u1', event: 'feature_used', props: { feature: 'reports', duration_s: 95 } }]);
   * console.log(report.accepted, report.rejected);
   * ```
   */
  async sendEvents(events: readonly EventInput[]): Promise<IngestReport> {
    const body = events.map((e) => ({ ...e, time: e.time instanceof Date ? e.time.toISOString() : e.time }));
    return IngestReportSchema.parse(await this.call('POST', '/v1/events', body));
  }

  /**
   * A user's values in the online store now, or at `at` (a moment after the events already folded
   * in): what a prediction at that moment reads.
   *
   * @example
   * ```ts
   * const service = new ServiceClient(embedded.url, embedded.keys.admin);
   * const served = await service.features(userId, { at: new Date() });
   * console.log(served.values, served.defaulted);
   * ```
   */
  async features(userId: string, options: { at?: Date | string } = {}): Promise<ServedFeatures> {
    const at = options.at instanceof Date ? options.at.toISOString() : options.at;
    const answer = ServedFeaturesSchema.parse(await this.call('GET', `/v1/features/${encodeURIComponent(userId)}${at ? `?at=${encodeURIComponent(at)}` : ''}`));
    return { ...answer, values: featureValues(answer.values) };
  }

  /**
   * Scores a user with a published model (its `champion` unless an alias or a version is given):
   * the service reads the user's online features, applies the bundle's preprocessing and model,
   * and logs the prediction (archived as a `prediction` event, which `skewReport` reads back).
   *
   * @example
   * ```ts
   * const service = new ServiceClient(embedded.url, embedded.keys.admin);
   * const prediction = await service.predict({ model: 'app-churn', alias: 'challenger', user_id: userId });
   * console.log(`${prediction.model.name} ${prediction.model.version}: ${prediction.score.toFixed(3)}`);
   * ```
   */
  async predict(request: PredictRequest): Promise<ServedPrediction> {
    const answer = ServedPredictionSchema.parse(await this.call('POST', '/v1/predict', request));
    return { ...answer, features: featureValues(answer.features) };
  }

  /**
   * Waits until these consumers (default: every one) have read to the end of the event log, and the
   * log has had nothing new for a moment: what was sent, and the `prediction` events of the answers
   * already given (appended up to 100 ms after them), is then in the online store, counted, and
   * archived in the service's lakehouse.
   *
   * @example
   * ```ts
   * const service = new ServiceClient(embedded.url, embedded.keys.admin);
   * await service.waitForConsumers(['features', 'archiver'], 30_000);
   * ```
   */
  async waitForConsumers(names?: readonly string[], timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    // The end of the log when every consumer was last seen there: done once it holds after QUIET_MS.
    let caughtUp: { next: number; since: number } | undefined;
    for (;;) {
      const { next, consumers } = LogSchema.parse(await this.call('GET', '/v1/log'));
      const unknown = (names ?? []).filter((n) => !consumers.some((c) => c.name === n));
      if (unknown.length > 0) throw new InputError(`the service has no consumer ${unknown.join(', ')} (it has: ${consumers.map((c) => c.name).join(', ')})`);
      const behind = consumers.filter((c) => (names ?? [c.name]).includes(c.name) && c.lag > 0);
      if (behind.length > 0 || caughtUp?.next !== next) caughtUp = behind.length > 0 ? undefined : { next, since: Date.now() };
      else if (Date.now() - caughtUp.since >= QUIET_MS) return;
      if (Date.now() > deadline)
        throw new ServiceError(
          504,
          'timeout',
          `consumers still behind after ${timeoutMs / 1000} s: ${behind.map((c) => `${c.name} ${c.lag}`).join(', ') || 'the log kept growing'}`,
        );
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private async call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch (err) {
      throw new ServiceError(503, 'unreachable', `cannot reach the service at ${this.base} (${err instanceof Error ? err.message : String(err)})`);
    }
    const answer: unknown = await res.json().catch(() => undefined);
    if (res.ok) return answer;
    const refusal = ErrorSchema.safeParse(answer);
    const message = refusal.success ? refusal.data.error.message + detailsOf(refusal.data.error.details) : res.statusText;
    if (res.status === 404) throw new NotFoundError(`${method} ${path}: ${message}`);
    throw new ServiceError(res.status, refusal.success ? refusal.data.error.code : 'service_error', `${method} ${path}: ${res.status} ${message}`);
  }
}

/** A JSON object of feature values as a prototype-free record: feature names come from outside. */
function featureValues(value: unknown): Record<string, FeatureValue> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InputError('the service answered feature values that are not an object');
  return dict(Object.entries(value).map(([name, v]): [string, FeatureValue] => [name, FeatureValueSchema.parse(v)]));
}

/** The first reasons of a refusal's details (the rejected events of a batch), for the message. */
function detailsOf(details: unknown): string {
  const rejected = IngestReportSchema.safeParse(details);
  if (!rejected.success || rejected.data.rejected.length === 0) return '';
  return `: ${rejected.data.rejected
    .slice(0, 3)
    .map((r) => `#${r.index} ${r.reason}`)
    .join('; ')}`;
}

// ---------------------------------------------------------------------------------------------
// An experiment on the simulated product
// ---------------------------------------------------------------------------------------------

/** What `runSimulatedExperiment` runs: the service and an admin key, the experiment, the arms' true effects, and the simulated users and days. */
export type SimulatedExperiment = SimulatorRun;

/**
 * Runs an experiment on the simulated product through a service: the simulator's last `days` days
 * are sent day by day, the experiment starts on `fromDay`, and the arms' true `effects` apply to
 * the users the platform exposes. Returns the number of events sent.
 *
 * @example
 * ```ts
 * const { events } = await runSimulatedExperiment({
 *   url: embedded.url,
 *   key: embedded.keys.admin,
 *   users: 1500,
 *   days: 28,
 *   fromDay: 14,
 *   experiment: {
 *     key: 'churn-offer',
 *     hypothesis: 'An offer keeps users',
 *     arms: [{ key: 'control', weight: 0.5 }, { key: 'offer', weight: 0.5 }],
 *     exposureEvent: 'login',
 *     objective: 'logins',
 *     mde: 0.05,
 *   },
 *   effects: { offer: { churnLogOdds: -2, loginLogOdds: 0.7 } },
 * });
 * ```
 */
export const runSimulatedExperiment = (experiment: SimulatedExperiment): Promise<{ events: number }> => runOnSimulator(experiment);
