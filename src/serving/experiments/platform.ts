import { join } from 'node:path';
import { wallClock, type Clock } from '../../workbench/clock.js';
import type { Experiment, Metric } from '../../workbench/experiments/definition.js';
import { experimentResults, type ExperimentReport } from '../../workbench/experiments/results.js';
import { metricCatalog } from '../../workbench/experiments/metrics.js';
import type { UserDims } from '../../workbench/event.js';
import type { OltpStore, WriteGuard } from '../../workbench/oltp/store.js';
import type { LeaseTerm } from '../cluster/lease.js';
import type { AlertSink } from '../observability/alerts.js';
import type { Logger } from '../observability/logger.js';
import { Assigner, type ArmAnswer, type ExposureKey } from './assigner.js';
import { unavailable } from '../errors.js';
import { Decider, type AliasMover } from './decider.js';
import { Experiments } from './experiments.js';
import { LostExposures, type LostExposureOptions } from './lost-exposures.js';
import { ExperimentTracker } from './tracker.js';

/** The decider's lease, as the platform needs it: the current term while held, and the fence of a term's writes. */
export interface DecidingLease {
  term(): LeaseTerm | undefined;
  guard(term: LeaseTerm): WriteGuard;
}

/** The sweep for exposures lost between a claim and its append: the log's end (the service's log), its pace and grace period. */
export interface ExposureSweep extends LostExposureOptions {
  logEnd: () => Promise<number>;
  /** Default 15 s. */
  everyMs?: number;
}

/**
 * The experimentation platform inside the service: definitions (OLTP), sticky assignment and
 * exposure, tagging at ingest, live statistics (a log consumer), results and decisions.
 */
export class ExperimentPlatform {
  readonly assigner: Assigner;
  readonly tracker: ExperimentTracker;
  readonly decider: Decider;
  private logExposures: (keys: ExposureKey[]) => Promise<unknown> = async () => undefined;
  private timer: NodeJS.Timeout | undefined;
  private evaluating: Promise<void> | undefined;
  private deciding: DecidingLease | undefined;
  private lost: LostExposures | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<number> | undefined;

  private constructor(
    readonly experiments: Experiments,
    private readonly oltp: OltpStore,
    alerts: AlertSink,
    private readonly logger: Logger,
    instanceDir: string,
    models?: AliasMover,
    clock: Clock = wallClock,
  ) {
    this.assigner = new Assigner(experiments, oltp, (err, message) => logger.error({ err }, message), clock, { shared: oltp.kind === 'postgres' });
    const definition = (key: string) => {
      try {
        return experiments.get(key).experiment;
      } catch {
        return undefined;
      }
    };
    this.tracker = new ExperimentTracker(definition, experiments.metrics, {
      snapshotPath: join(instanceDir, 'consumers', 'experiments.snapshot'),
      warn: (m) => logger.warn(m),
      refresh: () => experiments.refresh(),
    });
    this.decider = new Decider(experiments, this.tracker, alerts, logger, models, clock);
  }

  /** `clock`: the time of assignments made through the API and of decisions (default the wall clock). */
  static async open(options: {
    oltp: OltpStore;
    alerts: AlertSink;
    logger: Logger;
    /** Where the tracker keeps its snapshot: this instance's own dir (every instance tracks the whole log itself). */
    instanceDir: string;
    metrics?: readonly Metric[];
    models?: AliasMover;
    clock?: Clock;
  }): Promise<ExperimentPlatform> {
    const experiments = await Experiments.open(options.oltp, metricCatalog(options.metrics), (message) => options.logger.warn(message));
    return new ExperimentPlatform(experiments, options.oltp, options.alerts, options.logger, options.instanceDir, options.models, options.clock);
  }

  /**
   * How exposures of users assigned through the API reach the log (the service's ingest), the
   * decision loop's pace, and the lease it acts under (without one it always acts, as a single
   * service does): every instance evaluates, for its reports; only the holder acts, fenced.
   */
  start(logExposures: (keys: ExposureKey[]) => Promise<unknown>, decideEveryMs = 2_000, deciding?: DecidingLease, sweep?: ExposureSweep): void {
    this.logExposures = logExposures;
    this.deciding = deciding;
    this.timer = setInterval(() => void this.evaluate(), decideEveryMs);
    this.timer.unref();
    if (sweep) {
      const { logEnd, everyMs = 15_000, ...options } = sweep;
      const deps = { oltp: this.oltp, experiments: this.experiments, tracker: this.tracker, assigner: this.assigner, logger: this.logger, logEnd };
      this.lost = new LostExposures({ ...deps, logExposures: (keys) => this.logExposures(keys) }, options);
      this.sweepTimer = setInterval(() => void this.sweepLostExposures(), everyMs);
      this.sweepTimer.unref();
    }
  }

  /** Exposures re-logged by this instance's sweeps (each: an instance stopped between a claim and its append). */
  get reloggedExposures(): number {
    return this.lost?.relogged ?? 0;
  }

  /**
   * Logs the exposures of users whose assigning instance stopped before logging them (see
   * LostExposures): only while this instance holds the decider's lease (or has none to hold), one
   * sweep at a time. Resolves with how many it re-logged.
   */
  sweepLostExposures(): Promise<number> {
    if (!this.sweeping) {
      // Cleared in a callback, after the assignment, even when the sweep ends without waiting for anything.
      const run = this.sweepOnce().finally(() => {
        if (this.sweeping === run) this.sweeping = undefined;
      });
      this.sweeping = run;
    }
    return this.sweeping;
  }

  private async sweepOnce(): Promise<number> {
    try {
      const term = this.deciding?.term();
      if (!this.lost || (this.deciding && !term)) return 0;
      return await this.lost.sweep(term?.signal);
    } catch (err) {
      this.logger.error({ err }, 'the sweep for lost experiment exposures failed; retrying on the next tick');
      return 0;
    }
  }

  /**
   * Re-reads definitions (other processes change them too), evaluates every running experiment once
   * (acting only while this instance holds the decider's lease), and logs exposures whose carrier failed.
   */
  evaluate(): Promise<void> {
    this.evaluating ??= (async () => {
      try {
        await this.experiments.refresh();
        const term = this.deciding?.term();
        if (!this.deciding) await this.decider.evaluate();
        else if (term) await this.decider.evaluate({ guard: this.deciding.guard(term), signal: term.signal });
        else await this.decider.evaluate({ act: false });
        const pending = this.assigner.pendingExposures();
        if (pending.length > 0) await this.logExposures(pending);
      } catch (err) {
        this.logger.error({ err }, 'experiment evaluation failed; retrying on the next tick');
      } finally {
        this.evaluating = undefined;
      }
    })();
    return this.evaluating;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.sweepTimer);
    await this.evaluating;
    await this.sweeping;
  }

  /**
   * A user's arms: in one experiment, or in every experiment that is not a draft. Users enter
   * running experiments here (sticky; the exposure is logged before the answer); stopped and
   * rolled-back experiments answer control, shipped ones their winner.
   */
  async assign(user: { user_id: string; dims?: Partial<UserDims> }, key?: string): Promise<ArmAnswer[]> {
    const list = key ? [this.experiments.get(key).experiment] : this.experiments.list().map((s) => s.experiment);
    const known = user.dims ?? (await this.oltp.getUsers([user.user_id])).get(user.user_id);
    const answers: ArmAnswer[] = [];
    for (const e of list) {
      const answer = await this.assigner.armFor(e, { user_id: user.user_id, ...(known ? { dims: known } : {}) }, { enroll: true });
      if (answer) answers.push(answer);
    }
    // Users just assigned (or whose exposure an earlier, failed append was carrying) are exposed before the answer.
    const pending = answers.map((a) => ({ experiment: a.experiment, user_id: user.user_id })).filter((x) => this.assigner.isUnlogged(x));
    if (pending.length > 0) {
      await this.logExposures(pending);
      const lost = pending.filter((x) => this.assigner.isUnlogged(x));
      if (lost.length > 0)
        throw unavailable(`the exposure of ${user.user_id} to ${lost.map((x) => x.experiment).join(', ')} could not be logged yet; ask again`);
    }
    return answers;
  }

  /**
   * The alias of `model` that a user gets through a running experiment whose arms serve that
   * model, from the user's existing assignment (predictions do not enroll users: exposure comes
   * from the experiment's exposureEvent or the assignment API). Shipped experiments moved the alias
   * already; stopped and rolled-back ones answer the default alias.
   */
  async modelArm(model: string, user_id: string): Promise<{ experiment: string; arm: string; alias: string } | undefined> {
    for (const e of this.experiments.running()) {
      if (!e.arms.some((a) => a.model?.name === model)) continue;
      const answer = await this.assigner.armFor(e, { user_id }, { enroll: false });
      const arm = answer && e.arms.find((a) => a.key === answer.arm);
      if (arm?.model?.name === model) return { experiment: e.key, arm: arm.key, alias: arm.model.alias };
    }
    return undefined;
  }

  report(key: string): ExperimentReport {
    const e: Experiment = this.experiments.get(key).experiment;
    const results = this.decider.results(e);
    const timeline = this.tracker.timeline(key).map((stats) => {
      const r = experimentResults(e, this.experiments.metrics, stats);
      return {
        at: stats.asOf!,
        users: Object.fromEntries(r.arms.map((a) => [a.arm, a.users])),
        lifts: r.metrics.flatMap((m) =>
          m.comparisons.map((c) => ({
            metric: m.metric,
            arm: c.arm,
            ...(c.sequential.estimate !== undefined ? { lift: c.sequential.estimate } : {}),
            ...(c.sequential.ci ? { ci: c.sequential.ci } : {}),
          })),
        ),
      };
    });
    const decision = this.decider.decision(key);
    return { results, ...(decision ? { decision } : {}), timeline };
  }
}
