import { TimeSlices } from '../../workbench/time-slices.js';
import { countryCode } from '../../workbench/countries.js';
import {
  DEFAULT_EVENT_LIMITS,
  EventSchema,
  eventLimitViolation,
  SERVICE_EVENTS,
  UserIdSchema,
  type EnrichedEvent,
  type Event,
  type EventLimits,
  type UserDims,
} from '../../workbench/event.js';
import { InputError } from '../../workbench/errors.js';
import type { OltpStore, User } from '../../workbench/oltp/store.js';
import type { Appended, EventLog } from './event-log.js';
import type { RecentEvents } from './recent-events.js';
import { RecentIds } from './recent-ids.js';

/** Adds each event's experiment arms at ingest (the experimentation platform's Assigner). */
export interface Tagger {
  tagBatch(
    events: readonly Event[],
    dims: (user: string) => UserDims | undefined,
    expose?: readonly { experiment: string; user_id: string }[],
  ): Promise<{
    tags: readonly (Record<string, string> | undefined)[];
    head: readonly Event[];
    exposures: Map<number, Event[]>;
    after: Promise<void>[];
    settle(logged: ReadonlySet<string> | false): Promise<void>;
  }>;
}

const WHY_RESERVED: ReadonlyMap<string, string> = new Map([
  ['experiment_exposure', 'written by the experimentation platform): assign users with POST /v1/assignments or an exposureEvent'],
  ['prediction', 'every POST /v1/predict is logged as one): name your event otherwise'],
]);

/**
 * Event names only the service itself writes (`SERVICE_EVENTS`, through `ingest(..., { internal: true })`),
 * with why a client may not: its event would mix with the service's own records and be counted as one of them.
 */
export const RESERVED_EVENTS: ReadonlyMap<string, string> = new Map(
  [...SERVICE_EVENTS].map((name) => [name, `${name} is the service's own event name (${WHY_RESERVED.get(name) ?? 'the service writes it)'}`]),
);

export interface IngestOptions {
  /** Most events in one batch. */
  maxEvents: number;
  /** How far in the future an event's time may be (clock skew), in ms. */
  maxFutureMs: number;
  /** How old an event's time may be, in ms. */
  maxAgeMs: number;
  /** When set, event names outside it are rejected; when absent, any well-formed name is accepted. The service's own (RESERVED_EVENTS) need not be listed. */
  eventNames?: ReadonlySet<string>;
  /** Bounds on one event (Unicode, depth and size of props, size of the whole). */
  limits: EventLimits;
  /** How long, and for how many ids, a retried event is recognised as a duplicate. */
  dedupeWindowMs: number;
  maxDedupeIds: number;
}

export const DEFAULT_INGEST: IngestOptions = {
  maxEvents: 10_000,
  maxFutureMs: 5 * 60_000,
  maxAgeMs: 30 * 86_400_000,
  dedupeWindowMs: 24 * 3_600_000,
  maxDedupeIds: 2_000_000,
  limits: DEFAULT_EVENT_LIMITS,
};

/** Ingest options as configured: any of them, and any of the event limits. */
export type IngestSettings = Partial<Omit<IngestOptions, 'limits'>> & { limits?: Partial<EventLimits> };

export interface Rejection {
  index: number;
  event_id?: string;
  reason: string;
  /** The field at fault, when one is (`props.a.b`). */
  field?: string;
  /** The limit the event broke, when it broke one (see IngestOptions.limits). */
  limit?: { name: keyof EventLimits; value: number };
}

export interface IngestResult {
  /** Events appended to the log by this call. */
  accepted: number;
  /** Events already in the log (a retry): acknowledged, not appended again. */
  duplicates: number;
  rejected: Rejection[];
  /**
   * Where this call's records are in the log: from `first` to before `next`. With several service
   * instances on one stream, others' events may lie between; every event of the call is before `next`.
   */
  offsets?: { first: number; next: number };
}

/** A batch item that could not even be parsed (NDJSON line with broken JSON, or one too large to parse). */
export class Unparsable {
  constructor(
    readonly reason: string,
    /** What is known of the item without parsing it: its event_id, the field at fault, the limit broken. */
    readonly known: Pick<Rejection, 'event_id' | 'field' | 'limit'> = {},
  ) {}
}

const USER_CACHE_TTL_MS = 60_000;
/** The arms of an event in no experiment: one shared object, written as `{}`. */
const NO_ARMS: Record<string, string> = Object.freeze({}) as Record<string, string>;

/** A user's dimensions, and the same as JSON text, spliced into each of their events' log records. */
interface UserEntry {
  dims: UserDims;
  json: string;
}

interface CachedUser extends UserEntry {
  until: number;
}
const USER_CACHE_MAX = 100_000;
/** Users looked up or created per OLTP call: small enough that an embedded database answers within a slice. */
const OLTP_CHUNK = 500;

/**
 * Ingest: validates each event of a batch on its own (good ones go in, bad ones are reported by
 * index), drops retries by event_id, adds the user's dimensions from the OLTP database (creating
 * users on their first event), and appends the batch to the durable log. Resolves only when the
 * log has the batch on stable storage: that is the acknowledgement.
 */
export class Ingest {
  private readonly recent: RecentIds;
  private readonly users = new Map<string, CachedUser>();

  private constructor(
    private readonly log: EventLog,
    private readonly oltp: OltpStore,
    readonly options: IngestOptions,
    private readonly now: () => number,
    private readonly tail?: RecentEvents,
    private readonly tagger?: Tagger,
  ) {
    this.recent = new RecentIds(options.dedupeWindowMs, options.maxDedupeIds);
  }

  /** Opens ingest over a log, remembering the ids of its most recent events so retries stay idempotent. */
  static async open(
    log: EventLog,
    oltp: OltpStore,
    options: IngestSettings = {},
    now: () => number = Date.now,
    recent?: RecentEvents,
    tagger?: Tagger,
  ): Promise<Ingest> {
    const ingest = new Ingest(log, oltp, { ...DEFAULT_INGEST, ...options, limits: { ...DEFAULT_EVENT_LIMITS, ...options.limits } }, now, recent, tagger);
    const end = await log.next();
    const decoder = new TextDecoder();
    for (let offset = Math.max(0, end - ingest.options.maxDedupeIds); offset < end;) {
      const entries = await log.read(offset, 10_000);
      if (entries.length === 0) break;
      for (const entry of entries) {
        // A record that is not an event (written before ingest checked as much, or damaged) cannot be
        // a retry's original: the consumers set it aside as a dead letter; here it is only skipped.
        const e = parseLoggedId(decoder.decode(entry.payload));
        if (e) ingest.recent.add(e.event_id, e.receivedAt);
      }
      offset = entries[entries.length - 1]!.offset + 1;
    }
    ingest.recent.expire(now());
    return ingest;
  }

  get rememberedIds(): number {
    return this.recent.size;
  }

  /**
   * `internal`: the service's own events, which may use reserved names and never create users.
   * `expose`: users the experimentation platform assigned, whose exposure this call logs (with or
   * without events). Each event is checked in turn, in time slices (SLICE_MS), so that a large or
   * hostile batch never holds the event loop for long.
   */
  async ingest(
    batch: readonly unknown[],
    options: { internal?: boolean; expose?: readonly { experiment: string; user_id: string }[] } = {},
  ): Promise<IngestResult> {
    const now = this.now();
    this.recent.expire(now);
    const rejected: Rejection[] = [];
    const fresh: Event[] = [];
    /** Each fresh event's JSON text, measured against the size limit and spliced into its log record. */
    const texts: string[] = [];
    let duplicates = 0;
    const slices = new TimeSlices();
    try {
      for (let index = 0; index < batch.length; index++) {
        const pause = slices.pause();
        if (pause) await pause;
        const item = batch[index];
        if (item instanceof Unparsable) {
          const { event_id, field, limit } = item.known;
          rejected.push({
            index,
            ...(event_id === undefined ? {} : { event_id }),
            reason: item.reason,
            ...(field === undefined ? {} : { field }),
            ...(limit ? { limit } : {}),
          });
          continue;
        }
        const id = (item as { event_id?: unknown } | null)?.event_id;
        const named = typeof id === 'string' && id.length <= 128 ? { event_id: id } : {};
        // Limits first: they hold for any value, and a refused event is never copied or serialised.
        const violation = eventLimitViolation(item, this.options.limits);
        if (violation) {
          // A malformed id is not echoed back: the answer must be storable JSON too.
          const echo = violation.field === 'event_id' ? {} : named;
          rejected.push({
            index,
            ...echo,
            reason: `${violation.field}: ${violation.message}`,
            field: violation.field,
            ...(violation.limit ? { limit: violation.limit } : {}),
          });
          continue;
        }
        const parsed = EventSchema.safeParse(item);
        if (!parsed.success) {
          const issue = parsed.error.issues[0]!;
          rejected.push({ index, ...named, reason: `${issue.path.join('.') || 'event'}: ${issue.message}` });
          continue;
        }
        const event = parsed.data;
        const problem = this.checkEvent(event, now, options.internal === true);
        if (problem) {
          rejected.push({ index, event_id: event.event_id, reason: problem });
          continue;
        }
        if (this.recent.has(event.event_id)) {
          duplicates++;
          continue;
        }
        const text = JSON.stringify(event);
        const bytes = Buffer.byteLength(text);
        const { maxEventBytes } = this.options.limits;
        if (bytes > maxEventBytes) {
          rejected.push({
            index,
            event_id: event.event_id,
            reason: `event: ${bytes} bytes as JSON is over the limit of ${maxEventBytes}`,
            field: 'event',
            limit: { name: 'maxEventBytes', value: maxEventBytes },
          });
          continue;
        }
        // Reserved at once: a second copy in this batch, or a retry of it that arrives while this
        // one awaits the log, is a duplicate. Released again if the append fails.
        this.recent.add(event.event_id, now);
        fresh.push(event);
        texts.push(text);
      }
    } catch (err) {
      for (const event of fresh) this.recent.delete(event.event_id);
      throw err;
    }
    const expose = options.expose ?? [];
    // Exposures become records of the service's own, unchecked by the loop above: a user id the
    // archive cannot store must have been refused where it came in (the routes use UserIdSchema).
    for (const x of expose) {
      const id = UserIdSchema.safeParse(x.user_id);
      if (!id.success) throw new InputError(`cannot log the exposure of user ${JSON.stringify(x.user_id)}: user_id ${id.error.issues[0]!.message}`);
    }
    if (fresh.length === 0 && expose.length === 0) return { accepted: 0, duplicates, rejected };

    const exposed: Event[] = [];
    try {
      // Users exposed through the API may have no event yet: they are created as on a first event.
      const receivedIso = new Date(now).toISOString();
      const dims = await this.dimsFor(
        expose.length === 0
          ? fresh
          : [...fresh, ...expose.map((x) => ({ event_id: '', time: receivedIso, user_id: x.user_id, event: 'experiment_exposure', props: {} }))],
        options.internal === true,
      );
      const tagged = this.tagger ? await this.tagger.tagBatch(fresh, (user) => dims.get(user)?.dims, expose) : undefined;
      const receivedAt = new Date(now).toISOString();
      const enriched: EnrichedEvent[] = [];
      const payloads: string[] = [];
      /** The records' ids: a log shared by instances recognises a retry by them (`EventLog.append`). */
      const ids: string[] = [];
      /** Indexes of the exposure records among the payloads. */
      const exposureAt: number[] = [];
      const push = (event: Event, text: string, user: UserEntry, experiments: Record<string, string>) => {
        ids.push(event.event_id);
        // A literal of one shape (not a spread) and JSON spliced from the event's and the user's
        // JSON text: this runs for every event the service takes.
        enriched.push({
          event_id: event.event_id,
          time: event.time,
          user_id: event.user_id,
          event: event.event,
          props: event.props,
          dims: user.dims,
          experiments,
          received_at: receivedAt,
        });
        const arms = experiments === NO_ARMS ? '{}' : JSON.stringify(experiments);
        payloads.push(`${text.slice(0, -1)},"dims":${user.json},"experiments":${arms},"received_at":"${receivedAt}"}`);
      };
      // Exposure ids now in the log: appended here, or already there (a repeat after a restart).
      const logged = new Set<string>();
      const pushExposure = (exposure: Event) => {
        logged.add(exposure.event_id);
        if (this.recent.has(exposure.event_id)) return;
        this.recent.add(exposure.event_id, now);
        exposed.push(exposure);
        exposureAt.push(payloads.length);
        push(exposure, JSON.stringify(exposure), dims.get(exposure.user_id)!, { [String(exposure.props.experiment)]: String(exposure.props.arm) });
      };
      for (const exposure of tagged?.head ?? []) pushExposure(exposure);
      // No added pause between tagging and the append: the tagger orders exposures across concurrent
      // batches by what it saw when tagging, and this stretch stays as short as it was.
      for (let i = 0; i < fresh.length; i++) {
        const event = fresh[i]!;
        for (const exposure of tagged?.exposures.get(i) ?? []) pushExposure(exposure);
        push(event, texts[i]!, dims.get(event.user_id)!, tagged?.tags[i] ?? NO_ARMS);
      }
      let appended: Appended;
      try {
        // Events tagged here whose user's exposure another batch is appending go after it.
        if (tagged?.after.length) await Promise.all(tagged.after);
        if (payloads.length > 0) appended = await this.log.append(payloads, ids);
        else {
          const end = await this.log.next();
          appended = { first: end, next: end };
        }
      } catch (err) {
        await tagged?.settle(false);
        throw err;
      }
      await tagged?.settle(logged);
      const offsets = { first: appended.first, next: appended.next };
      const sizes = payloads.map((p) => p.length);
      if (!appended.offsets) {
        // Bounded by bytes too: a burst of large events must not keep hundreds of MB decoded.
        this.tail?.put(appended.first, enriched, sizes);
        return { accepted: fresh.length, duplicates, rejected, offsets };
      }
      // Interleaved with another instance's records, or partly in the log already (another instance
      // took this batch before, or an append of it failed after storing some): the ring is given
      // exactly the offsets this call stored, and the events stored before count as duplicates.
      const again = new Set(appended.duplicates);
      const exposures = new Set(exposureAt);
      const at: number[] = [];
      const kept: EnrichedEvent[] = [];
      const keptSizes: number[] = [];
      let clientDuplicates = 0;
      for (let i = 0; i < enriched.length; i++) {
        if (again.has(i)) {
          if (!exposures.has(i)) clientDuplicates++;
          continue;
        }
        at.push(appended.offsets[i]!);
        kept.push(enriched[i]!);
        keptSizes.push(sizes[i]!);
      }
      this.tail?.put(at, kept, keptSizes);
      return { accepted: fresh.length - clientDuplicates, duplicates: duplicates + clientDuplicates, rejected, offsets };
    } catch (err) {
      for (const event of [...fresh, ...exposed]) this.recent.delete(event.event_id);
      throw err;
    }
  }

  /** Why an event cannot be taken, if it cannot; else writes its time in one form (UTC, ms) and returns nothing. */
  private checkEvent(event: Event, now: number, internal: boolean): string | undefined {
    const reserved = RESERVED_EVENTS.get(event.event);
    if (reserved && !internal) return reserved;
    const time = Date.parse(event.time);
    if (time > now + this.options.maxFutureMs)
      return `time ${event.time} is in the future (more than ${this.options.maxFutureMs / 60_000} minutes ahead of the server)`;
    if (time < now - this.options.maxAgeMs) return `time ${event.time} is older than ${Math.round(this.options.maxAgeMs / 86_400_000)} days`;
    if (this.options.eventNames && !this.options.eventNames.has(event.event) && !reserved) {
      return `unknown event name ${JSON.stringify(event.event)} (this service accepts: ${[...this.options.eventNames].join(', ')})`;
    }
    // One form in the log, so that consumers may compare times as text and the archive parses one format.
    if (event.time.length !== 24 || event.time[23] !== 'Z') event.time = new Date(time).toISOString();
    return undefined;
  }

  /**
   * Dimensions of every user in the batch: from a short-lived cache, the OLTP database, or new users.
   * `internal` events (predictions, exposures) are not a user's activity: a user unknown to the
   * database gets placeholder dims for them, and is neither created nor cached.
   */
  private async dimsFor(events: readonly Event[], internal: boolean): Promise<Map<string, UserEntry>> {
    // The cache's lifetime is the machine's, whatever the service's clock.
    const now = Date.now();
    const out = new Map<string, UserEntry>();
    const missing = new Set<string>();
    for (const e of events) {
      const cached = this.users.get(e.user_id);
      if (cached && cached.until > now) out.set(e.user_id, cached);
      else missing.add(e.user_id);
    }
    if (missing.size === 0) return out;
    const found = new Map<string, User>();
    // In chunks, each its own slice: an embedded database answers synchronously.
    const ids = [...missing];
    for (let i = 0; i < ids.length; i += OLTP_CHUNK) {
      if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      for (const [id, u] of await this.oltp.getUsers(ids.slice(i, i + OLTP_CHUNK))) found.set(id, u);
    }
    const created: User[] = [];
    const firstSeen = new Map<string, Event>();
    for (const e of events) {
      if (!missing.has(e.user_id) || found.has(e.user_id)) continue;
      const seen = firstSeen.get(e.user_id);
      if (!seen || e.time < seen.time) firstSeen.set(e.user_id, e);
    }
    if (internal) {
      for (const [id, e] of firstSeen) {
        const dims: UserDims = { country: 'unknown', device: 'unknown', tier: 'free', first_seen: e.time };
        out.set(id, { dims, json: JSON.stringify(dims) });
      }
      firstSeen.clear();
    }
    for (const [id, e] of firstSeen) {
      created.push({ user_id: id, country: countryDim(e.props.country), device: dimFrom(e.props.device), tier: 'free', first_seen: e.time });
    }
    const fetched = new Map<string, User>(found);
    for (const u of created) fetched.set(u.user_id, u);
    for (let i = 0; i < created.length; i += OLTP_CHUNK) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      const chunk = created.slice(i, i + OLTP_CHUNK);
      await this.oltp.insertUsersIfAbsent(chunk);
      // Another request may have created some first: read back what the database kept.
      for (const [id, u] of await this.oltp.getUsers(chunk.map((u) => u.user_id))) fetched.set(id, u);
    }
    for (const [id, u] of fetched) {
      const dims: UserDims = { country: u.country, device: u.device, tier: u.tier, first_seen: u.first_seen };
      const entry: CachedUser = { dims, json: JSON.stringify(dims), until: now + USER_CACHE_TTL_MS };
      out.set(id, entry);
      this.users.delete(id);
      this.users.set(id, entry);
      if (this.users.size > USER_CACHE_MAX) this.users.delete(this.users.keys().next().value!);
    }
    return out;
  }
}

/** A dimension taken from an event's props when a new user is created: short text without control characters (PostgreSQL refuses U+0000), or `unknown`. */
/**
 * One vocabulary for countries: a known name or code becomes its ISO 3166-1 alpha-2 code, as the
 * retail log and the simulated app store them ('United Kingdom' and 'gb' are GB, one series on the
 * dashboard); anything else is kept as sent, within the dimension rules (the event keeps the original).
 */
function countryDim(value: unknown): string {
  const dim = dimFrom(value);
  return dim === 'unknown' ? dim : (countryCode(dim) ?? dim);
}

function dimFrom(value: unknown): string {
  return typeof value === 'string' && value.length > 0 && value.length <= 64 && !CONTROL.test(value) ? value : 'unknown';
}
// eslint-disable-next-line no-control-regex -- finds the control characters a dimension may not hold (PostgreSQL refuses U+0000)
const CONTROL = /[\u0000-\u001f\u007f]/;

/** The id and receipt time of a logged record, or undefined for a record that is not a logged event. */
function parseLoggedId(text: string): { event_id: string; receivedAt: number } | undefined {
  try {
    const e = JSON.parse(text) as { event_id?: unknown; received_at?: unknown } | null;
    if (typeof e?.event_id !== 'string' || typeof e.received_at !== 'string') return undefined;
    return { event_id: e.event_id, receivedAt: Date.parse(e.received_at) };
  } catch {
    return undefined;
  }
}
