import type { RequestHandler } from 'express';
import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { parseQuery } from '../errors.js';
import type { AlertSink } from '../observability/alerts.js';
import type { Metrics } from '../observability/metrics.js';
import type { Route } from './route.js';

const AlertQuery = z.object({ since: z.iso.datetime({ offset: true }).optional() });

/** `GET /metrics` (Prometheus exposition) and `GET /v1/alerts`. */
export function observabilityRoutes(metrics: Metrics, alerts: AlertSink, beforeScrape: () => Promise<void>): Route[] {
  return [
    {
      method: 'get',
      path: '/metrics',
      summary: 'Prometheus metrics: events by name, country and device; ingest latency and batch sizes; consumer lag; HTTP requests by route and status.',
      scope: 'read',
      responses: { 200: 'the Prometheus text exposition format' },
      handler: async (_req, res) => {
        await beforeScrape();
        res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
      },
    },
    {
      method: 'get',
      path: '/v1/alerts',
      summary:
        'Alerts, newest first: anomalies (a metric series far from its expected value: counts, sums, gauges), experiment decisions, event log recoveries and dead letters (each with its kind); and the incidents anomalies opened (open ones and those detected since `since`), each grouping the intervals of one episode with its start, peak, end and whether it is resolved.',
      scope: 'read',
      query: AlertQuery,
      responses: {
        200: '{ alerts: [{ series, labels, metric, direction, pattern, observed, expected, score, threshold, windowStart, windowEnd, detectedAt, incident }], incidents: [{ id, series, labels, metric, direction, start, detectedAt, peak: { at, observed, expected, score }, end, intervals, resolved, resolvedAt, alert }] }',
        400: 'a bad query parameter',
      },
      handler: (req, res) => {
        const { since } = parseQuery(AlertQuery, req.query);
        const from = since ? Date.parse(since) : undefined;
        res.json({ alerts: alerts.list(from), incidents: alerts.incidents(from) });
      },
    },
  ];
}

/** Counts every request by method, matched route (never the raw path: ids would explode it) and status. */
export function countRequests(metrics: Metrics): RequestHandler {
  return (req, res, next) => {
    countWhenAnswered(metrics, res, req.method, () => (req.route as { path?: string } | undefined)?.path ?? 'unmatched');
    next();
  };
}

/** Counts one request once its answer is sent; `route` is asked then (Express matches the route after this is set up). */
export function countWhenAnswered(metrics: Metrics, res: ServerResponse, method: string, route: () => string): void {
  res.once('finish', () => metrics.http.inc({ method, route: metrics.label('route', route()), status: String(res.statusCode) }));
}
