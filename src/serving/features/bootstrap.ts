import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join as joinPath } from 'node:path';
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { SERVICE_EVENTS, type EnrichedEvent } from '../../workbench/event.js';
import { DuckDb } from '../../workbench/duckdb.js';
import { WINDOWS, type Feature } from '../../workbench/features/definition.js';
import { CATEGORY_TYPES, eventCondition, NUMBER_TYPES, propEquals } from '../../workbench/features/offline.js';
import { OnlineFeatures, type UserState } from '../../workbench/features/online.js';
import { lakeLayout, sourceDir } from '../../workbench/lakehouse/layout.js';
import { LIVE_SOURCE } from '../../workbench/lakehouse/live.js';
import { join, raw, sql, type Sql } from '../../workbench/sql.js';
import type { EventLog, LogEntry } from '../pipeline/event-log.js';
import { StateChunkReader, type StateChunk } from './state-chunks.js';

/**
 * The online state of a feature set computed from the lakehouse instead of the whole event log: the
 * service's archiver has written the log's records to Parquet (`source=live`, files named by the
 * offsets they hold), so DuckDB can aggregate them, on its own threads, into what folding the same
 * records one by one would have left: per user and feature the window's buckets (n, sum, min, max,
 * distinct values) or last_n's newest items, already expired as of the user's newest event. The
 * records the archive does not hold yet (its end `offset` on) are then folded from the log as
 * usual. Reads of the result equal reads of a rebuild from the log, at any time from the user's
 * newest event on (sums up to float rounding: the archive does not keep the log's order).
 *
 * DuckDB's queries, turning their rows into states and the garbage that makes all run in a process
 * of their own (bootstrap-worker.ts) at a lower priority, so that none of it holds the service's
 * event loop or takes a core from it: in a worker thread, DuckDB's query ran on the service's libuv
 * threads at the service's priority, and on 2 cores the event loop waited for a core behind it.
 * The worker reads the few log records it checks the archive against through the service, and
 * hands the finished states over as flat data (state-chunks.ts) in chunks the main thread takes
 * one at a time, each sized to be rebuilt in about a millisecond.
 */

/** Why the archive cannot be used; the caller computes the set from the log instead, saying why. */
export class ArchiveUnusable extends Error {}

/** The bootstrap's worker process failed (a DuckDB error, a file it cannot read, a crash): the message says what. */
export class BootstrapFailed extends Error {
  override readonly name = 'BootstrapFailed';
}

export interface BootstrapOptions {
  features: readonly Feature[];
  /** The lakehouse the service's archiver writes to. */
  lakeDir: string;
  log: EventLog;
  /** DuckDB's threads in the worker process (default 1: the service keeps a core for requests). */
  threads?: number;
  /** Where to take the worker from (one started ahead); by default one is started for this bootstrap. */
  workers?: BootstrapWorkers;
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
  /**
   * Time starting the worker process; in the archive's checks, in DuckDB's queries and turning their
   * rows into states, in listing the users (in the worker); in handing states and users over to the
   * main thread; and in folding the gaps.
   */
  ms: { start: number; check: number; states: number; users: number; transfer: number; gaps: number };
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
/** Records read from the log and folded at a time (the gaps, the tail): a millisecond or two of the event loop. */
const GAP_BATCH = 200;
/**
 * The worker's entry: a CommonJS file that lowers the process's priority, then loads the TypeScript
 * source through tsx, as bin/wb.cjs does (the parent's `--import tsx` is not passed on).
 */
const WORKER_ENTRY = joinPath(__dirname, 'bootstrap-worker.cjs');
/**
 * How long the main thread aims to spend rebuilding one chunk, and the bounds of a chunk's size
 * (stateUnits). The first is small: the code that rebuilds states is not optimised yet.
 */
const CHUNK_MS = 1;
const CHUNK_UNITS = { first: 250, min: 50, max: 500_000 };
/** How long after a spare worker is taken another is started (not during the deploy that took it). */
const REWARM_MS = 5_000;

/**
 * The states of `features` from the archive up to its end, and the offset to fold the log from,
 * computed in a worker process. Throws ArchiveUnusable when the archive cannot stand for the log (no
 * archive yet, files that disagree with the log, offsets the log no longer has), and
 * BootstrapFailed when the worker fails (DuckDB's error when a query fails, or the worker stopped).
 */
export async function bootstrapFromArchive(options: BootstrapOptions): Promise<BootstrapResult> {
  const started = performance.now();
  const input: WorkerInput = { features: [...options.features], lakeDir: options.lakeDir, threads: options.threads ?? 1 };
  const worker = new ArchiveWorker(options.workers?.take() ?? startWorker().worker, input, options.log);
  try {
    const computed = await worker.computed();
    const received = performance.now();
    const reader = new StateChunkReader();
    const states = new Map<string, UserState>();
    await worker.take('states', (chunk) => reader.states(chunk, states));
    const users = new Set<string>();
    await worker.take('users', (chunk) => reader.users(chunk, users));
    const transferred = performance.now();
    const compiled = new OnlineFeatures(options.features);
    let gapRecords = 0;
    for (const [from, to] of computed.gaps) gapRecords += await foldFromLog(options.log, compiled, states, from, to, users);
    const { check, states: statesMs, users: usersMs } = computed.ms;
    return {
      states,
      users,
      offset: computed.end,
      files: computed.files,
      gapRecords,
      rows: computed.rows,
      ms: {
        start: Math.max(0, received - started - check - statesMs - usersMs),
        check,
        states: statesMs,
        users: usersMs,
        transfer: transferred - received,
        gaps: performance.now() - transferred,
      },
    };
  } finally {
    worker.close();
  }
}

/**
 * Bootstrap workers started ahead of need: starting one (node, tsx, DuckDB's bindings, zod) takes
 * 0.3 to 1 s of a loaded machine, which a deploy would otherwise wait for. One spare process is
 * kept, idle while it waits (about 80 MB resident); a new one is started a few seconds after it is taken.
 */
export class BootstrapWorkers {
  private spare: { worker: ChildProcess; ready: Promise<void> } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  /** Starts the spare unless there is one; resolves once it is ready to work, or has failed to start (then there is none). Never rejects. */
  async warm(): Promise<void> {
    if (this.closed) return;
    if (!this.spare) {
      let spare: ReturnType<typeof startWorker>;
      try {
        spare = startWorker();
      } catch {
        // fork() itself failed (out of memory, too many processes): no spare; a bootstrap starts its own, or says why it cannot.
        return;
      }
      spare.worker.once('exit', () => {
        if (this.spare === spare) this.spare = undefined;
      });
      // Waiting idle, a spare does not keep the process alive (while it starts, someone may wait for it).
      void spare.ready.then(
        () => this.spare === spare && holdsProcess(spare.worker, false),
        () => undefined,
      );
      this.spare = spare;
    }
    const spare = this.spare;
    await spare.ready.catch(() => {
      if (this.spare === spare) this.spare = undefined;
    });
  }

  /** A worker for one bootstrap: the spare when there is one, or a new one. */
  take(): ChildProcess {
    const spare = this.spare;
    this.spare = undefined;
    if (!this.closed) {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.warm(), REWARM_MS).unref();
    }
    if (!spare) return startWorker().worker;
    holdsProcess(spare.worker, true);
    return spare.worker;
  }

  /** Stops the spare; no other is started. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.spare?.worker.kill();
    this.spare = undefined;
  }
}

/**
 * How a worker is started on Linux: under `chrt --idle 0`, the SCHED_IDLE policy, which every
 * thread it starts inherits. A thread of the service that wakes (a request arrived) then takes the
 * core from the bootstrap at once; a nice value only lowers the bootstrap's share, and measured on 2
 * shared cores the service's event loop still waited for a core twice as long during a deploy as
 * without one. Where chrt is missing or refused, the worker runs niced (bootstrap-worker.cjs).
 * Checked once, by running chrt.
 */
let launcher: { execPath: string; execArgv: string[] } | null | undefined;

function idleLauncher(): { execPath: string; execArgv: string[] } | null {
  if (launcher === undefined) {
    const chrt = process.platform === 'linux' ? ['/usr/bin/chrt', '/bin/chrt'].find((p) => existsSync(p)) : undefined;
    const works = chrt !== undefined && spawnSync(chrt, ['--idle', '0', 'true'], { stdio: 'ignore', timeout: 10_000 }).status === 0;
    launcher = works ? { execPath: chrt, execArgv: ['--idle', '0', process.execPath] } : null;
  }
  return launcher;
}

/** Starts a bootstrap worker; `ready` resolves once it has loaded its code and waits for its work. */
function startWorker(): { worker: ChildProcess; ready: Promise<void> } {
  // No node flags: the entry registers tsx itself, and the parent's `--import tsx` would start a second
  // loader. 'advanced': messages are structured clones, so the chunks' Float64Arrays go as they are.
  const worker = fork(WORKER_ENTRY, [], { ...(idleLauncher() ?? { execArgv: [] }), serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  // An error is reported to whoever waits on the worker (`ready`, a bootstrap), never thrown at the event loop.
  worker.on('error', () => undefined);
  const ready = new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      worker.off('message', onMessage).off('error', done).off('exit', onExit);
      if (err) reject(err);
      else resolve();
    };
    const onMessage = (m: FromWorker) => {
      if (m.kind === 'ready') done();
    };
    const onExit = (code: number | null, signal: string | null) =>
      done(new BootstrapFailed(`the archive bootstrap's worker process stopped (${code === null ? `signal ${signal}` : `exit code ${code}`}) while starting`));
    worker.on('message', onMessage).on('error', done).on('exit', onExit);
  });
  // Nobody may wait for it (a worker started for one bootstrap reports its failure there).
  ready.catch(() => undefined);
  return { worker, ready };
}

/** Whether a worker keeps the service's process alive: a spare waiting idle does not (nor does its channel). */
function holdsProcess(worker: ChildProcess, hold: boolean): void {
  if (hold) {
    worker.ref();
    worker.channel?.ref();
  } else {
    worker.unref();
    worker.channel?.unref();
  }
}

/** What the worker is given (structured-cloned): the features, the lakehouse, DuckDB's threads. */
export interface WorkerInput {
  features: Feature[];
  lakeDir: string;
  threads: number;
}

/** What the worker has computed, before the states are handed over. */
export interface ArchiveComputed {
  end: number;
  gaps: [number, number][];
  files: number;
  rows: number;
  ms: { check: number; states: number; users: number };
}

/** The parts of the result handed over in chunks: each user's states, then the archive's users. */
export type ChunkPart = 'states' | 'users';

/** A chunk of a part (written by a StateChunkWriter). */
export interface Chunk extends StateChunk {
  part: ChunkPart;
  /** Whether the part has more chunks. */
  more: boolean;
}

/** Messages from the worker: its log requests, what it computed, a chunk, or why it failed. */
export type FromWorker =
  | { kind: 'ready' }
  | { kind: 'log-next'; id: number }
  | { kind: 'log-read'; id: number; from: number; max: number }
  | ({ kind: 'computed' } & ArchiveComputed)
  | ({ kind: 'chunk' } & Chunk)
  | { kind: 'failed'; unusable: boolean; message: string };

/** Messages to the worker: its work, the answer to a log request, or a request for the next chunk of about `units` states or users. */
export type ToWorker =
  | { kind: 'start'; input: WorkerInput }
  | { kind: 'log'; id: number; value?: number | LogEntry[]; error?: string }
  | { kind: 'take'; part: ChunkPart; units: number };

/**
 * The main thread's side of one bootstrap's worker: answers its reads of the log, and takes the
 * result a chunk at a time. Never more than one chunk is on its way: a port delivers every message
 * that is waiting in one turn of the event loop, so chunks sent ahead would be deserialized back to back.
 */
class ArchiveWorker {
  private readonly inbox: FromWorker[] = [];
  private waiting: { resolve: (m: FromWorker) => void; reject: (err: Error) => void } | undefined;
  private failure: Error | undefined;
  private closed = false;
  private units = CHUNK_UNITS.first;

  constructor(
    private readonly worker: ChildProcess,
    input: WorkerInput,
    private readonly log: EventLog,
  ) {
    this.worker.on('message', (m: FromWorker) => {
      if (m.kind === 'ready') return;
      if (m.kind === 'log-next' || m.kind === 'log-read') void this.answer(m);
      else if (m.kind === 'failed') this.fail(m.unusable ? new ArchiveUnusable(m.message) : new BootstrapFailed(m.message));
      else if (this.waiting) {
        this.waiting.resolve(m);
        this.waiting = undefined;
      } else this.inbox.push(m);
    });
    this.worker.on('error', (err) => this.fail(new BootstrapFailed(`the archive bootstrap's worker process failed: ${err.message}`)));
    this.worker.on('exit', (code, signal) =>
      this.fail(
        new BootstrapFailed(`the archive bootstrap's worker process stopped (${code === null ? `signal ${signal}` : `exit code ${code}`}) before it was done`),
      ),
    );
    // A spare that stopped before it was taken: its exit has been reported already.
    if (!this.worker.connected) this.fail(new BootstrapFailed("the archive bootstrap's worker process stopped before it was given its work"));
    this.send({ kind: 'start', input });
  }

  /** Resolves once the worker has computed everything (checks, states, users). */
  async computed(): Promise<ArchiveComputed> {
    const m = await this.receive();
    if (m.kind !== 'computed') throw new BootstrapFailed(`the archive bootstrap's worker sent ${m.kind} before its result`);
    const { kind: _kind, ...computed } = m;
    return computed;
  }

  /**
   * Takes a part of the result, a chunk per turn of the event loop, each passed to `apply` as it
   * comes. Chunk sizes follow the time the last one took, so that whatever the states hold (a count
   * or a month of hourly buckets), a chunk costs the main thread about CHUNK_MS.
   */
  async take(part: ChunkPart, apply: (chunk: Chunk) => void): Promise<void> {
    for (let more = true; more;) {
      this.send({ kind: 'take', part, units: this.units });
      const m = await this.receive();
      if (m.kind !== 'chunk' || m.part !== part) throw new BootstrapFailed(`the archive bootstrap's worker sent ${m.kind} when ${part} were asked for`);
      const began = performance.now();
      apply(m);
      const ms = performance.now() - began;
      if (ms > 0.05) this.units = Math.round(Math.min(CHUNK_UNITS.max, Math.max(CHUNK_UNITS.min, this.units * Math.min(2, Math.max(0.5, CHUNK_MS / ms)))));
      more = m.more;
      await new Promise((r) => setImmediate(r));
    }
  }

  /** Stops the worker (when done, it has closed its DuckDB already), without waiting for its process to end. */
  close(): void {
    this.closed = true;
    this.worker.kill();
  }

  private receive(): Promise<FromWorker> {
    if (this.failure) return Promise.reject(this.failure);
    const next = this.inbox.shift();
    if (next) return Promise.resolve(next);
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  private fail(err: Error): void {
    if (this.closed || this.failure) return;
    this.failure = err;
    this.waiting?.reject(err);
    this.waiting = undefined;
  }

  private send(m: ToWorker): void {
    // A worker that has just stopped: its exit is reported through 'exit'.
    if (this.worker.connected)
      this.worker.send(m, (err) => err && this.fail(new BootstrapFailed(`cannot reach the archive bootstrap's worker process: ${err.message}`)));
  }

  private async answer(m: Extract<FromWorker, { kind: 'log-next' | 'log-read' }>): Promise<void> {
    try {
      // A payload is a view of the log's read buffer: copied, or the whole buffer would be cloned.
      const value =
        m.kind === 'log-next'
          ? await this.log.next()
          : (await this.log.read(m.from, m.max)).map((e) => ({ offset: e.offset, payload: new Uint8Array(e.payload) }));
      if (!this.closed) this.send({ kind: 'log', id: m.id, value });
    } catch (err) {
      if (!this.closed) this.send({ kind: 'log', id: m.id, error: err instanceof Error ? err.message : String(err) });
    }
  }
}

/** The log as the archive's checks read it: its end, and records by offset. */
export type LogReader = Pick<EventLog, 'next' | 'read'>;

/**
 * What the worker computes (bootstrap-worker.ts): the states of `features` from the archive up to
 * its end, every user the archive holds, and the offsets before the end it does not hold. Throws
 * ArchiveUnusable when the archive cannot stand for the log, and DuckDB's error when a query fails.
 */
export async function computeFromArchive(
  input: WorkerInput,
  log: LogReader,
): Promise<{ states: Map<string, UserState>; users: Set<string> } & ArchiveComputed> {
  const started = performance.now();
  const batches = await listArchive(input.lakeDir);
  const db = await DuckDb.open(':memory:', { threads: input.threads });
  try {
    const { included, end, gaps } = await checkArchive(db, batches, log);
    const checked = performance.now();
    const compiled = new OnlineFeatures(input.features);
    const paths = included.flatMap((b) => b.paths);
    const { states, rows } = await statesFromArchive(db, compiled, paths);
    const computed = performance.now();
    const users = new Set<string>();
    for await (const chunk of db.stream(sql`SELECT DISTINCT user_id FROM read_parquet(${paths})`)) for (const [u] of chunk) users.add(u as string);
    return {
      states,
      users,
      end,
      gaps,
      files: paths.length,
      rows,
      ms: { check: checked - started, states: computed - checked, users: performance.now() - computed },
    };
  } finally {
    db.close();
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
async function checkArchive(db: DuckDb, batches: readonly Batch[], log: LogReader): Promise<{ included: Batch[]; end: number; gaps: [number, number][] }> {
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
 * converts DuckDB's values one by one. In the worker process: it may hold its own event loop as long as it takes.
 */
async function statesFromArchive(db: DuckDb, compiled: OnlineFeatures, paths: readonly string[]): Promise<{ states: Map<string, UserState>; rows: number }> {
  const { features } = compiled;
  const names = [...new Set(features.map((f) => f.source.event))];
  // The events any feature reads: their newest per user is the time the updater expires buckets at.
  const unread = [...SERVICE_EVENTS].filter((name) => !names.includes(name));
  const relevant = !names.includes('*') ? sql`event IN (${join(names)})` : unread.length > 0 ? sql`event NOT IN (${join(unread)})` : sql`TRUE`;
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
  for await (const chunk of db.stream(join(parts, ' UNION ALL '))) {
    rows += chunk.length;
    for (const [f, user, text] of chunk) {
      const i = f as number;
      let state = states.get(user as string);
      if (!state) states.set(user as string, (state = compiled.emptyState()));
      state[i] = features[i]!.aggregation === 'last_n' ? lastNSlot(text as string, features[i]!.n!) : bucketSlot(text as string);
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
  const buckets = b.flat();
  if (!s || !d) return buckets;
  const values = b.map((_, k) => {
    const distinct = new Set(s[k]);
    for (const v of d[k]!) distinct.add(categoryText(v));
    return [...distinct];
  });
  return { buckets, values };
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
  const conditions: Sql[] = [eventCondition(f)];
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
