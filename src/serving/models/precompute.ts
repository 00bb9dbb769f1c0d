import { InputError, NonFiniteScoreError } from '../../workbench/errors.js';
import type { EnrichedEvent } from '../../workbench/event.js';
import type { FeatureValue } from '../../workbench/features/definition.js';
import type { ModelBundle } from '../../workbench/models/bundle.js';
import type { OltpStore, Prediction } from '../../workbench/oltp/store.js';
import type { FeatureServing } from '../features/serving.js';
import type { EventConsumer } from '../pipeline/consumer.js';
import type { ModelServer } from './model-server.js';

export interface PrecomputeRule {
  /** The event that triggers scoring its user, e.g. `login`. */
  event: string;
  model: string;
  alias?: string;
}

/**
 * Precomputed predictions, as the seed article describes: when a user does the trigger event, the
 * service scores them and writes the score to the OLTP `predictions` table, where the app reads it
 * without calling the model. Scores use the user's features with that very event folded in (the
 * consumer waits for the features consumer to pass the batch). Writes are upserts, so a batch
 * handled again after a restart changes nothing.
 */
export class Precompute implements EventConsumer {
  readonly name = 'precompute';
  private lastWarning = 0;

  constructor(
    private readonly rules: readonly PrecomputeRule[],
    private readonly models: ModelServer,
    private readonly features: FeatureServing,
    private readonly oltp: OltpStore,
    private readonly logEnd: () => Promise<number>,
    private readonly report: {
      warn(err: unknown, message: string): void;
      scored?(model: string, count: number): void;
      /** The feature values scored (drift: precomputed scores are served to the app, so their inputs count too). */
      observed?(bundle: ModelBundle, rows: readonly Record<string, FeatureValue>[]): void;
    },
  ) {}

  /** Where it stopped; the first time, the end of the log: history is not rescored. */
  async resumeAt(committed: number): Promise<number> {
    return committed > 0 ? committed : this.logEnd();
  }

  async handle(events: EnrichedEvent[], first: number): Promise<void> {
    const end = first + events.length;
    for (let waited = 0; this.features.offset < end && waited < 30_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
    for (const rule of this.rules) {
      const users = [...new Set(events.filter((e) => e.event === rule.event).map((e) => e.user_id))];
      if (users.length === 0) continue;
      let loaded: Awaited<ReturnType<ModelServer['resolve']>>;
      try {
        loaded = await this.models.resolve({ model: rule.model, alias: rule.alias });
      } catch (err) {
        // Not published yet: say so now and then, and keep consuming.
        if (Date.now() - this.lastWarning > 60_000) {
          this.lastWarning = Date.now();
          this.report.warn(err, `precompute on ${rule.event}: model ${rule.model} cannot be resolved; no scores written`);
        }
        continue;
      }
      const rows: Record<string, FeatureValue>[] = [];
      const at = this.features.now();
      for (const user of users) rows.push((await this.features.read(user, at)).values);
      const scores = loaded.classifier.predict(rows);
      this.report.observed?.(loaded.bundle, rows);
      const now = new Date(at).toISOString();
      const version = loaded.bundle.version;
      const predictions: Prediction[] = [];
      const unscored: string[] = [];
      users.forEach((user_id, i) => {
        const score = scores[i]!;
        if (Number.isFinite(score)) predictions.push({ model: rule.model, version, user_id, score, created_at: now });
        else unscored.push(user_id);
      });
      // A score that is not a number is never written for the app to read: the user keeps the last one.
      if (unscored.length > 0) {
        this.report.warn(
          new NonFiniteScoreError(`model ${rule.model} version ${version} scored ${unscored.length} users as NaN or infinite (first: ${unscored[0]})`),
          `precompute on ${rule.event}: scores not written`,
        );
      }
      if (predictions.length === 0) continue;
      await this.oltp.upsertPredictions(predictions);
      this.report.scored?.(rule.model, predictions.length);
    }
  }
}

/** `login=app-churn` or `login=app-churn@challenger`, comma-separated. */
export function parsePrecompute(spec: string): PrecomputeRule[] {
  if (!spec.trim()) return [];
  return spec.split(',').map((part) => {
    const m = /^\s*([a-z][a-z0-9_]*)\s*=\s*([a-z][a-z0-9-]*)(?:@([a-z][a-z0-9_-]*))?\s*$/.exec(part);
    if (!m) throw new InputError(`precompute ${JSON.stringify(part.trim())}: write event=model or event=model@alias, e.g. login=app-churn`);
    return { event: m[1]!, model: m[2]!, ...(m[3] ? { alias: m[3] } : {}) };
  });
}
