import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError, NotFoundError } from '../errors.js';
import { writeFileAtomic } from '../files.js';

export type StepStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped';

/** One step of a run: its status, timing, and the small JSON outputs it handed on (or its error). */
export interface StepRecord {
  job: string;
  status: StepStatus;
  started_at?: string;
  ended_at?: string;
  outputs?: Record<string, unknown>;
  error?: string;
}

/** The record of one DAG run: its parameters, status, and each step with its timing and output. */
export interface RunRecord {
  run_id: string;
  dag: string;
  status: 'running' | 'succeeded' | 'failed';
  started_at: string;
  ended_at?: string;
  params: Record<string, string>;
  /** Who started it: `cli`, `schedule`, `api:<key name>`. */
  trigger: string;
  steps: StepRecord[];
}

/** Which runs `list` returns: of one DAG, at most `limit` (default 50), newest first. */
export interface RunFilter {
  dag?: string;
  limit?: number;
}

/**
 * Where job run records live. A run's record is saved whole each time a step moves (the last save
 * wins), so a store needs no more than put, get and list. `RunStore` keeps them in the data dir
 * (one instance, notebooks); `PostgresRunStore` in the OLTP's PostgreSQL, where every service
 * instance and `wb jobs` see the same runs.
 */
export interface JobRunStore {
  /** Where the records are, for messages. */
  readonly location: string;
  /** Writes the record under its `run_id`, replacing what was there. */
  save(run: RunRecord): Promise<void>;
  /** The run's record; `InputError` for a malformed id, `NotFoundError` when there is none. */
  get(runId: string): Promise<RunRecord>;
  /** Runs, newest first. */
  list(filter?: RunFilter): Promise<RunRecord[]>;
  close(): Promise<void>;
}

/** Refuses what is not a run id (`newRunId` makes `<dag>-<yyyymmddhhmmss>-<hex>`): ids come from URLs and flags and name files. */
export function checkJobRunId(runId: string): void {
  if (typeof runId !== 'string' || !/^[a-z0-9-]{1,100}$/.test(runId)) throw new InputError(`${JSON.stringify(runId)} is not a run id`);
}

/** The number of runs a list returns: 50 unless told, at least 1. */
export function runLimit(filter: RunFilter): number {
  return Math.max(1, Math.floor(filter.limit ?? 50));
}

/**
 * Job run records in a directory: one JSON file per run, rewritten as steps progress. The store of
 * a single instance and of notebooks; `openJobRuns` picks PostgreSQL when the OLTP is there.
 *
 * @example
 * ```ts
 * const runs = RunStore.forDataDir(dataDir());
 * show((await runs.list({ dag: 'app-churn', limit: 5 })).map((r) => ({ run: r.run_id, status: r.status })));
 * ```
 */
export class RunStore implements JobRunStore {
  constructor(readonly dir: string) {}

  /** The data dir's run records, `<data dir>/jobs/runs`. */
  static forDataDir(dataDir: string): RunStore {
    return new RunStore(join(dataDir, 'jobs', 'runs'));
  }

  get location(): string {
    return this.dir;
  }

  async save(run: RunRecord): Promise<void> {
    checkJobRunId(run.run_id);
    mkdirSync(this.dir, { recursive: true });
    writeFileAtomic(join(this.dir, `${run.run_id}.json`), `${JSON.stringify(run, null, 2)}\n`);
  }

  async get(runId: string): Promise<RunRecord> {
    checkJobRunId(runId);
    const path = join(this.dir, `${runId}.json`);
    if (!existsSync(path)) throw new NotFoundError(`no job run ${runId}`);
    return JSON.parse(readFileSync(path, 'utf8')) as RunRecord;
  }

  async list(filter: RunFilter = {}): Promise<RunRecord[]> {
    if (!existsSync(this.dir)) return [];
    const runs = readdirSync(this.dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => JSON.parse(readFileSync(join(this.dir, f), 'utf8')) as RunRecord)
      .filter((r) => !filter.dag || r.dag === filter.dag)
      .sort((a, b) => (a.started_at < b.started_at ? 1 : a.started_at > b.started_at ? -1 : 0));
    return runs.slice(0, runLimit(filter));
  }

  async close(): Promise<void> {
    // Nothing held open: each call reads or writes its files.
  }
}
