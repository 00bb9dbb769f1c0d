import { raw, sql, type Sql } from '../sql.js';

/**
 * The assignment function as DuckDB macros, so that a notebook can recompute in the lakehouse who
 * was in which arm (hash.ts is the reference; a test checks that both agree user for user):
 *   wb_fnv1a32(text)                       FNV-1a 32 over the characters' code points (= UTF-16 code
 *                                          units for every character outside the astral planes)
 *   wb_hash(seed, user_id, version)        the bucket in [0, 1), versions 1 and 2
 *   wb_arm(bucket, weights, coverage)      the 0-based arm, or -1 outside coverage
 */
export const ASSIGNMENT_MACROS: readonly Sql[] = [
  `CREATE OR REPLACE MACRO wb_fnv1a32(s) AS CASE WHEN s = '' THEN CAST(2166136261 AS BIGINT) ELSE
    list_reduce(list_transform(string_split(s, ''), lambda c: CAST(unicode(c) AS BIGINT)),
                lambda h, c: (xor(h, c) * 16777619) % 4294967296, CAST(2166136261 AS BIGINT)) END`,
  `CREATE OR REPLACE MACRO wb_hash(seed, value, version) AS CASE version
    WHEN 2 THEN (wb_fnv1a32(CAST(wb_fnv1a32(seed || value) AS VARCHAR)) % 10000) / 10000
    WHEN 1 THEN (wb_fnv1a32(value || seed) % 1000) / 1000 END`,
  `CREATE OR REPLACE MACRO wb_arm(bucket, weights, coverage) AS coalesce(list_position(
    -- each arm's start is the sum of the weights before it, added left to right in DOUBLE as
    -- hash.ts does (DECIMAL arithmetic would move the edges: 0.8 * 0.2 is 0.16000000000000003 there)
    list_transform(range(len(weights)), lambda i: bucket >= list_reduce(weights[1:i], lambda a, b: CAST(a AS DOUBLE) + b, CAST(0 AS DOUBLE))
      AND bucket < list_reduce(weights[1:i], lambda a, b: CAST(a AS DOUBLE) + b, CAST(0 AS DOUBLE))
                   + least(CAST(1 AS DOUBLE), greatest(CAST(0 AS DOUBLE), CAST(coverage AS DOUBLE))) * CAST(weights[i + 1] AS DOUBLE)),
    true) - 1, -1)`,
].map((text) => sql`${raw(text)}`);
