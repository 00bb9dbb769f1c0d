import { resolve } from 'node:path';
import { PostgresTracking } from './postgres.js';
import { SqliteTracking } from './sqlite.js';
import type { TrackingStore } from './store.js';

/**
 * Opens the run store, migrated and ready: the `tracking_` tables of the PostgreSQL database when
 * `url` is a `postgres://` URL (WB_OLTP_URL), else the SQLite file `tracking.sqlite` in the data
 * dir (whatever else the URL names: runs are the workbench's, not the product's).
 *
 * @example
 * ```ts
 * const store = await openTracking(oltpUrl(), dataDir());
 * show((await store.listRuns({ name: 'app-churn', limit: 5 })).map((r) => ({ id: r.id, status: r.status, auc: r.metrics.roc_auc })));
 * await store.close();
 * ```
 */
export async function openTracking(url: string | undefined, dataDir: string): Promise<TrackingStore> {
  const store = url && /^postgres(ql)?:\/\//.test(url) ? new PostgresTracking(url) : new SqliteTracking(resolve(dataDir, 'tracking.sqlite'));
  try {
    await store.migrate();
  } catch (err) {
    await store.close().catch(() => undefined);
    throw err;
  }
  return store;
}

export { PostgresTracking } from './postgres.js';
export { SqliteTracking } from './sqlite.js';
export * from './store.js';
