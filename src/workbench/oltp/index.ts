import { resolve } from 'node:path';
import { InputError } from '../errors.js';
import { PostgresOltp } from './postgres.js';
import { SqliteOltp } from './sqlite.js';
import type { OltpStore } from './store.js';

/**
 * Opens the OLTP database named by a URL, migrated and ready:
 *   - `postgres://user@host:5432/db` or `postgresql://...`: PostgreSQL;
 *   - `sqlite:path/to/file.sqlite`, a plain file path, or `:memory:`: SQLite.
 * Without a URL, the embedded SQLite file in the data dir. `schema` names the PostgreSQL schema
 * (created if missing; several service instances share one, tests each their own).
 *
 * @example
 * ```ts
 * const oltp = await openOltp(oltpUrl(), dataDir());
 * ```
 */
export async function openOltp(url: string | undefined, dataDir: string, options: { schema?: string } = {}): Promise<OltpStore> {
  const store = createOltp(url, dataDir, options.schema);
  try {
    await store.migrate();
  } catch (err) {
    await store.close().catch(() => undefined);
    throw err;
  }
  return store;
}

function createOltp(url: string | undefined, dataDir: string, schema: string | undefined): OltpStore {
  if (url && /^postgres(ql)?:\/\//.test(url)) return new PostgresOltp(url, schema);
  if (schema !== undefined) throw new InputError(`a schema (${JSON.stringify(schema)}) names a PostgreSQL schema: give a postgres:// OLTP URL too`);
  if (!url) return new SqliteOltp(resolve(dataDir, 'oltp.sqlite'));
  if (url === ':memory:' || url === 'sqlite::memory:') return new SqliteOltp(':memory:');
  if (url.startsWith('sqlite:')) return new SqliteOltp(resolve(url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '')));
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return new SqliteOltp(resolve(url));
  throw new InputError(`unsupported OLTP URL ${JSON.stringify(url.replace(/:[^:@/]*@/, ':***@'))}: use postgres://..., sqlite:<file> or a file path`, {
    column: 'WB_OLTP_URL',
  });
}

export { PostgresOltp } from './postgres.js';
export { SqliteOltp } from './sqlite.js';
export * from './store.js';
