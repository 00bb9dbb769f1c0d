import { createReadStream, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGunzip } from 'node:zlib';
import { InputError, NotFoundError } from '../workbench/errors.js';
import type { Event } from '../workbench/event.js';
import { CsvRecordSplitter } from '../workbench/lakehouse/csv-records.js';
import type { Rejected } from '../workbench/lakehouse/csv.js';
import { RETAIL_COLUMNS, retailSpec, type RetailRow } from '../workbench/lakehouse/retail.js';
import type { SimulatedClock } from '../workbench/clock.js';
import { AppSimulator, SimulationConfigSchema, type SimulationConfig } from './simulator.js';

/**
 * Replay (stage 1): real and simulated histories played back as a live stream, at a chosen speed,
 * so the service sees traffic shaped like a product's. This module holds the sources, their merge
 * and the pacing; sending the events over HTTP is the CLI's job (src/cli/replay.ts).
 *
 * Timelines. Each source has an origin, the UTC midnight its history starts on (the retail log
 * starts on 2010-12-01, the simulator on its `start`, 2025-01-01 by default). The merge places every
 * source on one shared timeline measured from its own origin, so all sources start on the same
 * moment and their days line up (day 3 of the shop is played alongside day 3 of the app, 08:00 in
 * one alongside 08:00 in the other). Events keep their ids; their `time` becomes the wall-clock
 * instant they are emitted, because ingest refuses timestamps older than 30 days, and the original
 * time travels in `props.original_time`. With a simulated clock (`simulated`), their `time` is
 * instead their place on the shared timeline counted from one calendar (the app's start for
 * `npm start`), and the service runs on that clock: one time for the events and the service.
 */

const DAY_MS = 86_400_000;

/** A time-ordered history of events. */
export interface ReplaySource {
  /** A short name (`retail`, `app`) for progress and reports. */
  readonly name: string;
  /** Where the source's timeline starts (ms since the epoch); default the UTC midnight of its first event. */
  readonly origin?: number;
  /** The events, in time order. A new call starts over. */
  events(): AsyncIterable<Event>;
}

/** The shipped UCI Online Retail log. */
export const RETAIL_FILE = join(__dirname, '..', '..', 'data', 'online-retail-uci', 'online_retail.csv.gz');

export interface RetailSourceOptions {
  /** The CSV file (gzip when it ends in .gz); default the shipped log. */
  file?: string;
  /** Rows dated after this are refused, as the lakehouse build does; default now. */
  now?: Date;
}

/** A retail source also counts the lines it had to skip (no CustomerID, a bad date, ...). */
export interface RetailSource extends ReplaySource {
  readonly skipped: { count: number; first: Rejected[] };
}

/**
 * One retail row as an event: purchases and returns by customer, with the shop's country in props as
 * its ISO 3166-1 alpha-2 code (`retailSpec` converts it), the vocabulary the simulated app uses, so
 * one country is one series on the dashboard and one value in the OLTP users the service creates.
 */
export function retailEvent(row: RetailRow): Event {
  const [event_id, time, customer, event, invoice, stock_code, description, quantity, unit_price, amount, country] = row;
  return {
    event_id,
    time: new Date(time).toISOString(),
    user_id: `retail-${customer}`,
    event,
    props: { invoice, stock_code, description, quantity, unit_price, amount, country, device: 'web' },
  };
}

/**
 * The retail log as events, in the file's order (which is time order), with backpressure.
 *
 * Why not `readCsv`: it owns its file stream and hands rows to synchronous callbacks, so it cannot
 * be paused; wrapped into an async iterable it would read the whole file (405,766 events) into
 * memory in about two seconds while the replay plays one day per second. This reader runs the same
 * pieces (the `CsvRecordSplitter` and `retailSpec`, so the same rows are accepted, with the same
 * event ids) but pulls: it decompresses the next chunk (about 1 MB of text, a few days of the shop)
 * only when the replay has taken every event of the previous one, so at most one chunk of rows is
 * held at a time. Lines that `retailSpec` refuses are skipped and counted, as the lakehouse build
 * quarantines them.
 */
export function retailSource(options: RetailSourceOptions = {}): RetailSource {
  const file = options.file ?? RETAIL_FILE;
  const skipped = { count: 0, first: [] as Rejected[] };
  return {
    name: 'retail',
    skipped,
    async *events() {
      try {
        if (statSync(file).size === 0) throw new InputError('the file is empty: expected a header line and rows', { file });
      } catch (err) {
        if (err instanceof InputError) throw err;
        throw new NotFoundError(`${file}: no such file (expected the retail log there; see data/README.md)`);
      }
      skipped.count = 0;
      skipped.first.length = 0;
      const spec = retailSpec(options.now);
      const skip = (r: Rejected) => {
        skipped.count++;
        if (skipped.first.length < 5) skipped.first.push(r);
      };
      let header: string[] | undefined;
      let rows: RetailRow[] = [];
      const splitter = new CsvRecordSplitter({
        record(record, line, raw) {
          if (!header) {
            header = record.map((h) => h.trim());
            const columns: readonly string[] = RETAIL_COLUMNS;
            const unknown = header.find((h) => !columns.includes(h));
            const missing = columns.find((c) => !header!.includes(c));
            if (unknown !== undefined || missing !== undefined || header.length !== columns.length) {
              const what =
                unknown !== undefined
                  ? `unknown column ${JSON.stringify(unknown)}`
                  : missing !== undefined
                    ? `missing column ${JSON.stringify(missing)}`
                    : 'a column appears twice';
              throw new InputError(`${what} in the header (expected ${columns.join(', ')})`, { file, line: 1, column: unknown ?? missing });
            }
            return;
          }
          if (record.length !== header.length) return skip({ line, reason: `expected ${header.length} fields, found ${record.length}`, record: raw });
          const fields: Record<string, string> = {};
          for (let i = 0; i < header.length; i++) fields[header[i]!] = record[i]!;
          const row = spec.parse(fields, line);
          if (typeof row === 'string') return skip({ line, reason: row, record: raw });
          rows.push(row);
        },
        malformed(reason, line, raw) {
          if (!header) throw new InputError(`malformed header: ${reason}`, { file, line });
          skip({ line, reason: `malformed CSV: ${reason}`, record: raw });
        },
      });
      const raw = createReadStream(file, { highWaterMark: 1 << 20 });
      const text = (file.endsWith('.gz') ? raw.pipe(createGunzip({ chunkSize: 1 << 20 })) : raw).setEncoding('utf8');
      raw.on('error', (err) => text.destroy(err));
      try {
        const drain = function* () {
          const ready = rows;
          rows = [];
          for (const row of ready) yield retailEvent(row);
        };
        // The async iterator of a stream reads the next chunk only when asked: that is the backpressure.
        for await (const chunk of text) {
          splitter.push(chunk as string);
          yield* drain();
        }
        splitter.end();
        yield* drain();
      } catch (err) {
        if (err instanceof InputError) throw err;
        throw new InputError(`cannot read the file: ${(err as Error).message}`, { file });
      } finally {
        raw.destroy();
        text.destroy();
      }
      if (!header) throw new InputError('the file is empty: expected a header line and rows', { file });
    },
  };
}

/** The simulated app, one day at a time (a day of events is the most it holds). */
export function appSource(
  config: Partial<SimulationConfig> = {},
  options: { beforeDay?: (day: number, sim: AppSimulator) => Promise<void> } = {},
): ReplaySource {
  const { start } = SimulationConfigSchema.parse(config);
  return {
    name: 'app',
    origin: Date.parse(`${start}T00:00:00Z`),
    async *events() {
      const sim = new AppSimulator(config);
      // Days are simulated as the replay reaches them, so the hook sees the service's state of that moment.
      for (;;) {
        await options.beforeDay?.(sim.day, sim);
        const next = sim.days().next();
        if (next.done) return;
        yield* next.value.events;
      }
    },
  };
}

/** Events given in memory (tests, small fixtures); they must be in time order. */
export function arraySource(name: string, events: readonly Event[], origin?: number): ReplaySource {
  return {
    name,
    ...(origin === undefined ? {} : { origin }),
    async *events() {
      yield* events;
    },
  };
}

/** An event on the shared timeline. */
export interface TimedEvent {
  source: string;
  /** The event as its source gave it. */
  event: Event;
  /** Its original time, ms since the epoch. */
  time: number;
  /** Its source's origin, ms since the epoch. */
  origin: number;
  /** Its place on the shared timeline: ms since its source's origin. */
  offset: number;
}

/**
 * Merges time-ordered sources into one stream ordered by place on the shared timeline (ties go to
 * the source listed first). Only the head of each source is held. Each source's own order is kept
 * whatever it is: the merge always takes a source's next event after its previous one.
 */
export async function* mergeSources(sources: readonly ReplaySource[]): AsyncGenerator<TimedEvent> {
  const iterators = sources.map((s) => s.events()[Symbol.asyncIterator]());
  try {
    const heads: { source: ReplaySource; it: AsyncIterator<Event>; origin: number; head: TimedEvent }[] = [];
    for (let i = 0; i < sources.length; i++) {
      const source = sources[i]!;
      const it = iterators[i]!;
      const first = await it.next();
      if (first.done) continue;
      const time = timeOf(source, first.value);
      const origin = source.origin ?? Math.floor(time / DAY_MS) * DAY_MS;
      heads.push({ source, it, origin, head: { source: source.name, event: first.value, time, origin, offset: time - origin } });
    }
    while (heads.length > 0) {
      let best = 0;
      for (let j = 1; j < heads.length; j++) if (heads[j]!.head.offset < heads[best]!.head.offset) best = j;
      const h = heads[best]!;
      yield h.head;
      const next = await h.it.next();
      if (next.done) {
        heads.splice(best, 1);
        continue;
      }
      const time = timeOf(h.source, next.value);
      h.head = { source: h.source.name, event: next.value, time, origin: h.origin, offset: time - h.origin };
    }
  } finally {
    await Promise.all(iterators.map((it) => it.return?.()));
  }
}

function timeOf(source: ReplaySource, e: Event): number {
  const t = Date.parse(e.time);
  if (!Number.isFinite(t)) throw new InputError(`${source.name}: event ${JSON.stringify(e.event_id)} has no valid time: ${JSON.stringify(e.time)}`);
  return t;
}

export interface ReplayOptions {
  /** Simulated seconds per real second: 86400 plays a day per second; Infinity plays without waiting. */
  speed: number;
  /** Prefixes event ids and user ids (`<run>-<id>`), so a second replay is new data rather than a retry. */
  run?: string;
  /** Stop after this many events. */
  maxEvents?: number;
  /** Stop after this many days of the shared timeline. */
  days?: number;
  /** Most events in one batch (default 500). */
  batch?: number;
  /**
   * How long a batch waits for more events before it is handed on, in ms (default 100): at slow
   * speeds events come one by one, and a request per event would cost more than it is worth.
   */
  lingerMs?: number;
  /** Stops the replay: nothing is emitted or handed on after it fires (a batch being filled is dropped). */
  signal?: AbortSignal;
  /**
   * One simulated clock instead of the wall clock: events are stamped at their place on the shared
   * timeline counted from `calendar` (ms since the epoch; usually the app's start), and `clock` is
   * driven along, never ahead of the next event, so a service running on it sees the events on time.
   */
  simulated?: { clock: SimulatedClock; calendar: number };
}

/** Events ready to send, stamped with the wall clock (or the simulated clock, see `simulated`). */
export interface ReplayBatch {
  events: Event[];
  /** Where the replay stands: the shared-timeline offset of the batch's last event, in ms. */
  offset: number;
  /** Each source's own date (YYYY-MM-DD, UTC) at that offset, for the sources that have started. */
  dates: Record<string, string>;
}

const RUN_TAG = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;

export function checkReplayOptions(options: ReplayOptions): void {
  if (!(options.speed > 0)) throw new InputError(`speed must be a positive number of simulated seconds per second, got ${options.speed}`);
  if (options.run !== undefined && !RUN_TAG.test(options.run)) {
    throw new InputError(`run tag ${JSON.stringify(options.run)}: use 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  for (const [name, value, min] of [
    ['maxEvents', options.maxEvents, 0],
    ['days', options.days, 1],
    ['batch', options.batch, 1],
  ] as const) {
    if (value !== undefined && !(Number.isInteger(value) && value >= min))
      throw new InputError(`${name} must be a whole number of at least ${min}, got ${value}`);
  }
}

/**
 * The replay: the merged sources, paced so that the shared timeline advances `speed` times faster
 * than the wall clock, starting with the first event (there is no wait for the first day's opening
 * hour). An event is emitted when it is due, and then gets `time` = that wall-clock instant, its
 * original time in `props.original_time`, and the run tag if any. Emitted events are grouped in
 * batches of up to `batch` events; a batch is handed on when full, or when the next event is due
 * more than `lingerMs` after the batch's first one. A consumer that is slower than the pace holds
 * the replay back (events are pulled, never queued), and the events it pulls late are stamped
 * late: stamps are always the moment of emission.
 */
export async function* replayBatches(sources: readonly ReplaySource[], options: ReplayOptions): AsyncGenerator<ReplayBatch> {
  checkReplayOptions(options);
  const { speed, run, maxEvents, signal, simulated } = options;
  const batchSize = options.batch ?? 500;
  const linger = options.lingerMs ?? 100;
  const horizon = options.days === undefined ? Infinity : options.days * DAY_MS;
  const origins = new Map<string, number>();
  const batchOf = (events: Event[], offset: number): ReplayBatch => {
    const dates: Record<string, string> = {};
    for (const { name } of sources) {
      const origin = origins.get(name);
      if (origin !== undefined) dates[name] = new Date(origin + offset).toISOString().slice(0, 10);
    }
    return { events, offset, dates };
  };

  let pending: Event[] = [];
  let pendingSince = 0;
  let lastOffset = 0;
  let emitted = 0;
  let clock: { wall: number; offset: number } | undefined;
  const merged = mergeSources(sources);
  try {
    for await (const t of merged) {
      if (signal?.aborted) return;
      if ((maxEvents !== undefined && emitted >= maxEvents) || t.offset >= horizon) break;
      clock ??= { wall: Date.now(), offset: t.offset };
      const due = clock.wall + (speed === Infinity ? 0 : (t.offset - clock.offset) / speed);
      const simTime = simulated ? simulated.calendar + t.offset : 0;
      // The simulated clock moves towards this event while the replay waits for it, and no further.
      simulated?.clock.run(speed, simTime);
      if (pending.length > 0 && due - pendingSince > linger) {
        yield batchOf(pending, lastOffset);
        pending = [];
      }
      // Timers may fire up to a millisecond before Date.now() reaches their due time (libuv's loop
      // clock lags it), so wait again until the event is due: an event is never emitted early.
      for (let wait = due - Date.now(); wait > 0; wait = due - Date.now()) {
        try {
          await sleep(Math.max(1, wait), undefined, signal ? { signal } : undefined);
        } catch (err) {
          if (signal?.aborted) return;
          throw err;
        }
      }
      if (signal?.aborted) return;
      const now = Date.now();
      simulated?.clock.advanceTo(simTime);
      const e = t.event;
      pending.push({
        event_id: run ? `${run}-${e.event_id}` : e.event_id,
        time: new Date(simulated ? simTime : now).toISOString(),
        user_id: run ? `${run}-${e.user_id}` : e.user_id,
        event: e.event,
        props: { ...e.props, original_time: new Date(t.time).toISOString() },
      });
      origins.set(t.source, t.origin);
      lastOffset = t.offset;
      emitted++;
      if (pending.length === 1) pendingSince = now;
      if (pending.length >= batchSize) {
        yield batchOf(pending, lastOffset);
        pending = [];
      }
      if (maxEvents !== undefined && emitted >= maxEvents) break;
    }
    // Stopped by the signal, the replay ends at once: the last, unfinished batch is dropped unsent.
    if (pending.length > 0) yield batchOf(pending, lastOffset);
  } finally {
    await merged.return(undefined);
  }
}

/** The replay one event at a time (the batches, flattened). */
export async function* replayEvents(sources: readonly ReplaySource[], options: ReplayOptions): AsyncGenerator<Event, void, undefined> {
  for await (const batch of replayBatches(sources, options)) yield* batch.events;
}
