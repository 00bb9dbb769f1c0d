import { z } from 'zod';
import { InputError } from '../errors.js';
import type { ColumnSpec, Row } from './preprocess.js';

/**
 * What each input of a model looked like when it was trained: the range and a histogram over
 * training quantile bins, per feature. Kept in the model bundle (`training`), so the service can
 * compare what it serves against what the model learned from (PSI, the share outside the training
 * range) and say so when a served value lies outside anything the model saw.
 *
 * Bins: up to `bins` (default 10) by the training deciles. The cut points are values of the data
 * (the inverse of the empirical distribution function, Hyndman and Fan's type 1), each bin closed
 * on the right: bin i holds `edges[i-1] < v <= edges[i]`, the first everything up to `edges[0]`, the
 * last everything above the last edge. Repeated cut points are merged and those at the maximum
 * dropped, so a feature with few distinct values gets a bin per value (logins_7d: 0, 1, 2, ...) and
 * every bin holds some training value; a constant feature has a single bin (PSI is then always 0
 * and only the range catches a change). Values below the first edge or above the last fall in the
 * end bins: the range, not the bins, tells that they are new.
 *
 * List features (last_n) are summarised by their length (`of: 'length'`): how many items a user has
 * is what can drift without the items themselves being comparable. Categorical columns are not
 * summarised. A feature without a single training value is left out.
 */
export interface FeatureDistribution {
  feature: string;
  /** `value` for a numeric feature; `length` for a list feature, summarised by its number of items. */
  of: 'value' | 'length';
  /** Training rows with a value (missing ones are not binned). */
  count: number;
  missing: number;
  min: number;
  max: number;
  mean: number;
  /** Upper edges of every bin but the last, strictly ascending, each at least `min` and below `max`. */
  edges: number[];
  /** Training values in each bin (`edges.length + 1` of them, summing to `count`). */
  counts: number[];
}

/** Every summarised input of a model (see `FeatureDistribution`), from `rows` training rows. */
export interface TrainingDistribution {
  rows: number;
  /** The most bins a feature was cut into. */
  bins: number;
  features: FeatureDistribution[];
}

export const DEFAULT_BINS = 10;
/** The floor put under an empty bin's share in PSI: ln(0) would make any empty bin infinite. */
export const PSI_EPSILON = 1e-4;

/**
 * The training distribution of each column of `rows` that a model reads.
 *
 * @example
 * ```ts
 * const training = trainingDistribution(data.train, columnsFor(data.features));
 * console.log(training.features.find((f) => f.feature === 'logins_7d'));
 * ```
 */
export function trainingDistribution(rows: readonly Row[], columns: readonly ColumnSpec[], bins = DEFAULT_BINS): TrainingDistribution {
  if (!Number.isInteger(bins) || bins < 1 || bins > MAX_BINS) throw new InputError(`bins is ${bins}: use a whole number from 1 to ${MAX_BINS}`);
  const features: FeatureDistribution[] = [];
  for (const c of columns) {
    if (c.kind === 'categorical') continue;
    const of = c.kind === 'numeric' ? 'value' : 'length';
    const values: number[] = [];
    rows.forEach((r, i) => {
      const v = summaryOf(r[c.name], of);
      if (v === null) throw new InputError(`row ${i}, column ${c.name}: ${JSON.stringify(r[c.name])} is not ${of === 'value' ? 'a number' : 'a list'}`);
      if (v !== undefined) values.push(v);
    });
    if (values.length === 0) continue;
    features.push(describeValues(c.name, of, values, rows.length - values.length, bins));
  }
  return { rows: rows.length, bins, features };
}

function describeValues(feature: string, of: FeatureDistribution['of'], values: number[], missing: number, bins: number): FeatureDistribution {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  const min = sorted[0]!;
  const max = sorted[n - 1]!;
  const edges: number[] = [];
  for (let k = 1; k < bins; k++) {
    const cut = sorted[Math.ceil((k / bins) * n) - 1]!;
    if (cut < max && (edges.length === 0 || cut > edges[edges.length - 1]!)) edges.push(cut);
  }
  const counts = new Array<number>(edges.length + 1).fill(0);
  let sum = 0;
  for (const v of sorted) {
    counts[binIndex(edges, v)]!++;
    sum += v;
  }
  return { feature, of, count: n, missing, min, max, mean: sum / n, edges, counts };
}

/**
 * A served value as the distribution summarises it: the number itself, or a list's length.
 * undefined for a missing value, null for one of the wrong kind.
 */
export function summaryOf(v: unknown, of: FeatureDistribution['of']): number | undefined | null {
  if (v === null || v === undefined) return undefined;
  if (of === 'length') return Array.isArray(v) ? v.length : null;
  const n = typeof v === 'bigint' || typeof v === 'boolean' ? Number(v) : v;
  return typeof n === 'number' && Number.isFinite(n) ? n : null;
}

/** The bin a value falls in: how many edges lie below it (bins are closed on the right). */
export function binIndex(edges: readonly number[], v: number): number {
  let lo = 0;
  let hi = edges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (edges[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Whether a value lies outside the training range [min, max]. */
export function outsideRange(d: Pick<FeatureDistribution, 'min' | 'max'>, v: number): boolean {
  return v < d.min || v > d.max;
}

/** Each bin's share of the training values. */
export function proportions(counts: readonly number[]): number[] {
  const total = counts.reduce((a, b) => a + b, 0);
  return counts.map((c) => (total > 0 ? c / total : 0));
}

/**
 * The population stability index of `actual` against `expected`, both counts (or shares) over the
 * same bins:
 *
 *   PSI = sum_i (a_i - e_i) * ln(a_i / e_i),  a_i = max(A_i / sum A, eps),  e_i = max(E_i / sum E, eps)
 *
 * the symmetrised Kullback-Leibler divergence KL(a||e) + KL(e||a) (Jeffreys), as in Siddiqi,
 * "Credit Risk Scorecards" (2006), and in Evidently and Arize. A bin that is empty on one side
 * takes the floor `eps` (default 1e-4, 0.01%) instead of 0, whose logarithm is infinite; the shares
 * are not renormalised after. Rule of thumb: under 0.1 stable, 0.1 to 0.25 a moderate shift, over
 * 0.25 a major one. NaN when either side has no values.
 *
 * @example
 * ```ts
 * psi([40, 30, 30], [35, 25, 40]); // 0.0446: a minor change
 * ```
 */
export function psi(expected: readonly number[], actual: readonly number[], epsilon = PSI_EPSILON): number {
  if (expected.length !== actual.length) throw new InputError(`PSI needs the same bins on both sides: ${expected.length} expected, ${actual.length} actual`);
  const e = proportions(expected);
  const a = proportions(actual);
  if (!expected.some((c) => c > 0) || !actual.some((c) => c > 0)) return Number.NaN;
  let total = 0;
  for (let i = 0; i < e.length; i++) {
    const ei = Math.max(e[i]!, epsilon);
    const ai = Math.max(a[i]!, epsilon);
    total += (ai - ei) * Math.log(ai / ei);
  }
  return total;
}

const MAX_BINS = 100;
const finite = z.number().refine(Number.isFinite, 'must be a finite number');
const count = z.number().int().nonnegative();

const FeatureDistributionSchema = z
  .object({
    feature: z.string().min(1).max(200),
    of: z.enum(['value', 'length']),
    count: count.min(1),
    missing: count,
    min: finite,
    max: finite,
    mean: finite,
    edges: z.array(finite).max(MAX_BINS - 1),
    counts: z.array(count).min(1).max(MAX_BINS),
  })
  .strict()
  .superRefine((d, ctx) => {
    const problem = (message: string) => ctx.addIssue({ code: 'custom', message });
    if (d.min > d.max) problem(`min ${d.min} is above max ${d.max}`);
    if (d.counts.length !== d.edges.length + 1) problem(`${d.edges.length} edges make ${d.edges.length + 1} bins, not ${d.counts.length}`);
    if (d.counts.reduce((a, b) => a + b, 0) !== d.count) problem(`the bin counts do not add up to count ${d.count}`);
    d.edges.forEach((edge, i) => {
      if (i > 0 && !(edge > d.edges[i - 1]!)) problem('edges must be strictly ascending');
      if (edge < d.min || edge >= d.max) problem(`edge ${edge} is outside [min, max)`);
    });
  });

/** The bundle's `training` field as the service accepts it (see `checkTrainingDistribution` for the cross-checks). */
export const TrainingDistributionSchema = z
  .object({
    rows: count,
    bins: z.number().int().min(1).max(MAX_BINS),
    features: z.array(FeatureDistributionSchema).max(10_000),
  })
  .strict();

/**
 * The checks a bundle's training distribution needs beyond its shape: each feature summarised once,
 * and only features the bundle reads. Returns a reason, or undefined when it is fine.
 */
export function trainingDistributionProblem(training: TrainingDistribution, featureNames: ReadonlySet<string>): string | undefined {
  const seen = new Set<string>();
  for (const d of training.features) {
    if (!featureNames.has(d.feature)) return `training.features: ${JSON.stringify(d.feature)} is not one of the bundle's features`;
    if (seen.has(d.feature)) return `training.features: ${JSON.stringify(d.feature)} appears twice`;
    seen.add(d.feature);
    if (d.count + d.missing > training.rows) return `training.features: ${d.feature} counts more values than the ${training.rows} training rows`;
  }
  return undefined;
}
