import { z } from 'zod';
import { notFound, parseBody, parseQuery } from '../errors.js';
import { DEAD_LETTER_STATES, DeadLetterId, summarize, type DeadLetterStore } from '../pipeline/dead-letters.js';
import type { Route } from './route.js';

const ListQuery = z.object({
  consumer: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'a consumer name')
    .optional(),
  state: z.enum(DEAD_LETTER_STATES).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});
const IdParam = z.object({ id: DeadLetterId });

/**
 * Dead letters over HTTP: records a consumer could not apply, set aside. A retry is recorded in the
 * store; the consumer's runner applies it within about a second and records the outcome, which
 * `GET /v1/dead-letters/:id` then shows.
 */
export function deadLetterRoutes(store: DeadLetterStore): Route[] {
  const id = (params: unknown) => parseBody(IdParam, params, 'a dead-letter id is <consumer>@<offset>, from GET /v1/dead-letters').id;
  return [
    {
      method: 'get',
      path: '/v1/dead-letters',
      summary:
        'Dead letters, newest failure first, without their payloads: consumer, log offset, error, attempts, state (open, retry-requested, retried-ok, retry-failed).',
      scope: 'read',
      query: ListQuery,
      responses: {
        200: '{ store, total, letters: [{ id, consumer, offset, state, attempts, error, firstFailedAt, lastFailedAt, payloadBytes }] }',
        400: 'a bad query parameter',
      },
      handler: async (req, res) => {
        const q = parseQuery(ListQuery, req.query);
        const letters = await store.list({ consumer: q.consumer, state: q.state });
        res.json({ store: store.kind, total: letters.length, letters: letters.slice(0, q.limit).map(summarize) });
      },
    },
    {
      method: 'get',
      path: '/v1/dead-letters/:id',
      summary: 'One dead letter with its payload (the record as stored in the log) and the error with its stack.',
      scope: 'read',
      responses: { 200: 'the letter', 400: 'not a dead-letter id', 404: 'no such letter' },
      handler: async (req, res) => {
        const letter = await store.get(id(req.params));
        if (!letter) throw notFound(`no dead letter ${String(req.params.id)}`);
        res.json(letter);
      },
    },
    {
      method: 'post',
      path: '/v1/dead-letters/:id/retry',
      summary: "Asks the letter's consumer to apply the record again, alone; the answer comes at once, the outcome shows in the letter's state within seconds.",
      scope: 'admin',
      responses: { 202: '{ letter } in state retry-requested', 400: 'not a dead-letter id', 404: 'no such letter', 409: 'already retried successfully' },
      handler: async (req, res) => {
        res.status(202).json({ letter: summarize(await store.requestRetry(id(req.params))) });
      },
    },
  ];
}
