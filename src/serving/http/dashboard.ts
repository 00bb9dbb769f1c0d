import type { Request, Response } from 'express';
import type { Clock } from '../../workbench/clock.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { dict } from '../../workbench/dict.js';
import type { DriftSummary } from '../models/drift.js';
import type { AlertSink } from '../observability/alerts.js';
import type { LiveAggregates } from '../pipeline/aggregates.js';
import type { Route } from './route.js';

export interface DashboardSources {
  aggregates: LiveAggregates;
  alerts: AlertSink;
  /** Each consumer's lag behind the end of the log. */
  lag: () => Promise<{ name: string; committed: number; lag: number }[]>;
  /** When the archive last received a batch and the newest event time in it. */
  archive: () => { at: number; newestEvent: string } | undefined;
  /** The models with aliases, the predictions each has served since the service started, and their versions' drift. */
  models: () => Promise<{ name: string; aliases: Record<string, string>; predictions: number; drift?: DriftSummary[] }[]>;
  /** Experiments, their users per arm and latest decision (the experiment page has the rest). */
  experiments: () => {
    key: string;
    status: string;
    winner?: string;
    exposures: Record<string, number>;
    decision?: { action: string; reason: string; mode: string; acted: boolean };
  }[];
  /** The service's clock: the page says when it is simulated. */
  clock: Clock;
}

const DIMENSIONS = ['country', 'device', 'tier', 'first_seen_week'] as const;
const MINUTES = 60;

/**
 * The live dashboard: a page (public; it holds no data) that asks for a read key and then follows
 * `GET /v1/stream`, server-sent events carrying a snapshot after every batch the aggregates handle
 * (at most five a second) and at least every two seconds.
 */
export function dashboardRoutes(sources: DashboardSources): Route[] {
  const page = readFileSync(join(__dirname, 'dashboard.html'), 'utf8');
  const experimentPage = readFileSync(join(__dirname, 'experiment.html'), 'utf8');
  const plotly = require.resolve('plotly.js-dist-min');
  return [
    {
      method: 'get',
      path: '/dashboard',
      summary: 'The live dashboard page: events per minute by cohort, alerts, consumer lag, archive freshness (data comes from /v1/stream with a read key).',
      responses: { 200: 'an HTML page' },
      handler: (_req, res) => void res.type('html').set('Cache-Control', 'no-store').send(page),
    },
    {
      method: 'get',
      path: '/experiments/:key',
      summary:
        "An experiment's page: arms, exposures, each metric's lift with its interval over time, sample ratio, the decision and its reason (data from /v1/experiments/:key with a read key).",
      responses: { 200: 'an HTML page' },
      handler: (_req, res) => void res.type('html').set('Cache-Control', 'no-store').send(experimentPage),
    },
    {
      method: 'get',
      path: '/assets/plotly.min.js',
      summary: 'The plotly.js script the dashboard draws with.',
      responses: { 200: 'JavaScript' },
      handler: (_req, res) => void res.set('Cache-Control', 'public, max-age=86400').sendFile(plotly),
    },
    {
      method: 'get',
      path: '/v1/stream',
      summary:
        'Server-sent events (text/event-stream): `snapshot` events with events per minute by cohort for the last hour, alerts, consumer lag, archive freshness and the models served.',
      scope: 'read',
      responses: { 200: 'an event stream that stays open' },
      handler: (req, res) => stream(req, res, sources),
    },
  ];
}

function stream(req: Request, res: Response, sources: DashboardSources): void {
  res.set({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
  res.flushHeaders();
  let last = 0;
  let pending: NodeJS.Timeout | undefined;
  let closed = false;
  const send = async () => {
    pending = undefined;
    last = Date.now();
    const data = JSON.stringify(await snapshot(sources));
    if (!closed) res.write(`event: snapshot\ndata: ${data}\n\n`);
  };
  // Push soon after new events, but at most five times a second per client.
  const schedule = () => {
    if (pending || closed) return;
    pending = setTimeout(() => void send(), Math.max(0, 200 - (Date.now() - last)));
  };
  const unsubscribe = sources.aggregates.onBatch(schedule);
  const unsubscribeAlerts = sources.alerts.onAlert(schedule);
  const heartbeat = setInterval(schedule, 2000);
  void send();
  req.on('close', () => {
    closed = true;
    unsubscribe();
    unsubscribeAlerts();
    clearInterval(heartbeat);
    clearTimeout(pending);
  });
}

async function snapshot(sources: DashboardSources) {
  const newest = sources.aggregates.newestEventTime;
  const from = Math.floor(newest / 60_000) * 60_000 - (MINUTES - 1) * 60_000;
  const points = sources.aggregates.query('1m', { fromMs: from });
  // Events per minute, summed over event names, per value of each cohort dimension.
  // Cohort values and event names come from outside: prototype-free objects, so `__proto__` or `constructor` are ordinary keys.
  const byDimension = dict<Record<string, Record<string, number>>>([['all', dict()]]);
  for (const d of DIMENSIONS) byDimension[d] = dict();
  const perEvent = dict<number>();
  for (const p of points) {
    const series = (byDimension[p.dimension]![p.value] ??= dict());
    series[p.start] = (series[p.start] ?? 0) + p.count;
    if (p.dimension === 'all') perEvent[p.event] = (perEvent[p.event] ?? 0) + p.count;
  }
  const archive = sources.archive();
  return {
    now: new Date(sources.clock.now()).toISOString(),
    clock: sources.clock.kind,
    newestEvent: newest > 0 ? new Date(newest).toISOString() : null,
    position: sources.aggregates.position,
    minutes: Array.from({ length: MINUTES }, (_, i) => new Date(from + i * 60_000).toISOString()),
    perMinute: byDimension,
    perEvent,
    alerts: sources.alerts.list().slice(0, 20),
    incidents: sources.alerts.incidents().slice(0, 20),
    consumers: await sources.lag(),
    models: await sources.models(),
    experiments: sources.experiments(),
    archive: archive ? { lastWrite: new Date(archive.at).toISOString(), newestEvent: archive.newestEvent, secondsAgo: (Date.now() - archive.at) / 1000 } : null,
  };
}
