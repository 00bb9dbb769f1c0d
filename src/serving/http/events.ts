import express from 'express';
import { EventSchema } from '../../workbench/event.js';
import { badRequest } from '../errors.js';
import type { Ingest } from '../pipeline/ingest.js';
import { batchOf, JSON_TYPES, NDJSON_TYPES } from './event-body.js';
import type { Metrics } from '../observability/metrics.js';
import type { Route } from './route.js';

/** `POST /v1/events`: a JSON array (or one object) or NDJSON lines of events. */
export function eventRoutes(ingest: Ingest, metrics: Metrics, bodyLimitBytes: number): Route[] {
  return [
    {
      method: 'post',
      path: '/v1/events',
      summary:
        'Ingest a batch of events. Good events are accepted even when others are rejected; each rejected one is reported with its index and reason. ' +
        'Retrying a batch is safe: events whose event_id was already accepted are counted as duplicates and not appended again. ' +
        'The answer comes once the accepted events are durable in the event log. ' +
        'Each event must be well-formed Unicode, and its props shallow and small (see the limits in the service configuration); an event over a limit is rejected with the field and the limit.',
      scope: 'ingest',
      body: {
        contentTypes: ['application/json', 'application/x-ndjson'],
        schema: EventSchema,
        description: 'an array of events, or NDJSON (one event per line)',
      },
      responses: {
        200: 'the batch was taken: { accepted, duplicates, rejected: [{ index, event_id?, reason, field?, limit? }], offsets? }',
        400: 'malformed body, a batch over the size limit, or every event rejected (the same report, code invalid_events)',
        401: 'no or bad API key',
        403: 'the key lacks the ingest scope',
        413: 'the body is over the byte limit',
        415: 'neither JSON nor NDJSON, or not UTF-8',
      },
      // The body is read as bytes and parsed here, item by item in time slices: a whole-body
      // JSON.parse of a few MB of tiny or deeply nested values holds the event loop for up to seconds.
      before: [express.raw({ limit: bodyLimitBytes, type: [...JSON_TYPES, ...NDJSON_TYPES] })],
      handler: async (req, res) => {
        const batch = await batchOf(req, ingest.options.maxEvents, ingest.options.limits);
        const stopTimer = metrics.ingestSeconds.startTimer();
        const result = await ingest.ingest(batch);
        stopTimer();
        metrics.ingestBatchSize.observe(batch.length);
        metrics.rejected.inc(result.rejected.length);
        metrics.duplicates.inc(result.duplicates);
        if (result.accepted === 0 && result.duplicates === 0 && result.rejected.length > 0) {
          throw badRequest('invalid_events', `all ${result.rejected.length} events were rejected`, result);
        }
        res.json(result);
      },
    },
  ];
}
