import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join as joinPath } from 'node:path';
import type { EnrichedEvent } from '../../workbench/event.js';
import { DuckDb } from '../../workbench/duckdb.js';
import { WINDOWS, type Feature } from '../../workbench/features/definition.js';
import { CATEGORY_TYPES, NUMBER_TYPES, propEquals } from '../../workbench/features/offline.js';
import { OnlineFeatures, type UserState } from '../../workbench/features/online.js';
import { lakeLayout, sourceDir } from '../../workbench/lakehouse/layout.js';
import { LIVE_SOURCE } from '../../workbench/lakehouse/live.js';
import { join, raw, sql, type Sql } from '../../workbench/sql.js';
import type { EventLog } from '../pipeline/event-log.js';

/**
 * The online state of a feature set computed from the lakehouse instead of the whole event log: the
 * service's archiver has written the log's records to Parquet (`source=live`, files named by the
 * offsets they hold), so DuckDB can aggregate them, on its own threads, into what folding the same
 * records one by one would have left: per user and feature the window's buckets (n, sum, min, max,
 * distinct values) or last_n's newest items, already expired as of the user's newest event. The
 * records the archive does not hold yet (its end `offset` on) are then folded from the log as
 * usual. Reads of the result equal reads of a rebuild from the log, at any time from the user's
 * newest event on (sums up to float rounding: the archive does not keep the log's order).
 */

/** Why the archive cannot be used; the caller computes the set from the log instead, saying why. */
export class ArchiveUnusable extends Error {}

export interface BootstrapOptions {
  features: readonly Feature[];
  /** The lakehouse the service's archiver writes to. */
  lakeDir: string;
  log: EventLog;
  /**
   * The DuckDB to run in, left open; by default one of its own with one thread (the service keeps
   * a core for requests), closed at the end: closing one holds the event loop for tens of ms.
   */
  db?: DuckDb;
}

export interface BootstrapResult {
  /** Each user's state; a user with nothing in any window has none. */
  states: Map<string, UserState>;
  /** Every user with a record before `offset` (any event): the users another set's store can hold states of. */
  users: Set<string>;
  /** The log offset the states reflect: every record before it is in them, none from it on. */
  offset: number;
  /** Archive files read. */
  files: number;
  /** Records before `offset` the archive lacks (set aside by the archiver), folded from the log. */
  gapRecords: number;
  /** Rows DuckDB returned: one per user and feature with a value in the archive. */
  rows: number;
  /** Time in the archive's checks, in DuckDB's queries and turning their rows into states, in listing the users, and in the gaps. */
  ms: { check: number; states: number; users: number; gaps: number };
}

/** The offsets one archived batch holds, and its files (one per event date). */
interface Batch {
  first: number;
  last: number;
  paths: string[];
}

const PART = /^part-(\d+)-(\d+)\.parquet$/;
/** Offsets compared between the log and the archive before trusting the archive. */
const SAMPLES = 8;
/** The longest the event loop is held between two turns while rows become states. */
const SLICE_MS = 4;
/** Records read from the log and folded at a time (the gaps, the tail). */
const GAP_BATCH = 500;

/**
 * The states of `features` from the archive up to its end, and the offset to fold the log from.
 * Throws ArchiveUnusable when the archive cannot stand for the log (no archive yet, files that
 * disagree with the log, offsets the log no longer has), and DuckDB's error when a query fails.
 */
export async function bootstrapFromArchive(options: BootstrapOptions): Promise<BootstrapResult> {
  const started = performance.now();
  const batches = await listArchive(options.lakeDir);
  const db = options.db ?? (await DuckDb.open(':memory:', { threads: 1 }));
  try {
    const { included, end, gaps } = await checkArchive(db, batches, options.log);
    const checked = performance.now();
    const compiled = new OnlineFeatures(options.features);
    const paths = included.flatMap((b) => b.paths);
    const { states, rows } = await statesFromArchive(db, compiled, paths);
    const computed = performance.now();
    const users = new Set<string>();
    for await (const chunk of db.stream(sql`SELECT DISTINCT user_id FROM read_parquet(${paths})`)) for (const [u] of chunk) users.add(u as string);
    const listed = performance.now();
    let gapRecords = 0;
    for (const [from, to] of gaps) gapRecords += await foldFromLog(options.log, compiled, states, from, to, users);
    return {
      states,
      users,
      offset: end,
      files: paths.length,
      gapRecords,
      rows,
      ms: { check: checked - started, states: computed - checked, users: listed - computed, gaps: performance.now() - listed },
    };
  } finally {
    // What the tables hold is freed on DuckDB's threads, not by a close on the event loop.
    await db.run(sql`DROP TABLE IF EXISTS ev; DROP TABLE IF EXISTS nu`).catch(() => undefined);
    if (!options.db) db.close();
  }
}

/** The archive's batches by the offset ranges in their file names (a batch spanning several dates has a file in each). */
async function listArchive(lakeDir: string): Promise<Batch[]> {
  const archive = sourceDir(lakeLayout(lakeDir), LIVE_SOURCE);
  if (!existsSync(archive)) throw new ArchiveUnusable(`${archive} does not exist: the archiver has written nothing yet`);
  const byRange = new Map<string, Batch>();
  for (const date of await readdir(archive)) {
    if (!date.startsWith('date=')) continue;
    for (const f of await readdir(joinPath(archive, date))) {
      const m = PART.exec(f);
      if (!m) continue;
      const key = `${m[1]}-${m[2]}`;
      const batch = byRange.get(key) ?? { first: Number(m[1]), last: Number(m[2]), paths: [] };
      batch.paths.push(joinPath(archive, date, f));
      byRange.set(key, batch);
    }
  }
  if (byRange.size === 0) throw new ArchiveUnusable(`${archive} holds no archived batch yet`);
  return [...byRange.values()].sort((a, b) => a.first - b.first);
}

/**
 * The batches the archive holds whole and that agree with the log, their end (the offset after the
 * last) and the offsets before it that no batch holds. A batch whose files hold fewer rows than its
 * range (being moved in, or cut short) is left out; records the archiver set aside leave gaps.
 */
async function checkArchive(db: DuckDb, batches: readonly Batch[], log: EventLog): Promise<{ included: Batch[]; end: number; gaps: [number, number][] }> {
  const meta = await db.query(sql`SELECT file_name, CAST(num_rows AS DOUBLE) AS n FROM parquet_file_metadata(${batches.flatMap((b) => b.paths)})`);
  const rowsOf = new Map<string, number>();
  meta.columns[0]!.forEach((name, i) => rowsOf.set(String(name), Number(meta.columns[1]![i])));
  const included = batches.filter((b) => b.paths.reduce((n, p) => n + (rowsOf.get(p) ?? 0), 0) === b.last - b.first + 1);
  if (included.length === 0) throw new ArchiveUnusable('no archived batch is complete yet');
  const gaps: [number, number][] = [];
  let next = 0;
  for (const b of included) {
    if (b.first < next) throw new ArchiveUnusable(`archive batches overlap at offsets ${b.first}-${next - 1}: it no longer matches one log`);
    if (b.first > next) gaps.push([next, b.first]);
    next = b.last + 1;
  }
  const logEnd = await log.next();
  if (next > logEnd) {
    throw new ArchiveUnusable(`the archive holds offsets up to ${next - 1} but the log ends at ${logEnd}: the log was cut or recreated since (a recovery)`);
  }
  // The same records at the same offsets: a few offsets spread over the archive, the last among them.
  const picks = new Set<Batch>([included[0]!, included.at(-1)!]);
  for (let k = 1; k < SAMPLES - 1; k++) picks.add(included[Math.floor((k * included.length) / (SAMPLES - 1))] ?? included.at(-1)!);
  for (const b of picks) {
    const offset = b === included.at(-1) ? b.last : Math.floor((b.first + b.last) / 2);
    const [entry] = await log.read(offset, 1);
    const e = entry && decode(entry.payload);
    if (!e || typeof e.event_id !== 'string' || typeof e.user_id !== 'string' || typeof e.time !== 'string') {
      throw new ArchiveUnusable(`the log's record ${offset} is not an event, yet the archive holds it`);
    }
    const [found] = (
      await db.query(sql`SELECT count(*) > 0 FROM read_parquet(${b.paths})
        WHERE event_id = ${e.event_id} AND user_id = ${e.user_id} AND time = CAST(${e.time} AS TIMESTAMP)`)
    ).columns[0]!;
    if (found !== true) throw new ArchiveUnusable(`the archive's batch ${b.first}-${b.last} does not hold the log's record ${offset} (event ${e.event_id})`);
  }
  return { included, end: next, gaps };
}

/**
 * One query for the whole set: a row per user and feature with the slot as JSON text (DuckDB writes
 * doubles so that they parse back to the same number), which JavaScript parses far faster than it
 * converts DuckDB's values one by one. Read a chunk (2,048 rows) at a time, so no step holds the
 * event loop for more than a few milliseconds.
 */
async function statesFromArchive(db: DuckDb, compiled: OnlineFeatures, paths: readonly string[]): Promise<{ states: Map<string, UserState>; rows: number }> {
  const { features } = compiled;
  const names = [...new Set(features.map((f) => f.source.event))];
  // The events any feature reads: their newest per user is the time the updater expires buckets at.
  const relevant = names.includes('*') ? sql`TRUE` : sql`event IN (${join(names)})`;
  // Only the props the features read, parsed out of each event once: every condition and value
  // below parses the props again, which on the whole event costs several times the rest of the query.
  // A prop the event lacks becomes null, which no condition tells apart from a missing one.
  const props = [...new Set(features.flatMap((f) => [...Object.keys(f.source.where ?? {}), ...(f.prop === undefined ? [] : [f.prop])]))];
  const slim = props.length === 0 ? sql`CAST('{}' AS JSON)` : sql`json_object(${join(props.map((p, i) => sql`${p}, p[${i + 1}]`))})`;
  await db.run(sql`CREATE OR REPLACE TEMP TABLE ev AS
    SELECT user_id, time, event_id, event, ${slim} AS props
    FROM (SELECT *, ${props.length === 0 ? sql`NULL` : sql`json_extract(props, ${props.map((p) => `$.${p}`)})`} AS p
          FROM read_parquet(${paths}) WHERE ${relevant})`);
  await db.run(sql`CREATE OR REPLACE TEMP TABLE nu AS SELECT user_id, epoch_ms(max(time)) AS newest FROM ev GROUP BY user_id`);
  const parts = features.map((f, i) => (f.aggregation === 'last_n' ? lastNQuery(f, i) : bucketQuery(f, i)));
  const states = new Map<string, UserState>();
  let rows = 0;
  let slice = performance.now();
  for await (const chunk of db.stream(join(parts, ' UNION ALL '))) {
    rows += chunk.length;
    for (const [f, user, text] of chunk) {
      const i = f as number;
      let state = states.get(user as string);
      if (!state) states.set(user as string, (state = compiled.emptyState()));
      state[i] = features[i]!.aggregation === 'last_n' ? lastNSlot(text as string, features[i]!.n!) : bucketSlot(text as string);
      // A chunk of long lists (last_n of 50, a month of buckets) takes tens of milliseconds to parse.
      if (performance.now() - slice > SLICE_MS) {
        await new Promise((r) => setImmediate(r));
        slice = performance.now();
      }
    }
  }
  return { states, rows };
}

/** A bucket as the query writes it: [start, n, sum, min, max]; distinct values as text (s) and as numbers (d), per bucket. */
interface BucketsJson {
  b: [number, number, number, number, number][];
  s?: string[][];
  d?: number[][];
}

function bucketSlot(text: string): UserState[number] {
  const { b, s, d } = JSON.parse(text) as BucketsJson;
  return b.map(([start, n, sum, min, max], k) => {
    if (!s || !d) return { start, n, sum, min, max };
    const values = new Set(s[k]);
    for (const v of d[k]!) values.add(categoryText(v));
    return { start, n, sum, min, max, values: [...values] };
  });
}

/** last_n's candidates as the query writes them: time, event_id, the value as text (s) or as a number (d). */
type ItemJson = { t: number; id: string; s: string | null; d: number | null };

function lastNSlot(text: string, n: number): UserState[number] {
  const items = (JSON.parse(text) as ItemJson[]).map((x): [number, string, string] => [x.t, x.id, x.s ?? categoryText(x.d!)]);
  // Newest last, in the updater's order: time, then event_id as JavaScript compares strings.
  items.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  if (items.length > n) items.splice(0, items.length - n);
  return { items };
}

/** A part of the union, for a windowed aggregate: (f, user_id, slot JSON). */
function bucketQuery(f: Feature, i: number): Sql {
  const { ms, bucketMs } = WINDOWS[f.window];
  const finite = Number.isFinite(ms);
  // Lifetime: the updater's one bucket with a finite start (Number.MIN_SAFE_INTEGER), as states travel as JSON.
  const start = finite ? sql`floor(epoch_ms(e.time) / ${bucketMs}.0) * ${bucketMs}` : sql`${Number.MIN_SAFE_INTEGER}.0`;
  const kept = finite ? sql`x.start >= floor(nu.newest / ${bucketMs}.0) * ${bucketMs} - ${ms}` : sql`TRUE`;
  const distinct = f.aggregation === 'distinct_count';
  let v: Sql = sql`0.0`;
  if (f.aggregation === 'time_since_last' || f.aggregation === 'first_seen_age') v = sql`CAST(epoch_ms(e.time) AS DOUBLE)`;
  else if (f.prop !== undefined && !distinct) v = numberOf(f.prop);
  const slot = distinct
    ? sql`{b: list([start, n, sum, min, max] ORDER BY start), s: list(cs ORDER BY start), d: list(cd ORDER BY start)}`
    : sql`{b: list([start, n, sum, min, max] ORDER BY start)}`;
  return sql`(SELECT ${i} AS f, user_id, CAST(to_json(${slot}) AS VARCHAR) AS slot FROM (
      SELECT x.user_id, x.start, CAST(count(*) AS DOUBLE) AS n, sum(x.v) AS sum, min(x.v) AS min, max(x.v) AS max
        ${distinct ? sql`, coalesce(list(DISTINCT x.s) FILTER (WHERE x.s IS NOT NULL), []) AS cs, coalesce(list(DISTINCT x.d) FILTER (WHERE x.d IS NOT NULL), []) AS cd` : sql``}
      FROM (SELECT e.user_id, CAST(${start} AS DOUBLE) AS start, ${v} AS v ${distinct ? sql`, ${categoryColumns(f.prop!)}` : sql``}
            FROM ev e WHERE ${filterOf(f)}) x
      JOIN nu ON nu.user_id = x.user_id
      WHERE ${kept}
      GROUP BY x.user_id, x.start)
    GROUP BY user_id)`;
}

/** A part of the union, for last_n: (f, user_id, candidates JSON). */
function lastNQuery(f: Feature, i: number): Sql {
  const { ms, bucketMs } = WINDOWS[f.window];
  const kept = Number.isFinite(ms) ? sql`x.t >= floor(nu.newest / ${bucketMs}.0) * ${bucketMs} - ${ms}` : sql`TRUE`;
  // The n newest and every event tied with the n-th on time: which of those stay is the updater's
  // tie-break on event_id, made in JavaScript (DuckDB compares text by bytes, JavaScript by UTF-16 units).
  return sql`(SELECT ${i} AS f, x.user_id, CAST(to_json(list({t: x.t, id: x.id, s: x.s, d: x.d})) AS VARCHAR) AS slot
    FROM (SELECT e.user_id, CAST(epoch_ms(e.time) AS DOUBLE) AS t, e.event_id AS id, ${categoryColumns(f.prop!)},
                 rank() OVER (PARTITION BY e.user_id ORDER BY e.time DESC) AS r
          FROM ev e WHERE ${filterOf(f)}) x
    JOIN nu ON nu.user_id = x.user_id
    WHERE x.r <= ${f.n!} AND ${kept}
    GROUP BY x.user_id)`;
}

/** The offline compiler's rule for the events a feature reads: its event, its `where` props, its prop's JSON type. */
function filterOf(f: Feature): Sql {
  const conditions: Sql[] = [sql`TRUE`];
  if (f.source.event !== '*') conditions.push(sql`e.event = ${f.source.event}`);
  for (const [prop, value] of Object.entries(f.source.where ?? {})) conditions.push(propEquals(prop, value));
  if (f.prop !== undefined) {
    const types = f.aggregation === 'distinct_count' || f.aggregation === 'last_n' ? CATEGORY_TYPES : NUMBER_TYPES;
    conditions.push(sql`json_type(e.props, ${`$.${f.prop}`}) IN ${types}`);
  }
  return join(conditions, ' AND ');
}

function numberOf(prop: string): Sql {
  const path = `$.${prop}`;
  return sql`CASE WHEN json_type(e.props, ${path}) IN ${NUMBER_TYPES} THEN TRY_CAST(json_extract(e.props, ${path}) AS DOUBLE) END`;
}

/**
 * A categorical prop as text (s) or as a number (d): DuckDB writes a number's text its own way
 * (`1e21` where JavaScript writes `1e+21`), so numbers become text in JavaScript, as the updater makes them.
 */
function categoryColumns(prop: string): Sql {
  const path = `$.${prop}`;
  return sql`CASE WHEN json_type(e.props, ${path}) IN ${raw(`('VARCHAR', 'BOOLEAN')`)} THEN json_extract_string(e.props, ${path}) END AS s,
    ${numberOf(prop)} AS d`;
}

/** The updater's text of a categorical number. */
const categoryText = (v: number): string => String(v);

/**
 * Folds the log's records [from, to) into the states as FeatureUpdater.handle does (per batch:
 * update, then expire as of each user's newest event in it), a slice at a time; adds every user
 * met to `seen`. Returns the records read.
 */
export async function foldFromLog(
  log: EventLog,
  compiled: OnlineFeatures,
  states: Map<string, UserState>,
  from: number,
  to: number,
  seen?: Set<string>,
): Promise<number> {
  let at = from;
  while (at < to) {
    const entries = await log.read(at, Math.min(GAP_BATCH, to - at));
    if (entries.length === 0) throw new ArchiveUnusable(`the log has no record at offset ${at}`);
    const events: EnrichedEvent[] = [];
    // A record that is not an event is set aside by the features consumer too: it counts nowhere.
    for (const entry of entries) {
      const e = decode(entry.payload);
      if (!e) continue;
      events.push(e);
      seen?.add(e.user_id);
    }
    foldBatch(compiled, states, events);
    at += entries.length;
    await new Promise((r) => setImmediate(r));
  }
  return to - from;
}

/** FeatureUpdater.handle on states in memory. */
export function foldBatch(compiled: OnlineFeatures, states: Map<string, UserState>, events: readonly EnrichedEvent[]): void {
  const newest = new Map<string, number>();
  const touched = new Set<string>();
  for (const e of events) {
    if (!compiled.reads(e.event)) continue;
    const time = Date.parse(e.time);
    if (time > (newest.get(e.user_id) ?? 0)) newest.set(e.user_id, time);
    let state = states.get(e.user_id);
    if (!state) states.set(e.user_id, (state = compiled.emptyState()));
    touched.add(e.user_id);
    compiled.update(state, { event_id: e.event_id, time, user_id: e.user_id, event: e.event, props: e.props });
  }
  for (const user of touched) if (compiled.expire(states.get(user)!, newest.get(user)!)) states.delete(user);
}

const decoder = new TextDecoder();

function decode(payload: Uint8Array): EnrichedEvent | undefined {
  try {
    const value = JSON.parse(decoder.decode(payload)) as unknown;
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as EnrichedEvent) : undefined;
  } catch {
    return undefined;
  }
}
