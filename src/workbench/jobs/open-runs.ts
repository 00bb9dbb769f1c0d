import { PostgresRunStore } from './run-store-postgres.js';
import { RunStore, type JobRunStore } from './run-store.js';

/**
 * Opens where job run records live, ready: table `job_runs` of the PostgreSQL database when `url`
 * is a `postgres://` URL (the OLTP's, WB_OLTP_URL; `schema` is the OLTP's when it is not on the
 * URL's search_path), else the data dir's `jobs/runs` directory (whatever else the URL names: a
 * single instance's runs stay beside its registry).
 *
 * @example
 * ```ts
 * const runs = await openJobRuns(oltpUrl(), dataDir());
 * show((await runs.list({ limit: 5 })).map((r) => ({ run: r.run_id, dag: r.dag, status: r.status })));
 * await runs.close();
 * ```
 */
export async function openJobRuns(url: string | undefined, dataDir: string, options: { schema?: string | undefined } = {}): Promise<JobRunStore> {
  if (url && /^postgres(ql)?:\/\//.test(url)) return PostgresRunStore.open(url, options);
  return RunStore.forDataDir(dataDir);
}
