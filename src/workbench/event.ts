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

/** One event as the service ingests it and the lakehouse archives it (see `EventSchema`). */
export type Event = z.infer<typeof EventSchema>;

/**
 * The service's own records in the log, written for users but not by them: every `POST /v1/predict`
 * (`prediction`) and every assignment's exposure (`experiment_exposure`). Clients may not send these
 * names, and a feature over every event (`source.event: '*'`) does not count them: a user's
 * features must not change because a model scored them or an experiment enrolled them.
 */
export const SERVICE_EVENTS: ReadonlySet<string> = new Set(['prediction', 'experiment_exposure']);

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

/**
 * Bounds on one event, so that every stage after ingest can store and walk it: DuckDB (the archive)
 * refuses text holding a lone surrogate, and the log, the consumers and the dashboard handle each
 * event whole, so one event must stay small and shallow.
 */
export interface EventLimits {
  /** Most levels of objects and arrays in `props`, `props` itself being the first. */
  maxPropsDepth: number;
  /** Most keys of one object, or items of one array, in `props`. */
  maxPropsEntries: number;
  /** Longest string value in `props`, in UTF-16 code units. */
  maxPropsString: number;
  /** Longest key in `props`. */
  maxPropsKey: number;
  /** Largest event, as the JSON text stored in the log, in UTF-8 bytes. */
  maxEventBytes: number;
}

export const DEFAULT_EVENT_LIMITS: EventLimits = {
  maxPropsDepth: 8,
  maxPropsEntries: 256,
  maxPropsString: 4_096,
  maxPropsKey: 128,
  maxEventBytes: 32 * 1024,
};

/** Where an event breaks a limit: the field's path (`props.a.0.b`), what is wrong, and which limit. */
export interface LimitViolation {
  field: string;
  message: string;
  limit?: { name: keyof EventLimits; value: number };
}

/** Whether a string is well-formed UTF-16 (no lone surrogate): natively where the runtime can. */
export const isWellFormed: (s: string) => boolean =
  typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === 'function'
    ? (s) => (s as unknown as { isWellFormed(): boolean }).isWellFormed()
    : (s) => !/[\uD800-\uDFFF]/u.test(s);

/**
 * A user id from outside the event body (an assignment, a prediction): the same rules as an event's
 * `user_id`, since it reaches the log and the archive in the service's own events.
 */
export const UserIdSchema = z
  .string()
  .min(1)
  .max(128)
  .superRefine((value, ctx) => {
    const problem = idProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

/** Why a string cannot be an id (malformed Unicode, a NUL), or undefined: one rule for events and the routes. */
function idProblem(value: string): string | undefined {
  if (!isWellFormed(value)) return malformedUnicode(value);
  // PostgreSQL (one of the OLTP stores) cannot hold U+0000 in text, and ids have no use for it.
  if (value.includes('\u0000')) return `holds a NUL character (U+0000) at code unit ${value.indexOf('\u0000')}, which ids may not`;
  return undefined;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$-]*$/;

interface Frame {
  value: unknown;
  depth: number;
  parent: Frame | undefined;
  key: string | number;
}

/**
 * The first way an event breaks the limits (malformed Unicode in `event_id`, `user_id`, `event`, or
 * in any key or string of `props`; `props` too deep or too wide), or undefined. Takes any value, as
 * parsed from a request: the walk keeps its own stack, so no depth of nesting can overflow it, and it
 * stops at the first problem. Types are not judged here (EventSchema does that); the size of the
 * whole event is judged on its JSON text, once it is known to be shallow enough to serialise.
 */
export function eventLimitViolation(item: unknown, limits: EventLimits = DEFAULT_EVENT_LIMITS): LimitViolation | undefined {
  if (typeof item !== 'object' || item === null) return undefined;
  const fields = item as Record<string, unknown>;
  for (const name of ['event_id', 'user_id', 'event', 'time'] as const) {
    const value = Object.hasOwn(fields, name) ? fields[name] : undefined;
    if (typeof value !== 'string') continue;
    const problem = name === 'time' ? (isWellFormed(value) ? undefined : malformedUnicode(value)) : idProblem(value);
    if (problem) return { field: name, message: problem };
  }
  if (!Object.hasOwn(fields, 'props')) return undefined;
  const stack: Frame[] = [{ value: fields.props, depth: 1, parent: undefined, key: 'props' }];
  for (let frame = stack.pop(); frame; frame = stack.pop()) {
    const { value, depth } = frame;
    if (typeof value === 'string') {
      if (!isWellFormed(value)) return { field: pathOf(frame), message: malformedUnicode(value) };
      if (value.length > limits.maxPropsString) {
        return {
          field: pathOf(frame),
          message: `a string of ${value.length} characters is over the limit of ${limits.maxPropsString}`,
          limit: { name: 'maxPropsString', value: limits.maxPropsString },
        };
      }
      continue;
    }
    if (typeof value !== 'object' || value === null) continue;
    if (depth > limits.maxPropsDepth) {
      return {
        field: pathOf(frame),
        message: `props are nested deeper than the limit of ${limits.maxPropsDepth} levels`,
        limit: { name: 'maxPropsDepth', value: limits.maxPropsDepth },
      };
    }
    if (Array.isArray(value)) {
      if (value.length > limits.maxPropsEntries) {
        return {
          field: pathOf(frame),
          message: `an array of ${value.length} items is over the limit of ${limits.maxPropsEntries}`,
          limit: { name: 'maxPropsEntries', value: limits.maxPropsEntries },
        };
      }
      for (let i = value.length - 1; i >= 0; i--) stack.push({ value: value[i], depth: depth + 1, parent: frame, key: i });
      continue;
    }
    const keys = Object.keys(value);
    if (keys.length > limits.maxPropsEntries) {
      return {
        field: pathOf(frame),
        message: `an object of ${keys.length} keys is over the limit of ${limits.maxPropsEntries}`,
        limit: { name: 'maxPropsEntries', value: limits.maxPropsEntries },
      };
    }
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i]!;
      const child: Frame = { value: (value as Record<string, unknown>)[key], depth: depth + 1, parent: frame, key };
      if (!isWellFormed(key)) return { field: pathOf(frame), message: `a key ${malformedUnicode(key)}` };
      if (key.length > limits.maxPropsKey) {
        return {
          field: pathOf(child),
          message: `a key of ${key.length} characters is over the limit of ${limits.maxPropsKey}`,
          limit: { name: 'maxPropsKey', value: limits.maxPropsKey },
        };
      }
      stack.push(child);
    }
  }
  return undefined;
}

function malformedUnicode(s: string): string {
  return `is not well-formed Unicode (a lone surrogate at code unit ${loneSurrogateAt(s)}): send text as UTF-8, or escape a character beyond U+FFFF as a pair \\uD8xx\\uDCxx`;
}

function loneSurrogateAt(s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    const next = s.charCodeAt(i + 1);
    if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) i++;
    else return i;
  }
  return -1;
}

/** `props.a.0.b` as zod writes paths; a key that is not a plain name is quoted (and cut at 64 characters). */
function pathOf(frame: Frame): string {
  const parts: string[] = [];
  for (let f: Frame | undefined = frame; f; f = f.parent) {
    const key = f.key;
    parts.push(typeof key === 'number' || IDENTIFIER.test(key) ? String(key) : JSON.stringify(key.length > 64 ? `${key.slice(0, 64)}…` : key));
  }
  return parts.reverse().join('.');
}
