import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Sql } from '../sql.js';
import { schema, SqlTracking, type Db } from './sql-store.js';

/**
 * The embedded run store: one SQLite file in the data dir (`tracking.sqlite`, WAL mode), apart from
 * the OLTP file so that a notebook recording a run never waits on the service's writes.
 */
export class SqliteTracking extends SqlTracking {
  constructor(location: string) {
    if (location !== ':memory:') mkdirSync(dirname(location), { recursive: true });
    const db = new Database(location);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = ON');
    const adapter = new SqliteDb(db);
    super('sqlite', location, adapter, async () => void db.exec(schema('sqlite')));
  }
}

/**
 * better-sqlite3 is synchronous and its transactions cannot span an `await`: a transaction here is
 * BEGIN IMMEDIATE ... COMMIT on the one connection, and callers in this process queue for it, so
 * two runs logging at once never interleave inside each other's transaction.
 */
class SqliteDb implements Db {
  readonly dialect = 'sqlite';
  private queue: Promise<unknown> = Promise.resolve();
  private inTransaction = false;

  constructor(private readonly db: Database.Database) {}

  async all(q: Sql): Promise<Record<string, unknown>[]> {
    const { text, params } = q.toParameterized('question');
    return this.db.prepare(text).all(...params.map(bindable)) as Record<string, unknown>[];
  }

  async run(q: Sql): Promise<void> {
    const { text, params } = q.toParameterized('question');
    this.db.prepare(text).run(...params.map(bindable));
  }

  transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
    if (this.inTransaction) return fn(this);
    const next = this.queue.then(async () => {
      this.db.exec('BEGIN IMMEDIATE');
      this.inTransaction = true;
      try {
        const result = await fn(this);
        this.db.exec('COMMIT');
        return result;
      } catch (err) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw err;
      } finally {
        this.inTransaction = false;
      }
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  async close(): Promise<void> {
    await this.queue;
    if (this.db.open) this.db.close();
  }
}

/** SQLite takes whole numbers as INTEGER only when bound as such (LIMIT refuses a REAL). */
function bindable(value: unknown): unknown {
  return typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) : value;
}
