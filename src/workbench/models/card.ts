import { z } from 'zod';
import { hasOwn } from '../dict.js';
import { InputError, NotFoundError } from '../errors.js';
import type { Feature } from '../features/definition.js';
import { modelRef, type ParamValue, type TrackedRun, type TrackingStore } from '../runs/store.js';
import type { MetricInterval, MetricIntervals, PairedComparison } from './bootstrap.js';
import type { ModelBundle } from './bundle.js';
import { CalibrationSchema, type Calibration } from './calibration.js';
import type { FeatureDistribution } from './distribution.js';
import type { ModelRegistry } from './registry.js';

/**
 * A model card (Mitchell et al. 2019, "Model Cards for Model Reporting") for each version: what
 * the model is for, where it came from (data snapshot, code, parent, the run that made it), what
 * each input looked like in training, its metrics with bootstrap intervals, its calibration, the
 * gate's decision and the comparison with the champion on the same test rows. Built from the
 * bundle and, when one recorded it, the run; what neither holds is said to be "not recorded".
 *
 * Where each part lives:
 * - in the bundle (a property of the model, the same however often it is published):
 *   `training` (per-feature distributions), `calibration`, and `metrics.intervals`, the percentile
 *   bootstrap intervals of ROC AUC and Brier on the test rows (`bootstrapIntervals`, seeded);
 * - in the run (a property of the moment it was trained: which champion there was), as artefacts:
 *   `gate` (`GateRecord`) and `champion` (`ChampionRecord`, a `pairedBootstrap` on the same rows),
 *   found through the run's `model` artefact (ref `model:<name>@<version>`).
 *
 * A card is data (`ModelCard`), rendered three ways from one list of blocks (`cardBlocks`):
 * Markdown, a standalone HTML page (every value escaped, no script), and the service's page,
 * which draws the blocks as text nodes.
 */

/** The gate's decision on a model, as the training job records it (run artefact `gate`). */
export interface GateRecord {
  passed: boolean;
  /** Why it did not pass (empty when it did). */
  reasons: string[];
  minAuc: number;
  /** How far below the champion's ROC AUC the challenger may be. */
  tolerance: number;
  rocAuc: number;
  championVersion: string | null;
  championRocAuc: number | null;
  /** Other conditions the gate checked (calibration against the base rate, ...), by name, each with its value and threshold. */
  checks?: { name: string; passed: boolean; detail: string }[];
}

/** The champion of the time scored on the challenger's test rows (run artefact `champion`). */
export interface ChampionRecord {
  version: string;
  comparison: PairedComparison;
}

/** One input of the model on its card: its definition and its training distribution (null when the bundle has none). */
export interface CardFeature {
  name: string;
  description: string | null;
  /** The definition in words, e.g. `count of login events over 7d`. */
  definition: string;
  default: string;
  training: FeatureDistribution | null;
}

/** One metric on a card, with its bootstrap interval when one was computed. */
export interface CardMetric {
  name: string;
  value: number;
  interval: MetricInterval | null;
}

/** Everything a model card shows, as data (see `modelCard`). */
export interface ModelCard {
  name: string;
  version: string;
  kind: string;
  label: string;
  /** What the score is: `probability that churned = 1`. */
  output: string;
  purpose: string;
  createdAt: string;
  lineage: { source: string | null; gitCommit: string | null; dataSnapshot: string | null; parent: string | null };
  /** The run that made this version, when one recorded it. */
  run: { id: string; name: string; status: string; startedAt: string; endedAt: string | null; params: Record<string, ParamValue> } | null;
  features: CardFeature[];
  /** Training rows the distributions were taken from. */
  trainingRows: number | null;
  metrics: CardMetric[];
  intervals: MetricIntervals | null;
  calibration: Calibration | null;
  /** The test-set numbers that say how well calibrated the scores are, when recorded. */
  calibrationMetrics: { name: string; value: number }[];
  gate: GateRecord | null;
  champion: ChampionRecord | null;
}

const NOT_RECORDED = 'not recorded';

const Interval = z.object({ estimate: z.number(), lower: z.number(), upper: z.number(), se: z.number() });
const Intervals = z.object({
  method: z.literal('percentile bootstrap'),
  n: z.number(),
  positives: z.number(),
  resamples: z.number(),
  seed: z.number(),
  level: z.number(),
  degenerate: z.number(),
  rocAuc: Interval,
  brier: Interval,
});
const Pair = z.object({ rocAuc: Interval, brier: Interval });
const Gate = z.object({
  passed: z.boolean(),
  reasons: z.array(z.string()),
  minAuc: z.number(),
  tolerance: z.number(),
  rocAuc: z
    .number()
    .nullable()
    .transform((v) => v ?? Number.NaN),
  championVersion: z.string().nullable(),
  championRocAuc: z.number().nullable(),
  checks: z.array(z.object({ name: z.string(), passed: z.boolean(), detail: z.string() })).optional(),
});
const Champion = z.object({
  version: z.string(),
  comparison: z.object({
    method: z.literal('paired percentile bootstrap'),
    n: z.number(),
    positives: z.number(),
    resamples: z.number(),
    seed: z.number(),
    level: z.number(),
    degenerate: z.number(),
    challenger: Pair,
    champion: Pair,
    difference: Pair,
  }),
});

/** The numbers of `metrics` that say how calibrated the scores are, in the order shown. */
const CALIBRATION_METRICS = ['ece', 'meanScore', 'baseRate', 'brier', 'baseRateBrier', 'brierSkill'];
const METRIC_NAMES: Record<string, string> = {
  rocAuc: 'ROC AUC',
  prAuc: 'PR AUC',
  logLoss: 'log loss',
  brier: 'Brier score',
  baseRateBrier: 'Brier score of the base rate (a constant)',
  brierSkill: 'Brier skill score (1 - Brier / base-rate Brier)',
  ece: 'expected calibration error (10 equal-mass bins)',
  meanScore: 'mean score',
  baseRate: 'base rate (share of positives)',
  trainRows: 'training rows',
  testRows: 'test rows',
};

/**
 * The card of a model version: from its bundle and, when given, the run that made it (whose
 * description is the purpose, whose artefacts hold the gate and the champion comparison).
 *
 * @example
 * ```ts
 * const card = modelCard(bundle, { purpose: 'Which users to offer a discount before they churn.' });
 * displayMarkdown(cardMarkdown(card)); // in a notebook
 * ```
 */
export function modelCard(bundle: ModelBundle, options: { run?: TrackedRun | null; purpose?: string } = {}): ModelCard {
  const run = options.run ?? null;
  const training = bundle.training;
  const distributions = new Map((training?.features ?? []).map((d) => [d.feature, d]));
  const metrics = bundle.metrics ?? {};
  const intervalsParsed = Intervals.safeParse(hasOwn(metrics, 'intervals') ? metrics.intervals : undefined);
  const intervals = intervalsParsed.success ? (intervalsParsed.data as MetricIntervals) : null;
  const numbers = Object.entries(metrics).filter((e): e is [string, number] => typeof e[1] === 'number');
  // Checked again: a card may be made of a bundle that was never verified (built in a notebook, read from JSON).
  const calibration = bundle.calibration === undefined ? null : CalibrationSchema.safeParse(bundle.calibration);
  const artefact = (name: string) => run?.artifacts.find((a) => a.name === name)?.value;
  const gate = Gate.safeParse(artefact('gate'));
  const champion = Champion.safeParse(artefact('champion'));
  const purpose =
    options.purpose ??
    run?.description ??
    `Scores the ${bundle.signature?.output ?? `probability that ${bundle.label} = 1`}. What it is for was ${NOT_RECORDED}: pass a description to startRun or a purpose to modelCard.`;
  return {
    name: bundle.name,
    version: bundle.version,
    kind: bundle.kind,
    label: bundle.label,
    output: bundle.signature?.output ?? `probability that ${bundle.label} = 1`,
    purpose,
    createdAt: bundle.lineage.createdAt,
    lineage: {
      source: bundle.lineage.source ?? null,
      gitCommit: bundle.lineage.gitCommit ?? null,
      dataSnapshot: bundle.lineage.dataSnapshot ?? null,
      parent: bundle.lineage.parent ?? null,
    },
    run: run ? { id: run.id, name: run.name, status: run.status, startedAt: run.startedAt, endedAt: run.endedAt, params: run.params } : null,
    features: bundle.features.map((f) => ({
      name: f.name,
      description: f.description ?? null,
      definition: definitionOf(f),
      default: JSON.stringify(f.default),
      training: distributions.get(f.name) ?? null,
    })),
    trainingRows: training?.rows ?? null,
    metrics: numbers
      .filter(([name]) => !CALIBRATION_METRICS.includes(name) || name === 'brier')
      .map(([name, value]) => ({
        name,
        value,
        interval: intervals && name === 'rocAuc' ? intervals.rocAuc : intervals && name === 'brier' ? intervals.brier : null,
      }))
      .concat(
        // Intervals computed without the bare number in metrics still show.
        intervals && !numbers.some(([n]) => n === 'rocAuc') ? [{ name: 'rocAuc', value: intervals.rocAuc.estimate, interval: intervals.rocAuc }] : [],
        intervals && !numbers.some(([n]) => n === 'brier') ? [{ name: 'brier', value: intervals.brier.estimate, interval: intervals.brier }] : [],
      ),
    intervals,
    calibration: calibration?.success ? (calibration.data as Calibration) : null,
    calibrationMetrics: CALIBRATION_METRICS.flatMap((name) => {
      const v = hasOwn(metrics, name) ? metrics[name] : undefined;
      return typeof v === 'number' ? [{ name, value: v }] : [];
    }),
    // (Typed for tslab's TypeScript too, which reads zod's nullable fields as optional without strictNullChecks.)
    gate: gate.success ? (gate.data as GateRecord) : null,
    champion: champion.success ? (champion.data as ChampionRecord) : null,
  };
}

/**
 * The card of a stored version: `version` is a version or an alias (default `champion`, else the
 * newest version); the run that made it is looked up in `store` when one is given.
 *
 * @example
 * ```ts
 * const store = await openTracking(oltpUrl(), dataDir());
 * const card = await loadModelCard(ModelRegistry.open(registryDir()), 'app-churn', 'champion', store);
 * console.log(cardMarkdown(card));
 * await store.close();
 * ```
 */
export async function loadModelCard(registry: ModelRegistry, name: string, version?: string, store?: TrackingStore): Promise<ModelCard> {
  const resolved = resolveVersion(registry, name, version);
  const bundle = registry.get(resolved);
  if (bundle.name !== name) throw new NotFoundError(`version ${resolved} is a version of ${bundle.name}, not of ${name}`);
  const [run] = store ? await store.listRuns({ ref: modelRef(bundle.name, bundle.version), limit: 1 }) : [];
  return modelCard(bundle, { run: run ?? null });
}

/** A version, or an alias of the model, or (none given) its champion, else its newest version. */
export function resolveVersion(registry: ModelRegistry, name: string, version?: string): string {
  if (version !== undefined && /^[0-9a-f]{16}$/.test(version)) return version;
  if (version !== undefined) {
    if (!/^[a-z][a-z0-9_-]{0,31}$/.test(version))
      throw new InputError(`${JSON.stringify(version.slice(0, 40))} is neither a version (16 hex digits) nor an alias`);
    const v = registry.resolve(name, version);
    if (!v) throw new NotFoundError(`model ${name} has no alias ${version}`);
    return v;
  }
  const champion = registry.resolve(name, 'champion');
  if (champion) return champion;
  const newest = registry.list(name).find((v) => !('error' in v));
  if (!newest) throw new NotFoundError(`no model named ${name} in the registry`);
  return newest.version;
}

// ---------------------------------------------------------------------------------------------
// Rendering: one list of blocks, three renderers.

/** A piece of a rendered card: all text, never markup. */
export type CardBlock =
  | { kind: 'heading'; level: 1 | 2; text: string }
  | { kind: 'text'; text: string }
  | { kind: 'facts'; rows: [string, string][] }
  | { kind: 'table'; columns: string[]; rows: string[][]; numeric: boolean[] };

/**
 * The card as blocks of text, in order: what every rendering draws.
 *
 * @example
 * ```ts
 * for (const block of cardBlocks(modelCard(bundle))) if (block.kind === 'heading') console.log(block.text);
 * ```
 */
export function cardBlocks(card: ModelCard): CardBlock[] {
  const blocks: CardBlock[] = [];
  const h = (text: string, level: 1 | 2 = 2) => blocks.push({ kind: 'heading', level, text });
  const p = (text: string) => blocks.push({ kind: 'text', text });
  const facts = (rows: [string, string][]) => blocks.push({ kind: 'facts', rows });
  const table = (columns: string[], rows: string[][], numeric: boolean[]) => blocks.push({ kind: 'table', columns, rows, numeric });

  h(`Model card: ${card.name} ${card.version}`, 1);
  facts([
    ['Model', `${card.name}, version ${card.version}`],
    ['Kind', card.kind],
    ['Output', card.output],
    ['Created', card.createdAt],
  ]);

  h('Purpose');
  p(card.purpose);

  h('Data and lineage');
  facts([
    ['Data snapshot', card.lineage.dataSnapshot ?? NOT_RECORDED],
    ['Trained by', card.lineage.source ?? NOT_RECORDED],
    ['Code', card.lineage.gitCommit ?? NOT_RECORDED],
    ['Replaces', card.lineage.parent ?? 'nothing (no champion when it was trained)'],
    ['Run', card.run ? `${card.run.id} (${card.run.name}, ${card.run.status}, ${card.run.startedAt} to ${card.run.endedAt ?? 'still running'})` : NOT_RECORDED],
  ]);
  if (card.run) {
    const params = Object.entries(card.run.params);
    if (params.length > 0)
      table(
        ['Parameter', 'Value'],
        params.map(([k, v]) => [k, JSON.stringify(v)]),
        [false, false],
      );
  }

  h('Features and their training distribution');
  const anyDistribution = card.features.some((f) => f.training);
  p(
    anyDistribution
      ? `Over ${card.trainingRows ?? '?'} training rows: each input's range, mean, missing values and a histogram over its training quantile bins (upper edges listed). A served value outside [min, max] is one the model never saw.`
      : `The training distribution of the features was ${NOT_RECORDED} in this bundle.`,
  );
  table(
    ['Feature', 'Definition', 'Default', 'Values', 'Missing', 'Min', 'Mean', 'Max', 'Bin edges', 'Histogram'],
    card.features.map((f) => {
      const d = f.training;
      const what = d?.of === 'length' ? ' (list length)' : '';
      return [
        f.name,
        `${f.definition}${f.description ? `: ${f.description}` : ''}`,
        f.default,
        d ? String(d.count) : NOT_RECORDED,
        d ? String(d.missing) : '',
        d ? fmt(d.min) + what : '',
        d ? fmt(d.mean) : '',
        d ? fmt(d.max) : '',
        d ? d.edges.map((e) => fmt(e)).join(' | ') || '(one bin)' : '',
        d ? sparkline(d.counts) : '',
      ];
    }),
    [false, false, true, true, true, true, true, true, false, false],
  );

  h('Metrics on the test rows');
  if (card.metrics.length === 0) p(`Metrics were ${NOT_RECORDED}.`);
  else {
    const iv = card.intervals;
    p(
      iv
        ? `Intervals: ${Math.round(iv.level * 100)}% percentile bootstrap over ${iv.resamples} resamples of the ${iv.n} test rows (${iv.positives} positives), seed ${iv.seed}${iv.degenerate > 0 ? `; ${iv.degenerate} resamples with one class left out of ROC AUC's` : ''}.`
        : `Bootstrap intervals were ${NOT_RECORDED} (bundle metrics.intervals, from bootstrapIntervals).`,
    );
    table(
      ['Metric', 'Value', iv ? `${Math.round(iv.level * 100)}% interval` : 'Interval'],
      card.metrics.map((m) => [METRIC_NAMES[m.name] ?? m.name, fmt(m.value), m.interval ? `[${fmt(m.interval.lower)}, ${fmt(m.interval.upper)}]` : '']),
      [false, true, true],
    );
  }

  h('Calibration');
  const c = card.calibration;
  if (!c) p(`A calibration map was ${NOT_RECORDED}: the scores are the model's own.`);
  else {
    facts([
      ['Method', c.method === 'none' ? 'none (the scores are the model’s own: no map did better out of fold)' : c.method],
      [
        'Map',
        c.method === 'platt'
          ? `p = 1 / (1 + exp(${fmt(c.a)} * logit(s) + ${fmt(c.b)}))`
          : c.method === 'isotonic'
            ? `non-decreasing steps through ${c.x.length} knots, scores ${fmt(c.x[0]!)} to ${fmt(c.x[c.x.length - 1]!)} mapped to ${fmt(c.y[0]!)} to ${fmt(c.y[c.y.length - 1]!)}`
            : 'identity',
      ],
      [
        'Chosen on',
        c.fit
          ? `${c.fit.rows} validation rows (${c.fit.positives} positives)${c.fit.source ? `, ${c.fit.source}` : ''}, by ${c.fit.folds}-fold out-of-fold ${c.fit.criterion}`
          : NOT_RECORDED,
      ],
    ]);
    if (c.fit && c.fit.candidates.length > 0)
      table(
        ['Candidate', 'Out-of-fold log loss', 'Out-of-fold Brier'],
        c.fit.candidates.map((k) => [k.method + (k.method === c.method ? ' (chosen)' : ''), fmt(k.logLoss), fmt(k.brier)]),
        [false, true, true],
      );
  }
  if (card.calibrationMetrics.length > 0)
    table(
      ['On the test rows', 'Value'],
      card.calibrationMetrics.map((m) => [METRIC_NAMES[m.name] ?? m.name, fmt(m.value)]),
      [false, true],
    );
  else p(`Calibration on the test rows (ECE, mean score against the base rate, Brier against the base rate's) was ${NOT_RECORDED}.`);

  h("The gate's result");
  const g = card.gate;
  if (!g) p(`The gate's result was ${NOT_RECORDED} (a model published from a notebook passes no gate).`);
  else {
    facts([
      ['Result', g.passed ? 'passed' : `did not pass: ${g.reasons.join('; ')}`],
      ['ROC AUC', `${fmt(g.rocAuc)} (minimum ${fmt(g.minAuc)})`],
      [
        'Against the champion',
        g.championVersion
          ? `${g.championVersion}: ROC AUC ${g.championRocAuc === null ? 'not comparable (other features)' : fmt(g.championRocAuc)}, tolerance ${fmt(g.tolerance)}`
          : 'no champion: this model became the first',
      ],
    ]);
    if (g.checks && g.checks.length > 0)
      table(
        ['Check', 'Passed', 'Detail'],
        g.checks.map((k) => [k.name, k.passed ? 'yes' : 'no', k.detail]),
        [false, false, false],
      );
  }

  h('Against the champion, on the same rows');
  const ch = card.champion;
  if (!ch)
    p(
      g && !g.championVersion
        ? 'There was no champion when this model was trained.'
        : `A comparison with the champion on the same rows was ${NOT_RECORDED}${g?.championVersion && g.championRocAuc === null ? ' (the champion reads features these rows do not have)' : ''}.`,
    );
  else {
    const k = ch.comparison;
    p(
      `Champion ${ch.version} scored on this model's ${k.n} test rows (${k.positives} positives); ${Math.round(k.level * 100)}% paired percentile bootstrap intervals over ${k.resamples} resamples (seed ${k.seed}). The difference is this model minus the champion: above 0 is better for ROC AUC, below 0 for Brier.`,
    );
    const row = (name: string, pick: (x: { rocAuc: MetricInterval; brier: MetricInterval }) => MetricInterval) => {
      const cell = (i: MetricInterval) => `${fmt(i.estimate)} [${fmt(i.lower)}, ${fmt(i.upper)}]`;
      return [name, cell(pick(k.challenger)), cell(pick(k.champion)), cell(pick(k.difference))];
    };
    table(['Metric', 'This model', 'Champion', 'Difference'], [row('ROC AUC', (x) => x.rocAuc), row('Brier score', (x) => x.brier)], [false, true, true, true]);
  }
  return blocks;
}

/**
 * The card as Markdown (what `wb models card` prints): text is escaped, so a name with `*` or `|` stays text.
 *
 * @example
 * ```ts
 * console.log(cardMarkdown(modelCard(bundle)));
 * ```
 */
export function cardMarkdown(card: ModelCard): string {
  const out: string[] = [];
  for (const b of cardBlocks(card)) {
    if (b.kind === 'heading') out.push(`${'#'.repeat(b.level)} ${md(b.text)}`, '');
    else if (b.kind === 'text') out.push(md(b.text), '');
    else if (b.kind === 'facts') out.push(...b.rows.map(([k, v]) => `- **${md(k)}:** ${md(v)}`), '');
    else {
      out.push(`| ${b.columns.map(md).join(' | ')} |`);
      out.push(`| ${b.numeric.map((n) => (n ? '---:' : '---')).join(' | ')} |`);
      for (const r of b.rows) out.push(`| ${r.map((c) => md(c) || ' ').join(' | ')} |`);
      out.push('');
    }
  }
  return `${out.join('\n').trimEnd()}\n`;
}

/**
 * The card as a standalone HTML page (what `wb models card --out card.html` writes): every value
 * escaped, no script, and a Content-Security-Policy that would block one.
 *
 * @example
 * ```ts
 * import { writeFileSync } from 'node:fs';
 * writeFileSync('card.html', cardHtml(modelCard(bundle))); // a page to open or share
 * ```
 */
export function cardHtml(card: ModelCard): string {
  const body = cardBlocks(card)
    .map((b) => {
      if (b.kind === 'heading') return `<h${b.level}>${esc(b.text)}</h${b.level}>`;
      if (b.kind === 'text') return `<p>${esc(b.text)}</p>`;
      if (b.kind === 'facts') return `<dl>${b.rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl>`;
      const head = b.columns.map((c) => `<th>${esc(c)}</th>`).join('');
      const rows = b.rows.map((r) => `<tr>${r.map((c, i) => `<td${b.numeric[i] ? ' class="num"' : ''}>${esc(c)}</td>`).join('')}</tr>`).join('\n');
      return `<table><thead><tr>${head}</tr></thead><tbody>\n${rows}\n</tbody></table>`;
    })
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>${esc(`${card.name} ${card.version}: model card`)}</title>
<style>${CARD_CSS}</style>
</head>
<body class="wb-card">
${body}
</body>
</html>
`;
}

/** The card's style, shared by the standalone page and the service's. */
export const CARD_CSS = `
.wb-card { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; max-width: 72rem; }
.wb-card h1 { font-size: 1.35rem; } .wb-card h2 { font-size: 1.1rem; margin-top: 1.6rem; border-bottom: 1px solid #ddd; }
.wb-card dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
.wb-card dt { color: #555; } .wb-card dd { margin: 0; overflow-wrap: anywhere; }
.wb-card table { border-collapse: collapse; font-size: .88rem; margin: .5rem 0; }
.wb-card td, .wb-card th { padding: .25rem .55rem; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
.wb-card td.num { text-align: right; font-variant-numeric: tabular-nums; }
`;

function definitionOf(f: Feature): string {
  const event = f.source.event === '*' ? "all events but the service's own records (predictions, exposures)" : `${f.source.event} events`;
  const where = f.source.where
    ? ` where ${Object.entries(f.source.where)
        .map(([k, v]) => `${k} = ${JSON.stringify(v)}`)
        .join(' and ')}`
    : '';
  const what = f.aggregation === 'last_n' ? `last ${f.n} ${f.prop}` : f.prop ? `${f.aggregation} of ${f.prop}` : f.aggregation;
  return `${what} of ${event}${where}, ${f.window === 'lifetime' ? 'over the lifetime' : `over ${f.window}`}`;
}

/** A number for a card: 4 significant digits, whole numbers as they are. */
function fmt(x: number): string {
  if (Number.isNaN(x)) return 'undefined';
  if (!Number.isFinite(x)) return String(x);
  if (Number.isInteger(x)) return String(x);
  const abs = Math.abs(x);
  return abs >= 1e5 || abs < 1e-3 ? x.toExponential(3) : String(Number(x.toPrecision(4)));
}

/** A histogram as block characters: text, so it draws the same in Markdown, HTML and a terminal. */
function sparkline(counts: readonly number[]): string {
  const bars = '▁▂▃▄▅▆▇█';
  const max = Math.max(...counts);
  return counts.map((c) => (max > 0 ? bars[Math.min(7, Math.floor((c / max) * 7.999))] : bars[0])).join('');
}

function md(s: string): string {
  return s
    .replace(/[\r\n]+/g, ' ')
    .replace(/[\\`*_{}[\]<>|#!~]/g, (c) => `\\${c}`)
    .replace(/^([-+]|\d+\.)(?=\s)/, '\\$1');
}

function esc(s: string): string {
  return s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;').replaceAll("'", '&#39;');
}
