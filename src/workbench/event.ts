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

/** The user's dimensions, added at ingest from the OLTP database so that no consumer looks users up. */
export interface UserDims {
  country: string;
  device: string;
  tier: string;
  /** ISO-8601 instant of the user's first event. */
  first_seen: string;
}

/** An event as the log and every consumer see it: the contract plus what ingest adds. */
export interface EnrichedEvent extends Event {
  dims: UserDims;
  /** The user's experiment arms, `{ key: arm }` (filled by the experimentation platform). */
  experiments: Record<string, string>;
  /** ISO-8601 instant the service accepted the event. */
  received_at: string;
}
