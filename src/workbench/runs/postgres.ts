import pg from 'pg';
import { openPgPool, shownUrl } from '../oltp/pg-pool.js';
import { ident, sql, type Sql } from '../sql.js';
import { schema, SqlTracking, type Db } from './sql-store.js';

/**
 * The scale-out run store: the `tracking_` tables in the PostgreSQL database WB_OLTP_URL names,
 * beside the OLTP tables, through `pg`. A write checks the run under its row lock (`FOR UPDATE`),
 * so two processes logging to one run cannot both pass a check meant for one.
 */
export class PostgresTracking extends SqlTracking {
  constructor(connectionString: string, schemaName?: string) {
    const pool = openPgPool(connectionString, { max: 4, timeouts: false });
    if (schemaName) {
      // Each test run can use its own schema; search_path is set on every new connection.
      pool.on('connect', (client) => {
        void client.query(sql`SET search_path TO ${ident(schemaName)}`.toString());
      });
    }
    super('postgres', shownUrl(connectionString), new PostgresDb(pool), async () => {
      if (schemaName) await pool.query(sql`CREATE SCHEMA IF NOT EXISTS ${ident(schemaName)}`.toString());
      await pool.query(schema('postgres'));
    });
  }
}

class PostgresDb implements Db {
  readonly dialect = 'postgres';
  constructor(
    private readonly pool: pg.Pool,
    private readonly client?: pg.PoolClient,
  ) {}

  async all(q: Sql): Promise<Record<string, unknown>[]> {
    const { text, params } = q.toParameterized('dollar');
    return (await (this.client ?? this.pool).query(text, params)).rows as Record<string, unknown>[];
  }

  async run(q: Sql): Promise<void> {
    await this.all(q);
  }

  async transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
    if (this.client) return fn(this);
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await fn(new PostgresDb(this.pool, client));
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
