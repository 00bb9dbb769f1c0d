/**
 * Deterministic assignment, bit for bit as GrowthBook's SDKs do it (the most widely used open-source
 * experimentation SDK), so that any tool can reproduce who saw what: FNV-1a 32-bit over the UTF-16
 * code units of the text, then
 *   version 1: fnv(value + seed) % 1000 / 1000
 *   version 2: fnv(String(fnv(seed + value))) % 10000 / 10000   (the default: better spread)
 * Buckets are in [0, 1); each arm owns a range that starts at the arm's cumulative weight and is
 * `coverage` times its weight long, so raising coverage only adds users to arms, never moves them.
 * Checked against the cases in GrowthBook's published SDK test suite (packages/sdk-js/test/cases.json).
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * The 32-bit FNV-1a hash of a string, over its UTF-16 code units: the hash under `hashBucket`.
 *
 * @example
 * ```ts
 * fnv1a32('hello'); // 1335831723
 * ```
 */
export function fnv1a32(text: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  return h >>> 0;
}

export type HashVersion = 1 | 2;

/**
 * The bucket in [0, 1) of a value for a seed; undefined for an unknown hash version.
 *
 * @example
 * ```ts
 * const bucket = hashBucket('churn-offer', 'u42', 2); // in [0, 1)
 * ```
 */
export function hashBucket(seed: string, value: string, version: number): number | undefined {
  if (version === 2) return (fnv1a32(String(fnv1a32(seed + value))) % 10000) / 10000;
  if (version === 1) return (fnv1a32(value + seed) % 1000) / 1000;
  return undefined;
}

export type Range = readonly [number, number];

/**
 * Each arm's range of buckets. Weights that do not add up to 1 (within 0.01) or do not match the arm
 * count fall back to equal weights, and coverage is clamped to [0, 1], as the SDK does: validation
 * that refuses such input belongs to whoever creates an experiment (see definition.ts).
 *
 * @example
 * ```ts
 * const ranges = bucketRanges(2, 1, [0.5, 0.5]);
 * const bucket = hashBucket('churn-offer', 'u42', 2); // undefined only for an unknown hash version
 * const arm = bucket === undefined ? -1 : chooseArm(bucket, ranges);
 * ```
 */
export function bucketRanges(arms: number, coverage = 1, weights?: readonly number[]): Range[] {
  const c = Math.min(1, Math.max(0, coverage));
  let w = weights && weights.length === arms ? weights : equalWeights(arms);
  const total = w.reduce((a, b) => a + b, 0);
  if (total < 0.99 || total > 1.01) w = equalWeights(arms);
  let cumulative = 0;
  return w.map((weight) => {
    const start = cumulative;
    cumulative += weight;
    return [start, start + c * weight] as const;
  });
}

export function equalWeights(arms: number): number[] {
  return arms <= 0 ? [] : Array.from({ length: arms }, () => 1 / arms);
}

/**
 * The arm whose range holds the bucket, or -1 when none does (outside coverage).
 *
 * @example
 * ```ts
 * const arm = chooseArm(hashBucket('churn-offer', 'u42', 2) ?? NaN, bucketRanges(2)); // 0 or 1 (-1 for an unknown hash version)
 * ```
 */
export function chooseArm(bucket: number, ranges: readonly Range[]): number {
  for (let i = 0; i < ranges.length; i++) {
    const [start, end] = ranges[i]!;
    if (bucket >= start && bucket < end) return i;
  }
  return -1;
}

/** Whether a bucket falls in a namespace range [start, end). */
export function inRange(bucket: number, [start, end]: Range): boolean {
  return bucket >= start && bucket < end;
}
