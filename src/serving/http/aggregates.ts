import { z } from 'zod';
import { parseQuery } from '../errors.js';
import { DIMENSIONS, WINDOWS, type LiveAggregates } from '../pipeline/aggregates.js';
import type { Route } from './route.js';

const Query = z.object({
  window: z.enum(Object.keys(WINDOWS) as [keyof typeof WINDOWS]).default('1m'),
  event: z.string().max(64).optional(),
  dimension: z.enum(['all', ...DIMENSIONS]).optional(),
  since: z.iso.datetime({ offset: true }).optional(),
});

/** `GET /v1/aggregates`: live counts and sums per event and cohort dimension, by time window. */
export function aggregateRoutes(aggregates: LiveAggregates): Route[] {
  return [
    {
      method: 'get',
      path: '/v1/aggregates',
      summary:
        'Live counts and sums per event, in 1-minute or 1-hour windows by event time, overall and per cohort dimension (tier, country, device, first_seen_week).',
      scope: 'read',
      query: Query,
      responses: { 200: '{ position, points: [{ window, start, event, dimension, value, count, sums }] }', 400: 'a bad query parameter' },
      handler: (req, res) => {
        const { window, event, dimension, since } = parseQuery(Query, req.query);
        res.json({ position: aggregates.position, points: aggregates.query(window, { event, dimension, fromMs: since ? Date.parse(since) : undefined }) });
      },
    },
  ];
}
