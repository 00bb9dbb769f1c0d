import express, { type Express } from 'express';
import iconv from 'iconv-lite';
import type { RequestListener } from 'node:http';
import { wallClock, type Clock } from '../workbench/clock.js';
import type { ApiKeyStore } from './auth/keys.js';
import { errorHandler, notFound, unavailable, type ErrorLogger } from './errors.js';
import { requireScope } from './http/auth.js';
import { aggregateRoutes } from './http/aggregates.js';
import { dashboardRoutes } from './http/dashboard.js';
import { deadLetterRoutes } from './http/dead-letters.js';
import { eventRoutes } from './http/events.js';
import { experimentRoutes } from './http/experiments.js';
import { featureRoutes } from './http/features.js';
import type { ExperimentPlatform } from './experiments/platform.js';
import { jobRoutes } from './http/jobs.js';
import { fastPredict } from './http/fast-predict.js';
import { modelRoutes, predictor, type ModelRouteDeps } from './http/models.js';
import { modelCardRoutes } from './http/model-card.js';
import type { JobScheduler } from './jobs/scheduler.js';
import { countRequests, observabilityRoutes } from './http/observability.js';
import { openApiDocument } from './http/openapi.js';
import { reportRoutes } from './http/reports.js';
import type { Route } from './http/route.js';
import { driftSummary } from './models/drift.js';
import type { AlertSink } from './observability/alerts.js';
import type { Metrics } from './observability/metrics.js';
import type { LiveAggregates } from './pipeline/aggregates.js';
import type { DeadLetterStore } from './pipeline/dead-letters.js';
import type { EventLog } from './pipeline/event-log.js';
import type { Ingest } from './pipeline/ingest.js';

export interface AppDeps {
  keys: ApiKeyStore;
  /** The service's clock (default the wall clock). */
  clock?: Clock;
  ingest: Ingest;
  log: EventLog;
  aggregates: LiveAggregates;
  metrics: Metrics;
  alerts: AlertSink;
  logger: ErrorLogger;
  /** Why the service is not ready yet (starting, draining), or undefined when it is. */
  notReady: () => string | undefined;
  /** Consumers and how far each has read. */
  consumers: () => Promise<{ name: string; committed: number }[]>;
  /** When the archive last received a batch, and the newest event time in it. */
  archiveFreshness: () => { at: number; newestEvent: string } | undefined;
  models: ModelRouteDeps;
  jobs: JobScheduler;
  experiments: ExperimentPlatform;
  limits?: { bodyBytes?: number };
  version?: string;
  /** Records the consumers could not apply, set aside. */
  deadLetters?: DeadLetterStore;
  /** The data dir, whose `reports/` folder holds the published notebook reports (`wb nb run --publish`). */
  dataDir?: string;
  /** Which instance answers, and the singletons' leases it holds now, for /healthz (several instances behind a proxy). */
  instance?: () => { id: string; singletons: Record<string, boolean> };
}

/**
 * The service's request listener: `POST /v1/predict`, its heaviest steady load, on Node's http alone
 * (`fastPredict`: the same answers, without Express's cost per request), every other request
 * through the Express app (`app`).
 */
export function createListener(deps: AppDeps): RequestListener & { app: Express } {
  const app = createApp(deps);
  return Object.assign(fastPredict({ keys: deps.keys, metrics: deps.metrics, logger: deps.logger, predict: predictor(deps.models) }, app), { app });
}

/**
 * The service as an Express app, without a listener: tests drive it in-process, `wb serve` listens.
 * Every route is declared in a route table that also produces the OpenAPI description.
 */
export function createApp(deps: AppDeps): Express {
  // Express's JSON parser loads iconv-lite's tables on the first body it reads (18 ms on a slow
  // machine). With predictions served before Express, that first body was a model's publish, and a
  // deploy held the event loop 40-49 ms where it had held it 16-23: they are loaded here, at start.
  iconv.getCodec('utf-8');
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(countRequests(deps.metrics));
  const routes = allRoutes(deps);
  for (const route of routes) {
    const auth = route.scope ? [requireScope(deps.keys, route.scope)] : [];
    app[route.method](route.path, ...auth, ...(route.before ?? []), route.handler);
  }
  app.use((req) => {
    throw notFound(`no route ${req.method} ${req.path} (see GET /v1/openapi.json)`);
  });
  app.use(errorHandler(deps.logger));
  return app;
}

export function allRoutes(deps: AppDeps): Route[] {
  const lag = async () => {
    const next = await deps.log.next();
    return (await deps.consumers()).map((c) => ({ ...c, lag: next - c.committed }));
  };
  const routes: Route[] = [
    {
      method: 'get',
      path: '/healthz',
      summary: 'Liveness: the process answers; which instance it is, and which singletons (decider, scheduler, precompute) it runs now.',
      responses: { 200: '{ status: "ok", instance, singletons: { "wb:decider": true, ... } }' },
      handler: (_req, res) => {
        const instance = deps.instance?.();
        res.json({ status: 'ok', ...(instance ? { instance: instance.id, singletons: instance.singletons } : {}) });
      },
    },
    {
      method: 'get',
      path: '/readyz',
      summary: 'Readiness: the event log is open and the consumers run; 503 while starting or draining.',
      responses: { 200: '{ status: "ready" }', 503: 'not ready, with the reason' },
      handler: (_req, res) => {
        const reason = deps.notReady();
        if (reason) throw unavailable(reason);
        res.json({ status: 'ready' });
      },
    },
    ...eventRoutes(deps.ingest, deps.metrics, deps.limits?.bodyBytes ?? 5 * 1024 * 1024),
    ...aggregateRoutes(deps.aggregates),
    ...featureRoutes(deps.models.features),
    ...modelRoutes(deps.models),
    ...jobRoutes(deps.jobs),
    ...experimentRoutes(deps.experiments),
    ...(deps.deadLetters ? deadLetterRoutes(deps.deadLetters) : []),
    ...(deps.dataDir ? reportRoutes(deps.dataDir, deps.logger) : []),
    ...modelCardRoutes({ registry: deps.models.models.registry, dataDir: deps.dataDir }),
    ...observabilityRoutes(deps.metrics, deps.alerts, async () => {
      for (const c of await lag()) deps.metrics.consumerLag.set({ consumer: c.name }, c.lag);
      deps.models.drift?.refreshMetrics();
    }),
    ...dashboardRoutes({
      aggregates: deps.aggregates,
      alerts: deps.alerts,
      clock: deps.clock ?? wallClock,
      lag,
      archive: deps.archiveFreshness,
      models: async () => {
        const served = new Map((await deps.metrics.predictions.get()).values.map((v) => [String(v.labels.model), v.value]));
        return Object.entries(deps.models.models.aliases()).map(([name, aliases]) => ({
          name,
          aliases,
          predictions: served.get(name) ?? 0,
          ...(deps.models.drift ? { drift: driftSummary(deps.models.drift.report(name)) } : {}),
        }));
      },
      experiments: () =>
        deps.experiments.experiments.list().map((s) => ({
          key: s.experiment.key,
          status: s.experiment.status,
          winner: s.experiment.winner,
          exposures: deps.experiments.tracker.exposures(s.experiment.key),
          decision: deps.experiments.decider.decision(s.experiment.key),
        })),
    }),
    {
      method: 'get',
      path: '/v1/log',
      summary: 'The event log: its length and, per consumer, the committed offset and the lag behind the end.',
      scope: 'read',
      responses: { 200: '{ kind, next, consumers: [{ name, committed, lag }] }' },
      handler: async (_req, res) => {
        res.json({ kind: deps.log.kind, next: await deps.log.next(), consumers: await lag() });
      },
    },
  ];
  const doc = () => openApiDocument([...routes, openApiRoute], deps.version ?? '0.0.0');
  const openApiRoute: Route = {
    method: 'get',
    path: '/v1/openapi.json',
    summary: 'This description of the API (OpenAPI 3.1).',
    responses: { 200: 'the OpenAPI document' },
    handler: (_req, res) => void res.json(doc()),
  };
  return [...routes, openApiRoute];
}
