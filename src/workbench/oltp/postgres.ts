import pg from 'pg';
import { ident, join, raw, sql, type Sql } from '../sql.js';
import { openPgPool, shownUrl } from './pg-pool.js';
import { ConflictError } from '../errors.js';
import {
  TABLE_COLUMNS,
  isoInstant,
  versionConflict,
  type Assignment,
  type ClaimCursor,
  type ClaimPage,
  type ClaimedAssignment,
  type ExperimentChange,
  type ExperimentRecord,
  type OltpStore,
  type Prediction,
  type TableName,
  type TableRows,
  type User,
  type WriteGuard,
} from './store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS users (
  user_id    TEXT PRIMARY KEY,
  country    TEXT NOT NULL,
  device     TEXT NOT NULL,
  tier       TEXT NOT NULL CHECK (tier IN ('free', 'pro')),
  first_seen TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS predictions (
  model      TEXT NOT NULL,
  user_id    TEXT NOT NULL,
  version    TEXT NOT NULL,
  score      DOUBLE PRECISION NOT NULL,
  created_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (model, user_id)
);
CREATE TABLE IF NOT EXISTS assignments (
  experiment  TEXT NOT NULL,
  user_id     TEXT NOT NULL,
  arm         TEXT NOT NULL,
  assigned_at TIMESTAMPTZ NOT NULL,
  claimed_at  TIMESTAMPTZ,
  PRIMARY KEY (experiment, user_id)
);
CREATE TABLE IF NOT EXISTS experiments (
  key        TEXT PRIMARY KEY,
  version    INTEGER NOT NULL,
  definition TEXT NOT NULL,
  updated_at TIMESTAMPTZ NOT NULL,
  updated_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS experiment_changes (
  key        TEXT NOT NULL,
  version    INTEGER NOT NULL,
  definition TEXT NOT NULL,
  updated_at TIMESTAMPTZ NOT NULL,
  updated_by TEXT NOT NULL,
  change     TEXT NOT NULL,
  PRIMARY KEY (key, version)
);
`;

/**
 * A claim's time: the transaction's start on the database's clock (one clock for every instance),
 * to the millisecond so that it comes back from JavaScript's Date as it is stored (a page's cursor).
 */
const CLAIMED_NOW = raw("date_trunc('milliseconds', now())");

const KEY_COLUMNS: Record<TableName, readonly string[]> = {
  users: ['user_id'],
  predictions: ['model', 'user_id'],
  assignments: ['experiment', 'user_id'],
};

/**
 * Whether `err` is PostgreSQL's answer to the loser of a race between instances creating the same
 * objects with IF NOT EXISTS at once: the catalog's unique index (23505), a schema or relation
 * already there (42P06, 42P07), or 42710 "type already exists" when the winner commits between the
 * loser's two catalog checks. The winner's objects stand, so the loser carries on.
 */
export function lostCreateRace(err: unknown): boolean {
  return ['23505', '42P06', '42P07', '42710'].includes((err as { code?: string } | undefined)?.code ?? '');
}

/**
 * Runs a `CREATE ... IF NOT EXISTS` statement through `run`, taking a lost race with another instance
 * creating the same object (`lostCreateRace`) as done: the winner's object stands.
 */
export async function createIfAbsent(run: (q: Sql) => Promise<unknown>, q: Sql): Promise<void> {
  try {
    await run(q);
  } catch (err) {
    if (!lostCreateRace(err)) throw err;
  }
}

/**
 * The scale-out OLTP database: PostgreSQL through `pg`. Rows are written in multi-row statements
 * (one round trip per chunk) and read with keyset pagination, so a replica scan never holds the
 * table in memory or a transaction open.
 */
export class PostgresOltp implements OltpStore {
  readonly kind = 'postgres';
  readonly location: string;
  private readonly pool: pg.Pool;

  constructor(connectionString: string, schema?: string) {
    this.location = shownUrl(connectionString);
    this.pool = openPgPool(connectionString, { max: 4, timeouts: false });
    if (schema) {
      // Each test run can use its own schema; search_path is set on every new connection.
      this.pool.on('connect', (client) => {
        void client.query(sql`SET search_path TO ${ident(schema)}`.toString());
      });
      this.schema = schema;
    }
  }
  private readonly schema?: string;

  async migrate(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        if (this.schema) await this.pool.query(sql`CREATE SCHEMA IF NOT EXISTS ${ident(this.schema)}`.toString());
        await this.pool.query(SCHEMA);
        // Tables made before claims were timed gain the column (their rows keep it empty: never swept
        // for lost exposures). Looked up first: ALTER TABLE and CREATE INDEX lock the table against
        // claims even when there is nothing to do, and every instance migrates on start.
        const { rows } = await this.pool.query(
          `SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'assignments' AND column_name = 'claimed_at') AS timed,
                  to_regclass('assignments_by_claim') IS NOT NULL AS indexed`,
        );
        if (!rows[0].timed) await this.pool.query('ALTER TABLE assignments ADD COLUMN IF NOT EXISTS claimed_at TIMESTAMPTZ');
        if (!rows[0].indexed) await this.pool.query('CREATE INDEX IF NOT EXISTS assignments_by_claim ON assignments (claimed_at, experiment, user_id)');
        return;
      } catch (err) {
        // Once the winner of the race has committed, the statements find everything there.
        if (attempt >= 3 || !lostCreateRace(err)) throw err;
      }
    }
  }

  async upsertUsers(users: readonly User[]): Promise<void> {
    await this.inChunks(users, (chunk) => {
      const rows = chunk.map((u) => sql`(${u.user_id}, ${u.country}, ${u.device}, ${u.tier}, ${isoInstant(u.first_seen)}::timestamptz)`);
      return sql`INSERT INTO users (user_id, country, device, tier, first_seen) VALUES ${join(rows)}
        ON CONFLICT (user_id) DO UPDATE SET country = excluded.country, device = excluded.device,
          tier = excluded.tier, first_seen = excluded.first_seen`;
    });
  }

  async insertUsersIfAbsent(users: readonly User[]): Promise<void> {
    await this.inChunks(users, (chunk) => {
      const rows = chunk.map((u) => sql`(${u.user_id}, ${u.country}, ${u.device}, ${u.tier}, ${isoInstant(u.first_seen)}::timestamptz)`);
      return sql`INSERT INTO users (user_id, country, device, tier, first_seen) VALUES ${join(rows)} ON CONFLICT (user_id) DO NOTHING`;
    });
  }

  async getUsers(ids: readonly string[]): Promise<Map<string, User>> {
    const found = new Map<string, User>();
    if (ids.length === 0) return found;
    const { rows } = await this.pool.query('SELECT user_id, country, device, tier, first_seen FROM users WHERE user_id = ANY($1::text[])', [[...new Set(ids)]]);
    for (const r of rows) found.set(r.user_id, toUser(r));
    return found;
  }

  async upsertPredictions(rows: readonly Prediction[]): Promise<void> {
    await this.inChunks(rows, (chunk) => {
      const values = chunk.map((p) => sql`(${p.model}, ${p.user_id}, ${p.version}, ${p.score}, ${isoInstant(p.created_at)}::timestamptz)`);
      return sql`INSERT INTO predictions (model, user_id, version, score, created_at) VALUES ${join(values)}
        ON CONFLICT (model, user_id) DO UPDATE SET version = excluded.version, score = excluded.score,
          created_at = excluded.created_at`;
    });
  }

  async insertAssignmentsIfAbsent(rows: readonly Assignment[]): Promise<Assignment[]> {
    if (rows.length === 0) return [];
    await this.inChunks(rows, (chunk) => {
      const values = chunk.map((a) => sql`(${a.experiment}, ${a.user_id}, ${a.arm}, ${isoInstant(a.assigned_at)}::timestamptz, ${CLAIMED_NOW})`);
      return sql`INSERT INTO assignments (experiment, user_id, arm, assigned_at, claimed_at) VALUES ${join(values)} ON CONFLICT (experiment, user_id) DO NOTHING`;
    });
    const stored = new Map<string, Assignment>();
    for (const experiment of new Set(rows.map((r) => r.experiment))) {
      for (const a of await this.getAssignments(
        experiment,
        rows.filter((r) => r.experiment === experiment).map((r) => r.user_id),
      ))
        stored.set(`${a.experiment}\u0000${a.user_id}`, a);
    }
    return rows.map((r) => stored.get(`${r.experiment}\u0000${r.user_id}`)!);
  }

  async claimAssignments(rows: readonly Assignment[]): Promise<{ assignment: Assignment; claimed: boolean }[]> {
    if (rows.length === 0) return [];
    const claimed = new Set<string>();
    // In key order: two instances claiming the same users in different orders would deadlock.
    const ordered = [...rows].sort((x, y) =>
      x.experiment < y.experiment ? -1 : x.experiment > y.experiment ? 1 : x.user_id < y.user_id ? -1 : x.user_id > y.user_id ? 1 : 0,
    );
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      for (let i = 0; i < ordered.length; i += 1000) {
        const values = ordered
          .slice(i, i + 1000)
          .map((a) => sql`(${a.experiment}, ${a.user_id}, ${a.arm}, ${isoInstant(a.assigned_at)}::timestamptz, ${CLAIMED_NOW})`);
        // RETURNING lists only the rows this statement inserted: a row another transaction committed
        // first (or is committing: the insert waits for it) is skipped, so each pair has one winner.
        const { text, params } = sql`INSERT INTO assignments (experiment, user_id, arm, assigned_at, claimed_at) VALUES ${join(values)}
          ON CONFLICT (experiment, user_id) DO NOTHING RETURNING experiment, user_id`.toParameterized('dollar');
        for (const r of (await client.query(text, params)).rows as { experiment: string; user_id: string }[]) claimed.add(`${r.experiment}\u0000${r.user_id}`);
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
    const stored = new Map<string, Assignment>();
    for (const experiment of new Set(rows.map((r) => r.experiment))) {
      const users = rows.filter((r) => r.experiment === experiment).map((r) => r.user_id);
      for (const a of await this.getAssignments(experiment, users)) stored.set(`${a.experiment}\u0000${a.user_id}`, a);
    }
    return rows.map((r) => {
      const key = `${r.experiment}\u0000${r.user_id}`;
      return { assignment: stored.get(key)!, claimed: claimed.has(key) };
    });
  }

  async getAssignments(experiment: string, userIds?: readonly string[]): Promise<Assignment[]> {
    const { rows } = userIds
      ? await this.pool.query('SELECT * FROM assignments WHERE experiment = $1 AND user_id = ANY($2::text[]) ORDER BY user_id', [
          experiment,
          [...new Set(userIds)],
        ])
      : await this.pool.query('SELECT * FROM assignments WHERE experiment = $1 ORDER BY user_id', [experiment]);
    return rows.map(toAssignment);
  }

  async claimedAssignments(query: {
    experiments: readonly string[];
    after?: ClaimCursor;
    until?: string;
    olderThanMs?: number;
    limit: number;
  }): Promise<ClaimPage> {
    let until = query.until === undefined ? undefined : isoInstant(query.until);
    if (until === undefined) {
      // The database's clock, which timed the claims (every instance's claims, whatever their own clocks say).
      const q = sql`SELECT date_trunc('milliseconds', now()) - make_interval(secs => ${(query.olderThanMs ?? 0) / 1000}) AS until`.toParameterized('dollar');
      until = isoInstant((await this.pool.query(q.text, q.params)).rows[0].until as Date);
    }
    if (query.experiments.length === 0) return { rows: [], until };
    const after = query.after
      ? sql`AND (claimed_at, experiment, user_id) > (${isoInstant(query.after.claimed_at)}::timestamptz, ${query.after.experiment}, ${query.after.user_id})`
      : sql``;
    const q = sql`SELECT experiment, user_id, arm, assigned_at, claimed_at FROM assignments
      WHERE claimed_at IS NOT NULL AND claimed_at <= ${until}::timestamptz AND experiment = ANY(${[...query.experiments]}::text[]) ${after}
      ORDER BY claimed_at, experiment, user_id LIMIT ${query.limit}`.toParameterized('dollar');
    const { rows } = await this.pool.query(q.text, q.params);
    return { rows: rows.map((r): ClaimedAssignment => ({ ...toAssignment(r), claimed_at: isoInstant(r.claimed_at as Date) })), until };
  }

  async saveExperiment(record: ExperimentRecord, change: string, guard?: WriteGuard): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      // First, so a fence's lock is held from before the version check until the commit.
      if (guard) await guard({ client });
      // The row lock (or, for a new key, the primary key) makes the version check and the write one step.
      const { rows } = await client.query('SELECT version FROM experiments WHERE key = $1 FOR UPDATE', [record.key]);
      const stored = rows[0]?.version as number | undefined;
      if ((stored ?? 0) !== record.version - 1) throw new ConflictError(versionConflict(record.key, record.version, stored));
      const at = isoInstant(record.updated_at);
      const params = [record.key, record.version, record.definition, at, record.updated_by];
      await client.query(
        `INSERT INTO experiments (key, version, definition, updated_at, updated_by) VALUES ($1, $2, $3, $4::timestamptz, $5)
         ON CONFLICT (key) DO UPDATE SET version = excluded.version, definition = excluded.definition, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
        params,
      );
      await client.query(
        'INSERT INTO experiment_changes (key, version, definition, updated_at, updated_by, change) VALUES ($1, $2, $3, $4::timestamptz, $5, $6)',
        [...params, change],
      );
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      // Two creations of one new key race on the primary key rather than the row lock.
      if ((err as { code?: string }).code === '23505') throw new ConflictError(versionConflict(record.key, record.version, record.version));
      throw err;
    } finally {
      client.release();
    }
  }

  async getExperiments(): Promise<ExperimentRecord[]> {
    const { rows } = await this.pool.query('SELECT key, version, definition, updated_at, updated_by FROM experiments ORDER BY key');
    return rows.map((r) => ({ ...r, updated_at: isoInstant(r.updated_at as Date) }) as ExperimentRecord);
  }

  async experimentHistory(key: string): Promise<ExperimentChange[]> {
    const { rows } = await this.pool.query(
      'SELECT key, version, definition, updated_at, updated_by, change FROM experiment_changes WHERE key = $1 ORDER BY version',
      [key],
    );
    return rows.map((r) => ({ ...r, updated_at: isoInstant(r.updated_at as Date) }) as ExperimentChange);
  }

  async count(table: TableName): Promise<number> {
    const { rows } = await this.pool.query(sql`SELECT count(*)::int AS n FROM ${tableIdent(table)}`.toString());
    return rows[0].n as number;
  }

  async *scan<T extends TableName>(table: T, batchSize = 10_000): AsyncIterable<TableRows[T][]> {
    const keys = KEY_COLUMNS[table].map((k) => ident(k));
    const keyList = join(keys);
    let after: unknown[] | undefined;
    for (;;) {
      const where = after ? sql`WHERE (${keyList}) > (${join(after as string[])})` : sql``;
      const q = sql`SELECT * FROM ${tableIdent(table)} ${where} ORDER BY ${keyList} LIMIT ${batchSize}`;
      const { text, params } = q.toParameterized('dollar');
      const { rows } = await this.pool.query(text, params);
      if (rows.length === 0) return;
      yield rows.map((r) => (table === 'users' ? toUser(r) : table === 'predictions' ? toPrediction(r) : toAssignment(r))) as TableRows[T][];
      const last = rows[rows.length - 1];
      after = KEY_COLUMNS[table].map((k) => last[k]);
      if (rows.length < batchSize) return;
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  private async inChunks<T>(items: readonly T[], statement: (chunk: readonly T[]) => Sql): Promise<void> {
    if (items.length === 0) return;
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      for (let i = 0; i < items.length; i += 1000) {
        const { text, params } = statement(items.slice(i, i + 1000)).toParameterized('dollar');
        await client.query(text, params);
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }
}

function tableIdent(table: TableName) {
  if (!(table in TABLE_COLUMNS)) throw new TypeError(`unknown OLTP table: ${String(table)}`);
  return ident(table);
}

function toUser(r: Record<string, unknown>): User {
  return {
    user_id: r.user_id as string,
    country: r.country as string,
    device: r.device as string,
    tier: r.tier as User['tier'],
    first_seen: isoInstant(r.first_seen as Date),
  };
}

function toPrediction(r: Record<string, unknown>): Prediction {
  return {
    model: r.model as string,
    version: r.version as string,
    user_id: r.user_id as string,
    score: Number(r.score),
    created_at: isoInstant(r.created_at as Date),
  };
}

function toAssignment(r: Record<string, unknown>): Assignment {
  return { experiment: r.experiment as string, user_id: r.user_id as string, arm: r.arm as string, assigned_at: isoInstant(r.assigned_at as Date) };
}
