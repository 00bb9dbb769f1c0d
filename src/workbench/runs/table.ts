import { dataDir as defaultDataDir, oltpUrl } from '../config.js';
import { dict, hasOwn } from '../dict.js';
import type { Figure } from '../display.js';
import { InputError } from '../errors.js';
import { openTracking } from './index.js';
import { LIMITS, type ParamValue, type RunFilter, type TrackedRun, type TrackingStore } from './store.js';

/**
 * Runs as a notebook reads them: a typed table, a flat one to show, runs side by side, and a metric
 * plotted against a parameter.
 */

/** Which runs `runsTable` reads, and from where. */
export interface RunsTableOptions extends RunFilter {
  /** Default `openTracking(oltpUrl(), dataDir())`, closed after reading. */
  store?: TrackingStore;
}

/**
 * Recorded runs, newest first, typed: each with its parameters and its metrics' last values.
 *
 * @example
 * ```ts
 * const runs = await runsTable({ name: 'app-churn', limit: 20 });
 * show(flattenRuns(runs));
 * show(runsPlot(runs, { metric: 'roc_auc', param: 'learningRate' }));
 * ```
 */
export async function runsTable(options: RunsTableOptions = {}): Promise<TrackedRun[]> {
  const store = options.store ?? (await openTracking(oltpUrl(), defaultDataDir()));
  try {
    return await store.listRuns({ name: options.name, status: options.status, ref: options.ref, limit: options.limit });
  } finally {
    if (!options.store) await store.close();
  }
}

/** One row of `flattenRuns`: fixed columns, then `params.<name>` and `metrics.<name>`. */
export type FlatRun = Record<string, string | number | boolean | null>;

/**
 * Runs as flat rows for `show`: id, name, status, start, seconds, then a `params.<name>` column per
 * parameter and a `metrics.<name>` column per metric (MLflow's `search_runs` layout). A run without
 * a value has null there.
 *
 * @example
 * ```ts
 * show(flattenRuns(await runsTable({ name: 'app-churn' })), { caption: 'app-churn runs' });
 * ```
 */
export function flattenRuns(runs: readonly TrackedRun[]): FlatRun[] {
  const params = [...new Set(runs.flatMap((r) => Object.keys(r.params)))].sort();
  const metrics = [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))].sort();
  return runs.map((r) => {
    const row: FlatRun = dict<string | number | boolean | null>([
      ['id', r.id],
      ['name', r.name],
      ['status', r.status],
      ['started', r.startedAt],
      ['seconds', r.endedAt ? (Date.parse(r.endedAt) - Date.parse(r.startedAt)) / 1000 : null],
    ]);
    for (const p of params) row[`params.${p}`] = hasOwn(r.params, p) ? r.params[p]! : null;
    for (const m of metrics) row[`metrics.${m}`] = hasOwn(r.metrics, m) ? r.metrics[m]! : null;
    return row;
  });
}

/** One parameter or metric across runs: each run's value (undefined when it has none), and whether they differ. */
export interface ComparedValue {
  key: string;
  values: (ParamValue | undefined)[];
  differs: boolean;
}

/** Runs side by side (see `compareRuns`). */
export interface RunComparison {
  runs: { id: string; name: string; status: string; startedAt: string; gitCommit: string | null; dataSnapshot: string | null }[];
  /** Parameters, by name, plus the run's code and data (`git commit`, `data snapshot`). */
  params: ComparedValue[];
  metrics: ComparedValue[];
}

/**
 * Runs side by side: every parameter and metric any of them has, each run's value, and whether the
 * values differ (a value one run lacks differs from any value). What `wb runs compare` prints.
 *
 * @example
 * ```ts
 * const [latest, previous] = await runsTable({ name: 'app-churn', limit: 2 });
 * show(compareRuns([latest, previous]).metrics.filter((m) => m.differs));
 * ```
 */
export function compareRuns(runs: readonly TrackedRun[]): RunComparison {
  if (runs.length < 2) throw new InputError(`comparing needs at least two runs, got ${runs.length}`);
  const side = (keys: string[], value: (r: TrackedRun, k: string) => ParamValue | undefined): ComparedValue[] =>
    keys.map((key) => {
      const values = runs.map((r) => value(r, key));
      const first = JSON.stringify(values[0] ?? '\u0000undefined');
      return { key, values, differs: values.some((v) => JSON.stringify(v ?? '\u0000undefined') !== first) };
    });
  const params = [...new Set(runs.flatMap((r) => Object.keys(r.params)))].sort();
  const metrics = [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))].sort();
  return {
    runs: runs.map((r) => ({ id: r.id, name: r.name, status: r.status, startedAt: r.startedAt, gitCommit: r.gitCommit, dataSnapshot: r.dataSnapshot })),
    params: [
      ...side(['git commit', 'data snapshot'], (r, k) => (k === 'git commit' ? r.gitCommit : r.dataSnapshot) ?? undefined),
      ...side(params, (r, k) => (hasOwn(r.params, k) ? r.params[k] : undefined)),
    ],
    metrics: side(metrics, (r, k) => (hasOwn(r.metrics, k) ? r.metrics[k] : undefined)),
  };
}

/**
 * A metric against a parameter over runs, one point per run and one trace per run name, for `show`.
 * A numeric parameter is a numeric axis; text makes a categorical one. Runs without both values
 * are left out and counted in the title.
 *
 * @example
 * ```ts
 * show(runsPlot(await runsTable({ name: 'app-churn' }), { metric: 'roc_auc', param: 'learningRate' }));
 * ```
 */
export function runsPlot(runs: readonly TrackedRun[], options: { metric: string; param: string; title?: string }): Figure {
  const { metric, param } = options;
  if (typeof metric !== 'string' || typeof param !== 'string') throw new InputError('runsPlot needs { metric, param }: a metric name and a parameter name');
  const usable = runs.filter((r) => hasOwn(r.metrics, metric) && hasOwn(r.params, param) && r.params[param] !== null);
  const left = runs.length - usable.length;
  const names = [...new Set(usable.map((r) => r.name))];
  const numeric = usable.every((r) => typeof r.params[param] === 'number');
  const data = names.map((name) => {
    const points = usable.filter((r) => r.name === name);
    if (numeric) points.sort((a, b) => (a.params[param] as number) - (b.params[param] as number));
    return {
      type: 'scatter',
      mode: 'markers',
      name,
      x: points.map((r) => (numeric ? r.params[param] : String(r.params[param]))),
      y: points.map((r) => r.metrics[metric]),
      text: points.map((r) => `run ${r.id} (${r.status}, ${r.startedAt.slice(0, 16)})`),
      hovertemplate: `${escapeTemplate(param)} %{x}<br>${escapeTemplate(metric)} %{y}<br>%{text}<extra></extra>`,
      marker: { size: 9 },
    };
  });
  const title =
    options.title ?? `${metric} by ${param} over ${usable.length} run${usable.length === 1 ? '' : 's'}${left > 0 ? ` (${left} without both left out)` : ''}`;
  return {
    data,
    layout: {
      title: { text: escapeTemplate(title.slice(0, LIMITS.key)) },
      xaxis: { title: { text: escapeTemplate(param) }, type: numeric ? 'linear' : 'category' },
      yaxis: { title: { text: escapeTemplate(metric) } },
      showlegend: names.length > 1,
    },
  };
}

/** plotly reads HTML tags and %{...} in titles and hover templates: a name is shown as text. */
function escapeTemplate(s: string): string {
  return s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('%{', '%\u200b{');
}
