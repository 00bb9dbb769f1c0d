import type { ClaimCursor, ClaimedAssignment, OltpStore } from '../../workbench/oltp/store.js';
import { dict } from '../../workbench/dict.js';
import { unavailable } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Assigner, ExposureKey } from './assigner.js';
import type { Experiments } from './experiments.js';
import type { ExperimentTracker } from './tracker.js';

/** How long after its claim an assignment's exposure must be in the log before it counts as lost. */
export const DEFAULT_EXPOSURE_GRACE_MS = 60_000;
/** Claims read per query. */
const PAGE_ROWS = 2_000;
/** How long a sweep waits for the statistics to reach the log's end before it gives up until the next one. */
const CATCH_UP_MS = 10_000;
/**
 * How far back the next sweep starts before the last one's cutoff. A PostgreSQL claim is timed at
 * its transaction's start and seen at its commit: one that commits after a sweep read past its time
 * would be skipped by a cursor that starts exactly there. Rows read again are found exposed.
 */
const COMMIT_SLACK_MS = 10_000;

export interface LostExposureOptions {
  /** Default DEFAULT_EXPOSURE_GRACE_MS. */
  graceMs?: number;
  /** Default CATCH_UP_MS. */
  catchUpMs?: number;
  /** Default PAGE_ROWS. */
  pageRows?: number;
  /** Told how many exposures each sweep re-logged (when it re-logged any): the service's counter on /metrics. */
  onRelogged?: (count: number) => void;
}

export interface LostExposureDeps {
  oltp: OltpStore;
  experiments: Experiments;
  tracker: ExperimentTracker;
  assigner: Assigner;
  logger: Logger;
  /** The event log's end (the offset its next record gets). */
  logEnd: () => Promise<number>;
  /** Appends the exposures the assigner owes for these users (the service's ingest). */
  logExposures: (keys: ExposureKey[]) => Promise<unknown>;
}

/**
 * Finds assignments whose exposure never reached the log and logs it. A claim's winner logs the
 * exposure right after storing the assignment (see Assigner); an instance killed in between leaves
 * the user assigned and unexposed, and nothing else would ever log them, so the statistics would
 * leave them out. Run by the holder of the decider's lease (one instance at a time), a sweep lists
 * the claims made since the last sweep's cutoff and at least the grace period before now (both on
 * the database's clock, which timed every instance's claims), and re-logs the exposure of each
 * claimed user the statistics have not counted, as the claimer would have logged it: the same
 * event, with the same deterministic event_id and the assignment's time.
 *
 * An exposure still in flight must not be taken as lost: the sweep reads the log's end first, its
 * first page of claims (whose cutoff is then the grace period before that end was read), and acts
 * only once the statistics have applied the log up to that end. A claimer alive then had its
 * exposure in the log long before. A claimer alive but stuck for longer than the grace period, or
 * a deposed decider not yet aware of it, can still put a second copy in the log: the statistics
 * count a user once whatever the copies (`ExperimentTracker.exposed`), and ingest drops a copy whose
 * id it has seen.
 *
 * The first sweep of a process reads every timed claim (in pages): it cannot know what the previous
 * holder swept. Later ones start at their own last cutoff, which holds across lease changes: a
 * claim made since then is in the window, whoever swept meanwhile.
 */
export class LostExposures {
  /** Claims timed before this were swept by this process; undefined before its first sweep. */
  private horizon: string | undefined;
  /** Exposures this process re-logged (each one: an instance died between a claim and its append). */
  relogged = 0;
  private readonly graceMs: number;
  private readonly catchUpMs: number;
  private readonly pageRows: number;
  private readonly onRelogged: ((count: number) => void) | undefined;

  constructor(
    private readonly deps: LostExposureDeps,
    options: LostExposureOptions = {},
  ) {
    this.graceMs = options.graceMs ?? DEFAULT_EXPOSURE_GRACE_MS;
    this.catchUpMs = options.catchUpMs ?? CATCH_UP_MS;
    this.pageRows = options.pageRows ?? PAGE_ROWS;
    this.onRelogged = options.onRelogged;
  }

  /**
   * One sweep; returns how many exposures it re-logged. Gives up early (and the next sweep covers
   * the same claims) when the statistics do not catch up in time or `signal` (the lease term's) fires.
   * Stopped experiments are swept too: they may run again, and their users then count.
   */
  async sweep(signal?: AbortSignal): Promise<number> {
    const { oltp, experiments, tracker } = this.deps;
    const keys = experiments
      .list()
      .filter((s) => s.experiment.status === 'running' || s.experiment.status === 'stopped')
      .map((s) => s.experiment.key);
    if (keys.length === 0) return 0;
    const end = await this.deps.logEnd();
    const start: ClaimCursor | undefined = this.horizon === undefined ? undefined : { claimed_at: this.horizon, experiment: '', user_id: '' };
    let page = await oltp.claimedAssignments({ experiments: keys, ...(start ? { after: start } : {}), olderThanMs: this.graceMs, limit: this.pageRows });
    const { until } = page;
    if (!(await this.caughtUp(end, signal))) return 0;
    let relogged = 0;
    for (;;) {
      if (signal?.aborted) return relogged;
      const lost = page.rows.filter((a) => !tracker.exposed(a.experiment, a.user_id));
      if (lost.length > 0) relogged += await this.relog(lost);
      if (page.rows.length < this.pageRows) break;
      page = await oltp.claimedAssignments({ experiments: keys, after: page.rows[page.rows.length - 1]!, until, limit: this.pageRows });
    }
    this.horizon = new Date(Date.parse(until) - COMMIT_SLACK_MS).toISOString();
    return relogged;
  }

  /** Whether the statistics reach `end` within catchUpMs (they apply the log as it comes: usually at once). */
  private async caughtUp(end: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + this.catchUpMs;
    while (this.deps.tracker.position < end) {
      if (signal?.aborted || Date.now() >= deadline) {
        if (!signal?.aborted)
          this.deps.logger.info({ position: this.deps.tracker.position, end }, 'lost exposures: the statistics lag the log; sweeping later');
        return false;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return true;
  }

  /** Logs the exposures of claims whose claimer died before appending them; throws when the append fails (the next sweep tries again). */
  private async relog(lost: readonly ClaimedAssignment[]): Promise<number> {
    const { assigner } = this.deps;
    // Claims this process won and still owes (their carrier failed) are not lost: its platform timer
    // logs them; they go along here, uncounted.
    const adopted = assigner.adopt(lost);
    await this.deps.logExposures(lost.map((a) => ({ experiment: a.experiment, user_id: a.user_id })));
    const unlogged = lost.filter((a) => assigner.isUnlogged(a));
    if (unlogged.length > 0) throw unavailable(`${unlogged.length} lost exposures could not be logged yet; the next sweep tries again`);
    if (adopted.length > 0) {
      this.relogged += adopted.length;
      this.onRelogged?.(adopted.length);
      const byExperiment = dict<number>();
      for (const x of adopted) byExperiment[x.experiment] = (byExperiment[x.experiment] ?? 0) + 1;
      this.deps.logger.warn(
        { relogged: adopted.length, experiments: byExperiment, total: this.relogged },
        `re-logged ${adopted.length} experiment exposures that never reached the log (an instance stopped between assigning the users and logging their exposure)`,
      );
    }
    return adopted.length;
  }
}
