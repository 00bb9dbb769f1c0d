import { dict } from '../dict.js';
import { ConflictError, InputError, NotFoundError } from '../errors.js';
import { isoInstant } from '../oltp/store.js';
import { join, sql, type Sql } from '../sql.js';
import {
  LIMITS,
  checkRunId,
  checkRunPrefix,
  jsonData,
  type MetricPoint,
  type NewRun,
  type ParamValue,
  type RunArtifact,
  type RunFilter,
  type RunStatus,
  type TrackedRun,
  type TrackingStore,
} from './store.js';

/**
 * The run store over SQL, the same statements on SQLite and PostgreSQL: a database connection is
 * an adapter that runs a statement built with `sql` (values bound as parameters) and runs a
 * function in a transaction. Tables are prefixed `tracking_`, so that on PostgreSQL they sit beside
 * the OLTP tables in the one database WB_OLTP_URL names.
 */
export interface Db {
  readonly dialect: 'sqlite' | 'postgres';
  all(q: Sql): Promise<Record<string, unknown>[]>;
  run(q: Sql): Promise<void>;
  /** Runs `fn` in a transaction that takes the write lock first (so a check and the write that depends on it are one step). */
  transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** The tables, in either dialect (timestamps as ISO text in SQLite, TIMESTAMPTZ in PostgreSQL). */
export function schema(dialect: Db['dialect']): string {
  const time = dialect === 'sqlite' ? 'TEXT' : 'TIMESTAMPTZ';
  const real = dialect === 'sqlite' ? 'REAL' : 'DOUBLE PRECISION';
  const bigint = dialect === 'sqlite' ? 'INTEGER' : 'BIGINT';
  return `
CREATE TABLE IF NOT EXISTS tracking_runs (
  run_id        TEXT PRIMARY KEY,
  name          TEXT NOT NULL,
  source        TEXT,
  description   TEXT,
  status        TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'killed')),
  started_at    ${time} NOT NULL,
  ended_at      ${time},
  git_commit    TEXT,
  data_snapshot TEXT
);
CREATE INDEX IF NOT EXISTS tracking_runs_started ON tracking_runs (started_at, run_id);
CREATE INDEX IF NOT EXISTS tracking_runs_name ON tracking_runs (name, started_at);
CREATE TABLE IF NOT EXISTS tracking_params (
  run_id TEXT NOT NULL REFERENCES tracking_runs (run_id),
  key    TEXT NOT NULL,
  value  TEXT NOT NULL,
  PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS tracking_metrics (
  run_id    TEXT NOT NULL REFERENCES tracking_runs (run_id),
  key       TEXT NOT NULL,
  step      ${bigint} NOT NULL,
  value     ${real},
  logged_at ${time} NOT NULL,
  PRIMARY KEY (run_id, key, step)
);
CREATE TABLE IF NOT EXISTS tracking_artifacts (
  run_id    TEXT NOT NULL REFERENCES tracking_runs (run_id),
  name      TEXT NOT NULL,
  ref       TEXT,
  value     TEXT NOT NULL,
  logged_at ${time} NOT NULL,
  PRIMARY KEY (run_id, name)
);
CREATE INDEX IF NOT EXISTS tracking_artifacts_ref ON tracking_artifacts (ref);
`;
}

/** A `TrackingStore` over a SQL connection (see `SqliteTracking`, `PostgresTracking`). */
export class SqlTracking implements TrackingStore {
  constructor(
    readonly kind: string,
    readonly location: string,
    private readonly db: Db,
    private readonly ddl: () => Promise<void>,
  ) {}

  migrate(): Promise<void> {
    return this.ddl();
  }

  async createRun(run: NewRun): Promise<void> {
    checkRunId(run.id);
    await this.db.transaction(async (tx) => {
      await tx.run(sql`INSERT INTO tracking_runs (run_id, name, source, description, status, started_at, git_commit, data_snapshot)
        VALUES (${run.id}, ${run.name}, ${run.source}, ${run.description}, 'running', ${this.time(run.startedAt)}, ${run.gitCommit}, ${run.dataSnapshot})`);
      await insertParams(tx, run.id, run.params);
    });
  }

  async logParams(id: string, params: ReadonlyMap<string, ParamValue>): Promise<void> {
    if (params.size === 0) return;
    await this.db.transaction(async (tx) => {
      await this.running(tx, id);
      const stored = new Map<string, string>();
      for (const r of await tx.all(sql`SELECT key, value FROM tracking_params WHERE run_id = ${id}`)) stored.set(String(r.key), String(r.value));
      const fresh = new Map<string, ParamValue>();
      for (const [key, value] of params) {
        const had = stored.get(key);
        if (had === undefined) fresh.set(key, value);
        else if (had !== JSON.stringify(value))
          throw new ConflictError(
            `run ${id} has parameter ${JSON.stringify(key)} = ${had} already; a parameter keeps its first value (start a new run to change it)`,
          );
      }
      if (stored.size + fresh.size > LIMITS.paramsPerRun)
        throw new InputError(`run ${id} would have ${stored.size + fresh.size} parameters: at most ${LIMITS.paramsPerRun}`);
      await insertParams(tx, id, fresh);
    });
  }

  async logData(id: string, dataSnapshot: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      await this.running(tx, id);
      const [row] = await tx.all(sql`SELECT data_snapshot FROM tracking_runs WHERE run_id = ${id}`);
      const had = row?.data_snapshot as string | null | undefined;
      if (had === dataSnapshot) return;
      if (had) throw new ConflictError(`run ${id} read ${had} already, not ${dataSnapshot}: a run reads one snapshot (start a new run for other data)`);
      await tx.run(sql`UPDATE tracking_runs SET data_snapshot = ${dataSnapshot} WHERE run_id = ${id}`);
    });
  }

  async logMetrics(id: string, points: readonly MetricPoint[]): Promise<void> {
    if (points.length === 0) return;
    if (points.length > LIMITS.pointsPerCall) throw new InputError(`${points.length} metric values in one call: at most ${LIMITS.pointsPerCall}`);
    await this.db.transaction(async (tx) => {
      await this.running(tx, id);
      const [count] = await tx.all(sql`SELECT count(*) AS n FROM tracking_metrics WHERE run_id = ${id}`);
      if (Number(count?.n ?? 0) + points.length > LIMITS.pointsPerRun)
        throw new InputError(`run ${id} would hold more than ${LIMITS.pointsPerRun} metric values: log fewer steps`);
      // SQLite keeps a NaN double as NULL: both dialects store it so, and read NULL back as NaN.
      const rows = points.map((p) => sql`(${id}, ${p.key}, ${p.step}, ${Number.isNaN(p.value) ? null : p.value}, ${this.time(p.at)})`);
      await tx.run(sql`INSERT INTO tracking_metrics (run_id, key, step, value, logged_at) VALUES ${join(rows)}
        ON CONFLICT (run_id, key, step) DO UPDATE SET value = excluded.value, logged_at = excluded.logged_at`);
    });
  }

  async putArtifact(id: string, artifact: RunArtifact): Promise<void> {
    await this.db.transaction(async (tx) => {
      await this.running(tx, id);
      const [count] = await tx.all(sql`SELECT count(*) AS n FROM tracking_artifacts WHERE run_id = ${id} AND name <> ${artifact.name}`);
      if (Number(count?.n ?? 0) >= LIMITS.artifactsPerRun) throw new InputError(`run ${id} has ${LIMITS.artifactsPerRun} artefacts, the most a run keeps`);
      await tx.run(sql`INSERT INTO tracking_artifacts (run_id, name, ref, value, logged_at)
        VALUES (${id}, ${artifact.name}, ${artifact.ref}, ${JSON.stringify(artifact.value)}, ${this.time(artifact.at)})
        ON CONFLICT (run_id, name) DO UPDATE SET ref = excluded.ref, value = excluded.value, logged_at = excluded.logged_at`);
    });
  }

  async endRun(id: string, status: Exclude<RunStatus, 'running'>, endedAt: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      await this.running(tx, id);
      await tx.run(sql`UPDATE tracking_runs SET status = ${status}, ended_at = ${this.time(endedAt)} WHERE run_id = ${id}`);
    });
  }

  async getRun(idOrPrefix: string): Promise<TrackedRun> {
    const prefix = checkRunPrefix(idOrPrefix);
    const rows = await this.db.all(
      sql`SELECT * FROM tracking_runs WHERE substr(run_id, 1, ${prefix.length}) = ${prefix} ORDER BY started_at DESC, run_id DESC LIMIT 6`,
    );
    if (rows.length === 0) throw new NotFoundError(`no run ${prefix}`);
    if (rows.length > 1)
      throw new InputError(
        `${prefix} is the start of ${rows.length > 5 ? 'more than 5' : rows.length} runs (${rows.map((r) => r.run_id).join(', ')}): give more digits`,
      );
    return (await this.complete(rows))[0]!;
  }

  async listRuns(filter: RunFilter = {}): Promise<TrackedRun[]> {
    const limit = filter.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > LIMITS.listLimit) throw new InputError(`limit ${limit}: list from 1 to ${LIMITS.listLimit} runs`);
    const where: Sql[] = [sql`TRUE`];
    if (filter.name !== undefined) where.push(sql`r.name = ${filter.name}`);
    if (filter.status !== undefined) where.push(sql`r.status = ${filter.status}`);
    if (filter.ref !== undefined) where.push(sql`EXISTS (SELECT 1 FROM tracking_artifacts a WHERE a.run_id = r.run_id AND a.ref = ${filter.ref})`);
    const rows = await this.db.all(sql`SELECT r.* FROM tracking_runs r WHERE ${join(where, ' AND ')} ORDER BY r.started_at DESC, r.run_id DESC LIMIT ${limit}`);
    return this.complete(rows);
  }

  async metricHistory(id: string, key: string): Promise<MetricPoint[]> {
    checkRunId(id);
    const rows = await this.db.all(sql`SELECT key, step, value, logged_at FROM tracking_metrics WHERE run_id = ${id} AND key = ${key} ORDER BY step`);
    return rows.map((r) => ({
      key: String(r.key),
      step: Number(r.step),
      value: r.value === null ? Number.NaN : Number(r.value),
      at: isoInstant(r.logged_at as string | Date),
    }));
  }

  close(): Promise<void> {
    return this.db.close();
  }

  /** A timestamp as the dialect keeps it: ISO text in SQLite (which sorts as time), an instant PostgreSQL parses. */
  private time(at: string): string {
    return isoInstant(at);
  }

  /** Refuses a write to a run that does not exist or has ended; takes the run's row lock on PostgreSQL. */
  private async running(tx: Db, id: string): Promise<void> {
    checkRunId(id);
    const lock = tx.dialect === 'postgres' ? sql` FOR UPDATE` : sql``;
    const [row] = await tx.all(sql`SELECT status FROM tracking_runs WHERE run_id = ${id}${lock}`);
    if (!row) throw new NotFoundError(`no run ${id}`);
    if (row.status !== 'running') throw new ConflictError(`run ${id} has ended (${String(row.status)}): an ended run's record does not change`);
  }

  /** Runs' rows with their parameters, metrics' last values and artefacts, in four queries whatever the number of runs. */
  private async complete(rows: Record<string, unknown>[]): Promise<TrackedRun[]> {
    if (rows.length === 0) return [];
    const runs = rows.map((r): TrackedRun => ({
      id: String(r.run_id),
      name: String(r.name),
      source: (r.source as string | null) ?? null,
      description: (r.description as string | null) ?? null,
      status: r.status as RunStatus,
      startedAt: isoInstant(r.started_at as string | Date),
      endedAt: r.ended_at === null || r.ended_at === undefined ? null : isoInstant(r.ended_at as string | Date),
      gitCommit: (r.git_commit as string | null) ?? null,
      dataSnapshot: (r.data_snapshot as string | null) ?? null,
      params: dict(),
      metrics: dict(),
      artifacts: [],
    }));
    const byId = new Map(runs.map((r) => [r.id, r]));
    const ids = join(runs.map((r) => r.id));
    for (const p of await this.db.all(sql`SELECT run_id, key, value FROM tracking_params WHERE run_id IN (${ids}) ORDER BY run_id, key`))
      byId.get(String(p.run_id))!.params[String(p.key)] = JSON.parse(String(p.value)) as ParamValue;
    // Each key's value at its highest step.
    const last = await this.db.all(sql`SELECT m.run_id, m.key, m.value FROM tracking_metrics m
      JOIN (SELECT run_id, key, max(step) AS step FROM tracking_metrics WHERE run_id IN (${ids}) GROUP BY run_id, key) t
        ON t.run_id = m.run_id AND t.key = m.key AND t.step = m.step
      ORDER BY m.run_id, m.key`);
    for (const m of last) byId.get(String(m.run_id))!.metrics[String(m.key)] = m.value === null ? Number.NaN : Number(m.value);
    for (const a of await this.db.all(
      sql`SELECT run_id, name, ref, value, logged_at FROM tracking_artifacts WHERE run_id IN (${ids}) ORDER BY run_id, logged_at, name`,
    ))
      byId.get(String(a.run_id))!.artifacts.push({
        name: String(a.name),
        ref: (a.ref as string | null) ?? null,
        value: jsonData(JSON.parse(String(a.value))),
        at: isoInstant(a.logged_at as string | Date),
      });
    return runs;
  }
}

async function insertParams(tx: Db, id: string, params: ReadonlyMap<string, ParamValue>): Promise<void> {
  if (params.size === 0) return;
  const rows = [...params].map(([key, value]) => sql`(${id}, ${key}, ${JSON.stringify(value)})`);
  await tx.run(sql`INSERT INTO tracking_params (run_id, key, value) VALUES ${join(rows)}`);
}
