import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { ConflictError, InputError, NotFoundError } from '../../workbench/errors.js';
import { newRunId, type RunRecord } from '../../workbench/jobs/dag.js';
import { RunStore, type JobRunStore } from '../../workbench/jobs/run-store.js';
import { findDag } from '../../workbench/jobs/training.js';

export interface ScheduleEntry {
  dag: string;
  everyMs: number;
}

export interface SchedulerLog {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

const WB = resolve(__dirname, '../../../bin/wb.cjs');

/**
 * Runs training DAGs inside the service's lifetime, each in a child process (`wb jobs run`), so
 * training never holds up the event loop that answers requests. A DAG runs at most once at a time;
 * scheduled runs start every `everyMs` from the service's start. A job publishes to the data dir's
 * registry, which the model server follows. A child that dies without finishing its record gets
 * its run marked failed here.
 *
 * The schedule is a singleton of the cluster: with `paused`, nothing is scheduled until `resume()`
 * (the service calls it when it takes the scheduler's lease, and `pause()` when it loses it, which
 * also ends the scheduled runs in flight: the new holder schedules from its own start). Runs started
 * by hand (`start`) run on the instance asked, whatever the lease.
 *
 * Run records are in `runs`: the data dir's by default; with a PostgreSQL OLTP the service passes
 * its `job_runs` table, where its job processes (told WB_OLTP_URL) record, so every instance lists
 * every run. The scheduler owns the store and closes it in `stop()`.
 */
export class JobScheduler {
  private readonly running = new Map<string, { runId: string; child: ChildProcess; trigger: string }>();
  private timers: NodeJS.Timeout[] = [];
  private on = false;
  private readonly nextAt = new Map<string, number>();
  readonly runs: JobRunStore;
  /** Records of dead job processes being written, which `stop()` waits for before closing `runs`. */
  private readonly recording = new Set<Promise<void>>();

  /** The job processes' environment: the service's, with its OLTP (and so its registry) named. */
  private readonly env: NodeJS.ProcessEnv;

  constructor(
    private readonly dataDir: string,
    readonly schedule: readonly ScheduleEntry[],
    private readonly log: SchedulerLog,
    options: { paused?: boolean; env?: Readonly<Record<string, string>>; runs?: JobRunStore } = {},
  ) {
    this.env = { ...process.env, ...options.env };
    this.runs = options.runs ?? RunStore.forDataDir(dataDir);
    for (const entry of schedule) findDag(entry.dag);
    if (!options.paused) this.resume();
  }

  /** Whether the schedule runs here. */
  get active(): boolean {
    return this.on;
  }

  /** Starts the schedule, every entry `everyMs` from now (idempotent). */
  resume(): void {
    if (this.on) return;
    this.on = true;
    for (const entry of this.schedule) {
      this.nextAt.set(entry.dag, Date.now() + entry.everyMs);
      const timer = setInterval(() => {
        this.nextAt.set(entry.dag, Date.now() + entry.everyMs);
        if (this.running.has(entry.dag)) return this.log.info({ dag: entry.dag }, 'scheduled run skipped: the previous one is still running');
        this.start(entry.dag, 'schedule');
      }, entry.everyMs);
      timer.unref();
      this.timers.push(timer);
    }
  }

  /** Stops scheduling and ends the scheduled runs in flight (recorded as failed); runs started by hand go on. */
  async pause(): Promise<void> {
    this.on = false;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.nextAt.clear();
    await this.end([...this.running.values()].filter((r) => r.trigger === 'schedule'));
  }

  /** Starts a run now; refuses while one of the same DAG runs. Returns its id. */
  start(dag: string, trigger: string, params: Record<string, string> = {}): string {
    findDag(dag);
    const current = this.running.get(dag);
    if (current) throw new ConflictError(`${dag} is already running (run ${current.runId}); wait for it to finish`);
    const runId = newRunId(dag);
    const args = [
      WB,
      '--data-dir',
      this.dataDir,
      'jobs',
      'run',
      dag,
      '--run-id',
      runId,
      '--trigger',
      trigger,
      ...Object.entries(params).flatMap(([k, v]) => ['--param', `${k}=${v}`]),
    ];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: this.env });
    this.running.set(dag, { runId, child, trigger });
    this.log.info({ dag, runId, trigger }, 'job run started');
    const forward = (data: Buffer) => {
      for (const line of data.toString().split('\n')) if (line.trim()) this.log.info({ dag, runId }, line.trim());
    };
    child.stdout!.on('data', forward);
    child.stderr!.on('data', forward);
    child.once('exit', (code, signal) => {
      this.running.delete(dag);
      const recorded = this.recordExit({ runId, dag, trigger, params }, code, signal)
        .catch((err: unknown) => this.log.error({ err, dag, runId }, 'cannot record the end of a job run'))
        .finally(() => this.recording.delete(recorded));
      this.recording.add(recorded);
    });
    return runId;
  }

  status(): { dag: string; everyMs?: number; nextAt?: string; running?: string }[] {
    const dags = new Set([...this.schedule.map((s) => s.dag), ...this.running.keys()]);
    return [...dags].map((dag) => ({
      dag,
      everyMs: this.schedule.find((s) => s.dag === dag)?.everyMs,
      nextAt: this.nextAt.has(dag) ? new Date(this.nextAt.get(dag)!).toISOString() : undefined,
      running: this.running.get(dag)?.runId,
    }));
  }

  /** Stops scheduling and ends running jobs (their runs are recorded as failed), then closes `runs`. */
  async stop(): Promise<void> {
    this.on = false;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.end([...this.running.values()]);
    while (this.recording.size) await Promise.all([...this.recording]);
    await this.runs.close();
  }

  /** Marks the run failed when its process died before finishing its record (or before writing one). */
  private async recordExit(
    run: { runId: string; dag: string; trigger: string; params: Record<string, string> },
    code: number | null,
    signal: NodeJS.Signals | null,
  ): Promise<void> {
    const { runId, dag } = run;
    let record: RunRecord | undefined;
    try {
      record = await this.runs.get(runId);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      record = undefined;
    }
    if (record && record.status !== 'running') return this.log.info({ dag, runId, status: record.status }, 'job run ended');
    const failed: RunRecord = record ?? {
      run_id: runId,
      dag,
      status: 'failed',
      started_at: new Date().toISOString(),
      params: run.params,
      trigger: run.trigger,
      steps: [],
    };
    failed.status = 'failed';
    failed.ended_at = new Date().toISOString();
    for (const s of failed.steps) if (s.status === 'running' || s.status === 'pending') s.status = s.status === 'running' ? 'failed' : 'skipped';
    failed.steps.push({ job: '(process)', status: 'failed', error: `the job process exited with ${signal ?? `code ${code}`} before finishing` });
    await this.runs.save(failed);
    this.log.error({ dag, runId, code, signal }, 'job run died');
  }

  private async end(runs: readonly { child: ChildProcess }[]): Promise<void> {
    await Promise.all(
      runs.map(
        ({ child }) =>
          new Promise<void>((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            child.once('exit', () => done());
            child.kill('SIGTERM');
          }),
      ),
    );
  }
}

/** `retail-propensity=24h,app-churn=30m` -> entries; durations in s, m, h or d. */
export function parseSchedule(spec: string): ScheduleEntry[] {
  if (!spec.trim()) return [];
  return spec.split(',').map((part) => {
    const m = /^\s*([a-z0-9-]+)\s*=\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$/.exec(part);
    if (!m) throw new InputError(`schedule ${JSON.stringify(part.trim())}: write dag=every, e.g. retail-propensity=24h (s, m, h or d)`);
    const everyMs = Number(m[2]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[3] as 's' | 'm' | 'h' | 'd'];
    if (everyMs < 10_000) throw new InputError(`schedule ${m[1]}: run at most every 10 seconds`);
    findDag(m[1]!);
    return { dag: m[1]!, everyMs };
  });
}
