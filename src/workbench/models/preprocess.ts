import { InputError } from '../errors.js';
import type { Feature } from '../features/definition.js';

/**
 * Preprocessing learned from training rows only and applied unchanged at serving time: numeric
 * columns standardised (mean and standard deviation; a missing value becomes the mean), categorical
 * columns one-hot over their most frequent values plus an `(other)` bucket, list columns (last_n
 * features) multi-hot over their most frequent items plus the share of other items. Plain data, so
 * it travels inside a model bundle.
 */
export type ColumnSpec =
  | { name: string; kind: 'numeric' }
  | { name: string; kind: 'categorical'; maxCategories?: number }
  | { name: string; kind: 'multi_hot'; maxCategories?: number };

export type PreprocessStep =
  | { name: string; kind: 'numeric'; mean: number; std: number }
  | { name: string; kind: 'categorical'; categories: string[] }
  | { name: string; kind: 'multi_hot'; categories: string[] };

/** A fitted preprocessing: the steps that turn rows into the model's input columns (see `fitPreprocessing`). */
export interface Preprocessing {
  steps: PreprocessStep[];
  /** The model's input columns, in order: `spend_30d`, `country=GB`, `country=(other)`, `last_items:22423`, ... */
  inputs: string[];
}

export type Row = Record<string, unknown>;

const DEFAULT_MAX_CATEGORIES = 20;
const OTHER = '(other)';

/**
 * Columns for a feature set: numeric features standardised, last_n lists multi-hot.
 *
 * @example
 * ```ts
 * const columns = columnsFor(retailFeatures);
 * const model = await trainClassifier(rows, 'bought', columns);
 * ```
 */
export function columnsFor(features: readonly Feature[], maxCategories = DEFAULT_MAX_CATEGORIES): ColumnSpec[] {
  return features.map((f) => (f.aggregation === 'last_n' ? { name: f.name, kind: 'multi_hot', maxCategories } : { name: f.name, kind: 'numeric' }));
}

/**
 * Learns the preprocessing of `columns` from rows: means and standard deviations, the categories of multi-hot lists.
 *
 * @example
 * ```ts
 * const prep = fitPreprocessing(train, columnsFor(appFeatures));
 * const matrix = transform(prep, test);
 * ```
 */
export function fitPreprocessing(rows: readonly Row[], columns: readonly ColumnSpec[]): Preprocessing {
  if (rows.length === 0) throw new InputError('cannot learn preprocessing from no rows');
  const steps = columns.map((c): PreprocessStep => {
    if (!(c.name in rows[0]!)) throw new InputError(`column ${c.name} is not in the training rows (they have: ${Object.keys(rows[0]!).join(', ')})`);
    if (c.kind === 'numeric') {
      let n = 0;
      let sum = 0;
      let sumSq = 0;
      rows.forEach((r, i) => {
        const v = numberOf(r[c.name], c.name, i);
        if (v === undefined) return;
        n++;
        sum += v;
        sumSq += v * v;
      });
      const mean = n > 0 ? sum / n : 0;
      const variance = n > 1 ? Math.max(0, (sumSq - n * mean * mean) / (n - 1)) : 0;
      // A constant column carries no information; dividing by 1 keeps it at 0 instead of NaN.
      return { name: c.name, kind: 'numeric', mean, std: variance > 0 ? Math.sqrt(variance) : 1 };
    }
    const counts = new Map<string, number>();
    for (const r of rows) {
      const values = c.kind === 'categorical' ? [categoryOf(r[c.name])] : listOf(r[c.name], c.name);
      for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
    }
    const categories = [...counts]
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .slice(0, c.maxCategories ?? DEFAULT_MAX_CATEGORIES)
      .map(([v]) => v);
    return { name: c.name, kind: c.kind, categories };
  });
  return { steps, inputs: steps.flatMap(inputNames) };
}

/**
 * Rows as a row-major matrix of the preprocessing's inputs.
 *
 * @example
 * ```ts
 * const matrix = transform(fitPreprocessing(train, columnsFor(appFeatures)), test);
 * ```
 */
export function transform(p: Preprocessing, rows: readonly Row[]): Float32Array {
  const width = p.inputs.length;
  const out = new Float32Array(rows.length * width);
  rows.forEach((r, i) => {
    let at = i * width;
    for (const s of p.steps) {
      if (s.kind === 'numeric') {
        const v = numberOf(r[s.name], s.name, i);
        out[at++] = v === undefined ? 0 : (v - s.mean) / s.std;
      } else if (s.kind === 'categorical') {
        const k = s.categories.indexOf(categoryOf(r[s.name]));
        out[at + (k >= 0 ? k : s.categories.length)] = 1;
        at += s.categories.length + 1;
      } else {
        const items = listOf(r[s.name], s.name);
        let other = 0;
        for (const item of items) {
          const k = s.categories.indexOf(item);
          if (k >= 0) out[at + k] = 1;
          else other++;
        }
        out[at + s.categories.length] = items.length > 0 ? other / items.length : 0;
        at += s.categories.length + 1;
      }
    }
  });
  return out;
}

function inputNames(s: PreprocessStep): string[] {
  if (s.kind === 'numeric') return [s.name];
  const sep = s.kind === 'categorical' ? '=' : ':';
  return [...s.categories.map((c) => `${s.name}${sep}${c}`), `${s.name}${sep}${OTHER}`];
}

function numberOf(v: unknown, column: string, row: number): number | undefined {
  if (v === null || v === undefined) return undefined;
  const n = typeof v === 'bigint' ? Number(v) : typeof v === 'boolean' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n)) throw new InputError(`row ${row}, column ${column}: ${JSON.stringify(v)} is not a number`);
  return n;
}

function categoryOf(v: unknown): string {
  return v === null || v === undefined ? '(missing)' : String(v);
}

function listOf(v: unknown, column: string): string[] {
  if (v === null || v === undefined) return [];
  if (!Array.isArray(v)) throw new InputError(`column ${column}: expected a list (a last_n feature), got ${JSON.stringify(v)}`);
  return v.map(String);
}
