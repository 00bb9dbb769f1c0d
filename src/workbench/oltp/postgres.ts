import pg from 'pg';
import { ident, join, sql, type Sql } from '../sql.js';
import { TABLE_COLUMNS, isoInstant, type OltpStore, type Prediction, type TableName, type TableRows, type User } from './store.js';

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
`;

const KEY_COLUMNS: Record<TableName, readonly string[]> = {
  users: ['user_id'],
  predictions: ['model', 'user_id'],
};

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
    const url = new URL(connectionString);
    if (url.password) url.password = '***';
    this.location = url.toString();
    this.pool = new pg.Pool({ connectionString, max: 4 });
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
    if (this.schema) await this.pool.query(sql`CREATE SCHEMA IF NOT EXISTS ${ident(this.schema)}`.toString());
    await this.pool.query(SCHEMA);
  }

  async upsertUsers(users: readonly User[]): Promise<void> {
    await this.inChunks(users, (chunk) => {
      const rows = chunk.map(
        (u) => sql`(${u.user_id}, ${u.country}, ${u.device}, ${u.tier}, ${isoInstant(u.first_seen)}::timestamptz)`,
      );
      return sql`INSERT INTO users (user_id, country, device, tier, first_seen) VALUES ${join(rows)}
        ON CONFLICT (user_id) DO UPDATE SET country = excluded.country, device = excluded.device,
          tier = excluded.tier, first_seen = excluded.first_seen`;
    });
  }

  async insertUsersIfAbsent(users: readonly User[]): Promise<void> {
    await this.inChunks(users, (chunk) => {
      const rows = chunk.map(
        (u) => sql`(${u.user_id}, ${u.country}, ${u.device}, ${u.tier}, ${isoInstant(u.first_seen)}::timestamptz)`,
      );
      return sql`INSERT INTO users (user_id, country, device, tier, first_seen) VALUES ${join(rows)} ON CONFLICT (user_id) DO NOTHING`;
    });
  }

  async getUsers(ids: readonly string[]): Promise<Map<string, User>> {
    const found = new Map<string, User>();
    if (ids.length === 0) return found;
    const { rows } = await this.pool.query(
      'SELECT user_id, country, device, tier, first_seen FROM users WHERE user_id = ANY($1::text[])',
      [[...new Set(ids)]],
    );
    for (const r of rows) found.set(r.user_id, toUser(r));
    return found;
  }

  async upsertPredictions(rows: readonly Prediction[]): Promise<void> {
    await this.inChunks(rows, (chunk) => {
      const values = chunk.map(
        (p) => sql`(${p.model}, ${p.user_id}, ${p.version}, ${p.score}, ${isoInstant(p.created_at)}::timestamptz)`,
      );
      return sql`INSERT INTO predictions (model, user_id, version, score, created_at) VALUES ${join(values)}
        ON CONFLICT (model, user_id) DO UPDATE SET version = excluded.version, score = excluded.score,
          created_at = excluded.created_at`;
    });
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
      yield rows.map((r) => (table === 'users' ? toUser(r) : toPrediction(r))) as TableRows[T][];
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
