import { decide, type Decision, type DecisionRecord } from '../../workbench/experiments/decide.js';
import { wallClock, type Clock } from '../../workbench/clock.js';
import type { Experiment } from '../../workbench/experiments/definition.js';
import type { WriteGuard } from '../../workbench/oltp/store.js';
import { experimentResults, type ExperimentResults } from '../../workbench/experiments/results.js';
import type { AlertSink } from '../observability/alerts.js';
import type { Logger } from '../observability/logger.js';
import type { Experiments } from './experiments.js';
import type { ExperimentTracker } from './tracker.js';

/** What moving a model alias needs: the version an alias points to, and the move. */
export interface AliasMover {
  versionOf(model: string, alias: string): Promise<string>;
  moveAlias(model: string, alias: string, version: string, meta: { by: string; reason: string }): Promise<unknown>;
}

const DECIDER = 'wb-decider';
const DAY_MS = 86_400_000;

/**
 * Evaluates every running experiment's results and acts on the decision when its mode is `auto`:
 * a rollback stops the experiment (its users get control from then on), a ship records the winner
 * (everyone gets it) and, for an arm that serves a model, moves the control arm's alias to the
 * winner's version. Each action is a recorded change of the experiment (who: wb-decider, with the
 * reason and the numbers behind it), a log line and an alert.
 */
export class Decider {
  private readonly latest = new Map<string, DecisionRecord>();

  constructor(
    private readonly experiments: Experiments,
    private readonly tracker: ExperimentTracker,
    private readonly alerts: AlertSink,
    private readonly logger: Logger,
    private readonly models?: AliasMover,
    private readonly clock: Clock = wallClock,
  ) {}

  results(e: Experiment): ExperimentResults {
    return experimentResults(e, this.experiments.metrics, this.tracker.stats(e.key));
  }

  /** The latest decision on an experiment (made on its last evaluation while it ran). */
  decision(key: string): DecisionRecord | undefined {
    return this.latest.get(key);
  }

  /**
   * Decides on every running experiment. `act: false` (an instance that does not hold the decider's
   * lease) only records the decisions, for the reports, and says nothing. `guard` runs in each
   * status change's transaction (the lease's fence): a decider that lost its lease, even one that
   * does not know it yet, writes nothing. `signal` (the lease term's) stops the round early.
   */
  async evaluate(options: { act?: boolean; guard?: WriteGuard; signal?: AbortSignal } = {}): Promise<void> {
    const { act = true, guard, signal } = options;
    for (const stored of this.experiments.list()) {
      const e = stored.experiment;
      if (e.status !== 'running') continue;
      if (signal?.aborted) return;
      const results = this.results(e);
      const elapsedDays = results.asOf && results.firstExposure ? (Date.parse(results.asOf) - Date.parse(results.firstExposure)) / DAY_MS : 0;
      const decision = decide(e, results, elapsedDays);
      const acts = act && decision.action !== 'continue' && decision.mode === 'auto';
      const previous = this.latest.get(e.key);
      const record: DecisionRecord = { ...decision, experiment: e.key, ...(results.asOf ? { asOf: results.asOf } : {}), acted: false };
      this.latest.set(e.key, record);
      if (!acts) {
        if (act && decision.action !== 'continue' && (previous?.action !== decision.action || previous.arm !== decision.arm)) {
          this.logger.info(
            { experiment: e.key, decision },
            `experiment ${e.key}: recommends ${decision.action}${decision.arm ? ` of ${decision.arm}` : ''} (recommend-only): ${decision.reason}`,
          );
        }
        continue;
      }
      try {
        await this.act(e, stored.version, decision, guard);
        record.acted = true;
      } catch (err) {
        this.logger.error({ err, experiment: e.key, decision }, `experiment ${e.key}: could not ${decision.action}`);
      }
    }
  }

  /**
   * The status change is the decision: it names the version it was read at, so of two deciders that
   * read one version only one can write (optimistic versioning alone makes each decision once), and
   * the guard (the lease's fence) keeps a decider that lost its lease from writing at all.
   */
  private async act(e: Experiment, version: number, d: Decision, guard?: WriteGuard): Promise<void> {
    const numbers = JSON.stringify(d.evidence);
    if (d.action === 'rollback') {
      await this.experiments.setStatus(e.key, 'rolled_back', version, DECIDER, `${d.reason} ${numbers}`, undefined, guard);
    } else {
      // The decision is recorded first: if the status cannot change (a concurrent edit, a lost lease), no alias has moved.
      await this.experiments.setStatus(e.key, 'shipped', version, DECIDER, `${d.reason} ${numbers}`, d.arm, guard);
      const winner = e.arms.find((a) => a.key === d.arm)!;
      const control = e.arms[0]!;
      if (winner.model && control.model && this.models) {
        try {
          const to = await this.models.versionOf(winner.model.name, winner.model.alias);
          await this.models.moveAlias(control.model.name, control.model.alias, to, { by: `${DECIDER} (experiment ${e.key})`, reason: d.reason });
        } catch (err) {
          this.logger.error(
            { err, experiment: e.key },
            `experiment ${e.key} shipped ${d.arm}, but its model alias could not be moved: move ${control.model.name}@${control.model.alias} by hand (wb models alias)`,
          );
          this.alerts.raise({
            kind: 'decision',
            series: `experiment:${e.key}`,
            labels: { experiment: e.key },
            direction: 'ship',
            reason: `shipped ${d.arm}, but moving ${control.model.name}@${control.model.alias} failed: ${(err as Error).message}`,
            detectedAt: new Date(this.clock.now()).toISOString(),
          });
        }
      }
    }
    this.logger.warn({ experiment: e.key, decision: d }, `experiment ${e.key}: ${d.action === 'rollback' ? 'rolled back' : `shipped ${d.arm}`}: ${d.reason}`);
    this.alerts.raise({
      kind: 'decision',
      series: `experiment:${e.key}`,
      labels: { experiment: e.key },
      direction: d.action === 'rollback' ? 'rollback' : 'ship',
      reason: d.reason,
      detectedAt: new Date(this.clock.now()).toISOString(),
    });
  }
}
