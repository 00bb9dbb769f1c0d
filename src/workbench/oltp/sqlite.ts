import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { ident, join, sql, type Sql } from '../sql.js';
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
  first_seen TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS predictions (
  model      TEXT NOT NULL,
  user_id    TEXT NOT NULL,
  version    TEXT NOT NULL,
  score      REAL NOT NULL,
  created_at TEXT NOT NULL,
  PRIMARY KEY (model, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS assignments (
  experiment  TEXT NOT NULL,
  user_id     TEXT NOT NULL,
  arm         TEXT NOT NULL,
  assigned_at TEXT NOT NULL,
  claimed_at  TEXT,
  PRIMARY KEY (experiment, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS experiments (
  key        TEXT PRIMARY KEY,
  version    INTEGER NOT NULL,
  definition TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  updated_by TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS experiment_changes (
  key        TEXT NOT NULL,
  version    INTEGER NOT NULL,
  definition TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  updated_by TEXT NOT NULL,
  change     TEXT NOT NULL,
  PRIMARY KEY (key, version)
) WITHOUT ROWID;
`;

const KEY_ORDER: Record<TableName, Sql> = {
  users: sql`ORDER BY user_id`,
  predictions: sql`ORDER BY model, user_id`,
  assignments: sql`ORDER BY experiment, user_id`,
};

/** The embedded OLTP database: one SQLite file (WAL mode) through better-sqlite3. */
export class SqliteOltp implements OltpStore {
  readonly kind = 'sqlite';
  private readonly db: Database.Database;

  constructor(readonly location: string) {
    if (location !== ':memory:') mkdirSync(dirname(location), { recursive: true });
    this.db = new Database(location);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
  }

  async migrate(): Promise<void> {
    this.db.exec(SCHEMA);
    // Tables made before claims were timed gain the column; their rows keep it empty (never swept for lost exposures).
    const columns = this.db.prepare('PRAGMA table_info(assignments)').all() as { name: string }[];
    if (!columns.some((c) => c.name === 'claimed_at')) this.db.exec('ALTER TABLE assignments ADD COLUMN claimed_at TEXT');
    this.db.exec('CREATE INDEX IF NOT EXISTS assignments_by_claim ON assignments (claimed_at, experiment, user_id)');
  }

  async upsertUsers(users: readonly User[]): Promise<void> {
    const stmt = this.db.prepare(
      `INSERT INTO users (user_id, country, device, tier, first_seen) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (user_id) DO UPDATE SET country = excluded.country, device = excluded.device,
         tier = excluded.tier, first_seen = excluded.first_seen`,
    );
    this.db.transaction((rows: readonly User[]) => {
      for (const u of rows) stmt.run(u.user_id, u.country, u.device, u.tier, isoInstant(u.first_seen));
    })(users);
  }

  async insertUsersIfAbsent(users: readonly User[]): Promise<void> {
    const stmt = this.db.prepare('INSERT INTO users (user_id, country, device, tier, first_seen) VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING');
    this.db.transaction((rows: readonly User[]) => {
      for (const u of rows) stmt.run(u.user_id, u.country, u.device, u.tier, isoInstant(u.first_seen));
    })(users);
  }

  async getUsers(ids: readonly string[]): Promise<Map<string, User>> {
    const found = new Map<string, User>();
    const stmt = this.db.prepare('SELECT user_id, country, device, tier, first_seen FROM users WHERE user_id = ?');
    for (const id of new Set(ids)) {
      const row = stmt.get(id) as User | undefined;
      if (row) found.set(id, row);
    }
    return found;
  }

  async upsertPredictions(rows: readonly Prediction[]): Promise<void> {
    const stmt = this.db.prepare(
      `INSERT INTO predictions (model, user_id, version, score, created_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (model, user_id) DO UPDATE SET version = excluded.version, score = excluded.score,
         created_at = excluded.created_at`,
    );
    this.db.transaction((batch: readonly Prediction[]) => {
      for (const p of batch) stmt.run(p.model, p.user_id, p.version, p.score, isoInstant(p.created_at));
    })(rows);
  }

  async insertAssignmentsIfAbsent(rows: readonly Assignment[]): Promise<Assignment[]> {
    const insert = this.db.prepare(
      'INSERT INTO assignments (experiment, user_id, arm, assigned_at, claimed_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (experiment, user_id) DO NOTHING',
    );
    const claimedAt = new Date().toISOString();
    const read = this.db.prepare('SELECT experiment, user_id, arm, assigned_at FROM assignments WHERE experiment = ? AND user_id = ?');
    return this.db.transaction((batch: readonly Assignment[]) =>
      batch.map((a) => {
        insert.run(a.experiment, a.user_id, a.arm, isoInstant(a.assigned_at), claimedAt);
        return read.get(a.experiment, a.user_id) as Assignment;
      }),
    )(rows);
  }

  async claimAssignments(rows: readonly Assignment[]): Promise<{ assignment: Assignment; claimed: boolean }[]> {
    const insert = this.db.prepare(
      'INSERT INTO assignments (experiment, user_id, arm, assigned_at, claimed_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (experiment, user_id) DO NOTHING',
    );
    // The process's clock is the database's: this embedded file has no other writer's clock to agree with.
    const claimedAt = new Date().toISOString();
    const read = this.db.prepare('SELECT experiment, user_id, arm, assigned_at FROM assignments WHERE experiment = ? AND user_id = ?');
    return this.db.transaction((batch: readonly Assignment[]) =>
      batch.map((a) => {
        const claimed = insert.run(a.experiment, a.user_id, a.arm, isoInstant(a.assigned_at), claimedAt).changes === 1;
        return { assignment: read.get(a.experiment, a.user_id) as Assignment, claimed };
      }),
    )(rows);
  }

  async getAssignments(experiment: string, userIds?: readonly string[]): Promise<Assignment[]> {
    if (!userIds)
      return this.db
        .prepare('SELECT experiment, user_id, arm, assigned_at FROM assignments WHERE experiment = ? ORDER BY user_id')
        .all(experiment) as Assignment[];
    const read = this.db.prepare('SELECT experiment, user_id, arm, assigned_at FROM assignments WHERE experiment = ? AND user_id = ?');
    return [...new Set(userIds)].sort().flatMap((id) => (read.get(experiment, id) as Assignment | undefined) ?? []);
  }

  async claimedAssignments(query: {
    experiments: readonly string[];
    after?: ClaimCursor;
    until?: string;
    olderThanMs?: number;
    limit: number;
  }): Promise<ClaimPage> {
    const until = isoInstant(query.until ?? new Date(Date.now() - (query.olderThanMs ?? 0)));
    if (query.experiments.length === 0) return { rows: [], until };
    // ISO instants to the millisecond, all in one form: their text order is their time order.
    const after = query.after
      ? sql`AND (claimed_at, experiment, user_id) > (${isoInstant(query.after.claimed_at)}, ${query.after.experiment}, ${query.after.user_id})`
      : sql``;
    const q = sql`SELECT experiment, user_id, arm, assigned_at, claimed_at FROM assignments
      WHERE claimed_at IS NOT NULL AND claimed_at <= ${until} AND experiment IN (${join(query.experiments)}) ${after}
      ORDER BY claimed_at, experiment, user_id LIMIT ${query.limit}`.toParameterized('question');
    return { rows: this.db.prepare(q.text).all(...q.params) as ClaimedAssignment[], until };
  }

  async saveExperiment(record: ExperimentRecord, change: string, guard?: WriteGuard): Promise<void> {
    // The transaction below is synchronous: the guard runs just before it, and nothing of this
    // process can run in between (a lease of this process's embedded store cannot change hands).
    if (guard) await guard({});
    const current = this.db.prepare('SELECT version FROM experiments WHERE key = ?');
    const upsert = this.db.prepare(
      `INSERT INTO experiments (key, version, definition, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET version = excluded.version, definition = excluded.definition, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
    );
    const history = this.db.prepare('INSERT INTO experiment_changes (key, version, definition, updated_at, updated_by, change) VALUES (?, ?, ?, ?, ?, ?)');
    // better-sqlite3 transactions are synchronous: no other write can come between the check and the write.
    this.db.transaction(() => {
      const stored = (current.get(record.key) as { version: number } | undefined)?.version;
      if ((stored ?? 0) !== record.version - 1) throw new ConflictError(versionConflict(record.key, record.version, stored));
      const at = isoInstant(record.updated_at);
      upsert.run(record.key, record.version, record.definition, at, record.updated_by);
      history.run(record.key, record.version, record.definition, at, record.updated_by, change);
    })();
  }

  async getExperiments(): Promise<ExperimentRecord[]> {
    return this.db.prepare('SELECT key, version, definition, updated_at, updated_by FROM experiments ORDER BY key').all() as ExperimentRecord[];
  }

  async experimentHistory(key: string): Promise<ExperimentChange[]> {
    return this.db
      .prepare('SELECT key, version, definition, updated_at, updated_by, change FROM experiment_changes WHERE key = ? ORDER BY version')
      .all(key) as ExperimentChange[];
  }

  async count(table: TableName): Promise<number> {
    const q = sql`SELECT count(*) AS n FROM ${tableIdent(table)}`.toParameterized('question');
    return (this.db.prepare(q.text).get(...q.params) as { n: number }).n;
  }

  async *scan<T extends TableName>(table: T, batchSize = 10_000): AsyncIterable<TableRows[T][]> {
    // The interface's columns only (assignments also keep their claim time, which is the service's business).
    const from = tableIdent(table);
    const columns = join(Object.keys(TABLE_COLUMNS[table]).map((c) => ident(c)));
    const q = sql`SELECT ${columns} FROM ${from} ${KEY_ORDER[table]}`.toParameterized('question');
    let batch: TableRows[T][] = [];
    for (const row of this.db.prepare(q.text).iterate(...q.params)) {
      batch.push(row as TableRows[T]);
      if (batch.length >= batchSize) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length > 0) yield batch;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

function tableIdent(table: TableName) {
  if (!(table in TABLE_COLUMNS)) throw new TypeError(`unknown OLTP table: ${String(table)}`);
  return ident(table);
}
