import express, { type Request } from 'express';
import { EventSchema } from '../../workbench/event.js';
import { badRequest, HttpError } from '../errors.js';
import { Unparsable, type Ingest } from '../pipeline/ingest.js';
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
        'The answer comes once the accepted events are durable in the event log.',
      scope: 'ingest',
      body: { contentTypes: ['application/json', 'application/x-ndjson'], schema: EventSchema, description: 'an array of events, or NDJSON (one event per line)' },
      responses: {
        200: 'the batch was taken: { accepted, duplicates, rejected: [{ index, event_id?, reason }], offsets? }',
        400: 'malformed body, a batch over the size limit, or every event rejected (the same report, code invalid_events)',
        401: 'no or bad API key',
        403: 'the key lacks the ingest scope',
        413: 'the body is over the byte limit',
        415: 'neither JSON nor NDJSON',
      },
      before: [
        express.json({ limit: bodyLimitBytes, type: 'application/json' }),
        express.text({ limit: bodyLimitBytes, type: ['application/x-ndjson', 'application/jsonl'] }),
      ],
      handler: async (req, res) => {
        const batch = batchOf(req);
        if (batch.length > ingest.options.maxEvents) {
          throw badRequest('batch_too_large', `the batch holds ${batch.length} events; the limit is ${ingest.options.maxEvents} per request`);
        }
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

function batchOf(req: Request): unknown[] {
  const type = req.get('content-type') ?? '';
  if (typeof req.body === 'string') {
    return req.body.split('\n').flatMap((line, i) => {
      if (line.trim() === '') return [];
      try {
        return [JSON.parse(line) as unknown];
      } catch (err) {
        return [new Unparsable(`line ${i + 1} is not valid JSON: ${(err as Error).message}`)];
      }
    });
  }
  if (Array.isArray(req.body)) return req.body;
  if (req.body === undefined && /json/.test(type)) throw badRequest('empty_body', 'the body is empty: send an array of events');
  if (req.body && typeof req.body === 'object' && /json/.test(type)) return [req.body];
  throw new HttpError(415, 'unsupported_media_type', 'send events as application/json (an array of events) or application/x-ndjson (one event per line)');
}
