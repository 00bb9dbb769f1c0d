import { InputError } from '../errors.js';
import type { Lakehouse } from '../lakehouse.js';
import type { Progress } from '../progress.js';
import { join, sql } from '../sql.js';
import type { Feature, FeatureValue } from './definition.js';
import { trainingSetSql } from './offline.js';
import { Random } from '../random.js';
import { OnlineFeatures, type UserState } from './online.js';

/** What `featureParity` compares: the events of one source, how many (user, time) samples, and the seed that picks them. */
export interface ParityOptions {
  /** The `source` of the lakehouse's events view to replay (`retail`, `app`, `live`). */
  source: string;
  /** How many (user, time) samples to compare; default 500. */
  samples?: number;
  seed?: number;
  progress?: Progress;
}

/** One feature's line of a parity or skew report: values compared, how many differ, the largest difference and a first example. */
export interface FeatureParity {
  name: string;
  compared: number;
  mismatches: number;
  /** Largest absolute difference of a numeric feature (0 when all agree). */
  largestDifference: number;
  /** The first mismatch, to start looking from. */
  example?: { user_id: string; as_of: string; offline: FeatureValue; online: FeatureValue };
}

/** What `featureParity` found: per feature, how often the online and offline values differ. */
export interface ParityReport {
  source: string;
  samples: number;
  events: number;
  mismatches: number;
  features: FeatureParity[];
}

interface Sample {
  user_id: string;
  as_of: number;
}

/**
 * Training/serving parity: replays a source's events through the online compiler (as the
 * service's features consumer does: update, then expire as of the user's newest event), reads
 * every feature at sampled (user, time) pairs, computes the same samples with the offline
 * compiler over the lakehouse, and reports the differences per feature. Half the samples are at
 * exactly an event's time, where leakage would show; the rest up to three days after one.
 *
 * @example
 * ```ts
 * const report = await featureParity(lake, appFeatures, { source: 'app', samples: 200 });
 * show(report.features, { caption: `parity: ${report.mismatches} mismatches` });
 * ```
 */
export async function featureParity(lake: Lakehouse, features: readonly Feature[], options: ParityOptions): Promise<ParityReport> {
  const { source } = options;
  const wanted = options.samples ?? 500;
  const rng = new Random(options.seed ?? 1);
  const random = () => rng.next();
  const [count] = await lake.query<{ n: number }>(sql`SELECT count(*) AS n FROM events WHERE source = ${source}`);
  if (!count || count.n === 0)
    throw new InputError(`the lakehouse has no events with source ${JSON.stringify(source)}: build it with \`wb lake build\` (sources: retail, app, live)`);
  const picks = Array.from({ length: wanted }, () => Math.floor(random() * count.n));
  const anchors = await lake.query<{ user_id: string; t: number }>(sql`
    SELECT user_id, CAST(epoch_ms(time) AS DOUBLE) AS t FROM (SELECT user_id, time, row_number() OVER (ORDER BY time, event_id) - 1 AS i FROM events WHERE source = ${source})
    WHERE i IN (${join(picks)}) ORDER BY i`);
  const byIndex = new Map<number, { user_id: string; t: number }>();
  [...new Set(picks)].sort((a, b) => a - b).forEach((p, k) => byIndex.set(p, anchors[k]!));
  const samples: Sample[] = picks.map((p, k) => {
    const a = byIndex.get(p)!;
    return { user_id: a.user_id, as_of: k % 2 === 0 ? a.t : a.t + Math.floor(random() * 3 * 86_400_000) };
  });

  options.progress?.log(`parity on ${source}: ${samples.length} samples, ${features.length} features; offline (DuckDB)...`);
  const spine = sql`(SELECT * FROM (VALUES ${join(samples.map((s, k) => sql`(${s.user_id}, ${new Date(s.as_of)}, ${k})`))}) AS v(user_id, as_of, sample))`;
  const offline = await lake.query<Record<string, FeatureValue>>(
    trainingSetSql(features, { spine, events: sql`(SELECT * FROM events WHERE source = ${source})` }),
  );

  options.progress?.log(`parity on ${source}: online (replaying the events of ${new Set(samples.map((s) => s.user_id)).size} users)...`);
  const users = [...new Set(samples.map((s) => s.user_id))];
  const events = await lake.query<{ event_id: string; t: number; user_id: string; event: string; props: string }>(sql`
    SELECT event_id, CAST(epoch_ms(time) AS DOUBLE) AS t, user_id, event, CAST(props AS VARCHAR) AS props
    FROM events WHERE source = ${source} AND user_id IN (${join(users)}) ORDER BY time, event_id`);
  const compiled = new OnlineFeatures(features);
  const states = new Map<string, UserState>();
  const order = samples.map((_, k) => k).sort((a, b) => samples[a]!.as_of - samples[b]!.as_of);
  const online: Record<string, FeatureValue>[] = new Array(samples.length);
  let next = 0;
  const readUpTo = (time: number) => {
    // A sample at time t sees the events strictly before t.
    for (; next < order.length && samples[order[next]!]!.as_of <= time; next++) {
      const s = samples[order[next]!]!;
      online[order[next]!] = compiled.read(states.get(s.user_id), s.as_of).values;
    }
  };
  for (const e of events) {
    readUpTo(e.t);
    let state = states.get(e.user_id);
    if (!state) states.set(e.user_id, (state = compiled.emptyState()));
    compiled.update(state, { event_id: e.event_id, time: e.t, user_id: e.user_id, event: e.event, props: JSON.parse(e.props) as Record<string, unknown> });
    if (compiled.expire(state, e.t)) states.delete(e.user_id);
  }
  readUpTo(Number.POSITIVE_INFINITY);

  const report: FeatureParity[] = features.map((f) => ({ name: f.name, compared: 0, mismatches: 0, largestDifference: 0 }));
  samples.forEach((s, k) => {
    features.forEach((f, i) => {
      const a = offline[k]![f.name]!;
      const b = online[k]![f.name]!;
      tally(report[i]!, { user_id: s.user_id, as_of: new Date(s.as_of).toISOString(), offline: a, online: b });
    });
  });
  return { source, samples: samples.length, events: events.length, mismatches: report.reduce((n, r) => n + r.mismatches, 0), features: report };
}

/**
 * Counts one comparison of an offline and an online value into a feature's row: numbers agree up to
 * a relative 1e-9 (float sums in another order), lists exactly. Shared by parity and skew reports.
 */
export function tally(row: FeatureParity, compared: NonNullable<FeatureParity['example']>): void {
  const { offline, online } = compared;
  row.compared++;
  const difference = typeof offline === 'number' && typeof online === 'number' ? Math.abs(offline - online) : undefined;
  const same = difference !== undefined ? difference <= 1e-9 * Math.max(1, Math.abs(offline as number)) : JSON.stringify(offline) === JSON.stringify(online);
  if (same) return;
  row.mismatches++;
  if (difference !== undefined) row.largestDifference = Math.max(row.largestDifference, difference);
  row.example ??= compared;
}
