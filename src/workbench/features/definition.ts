import { createHash } from 'node:crypto';
import { z } from 'zod';
import { hasOwn, own } from '../dict.js';
import { InputError } from '../errors.js';

/**
 * Feature definitions: plain, JSON-serialisable data, written once and compiled twice: to DuckDB SQL
 * for point-in-time training sets (offline.ts) and to incremental state for the online store
 * (online.ts). Both compilers read the same definition with the same window semantics, below.
 *
 * Windows are bucketed, so that online state per user is bounded and expires exactly: a window of
 * W with bucket b covers, at time t, the events with `floor(t / b) * b - W <= time < t`, that is the
 * last W plus the current bucket so far. Both compilers use that interval, so their values agree
 * exactly (numeric sums up to float rounding), and an event at exactly t is never included.
 */
export const WINDOWS = {
  '10m': { ms: 10 * 60_000, bucketMs: 60_000 },
  '1h': { ms: 3_600_000, bucketMs: 5 * 60_000 },
  '7d': { ms: 7 * 86_400_000, bucketMs: 3_600_000 },
  '30d': { ms: 30 * 86_400_000, bucketMs: 86_400_000 },
  lifetime: { ms: Number.POSITIVE_INFINITY, bucketMs: Number.POSITIVE_INFINITY },
} as const;
export type WindowName = keyof typeof WINDOWS;

/** Aggregations over the matching events of a window. */
export const AGGREGATIONS = {
  count: { needsProp: false, list: false },
  sum: { needsProp: true, list: false },
  mean: { needsProp: true, list: false },
  min: { needsProp: true, list: false },
  max: { needsProp: true, list: false },
  distinct_count: { needsProp: true, list: false },
  /** The prop's values of the last `n` events, newest first (ties by event_id). */
  last_n: { needsProp: true, list: true },
  /** Seconds from the newest matching event to the time of the request. */
  time_since_last: { needsProp: false, list: false },
  /** Seconds from the oldest matching event to the time of the request (with `any`: the user's age). */
  first_seen_age: { needsProp: false, list: false },
} as const;
export type Aggregation = keyof typeof AGGREGATIONS;

const NAME = /^[a-z][a-z0-9_]{0,63}$/;
/** `__proto__` is no prop name: validation at every edge drops that key from parsed JSON, so no event can carry it. */
const PROP = /^(?!__proto__$)[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const PROP_RULE = 'prop names are letters, digits and _ (not __proto__)';
const MAX_LAST_N = 1000;

export const FeatureDefinitionSchema = z
  .object({
    name: z.string().regex(NAME, 'feature names are lower_snake_case, at most 64 characters'),
    description: z.string().max(500).optional(),
    entity: z.literal('user').default('user'),
    source: z.object({
      /** An event name, or `*` for every event of the user's (not the service's own records: `SERVICE_EVENTS`). */
      event: z.string().regex(/^(\*|[a-z][a-z0-9_]*)$/, 'an event name (lower_snake_case) or "*"'),
      /** Props that must equal these values (same JSON type and value). */
      where: z.record(z.string().regex(PROP, PROP_RULE), z.union([z.string(), z.number(), z.boolean()])).optional(),
    }),
    aggregation: z.enum(Object.keys(AGGREGATIONS) as [Aggregation, ...Aggregation[]]),
    /** The numeric (sum, mean, min, max) or categorical (distinct_count, last_n) prop aggregated. */
    prop: z.string().regex(PROP, PROP_RULE).optional(),
    /** How many values last_n keeps. */
    n: z.number().int().min(1).max(MAX_LAST_N).optional(),
    window: z.enum(Object.keys(WINDOWS) as [WindowName, ...WindowName[]]),
    /** The value when no event matches in the window: a number, or a list for last_n. */
    default: z.union([z.number(), z.array(z.string())]),
  })
  .strict()
  .superRefine((d, ctx) => {
    const kind = AGGREGATIONS[d.aggregation];
    if (kind.needsProp && !d.prop) ctx.addIssue({ code: 'custom', path: ['prop'], message: `${d.aggregation} needs the prop it aggregates` });
    if (!kind.needsProp && d.prop) ctx.addIssue({ code: 'custom', path: ['prop'], message: `${d.aggregation} takes no prop` });
    if (d.aggregation === 'last_n' && d.n === undefined) ctx.addIssue({ code: 'custom', path: ['n'], message: 'last_n needs n, how many values to keep' });
    if (d.aggregation !== 'last_n' && d.n !== undefined) ctx.addIssue({ code: 'custom', path: ['n'], message: 'only last_n takes n' });
    if (kind.list !== Array.isArray(d.default)) {
      ctx.addIssue({
        code: 'custom',
        path: ['default'],
        message: kind.list ? 'the default of last_n is a list of strings, e.g. []' : `the default of ${d.aggregation} is a number`,
      });
    }
  });

/** A feature definition as written (entity may be left out). */
export type FeatureInput = z.input<typeof FeatureDefinitionSchema>;
export type FeatureDefinition = z.output<typeof FeatureDefinitionSchema>;
/** The value of one feature for one user: a number, or a list for `last_n` features. */
export type FeatureValue = number | string[];

/** A checked definition with its version: the hash of its content. */
export interface Feature extends FeatureDefinition {
  readonly version: string;
}

/**
 * Checks one definition; the error names the feature and the field that is wrong.
 *
 * @example
 * ```ts
 * const logins7d = feature({ name: 'logins_7d', description: 'logins in the last 7 days', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 });
 * ```
 */
export function feature(input: FeatureInput): Feature {
  const parsed = FeatureDefinitionSchema.safeParse(input);
  const name = typeof (input as { name?: unknown })?.name === 'string' ? (input as { name: string }).name : '(unnamed)';
  // The schema drops a `__proto__` key without a word: a filter on it would silently match every event.
  if (hasOwn((input as { source?: { where?: object } })?.source?.where, '__proto__'))
    throw new InputError(`feature ${name}: source.where.__proto__: ${PROP_RULE}`);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || 'definition'}: ${i.message}`).join('; ');
    throw new InputError(`feature ${name}: ${issues}`);
  }
  return { ...parsed.data, version: contentHash(parsed.data) };
}

/**
 * A set of features, in order, each name once. The same definition given twice is kept once (a
 * notebook cell run again); two different definitions under one name are an error.
 *
 * @example
 * ```ts
 * const features = featureSet([...appFeatures, { name: 'logins_7d', description: 'logins in the last 7 days', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 }]);
 * ```
 */
export function featureSet(inputs: readonly (FeatureInput | Feature)[]): Feature[] {
  const byName = new Map<string, Feature>();
  for (const input of inputs) {
    const f = feature(stripVersion(input));
    const other = byName.get(f.name);
    if (other && other.version !== f.version) {
      throw new InputError(`feature ${f.name} has two definitions (versions ${other.version} and ${f.version}): give one of them another name`);
    }
    byName.set(f.name, f);
  }
  return [...byName.values()];
}

/**
 * Which rules the online and offline compilers apply to a definition, and the online states' form,
 * part of every feature set's version: online states stored under other rules or in another form
 * (snapshots, Redis) are then rebuilt from the log or the archive, never resumed. 2: features over
 * every event (`*`) leave out the service's own records (`SERVICE_EVENTS`). 3: a window's buckets
 * are one flat list of numbers (online.ts, `Buckets`).
 */
const COMPILER_RULES = 3;

/**
 * The version of a feature set: the hash of its members' versions, in order, and of the compilers'
 * rules.
 *
 * @example
 * ```ts
 * console.log(featureSetVersion(retailFeatures)); // changes when any feature's definition does
 * ```
 */
export function featureSetVersion(features: readonly Feature[]): string {
  return contentHash([COMPILER_RULES, ...features.map((f) => [f.name, f.version])]);
}

function stripVersion(input: FeatureInput | Feature): FeatureInput {
  if (!('version' in input)) return input;
  const { version: _version, ...rest } = input;
  return rest;
}

/** sha256 of the canonical JSON (keys sorted) of a value, first 16 hex digits. */
export function contentHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex').slice(0, 16);
}

export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) {
    // A list of plain values (a model's weights: thousands of numbers) is what JSON.stringify
    // writes, character for character, in one native call instead of one call per element.
    if (value.every(isPlainValue)) return JSON.stringify(value);
    return `[${value.map(canonicalJson).join(',')}]`;
  }
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

const isPlainValue = (v: unknown): boolean => v === null || typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean';

/** Start (inclusive, ms) of a window at time t (ms), per the bucketed semantics above. */
export function windowStart(window: WindowName, t: number): number {
  const { ms, bucketMs } = WINDOWS[window];
  if (!Number.isFinite(ms)) return Number.NEGATIVE_INFINITY;
  return Math.floor(t / bucketMs) * bucketMs - ms;
}

/**
 * Whether an event's props pass a definition's filter: each listed prop equal in type and value.
 * Shared by the online compiler and the tests; the offline compiler writes the same rule in SQL.
 */
export function matchesWhere(where: FeatureDefinition['source']['where'], props: Record<string, unknown>): boolean {
  if (!where) return true;
  // Props are the sender's: only an own prop counts (an event without `constructor` has none, whatever Object has).
  for (const key of Object.keys(where)) if (own(props, key) !== where[key]) return false;
  return true;
}
