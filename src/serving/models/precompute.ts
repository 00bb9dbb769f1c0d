import { InputError, NonFiniteScoreError } from '../../workbench/errors.js';
import type { EnrichedEvent } from '../../workbench/event.js';
import type { FeatureValue } from '../../workbench/features/definition.js';
import type { ModelBundle } from '../../workbench/models/bundle.js';
import type { OltpStore, Prediction } from '../../workbench/oltp/store.js';
import type { FeatureServing } from '../features/serving.js';
import type { EventConsumer } from '../pipeline/consumer.js';
import type { ModelServer, Scored } from './model-server.js';

export interface PrecomputeRule {
  /** The event that triggers scoring its user, e.g. `login`. */
  event: string;
  model: string;
  alias?: string;
  /** Events before this time (ms) are not scored: a model is not served before the history it was trained on has its windows (npm start). */
  from?: number;
}

/**
 * Precomputed predictions, as the seed article describes: when a user does the trigger event, the
 * service scores them and writes the score to the OLTP `predictions` table, where the app reads it
 * without calling the model. Each trigger is scored on the values its user had 1 ms after it (the
 * event folded in, nothing after it), read by the features consumer as it folded the event
 * (`FeatureServing.capture`): a model trained on those moments (`eventSpine`) sees the same inputs,
 * however far behind this consumer runs. (Reading when it got to them, a replay at full speed scored
 * logins a median 17 hours of event time after they happened.) A trigger without such a read (the
 * features consumer folded it before the service asked, or too many were waiting) is read at the
 * current time, counted and reported. Every trigger is scored (the drift monitor sees each);
 * the table keeps each user's latest. Writes are upserts, so a batch handled again after a restart
 * changes nothing.
 */
export class Precompute implements EventConsumer {
  readonly name = 'precompute';
  private lastWarning = 0;
  private lastLateWarning = 0;
  private late = 0;

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
      /**
       * Each score, as the prediction log records a served one (skew checks, CUPAC covariates). The
       * id is derived from the trigger's, so a batch handled again after a restart logs nothing twice.
       */
      predicted?(userId: string, scored: Scored, at: number, eventId: string): void;
    },
  ) {
    features.capture(rules.map((r) => r.event));
  }

  /** Where it stopped; the first time, the end of the log: history is not rescored. */
  async resumeAt(committed: number): Promise<number> {
    return committed > 0 ? committed : this.logEnd();
  }

  async handle(events: EnrichedEvent[], first: number): Promise<void> {
    const end = first + events.length;
    for (let waited = 0; this.features.offset < end && waited < 30_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
    try {
      for (const rule of this.rules) await this.score(rule, events, first);
    } finally {
      this.late += this.features.releaseCaptured(end);
      if (this.late > 0 && Date.now() - this.lastLateWarning > 60_000) {
        this.lastLateWarning = Date.now();
        this.report.warn(
          undefined,
          `precompute: ${this.late} triggers scored on their user's values at the current time, not at the event (the features consumer had no read of them: it folded them before the service started, or too many were waiting)`,
        );
        this.late = 0;
      }
    }
  }

  private async score(rule: PrecomputeRule, events: EnrichedEvent[], first: number): Promise<void> {
    const triggers: { user: string; offset: number; eventId: string }[] = [];
    events.forEach((e, i) => {
      if (e.event === rule.event && (rule.from === undefined || Date.parse(e.time) >= rule.from))
        triggers.push({ user: e.user_id, offset: first + i, eventId: e.event_id });
    });
    if (triggers.length === 0) return;
    let loaded: Awaited<ReturnType<ModelServer['resolve']>>;
    try {
      loaded = await this.models.resolve({ model: rule.model, alias: rule.alias });
    } catch (err) {
      // Not published yet: say so now and then, and keep consuming.
      if (Date.now() - this.lastWarning > 60_000) {
        this.lastWarning = Date.now();
        this.report.warn(err, `precompute on ${rule.event}: model ${rule.model} cannot be resolved; no scores written`);
      }
      return;
    }
    const rows: Record<string, FeatureValue>[] = [];
    const defaulted: string[][] = [];
    const at: number[] = [];
    for (const t of triggers) {
      let read = this.features.captured(t.offset);
      if (!read) {
        this.late++;
        const now = this.features.now();
        read = { ...(await this.features.read(t.user, now)), at: now };
      }
      rows.push(read.values);
      defaulted.push(read.defaulted);
      at.push(read.at);
    }
    const scores = loaded.classifier.predict(rows);
    this.report.observed?.(loaded.bundle, rows);
    const version = loaded.bundle.version;
    const model = { name: rule.model, version, ...(rule.alias ? { alias: rule.alias } : {}) };
    triggers.forEach((t, i) => {
      const score = scores[i]!;
      if (Number.isFinite(score))
        this.report.predicted?.(t.user, { score, model, features: rows[i]!, defaulted: defaulted[i]! }, at[i]!, `prediction-${rule.model}-${t.eventId}`);
    });
    // Each user's latest trigger is what the app reads.
    const latest = new Map<string, number>();
    triggers.forEach((t, i) => latest.set(t.user, i));
    const predictions: Prediction[] = [];
    const unscored: string[] = [];
    for (const [user_id, i] of latest) {
      const score = scores[i]!;
      if (Number.isFinite(score)) predictions.push({ model: rule.model, version, user_id, score, created_at: new Date(at[i]!).toISOString() });
      else unscored.push(user_id);
    }
    // A score that is not a number is never written for the app to read: the user keeps the last one.
    if (unscored.length > 0) {
      this.report.warn(
        new NonFiniteScoreError(`model ${rule.model} version ${version} scored ${unscored.length} users as NaN or infinite (first: ${unscored[0]})`),
        `precompute on ${rule.event}: scores not written`,
      );
    }
    if (predictions.length === 0) return;
    await this.oltp.upsertPredictions(predictions);
    this.report.scored?.(rule.model, predictions.length);
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
