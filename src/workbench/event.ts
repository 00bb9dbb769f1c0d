import { z } from 'zod';

/**
 * The project's event shape, the contract between the app, ingest, the event log and the archive.
 * `event_id` is the idempotency key; `time` is an ISO-8601 instant in UTC.
 */
export const EventSchema = z.object({
  event_id: z.string().min(1).max(128),
  time: z.iso.datetime({ offset: true }),
  user_id: z.string().min(1).max(128),
  event: z
    .string()
    .regex(/^[a-z][a-z0-9_]*$/, 'event names are lower_snake_case')
    .max(64),
  props: z.record(z.string(), z.unknown()).default({}),
});

export type Event = z.infer<typeof EventSchema>;
