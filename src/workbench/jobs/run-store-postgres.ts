import pg from 'pg';
import { IntegrityError, NotFoundError } from '../errors.js';
import { createIfAbsent } from '../oltp/postgres.js';
import { ident, sql, type Identifier, type Sql } from '../sql.js';
import { checkJobRunId, runLimit, type JobRunStore, type RunFilter, type RunRecord } from './run-store.js';
import { migrateOrClose, openPgPool, shownUrl } from '../oltp/pg-pool.js';

/**
 * Job run records in the OLTP's PostgreSQL: table `job_runs` of its schema (the `schema` given, else
 * the first of the connection's search_path, which the service puts on the URL it gives its job
 * processes), one row per run with the whole record as JSONB and, beside it, the columns runs are
 * found and ordered by. Every service instance and `wb jobs runs --oltp` read the same runs, whichever
 * instance's job process wrote them.
 *
 * @example
 * ```ts
 * const runs = await PostgresRunStore.open('postgres://postgres@127.0.0.1:5432/wb');
 * show((await runs.list({ dag: 'app-churn', limit: 5 })).map((r) => ({ run: r.run_id, status: r.status })));
 * await runs.close();
 * ```
 */
export class PostgresRunStore implements JobRunStore {
  readonly location: string;
  private readonly pool: pg.Pool;
  private readonly table: Identifier;

  private constructor(
    connectionString: string,
    private readonly schema: string | undefined,
  ) {
    this.location = `${shownUrl(connectionString)}${schema ? ` (schema ${schema})` : ''}`;
    this.pool = openPgPool(connectionString);
    this.table = schema ? ident(schema, 'job_runs') : ident('job_runs');
  }

  /** Creates the table if needed (and `schema`, the OLTP's, when given). */
  static async open(connectionString: string, options: { schema?: string | undefined } = {}): Promise<PostgresRunStore> {
    return migrateOrClose(new PostgresRunStore(connectionString, options.schema), (store) => store.migrate());
  }

  async save(run: RunRecord): Promise<void> {
    checkJobRunId(run.run_id);
    await this.query(sql`INSERT INTO ${this.table} (run_id, dag, status, started_at, record)
      VALUES (${run.run_id}, ${run.dag}, ${run.status}, ${run.started_at}::timestamptz, ${jsonb(run)}::jsonb)
      ON CONFLICT (run_id) DO UPDATE SET dag = excluded.dag, status = excluded.status, started_at = excluded.started_at, record = excluded.record`);
  }

  async get(runId: string): Promise<RunRecord> {
    checkJobRunId(runId);
    const { rows } = await this.query(sql`SELECT record FROM ${this.table} WHERE run_id = ${runId}`);
    if (rows.length === 0) throw new NotFoundError(`no job run ${runId}`);
    return this.record(rows[0]);
  }

  async list(filter: RunFilter = {}): Promise<RunRecord[]> {
    const where = filter.dag ? sql`WHERE dag = ${filter.dag}` : sql``;
    const { rows } = await this.query(sql`SELECT record FROM ${this.table} ${where} ORDER BY started_at DESC, run_id DESC LIMIT ${runLimit(filter)}`);
    return rows.map((row) => this.record(row));
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => undefined);
  }

  private record(row: unknown): RunRecord {
    const record = (row as { record?: unknown } | undefined)?.record as Partial<RunRecord> | null | undefined;
    if (!record || typeof record !== 'object' || typeof record.run_id !== 'string' || typeof record.dag !== 'string' || !Array.isArray(record.steps))
      throw new IntegrityError(`${this.location}: a row of job_runs is not a run record this code writes`);
    // JSONB keeps keys in its own order (shortest first): put them back in the order `runDag` writes them.
    const run = inOrder(record as RunRecord, RUN_KEYS);
    run.steps = run.steps.map((step) => inOrder(step, STEP_KEYS));
    return run;
  }

  private async migrate(): Promise<void> {
    // Instances starting together race on IF NOT EXISTS; the loser's work is done.
    const create = (q: Sql) => createIfAbsent((s) => this.query(s), q);
    if (this.schema) await create(sql`CREATE SCHEMA IF NOT EXISTS ${ident(this.schema)}`);
    await create(sql`CREATE TABLE IF NOT EXISTS ${this.table} (
      run_id     TEXT PRIMARY KEY,
      dag        TEXT NOT NULL,
      status     TEXT NOT NULL,
      started_at TIMESTAMPTZ NOT NULL,
      record     JSONB NOT NULL
    )`);
    // An index is created in its table's schema, so the bare name is that schema's.
    await create(sql`CREATE INDEX IF NOT EXISTS job_runs_dag_started ON ${this.table} (dag, started_at)`);
    await create(sql`CREATE INDEX IF NOT EXISTS job_runs_started ON ${this.table} (started_at)`);
  }

  private query(q: Sql): Promise<pg.QueryResult> {
    const { text, params } = q.toParameterized('dollar');
    return this.pool.query(text, params);
  }
}

const RUN_KEYS = ['run_id', 'dag', 'status', 'started_at', 'params', 'trigger', 'steps', 'ended_at'] as const;
const STEP_KEYS = ['job', 'status', 'started_at', 'outputs', 'error', 'ended_at'] as const;

/** `value` with `keys` first, in that order, then any other keys it has. */
function inOrder<T extends object>(value: T, keys: readonly string[]): T {
  const out = new Map<string, unknown>();
  for (const key of keys) if (Object.hasOwn(value, key)) out.set(key, (value as Record<string, unknown>)[key]);
  for (const [key, v] of Object.entries(value)) if (!out.has(key)) out.set(key, v);
  return Object.fromEntries(out) as T;
}

/** The record as JSON text for a JSONB column, which refuses the NUL character (a step's error text may hold one). */
function jsonb(run: RunRecord): string {
  return JSON.stringify(run, (_key, value: unknown) => (typeof value === 'string' ? value.replace(/\0/g, '\uFFFD') : value));
}
