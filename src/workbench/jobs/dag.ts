import { randomBytes } from 'node:crypto';
import { registryDir } from '../config.js';
import { InputError } from '../errors.js';
import { ModelRegistry } from '../models/registry.js';
import { silentProgress, type Progress } from '../progress.js';
import { RunStore, type JobRunStore, type RunRecord } from './run-store.js';

/**
 * Jobs and DAGs: the same training code as the notebooks, run as steps that depend on each other,
 * each step's outcome recorded. A step hands small JSON outputs to the run record (what people read)
 * and large objects (a lakehouse handle, a trained model) to later steps through `state`.
 */
export interface JobContext {
  dataDir: string;
  /** `--param key=value` given to the run. */
  params: Readonly<Record<string, string>>;
  /** Outputs of the steps this one needs, by step name. */
  inputs: Readonly<Record<string, Record<string, unknown>>>;
  /** Objects shared between the steps of one run. */
  state: Map<string, unknown>;
  progress: Progress;
  /** The model registry the run reads and publishes to (opened once per run, on first use). */
  registry(): Promise<ModelRegistry>;
}

/** One step of a DAG: its name, the steps it needs and what it runs. */
export interface Job {
  name: string;
  needs?: string[];
  run(ctx: JobContext): Promise<Record<string, unknown> | void>;
}

/** A named sequence of jobs that `runDag` runs in order, each after the jobs it needs. */
export interface Dag {
  name: string;
  description: string;
  jobs: Job[];
  /** Releases what steps left in `state` (open files, models); called after every run. */
  cleanup?(state: Map<string, unknown>): Promise<void> | void;
}

export { RunStore, type JobRunStore, type RunFilter, type RunRecord, type StepRecord, type StepStatus } from './run-store.js';

/** The steps in an order where each comes after what it needs; refuses unknown needs and cycles. */
export function topologicalOrder(dag: Dag): Job[] {
  const byName = new Map(dag.jobs.map((j) => [j.name, j]));
  const order: Job[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (job: Job, path: string[]) => {
    if (state.get(job.name) === 'done') return;
    if (state.get(job.name) === 'visiting') throw new InputError(`DAG ${dag.name} has a cycle: ${[...path, job.name].join(' -> ')}`);
    state.set(job.name, 'visiting');
    for (const need of job.needs ?? []) {
      const dep = byName.get(need);
      if (!dep) throw new InputError(`DAG ${dag.name}: step ${job.name} needs ${need}, which is not a step (steps: ${[...byName.keys()].join(', ')})`);
      visit(dep, [...path, job.name]);
    }
    state.set(job.name, 'done');
    order.push(job);
  };
  for (const job of dag.jobs) visit(job, []);
  return order;
}

export function newRunId(dag: string): string {
  return `${dag}-${new Date()
    .toISOString()
    .replace(/[-:.TZ]/g, '')
    .slice(0, 14)}-${randomBytes(3).toString('hex')}`;
}

/**
 * Runs a DAG's steps in order, recording each; a failed step fails the run and skips what depends
 * on it (and everything after: a run stops at its first failure).
 *
 * @example
 * ```ts
 * const run = await runDag(findDag('app-churn'), { dataDir: dataDir(), params: { alias: 'challenger' } });
 * console.log(run.status);
 * ```
 */
export async function runDag(
  dag: Dag,
  options: {
    dataDir: string;
    params?: Record<string, string>;
    progress?: Progress;
    trigger?: string;
    runId?: string;
    /** Where the run is recorded (default the data dir's `RunStore`; the CLI passes PostgreSQL's when the OLTP is there). */
    store?: JobRunStore;
    /** Opens the registry (default the data dir's; the CLI passes the shared one when the OLTP is PostgreSQL). */
    openRegistry?: () => Promise<ModelRegistry>;
  },
): Promise<RunRecord> {
  const order = topologicalOrder(dag);
  const store = options.store ?? RunStore.forDataDir(options.dataDir);
  const progress = options.progress ?? silentProgress;
  const run: RunRecord = {
    run_id: options.runId ?? newRunId(dag.name),
    dag: dag.name,
    status: 'running',
    started_at: new Date().toISOString(),
    params: { ...options.params },
    trigger: options.trigger ?? 'cli',
    steps: order.map((j) => ({ job: j.name, status: 'pending' })),
  };
  await store.save(run);
  const outputs: Record<string, Record<string, unknown>> = {};
  const state = new Map<string, unknown>();
  let opened: Promise<ModelRegistry> | undefined;
  const registry = () => (opened ??= options.openRegistry ? options.openRegistry() : Promise.resolve(ModelRegistry.open(registryDir(options.dataDir))));
  try {
    for (const [i, job] of order.entries()) {
      const step = run.steps[i]!;
      if (run.status === 'failed') {
        step.status = 'skipped';
        continue;
      }
      step.status = 'running';
      step.started_at = new Date().toISOString();
      await store.save(run);
      progress.log(`[${dag.name}] ${job.name}...`);
      try {
        const inputs = Object.fromEntries((job.needs ?? []).map((n) => [n, outputs[n] ?? {}]));
        // (Written for the TypeScript of tslab too, which types `void ?? {}` as void.)
        const out = ((await job.run({ dataDir: options.dataDir, params: run.params, inputs, state, progress, registry })) || {}) as Record<string, unknown>;
        outputs[job.name] = out;
        step.outputs = JSON.parse(JSON.stringify(out)) as Record<string, unknown>;
        step.status = 'succeeded';
        progress.log(`[${dag.name}] ${job.name}: ${summary(out)}`);
      } catch (err) {
        step.status = 'failed';
        step.error = (err as Error).message ?? String(err);
        run.status = 'failed';
        progress.log(`[${dag.name}] ${job.name} FAILED: ${step.error}`);
      }
      step.ended_at = new Date().toISOString();
      await store.save(run);
    }
  } finally {
    await dag.cleanup?.(state);
    if (opened) await (await opened.catch(() => undefined))?.close();
  }
  if (run.status === 'running') run.status = 'succeeded';
  run.ended_at = new Date().toISOString();
  await store.save(run);
  return run;
}

function summary(out: Record<string, unknown>): string {
  const parts = Object.entries(out).map(
    ([k, v]) => `${k}=${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(4) : typeof v === 'object' ? JSON.stringify(v) : String(v)}`,
  );
  return parts.join(', ') || 'done';
}
