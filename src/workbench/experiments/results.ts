import { own } from '../dict.js';
import { cupedDifferences, type CovariateSums } from '../stats/cuped.js';
import { sampleSizePerArm } from '../stats/power.js';
import { bayesianSummary, ratioDifference } from '../stats/ratio.js';
import { sequential } from '../stats/sequential.js';
import { holm, moments, relativeLift, sampleRatioMismatch, welch, type Estimate, type Moments, type TestOptions } from '../stats/two-sample.js';
import type { DecisionRecord } from './decide.js';
import type { Experiment, ExperimentStatus, Metric } from './definition.js';

/**
 * An experiment's results from per-arm sufficient statistics: what the service's live consumer keeps
 * and what a notebook computes from the lakehouse with one GROUP BY, so both read the same numbers.
 * The first arm is the control. Each treatment arm is compared with it on every metric:
 * - fixed horizon: Welch's test on the difference and the delta-method relative lift
 *   ((m_t - m_c) / |m_c|), both with Student's t at Welch's degrees of freedom (the experiment's
 *   `analysis` may choose the normal); a conversion's variance is p (1 - p);
 * - CUPED (conversion and mean metrics): the lift of the covariate-adjusted means, the covariate
 *   being the metric's pre-period value or, with CUPAC, a model's prediction made before exposure;
 * - always valid: the sequential interval of the effect the experiment reads (relative by default;
 *   CUPED-adjusted when available), which is what decisions use, since the results are watched
 *   continuously; with more than one treatment arm at alpha / (arms - 1), and the fixed-horizon
 *   p-values Holm-adjusted across arms. When the control mean is 0 a relative effect is undefined:
 *   the comparison then reads the absolute difference (`effect: 'absolute'`), so a guard-rail such
 *   as cancellations, 0 in control, is still judged.
 */

/** Per-arm sums of one metric: Y the value per user and X its pre-exposure value (for a ratio metric, X is the denominator). */
export type MetricSums = CovariateSums;

/** One arm's users and per-metric sufficient statistics. */
export interface ArmStats {
  arm: string;
  users: number;
  metrics: Record<string, MetricSums>;
}

/** An experiment's per-arm sufficient statistics, as the service keeps them live or the lakehouse recomputes them. */
export interface ExperimentStats {
  arms: ArmStats[];
  /** Event time of the first exposure, and of the newest event counted (ISO-8601). */
  firstExposure?: string;
  asOf?: string;
}

export const ALPHA = 0.05;
/** p-value under which the split of users is declared broken (GrowthBook's default). */
export const SRM_THRESHOLD = 0.001;
/** The sample size at which the always-valid interval is tightest, when the experiment plans none (GrowthBook's default). */
export const SEQUENTIAL_TUNING = 5000;

/**
 * The always-valid interval's tuning parameter for the comparison of `arm` with the control: the
 * experiment's `analysis.sequentialTuning`; else the users the two arms will have when the plan
 * is reached (`plannedUsersPerArm` is the smallest live arm's; each arm gets its weight's share),
 * which is GrowthBook's advice (the sample size at which a decision is most likely, fixed for the
 * experiment); else GrowthBook's default, 5,000.
 *
 * @example
 * ```ts
 * sequentialTuningOf(experiment, 'treatment'); // 2 x plannedUsersPerArm for two arms of equal weight
 * ```
 */
export function sequentialTuningOf(e: Experiment, arm: string): number {
  if (e.analysis.sequentialTuning !== undefined) return e.analysis.sequentialTuning;
  if (e.plannedUsersPerArm === undefined) return SEQUENTIAL_TUNING;
  const smallest = Math.min(...e.arms.filter((a) => a.weight > 0).map((a) => a.weight));
  const weight = (key: string) => e.arms.find((a) => a.key === key)?.weight ?? 0;
  const share = weight(e.arms[0]!.key) + weight(arm);
  // Two paused arms get no more users: no planned size for them.
  return share > 0 ? (e.plannedUsersPerArm * share) / smallest : SEQUENTIAL_TUNING;
}

export type Verdict = 'better' | 'worse' | 'inconclusive' | 'no estimate';

/** One treatment arm against control on one metric: lifts (plain, CUPED, always valid), chance to win and a verdict. */
export interface Comparison {
  arm: string;
  control: { users: number; mean?: number };
  treatment: { users: number; mean?: number };
  absolute: Estimate;
  relative: Estimate;
  /** The covariate-adjusted lift: CUPED on the metric's own pre-period value, or CUPAC on a model's prediction made before exposure (`covariate`). */
  cuped?: { relative: Estimate; absolute?: Estimate; varianceReduction: number; theta: number; covariate: 'pre-period' | 'prediction' };
  /** The effect `sequential`, the chance to win and the verdict are on: relative, or absolute (chosen, or because the control mean is 0). */
  effect: 'relative' | 'absolute';
  /** Always-valid interval and p-value of the effect (CUPED-adjusted when available), at alpha / (treatment arms). */
  sequential: Estimate;
  /** The fixed-horizon relative lift's p-value, Holm-adjusted across this metric's treatment arms. */
  holmPValue?: number;
  /** Chance the treatment is better for the metric's goal, and the expected relative loss of shipping it. */
  chanceToWin?: number;
  expectedLoss?: number;
  /** By the sequential interval, for the metric's goal. */
  verdict: Verdict;
}

/** One metric's role (objective or guardrail) and its comparisons, one per treatment arm. */
export interface MetricResult {
  metric: string;
  kind: Metric['kind'];
  role: 'objective' | 'guardrail';
  /** The direction that is good for this metric. */
  goal: 'increase' | 'decrease';
  /** Guard-rails: the relative change in the bad direction that is tolerated. */
  tolerance?: number;
  comparisons: Comparison[];
}

/** An experiment's results: users per arm, the sample-ratio check and every metric's comparisons (see `experimentResults`). */
export interface ExperimentResults {
  experiment: string;
  status: ExperimentStatus;
  control: string;
  asOf?: string;
  firstExposure?: string;
  arms: { arm: string; weight: number; users: number }[];
  srm: { pValue: number; chiSquare: number; mismatch: boolean; reason?: string };
  metrics: MetricResult[];
  plan: Plan;
}

/** What the service answers for an experiment's results (GET /v1/experiments/:key/results). */
export interface ExperimentReport {
  results: ExperimentResults;
  decision?: DecisionRecord;
  /** Each metric's lift per arm over time (event time): the always-valid interval at each point. */
  timeline: { at: string; users: Record<string, number>; lifts: { metric: string; arm: string; lift?: number; ci?: [number, number] }[] }[];
}

const EMPTY: MetricSums = { n: 0, sumY: 0, sumY2: 0, sumX: 0, sumX2: 0, sumXY: 0 };

/**
 * An experiment's results from per-arm sums: sample-ratio check, then per metric and treatment arm the lift, CUPED, the always-valid interval and a verdict.
 *
 * @example
 * ```ts
 * const metrics = metricCatalog();
 * const results = experimentResults(experiment, metrics, await experimentStatsFromLake(lake, experiment, metrics));
 * console.log(results.srm.mismatch, results.metrics[0]?.comparisons[0]?.relative.estimate);
 * ```
 */
export function experimentResults(e: Experiment, metrics: ReadonlyMap<string, Metric>, stats: ExperimentStats): ExperimentResults {
  const byArm = new Map(stats.arms.map((a) => [a.arm, a]));
  const arms = e.arms.map((a) => ({ arm: a.key, weight: a.weight, users: byArm.get(a.key)?.users ?? 0 }));
  const srm = sampleRatioMismatch(
    arms.map((a) => a.users),
    arms.map((a) => a.weight),
  );
  const roles = [
    { metric: e.objective, role: 'objective' as const, goal: e.objectiveGoal, tolerance: undefined },
    ...e.guardrails.map((g) => ({
      metric: g.metric,
      role: 'guardrail' as const,
      goal: g.bad === 'decrease' ? ('increase' as const) : ('decrease' as const),
      tolerance: g.tolerance,
    })),
  ];
  // Metric keys are the user's (`constructor` is one): only an own entry is the metric's sums.
  const sumsOf = (arm: string, metric: string) => own(byArm.get(arm)?.metrics, metric) ?? { ...EMPTY, n: byArm.get(arm)?.users ?? 0 };
  const control = e.arms[0]!.key;
  const results: MetricResult[] = roles.map(({ metric, role, goal, tolerance }) => {
    const m = metrics.get(metric);
    if (!m) throw new Error(`experiment ${e.key}: metric ${metric} is not defined`);
    // With several treatment arms, each always-valid interval is at alpha / (arms - 1) (Bonferroni), so
    // the chance that some useless arm looks better (and is shipped) stays at alpha.
    const alpha = ALPHA / Math.max(1, e.arms.length - 1);
    // One-sided: the objective towards its goal, a guard-rail towards its bad direction (its goal's opposite).
    const towards = role === 'objective' ? goal : goal === 'increase' ? 'decrease' : 'increase';
    const alternative: Alternative = e.analysis.alternative === 'one-sided' ? (towards === 'increase' ? 'greater' : 'less') : 'two-sided';
    const comparisons = e.arms.slice(1).map((a) => compare(e, m, a.key, sumsOf(control, metric), sumsOf(a.key, metric), goal, alpha, alternative));
    const adjusted = holm(comparisons.map((c) => c.relative.pValue ?? 1));
    comparisons.forEach((c, i) => {
      if (c.relative.pValue !== undefined) c.holmPValue = adjusted[i]!;
    });
    return { metric, kind: m.kind, role, goal, ...(tolerance !== undefined ? { tolerance } : {}), comparisons };
  });
  return {
    experiment: e.key,
    status: e.status,
    control,
    ...(stats.asOf ? { asOf: stats.asOf } : {}),
    ...(stats.firstExposure ? { firstExposure: stats.firstExposure } : {}),
    arms,
    srm: { ...srm, mismatch: srm.pValue < SRM_THRESHOLD },
    metrics: results,
    plan: plan(e, metrics.get(e.objective)!, sumsOf(control, e.objective), results[0]!, stats),
  };
}

/** An arm's moments of Y from its sums; a conversion's variance is p (1 - p), the binomial variance (GrowthBook's convention). */
function momentsOf(m: Metric, s: MetricSums): Moments {
  const mo = moments({ n: s.n, sum: s.sumY, sumSquares: s.sumY2, ...(s.shiftY !== undefined ? { shift: s.shiftY } : {}) });
  return m.kind === 'conversion' ? { ...mo, variance: mo.mean * (1 - mo.mean) } : mo;
}

type Alternative = NonNullable<TestOptions['alternative']>;

function compare(
  e: Experiment,
  m: Metric,
  arm: string,
  c: MetricSums,
  t: MetricSums,
  goal: 'increase' | 'decrease',
  sequentialAlpha: number,
  alternative: Alternative,
): Comparison {
  const options: TestOptions = { alpha: ALPHA, distribution: e.analysis.distribution, alternative };
  let absolute: Estimate;
  let relative: Estimate;
  let adjusted: Comparison['cuped'];
  let cMean: number | undefined;
  let tMean: number | undefined;
  if (m.kind === 'ratio') {
    const ratio = (s: MetricSums) => ({
      n: s.n,
      sumM: s.sumY,
      sumM2: s.sumY2,
      sumD: s.sumX,
      sumD2: s.sumX2,
      sumMD: s.sumXY,
      ...(s.shiftY !== undefined ? { shiftM: s.shiftY } : {}),
      ...(s.shiftX !== undefined ? { shiftD: s.shiftX } : {}),
    });
    absolute = ratioDifference(ratio(c), ratio(t), options);
    relative = ratioDifference(ratio(c), ratio(t), { ...options, relative: true });
    const ratioOf = (s: MetricSums) => {
      const d = s.n * (s.shiftX ?? 0) + s.sumX;
      return d !== 0 ? (s.n * (s.shiftY ?? 0) + s.sumY) / d : undefined;
    };
    cMean = ratioOf(c);
    tMean = ratioOf(t);
  } else {
    const mc = momentsOf(m, c);
    const mt = momentsOf(m, t);
    absolute = welch(mc, mt, options);
    relative = relativeLift(mc, mt, options);
    cMean = c.n > 0 ? mc.mean : undefined;
    tMean = t.n > 0 ? mt.mean : undefined;
    if (m.preExposureDays > 0) {
      // GrowthBook's reading: the adjusted difference, relative to the control's unadjusted mean.
      // One adjustment for both readings.
      const both = cupedDifferences(c, t, { ...options, theta: e.analysis.cupedTheta });
      adjusted = {
        relative: both.relative,
        absolute: both.absolute,
        varianceReduction: both.varianceReduction,
        theta: both.theta,
        covariate: m.covariate ? 'prediction' : 'pre-period',
      };
    }
  }
  // The effect read: the experiment's choice, or the absolute difference when a relative one is undefined (a control mean of 0).
  const controlZero = cMean === 0 && absolute.estimate !== undefined;
  const effect: Comparison['effect'] = e.analysis.effect === 'absolute' || controlZero ? 'absolute' : 'relative';
  const plain = effect === 'absolute' ? absolute : relative;
  const withCuped = effect === 'absolute' ? adjusted?.absolute : adjusted?.relative;
  // CUPED only where it has an estimate; otherwise the unadjusted one, which has the same reason when it has none.
  const basis = withCuped?.estimate !== undefined ? withCuped : plain;
  const seq = sequential(basis, c.n + t.n, sequentialAlpha, sequentialTuningOf(e, arm), alternative);
  // The experiment's prior is on the effect it chose to read: not on an absolute difference it falls back to.
  const prior = effect === e.analysis.effect ? e.analysis.prior : undefined;
  const bayes = bayesianSummary(basis, goal === 'increase' ? 'higher' : 'lower', prior);
  return {
    arm,
    control: { users: c.n, ...(cMean !== undefined ? { mean: cMean } : {}) },
    treatment: { users: t.n, ...(tMean !== undefined ? { mean: tMean } : {}) },
    absolute,
    relative,
    ...(adjusted ? { cuped: adjusted } : {}),
    effect,
    sequential: seq,
    ...(bayes.chanceToWin !== undefined ? { chanceToWin: bayes.chanceToWin, expectedLoss: bayes.expectedLossTreatment } : {}),
    verdict: verdict(seq, goal),
  };
}

function verdict(seq: Estimate, goal: 'increase' | 'decrease'): Verdict {
  if (!seq.ci) return 'no estimate';
  const [lo, hi] = seq.ci;
  if (lo > 0) return goal === 'increase' ? 'better' : 'worse';
  if (hi < 0) return goal === 'increase' ? 'worse' : 'better';
  return 'inconclusive';
}

/**
 * The plan of an experiment: the users per arm a fixed-horizon test of the objective needs to
 * detect the MDE with 80% power, against the users so far; and why a decision may come earlier.
 */
export interface Plan {
  /**
   * Users per arm for the MDE at 80% power at alpha 0.05, on the effect the experiment reads
   * (CUPED-adjusted; each arm's own variance for a conversion), with the experiment's sides: a
   * one-sided experiment is planned one-sided, towards the objective's goal.
   */
  usersPerArm?: number;
  /** The sides the plan is for (the experiment's `analysis.alternative`). */
  alternative?: 'two-sided' | 'one-sided';
  /** Users so far in the arm that sets the pace (the smallest weight, treatments included). */
  usersSoFar?: number;
  /** usersSoFar / usersPerArm. */
  progress?: number;
  /** Days (of event time) until the pacing arm has the planned users at the current rate. */
  daysToDecision?: number;
  reason?: string;
}

function plan(e: Experiment, m: Metric, control: MetricSums, objective: MetricResult, stats: ExperimentStats): Plan {
  if (m.kind === 'ratio') return { reason: 'planning covers conversion and mean metrics' };
  const mc = momentsOf(m, control);
  if (mc.n < 2 || mc.mean === 0 || mc.variance === 0) return { reason: 'the control arm has too little data to plan from' };
  // The effect planned for moves the mean by the MDE times |m_c| towards the goal (the relative
  // effect's convention); as a share of the (signed) mean, the planner's mde.
  const towards = objective.goal === 'decrease' ? -1 : 1;
  const mde = (towards * e.mde) / Math.sign(mc.mean);
  if (m.kind === 'conversion' && !(mc.mean * (1 + mde) < 1 && mc.mean * (1 + mde) > 0))
    return { reason: `a ${fmtShare(e.mde)} ${towards > 0 ? 'lift' : 'fall'} of a ${fmtShare(mc.mean)} rate is not a rate` };
  const reduction = Math.max(0, ...objective.comparisons.map((c) => c.cuped?.varianceReduction ?? 0));
  const usersPerArm = sampleSizePerArm({
    kind: m.kind,
    mean: mc.mean,
    // CUPED removes a share of each arm's variance; for a conversion, of the binomial one.
    sd: Math.sqrt(mc.variance * (1 - reduction)),
    ...(m.kind === 'conversion' ? { treatmentSd: Math.sqrt(mc.mean * (1 + mde) * (1 - mc.mean * (1 + mde)) * (1 - reduction)) } : {}),
    mde,
    effect: e.analysis.effect,
    alpha: ALPHA,
    // One-sided: the objective is tested towards its goal only, so it is planned so (z_{1-alpha}).
    alternative: e.analysis.alternative === 'one-sided' ? (towards > 0 ? 'greater' : 'less') : 'two-sided',
  });
  // Users per arm scale with the arm's weight; the smallest arm sets the pace.
  const live = e.arms.filter((a) => a.weight > 0);
  const pacing = live.reduce((low, a) => (a.weight < low.weight ? a : low), live[0]!);
  const byArm = new Map(stats.arms.map((a) => [a.arm, a.users]));
  const usersSoFar = byArm.get(pacing.key) ?? 0;
  const out: Plan = { usersPerArm, alternative: e.analysis.alternative, usersSoFar, progress: usersSoFar / usersPerArm };
  const users = stats.arms.reduce((s, a) => s + a.users, 0);
  const elapsedDays = stats.firstExposure && stats.asOf ? (Date.parse(stats.asOf) - Date.parse(stats.firstExposure)) / 86_400_000 : 0;
  if (!(elapsedDays > 0) || users === 0) return out;
  const weights = live.reduce((s, a) => s + a.weight, 0);
  const needed = (usersPerArm * weights) / pacing.weight;
  return { ...out, daysToDecision: Math.max(0, (needed - users) / (users / elapsedDays)) };
}

const fmtShare = (x: number) => `${(100 * x).toPrecision(3)}%`;
