import { InputError } from '../errors.js';
import type { Lakehouse } from '../lakehouse.js';
import type { ModelRegistry } from '../models/registry.js';
import { join, sql } from '../sql.js';
import type { Feature, FeatureValue } from './definition.js';
import { trainingSetSql } from './offline.js';
import { tally, type FeatureParity } from './parity.js';

/** What `skewReport` found: per feature, how the values served with predictions differ from the offline values. */
export interface SkewReport {
  model: string;
  /** Predictions compared (request-time overrides are left out of the comparison). */
  predictions: number;
  mismatches: number;
  features: FeatureParity[];
}

/**
 * Training/serving skew: the feature values the service served with each logged prediction, set
 * against the values the offline compiler computes from the archived events at the prediction's
 * time. Differences come from events the online store had not folded in yet when it answered
 * (consumer lag), late events, or a bug in either compiler. Reads the `prediction` events the
 * service archives in the lakehouse (`live` source).
 *
 * @example
 * ```ts
 * const report = await skewReport(lake, ModelRegistry.open(registryDir()), { model: 'app-churn' });
 * ```
 */
export async function skewReport(lake: Lakehouse, registry: ModelRegistry, options: { model: string; limit?: number }): Promise<SkewReport> {
  const predictions = await lake.query<{ event_id: string; time: Date; user_id: string; version: string; features: string; overrides: string | null }>(sql`
    SELECT event_id, time, user_id, json_extract_string(props, '$.version') AS version, CAST(json_extract(props, '$.features') AS VARCHAR) AS features,
           CAST(json_extract(props, '$.overrides') AS VARCHAR) AS overrides
    FROM events WHERE source = 'live' AND event = 'prediction' AND json_extract_string(props, '$.model') = ${options.model}
    ORDER BY time DESC LIMIT ${options.limit ?? 1000}`);
  if (predictions.length === 0)
    throw new InputError(`no archived predictions of model ${options.model}: serve some (POST /v1/predict) and let the archiver catch up`);
  const byName = new Map<string, Feature>();
  for (const version of new Set(predictions.map((p) => p.version))) for (const f of registry.get(version).features) byName.set(f.name, f);
  const features = [...byName.values()];
  const spine = sql`(SELECT * FROM (VALUES ${join(predictions.map((p, k) => sql`(${p.user_id}, ${p.time}, ${k})`))}) AS v(user_id, as_of, k))`;
  const offline = await lake.query<Record<string, FeatureValue>>(
    // The live log as the service folded it: the compilers leave the service's own records out of `*` (SERVICE_EVENTS) themselves.
    trainingSetSql(features, { spine, events: sql`(SELECT * FROM events WHERE source = 'live')` }),
  );
  const report = new Map<string, FeatureParity>(features.map((f) => [f.name, { name: f.name, compared: 0, mismatches: 0, largestDifference: 0 }]));
  predictions.forEach((p, k) => {
    const served = JSON.parse(p.features) as Record<string, FeatureValue>;
    const overridden = new Set<string>(p.overrides ? (JSON.parse(p.overrides) as string[]) : []);
    for (const [name, value] of Object.entries(served)) {
      const r = report.get(name);
      if (!r || overridden.has(name)) continue;
      tally(r, { user_id: p.user_id, as_of: p.time.toISOString(), offline: offline[k]![name]!, online: value });
    }
  });
  const rows = [...report.values()];
  return { model: options.model, predictions: predictions.length, mismatches: rows.reduce((n, r) => n + r.mismatches, 0), features: rows };
}
