import { oltpUrl } from '../config.js';
import type { Dag, JobContext } from '../jobs/dag.js';
import type { Lakehouse, Row } from '../lakehouse.js';
import { bootstrapIntervals, pairedBootstrap, type MetricIntervals } from '../models/bootstrap.js';
import { loadClassifier } from '../models/bundle.js';
import type { GateRecord } from '../models/card.js';
import type { Classifier } from '../models/train.js';
import { openTracking } from './index.js';
import { startRun, type ActiveRun } from './run.js';
import { modelRef, type ParamValue, type TrackingStore } from './store.js';

/**
 * A training DAG that records itself as a run (see `startRun`): the run starts with the DAG's first
 * step and its parameters (the admin key left out, passwords in URLs masked), takes the lakehouse
 * snapshot once the training set is built, then each step's numbers as metrics; after training,
 * the test rows' bootstrap intervals (also handed to the publish step, for the bundle's
 * `metrics.intervals`); after the gate, its decision and the champion scored on the same rows
 * (`pairedBootstrap`); after publishing, the model version. A failed step fails the run.
 *
 * It reads what the training DAG's steps leave in `state` (`lake`, `data`, `trained`, `gate`),
 * so it wraps those DAGs only (src/workbench/jobs/training.ts).
 */
export interface TrackedDagSpec {
  dag: string;
  model: string;
  label: string;
  description: string;
  minAuc: number;
  /** How far below the champion's ROC AUC the gate lets a challenger be. */
  tolerance: number;
}

/** The state keys this wrapper owns; `intervals` is read by the publish step. */
const RUN = 'tracking:run';
const STORE = 'tracking:store';
const FAILED = 'tracking:failed';
const SCORES = 'tracking:test-scores';
export const INTERVALS_STATE = 'intervals';

/**
 * The DAG with every step recorded in a run.
 *
 * @example
 * ```ts
 * const dag = trackRuns({ dag: 'app-churn', model: 'app-churn', label: 'churned', description: 'churn', minAuc: 0.65, tolerance: 0.005 }, untracked);
 * ```
 */
export function trackRuns(spec: TrackedDagSpec, dag: Dag): Dag {
  return {
    ...dag,
    jobs: dag.jobs.map((job) => ({
      ...job,
      async run(ctx: JobContext) {
        if (!ctx.state.has(RUN)) await start(spec, ctx);
        const run = ctx.state.get(RUN) as ActiveRun;
        let out: Record<string, unknown>;
        try {
          // (Written for the TypeScript of tslab too, which types `void ?? {}` as void.)
          out = ((await job.run(ctx)) || {}) as Record<string, unknown>;
          await after(spec, job.name, ctx, out, run);
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          ctx.state.set(FAILED, true);
          await run.artifact('error', { step: job.name, message: message.slice(0, 10_000) }).catch(() => undefined);
          throw err;
        }
        return out;
      },
    })),
    async cleanup(state) {
      try {
        const run = state.get(RUN) as ActiveRun | undefined;
        if (run && !run.ended) await run.end(state.has(FAILED) ? 'failed' : 'finished');
      } finally {
        await (state.get(STORE) as TrackingStore | undefined)?.close();
        await dag.cleanup?.(state);
      }
    },
  };
}

async function start(spec: TrackedDagSpec, ctx: JobContext): Promise<void> {
  const params = new Map<string, ParamValue>([
    ['dag', spec.dag],
    ['model', spec.model],
  ]);
  for (const [k, v] of Object.entries(ctx.params)) {
    if (k === 'key') continue; // an admin key is a secret, not a parameter
    params.set(k, typeof v === 'string' ? maskPassword(v) : v);
  }
  params.set('minAuc', ctx.params.minAuc !== undefined ? Number(ctx.params.minAuc) : spec.minAuc);
  params.set('tolerance', spec.tolerance);
  const store = await openTracking(ctx.params.oltp ?? oltpUrl(), ctx.dataDir);
  ctx.state.set(STORE, store);
  ctx.state.set(RUN, await startRun({ name: spec.model, params, source: `job:${spec.dag}`, description: spec.description, store }));
}

async function after(spec: TrackedDagSpec, step: string, ctx: JobContext, out: Record<string, unknown>, run: ActiveRun): Promise<void> {
  const { state } = ctx;
  const numbers = (rename: (k: string) => string = (k) => k) =>
    new Map(Object.entries(out).flatMap(([k, v]) => (typeof v === 'number' ? [[rename(k), v] as const] : [])));
  if (step === 'training-set') {
    const lake = state.get('lake') as Lakehouse | undefined;
    if (lake) await run.data(lake);
    await run.log(numbers((k) => (k === 'seconds' ? 'training_set_seconds' : k)));
    return;
  }
  if (step === 'train') {
    await run.log(numbers());
    const trained = state.get('trained') as { model: Classifier } | undefined;
    const texts = Object.entries(out).filter((e): e is [string, string | boolean] => typeof e[1] === 'string' || typeof e[1] === 'boolean');
    await run.logParams(new Map<string, ParamValue>([...texts, ...(trained ? [['model_kind', trained.model.kind] as const] : [])]));
    const test = (state.get('data') as { test?: Row[] } | undefined)?.test;
    if (!trained || !test) return;
    const labels = test.map((r) => Number(r[spec.label]));
    const positives = labels.filter((l) => l === 1).length;
    if (positives === 0 || positives === labels.length) return; // no ROC AUC, so no interval: the gate says why
    const scores = trained.model.predict(test);
    state.set(SCORES, scores);
    const intervals = bootstrapIntervals(labels, scores);
    state.set(INTERVALS_STATE, intervals);
    await run.artifact('intervals', intervals);
    await run.log(intervalMetrics(intervals));
    return;
  }
  if (step === 'evaluate-vs-champion') {
    const gate: GateRecord = {
      passed: out.passed === true,
      reasons: out.passed === true || typeof out.reason !== 'string' ? [] : out.reason.split('; '),
      minAuc: ctx.params.minAuc !== undefined ? Number(ctx.params.minAuc) : spec.minAuc,
      tolerance: spec.tolerance,
      rocAuc: Number(out.challenger_roc_auc),
      championVersion: typeof out.champion_version === 'string' ? out.champion_version : null,
      championRocAuc: typeof out.champion_roc_auc === 'number' ? out.champion_roc_auc : null,
      ...(typeof out.challenger_brier === 'number' && typeof out.base_rate_brier === 'number'
        ? {
            checks: [
              {
                name: "Brier score below the base rate's",
                passed: out.challenger_brier < out.base_rate_brier,
                detail: `${out.challenger_brier.toFixed(5)} against ${out.base_rate_brier.toFixed(5)} for predicting the base rate`,
              },
            ],
          }
        : {}),
    };
    await run.artifact('gate', gate);
    await run.log({ gate_passed: gate.passed ? 1 : 0 });
    const scores = state.get(SCORES) as Float32Array | undefined;
    if (gate.championVersion && gate.championRocAuc !== null && scores) await compareWithChampion(spec, ctx, run, gate.championVersion, scores);
    return;
  }
  if (step === 'publish' && out.published === true && typeof out.version === 'string') {
    await run.artifact(
      'model',
      { name: spec.model, version: out.version, alias: out.alias ?? null, to: out.to ?? null },
      { ref: modelRef(spec.model, out.version) },
    );
  }
}

/** The champion of the moment scored on the challenger's test rows, both with paired bootstrap intervals (run artefact `champion`). */
async function compareWithChampion(spec: TrackedDagSpec, ctx: JobContext, run: ActiveRun, version: string, scores: Float32Array): Promise<void> {
  const test = (ctx.state.get('data') as { test: Row[] }).test;
  const bundle = await (await ctx.registry()).getAsync(version);
  const champion = await loadClassifier(bundle);
  let championScores: Float32Array;
  try {
    championScores = champion.predict(test);
  } finally {
    champion.dispose();
  }
  const comparison = pairedBootstrap(
    test.map((r) => Number(r[spec.label])),
    scores,
    championScores,
  );
  await run.artifact('champion', { version, comparison });
  await run.log({
    champion_roc_auc: comparison.champion.rocAuc.estimate,
    roc_auc_vs_champion: comparison.difference.rocAuc.estimate,
    roc_auc_vs_champion_lower: comparison.difference.rocAuc.lower,
    roc_auc_vs_champion_upper: comparison.difference.rocAuc.upper,
  });
}

function intervalMetrics(i: MetricIntervals): Map<string, number> {
  return new Map([
    ['roc_auc_lower', i.rocAuc.lower],
    ['roc_auc_upper', i.rocAuc.upper],
    ['brier_lower', i.brier.lower],
    ['brier_upper', i.brier.upper],
  ]);
}

/** A URL's password replaced by ***; other text as it is. */
function maskPassword(value: string): string {
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*):[^@/]*@/i, '$1:***@');
}
