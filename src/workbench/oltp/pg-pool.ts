import pg from 'pg';

/**
 * A connection URL as it may be shown (in logs, errors, `location`): its password masked.
 *
 * @example
 * ```ts
 * shownUrl('postgres://wb:secret@db:5432/wb'); // 'postgres://wb:***@db:5432/wb'
 * ```
 */
export function shownUrl(connectionString: string): string {
  const url = new URL(connectionString);
  if (url.password) url.password = '***';
  return url.toString();
}

/**
 * A pg pool as every PostgreSQL store of the project opens one. An idle pool does not keep a
 * process alive (a CLI or a job that forgets to close it still exits); a connection attempt or a
 * query stuck on a dead server fails in seconds (a lease renewal must not hang past its term); and
 * an idle connection the server drops is replaced on the next query rather than crashing the
 * process (pg emits that on the pool, where an unheard 'error' event throws).
 */
export function openPgPool(connectionString: string, options: { max?: number; timeouts?: boolean } = {}): pg.Pool {
  // The OLTP's own pool (`timeouts: false`) runs migrations and bulk statements that may take longer.
  const timeouts = options.timeouts === false ? {} : { connectionTimeoutMillis: 5_000, query_timeout: 10_000 };
  const pool = new pg.Pool({ connectionString, max: options.max ?? 2, allowExitOnIdle: true, ...timeouts });
  pool.on('error', () => undefined);
  return pool;
}

/**
 * A PostgreSQL store just constructed (so holding its pool), once `migrate` has run on it: what
 * each store's `open` does. If `migrate` (creating tables, loading what the store keeps in memory)
 * fails, the store is closed before the error goes on: a pool whose migration failed must not be
 * left open, since nobody holds the store to close it (its idle connections would linger on the
 * server until it dropped them).
 *
 * @example
 * ```ts
 * static async open(url: string): Promise<PostgresRunStore> {
 *   return migrateOrClose(new PostgresRunStore(url), (store) => store.migrate());
 * }
 * ```
 */
export async function migrateOrClose<T extends { close(): Promise<void> }>(store: T, migrate: (store: T) => Promise<void>): Promise<T> {
  try {
    await migrate(store);
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}
