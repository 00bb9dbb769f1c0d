import type { Experiment } from './definition.js';
import type { Comparison, ExperimentResults } from './results.js';

/**
 * What to do with a running experiment, from its results. The rules, in order:
 * 1. A sample ratio mismatch blocks every automatic decision: the numbers cannot be trusted.
 * 2. Roll back when, for some treatment arm, a guard-rail is worse beyond its tolerance with
 *    sequential significance (the always-valid interval lies wholly past the tolerance). The
 *    tolerance is relative to the control mean: on an absolute effect it is tolerance x |m_c|, so a
 *    guard-rail whose control mean is 0 is judged on its absolute difference, beyond 0.
 * 3. Ship the arm with the largest objective lift among those whose objective is better with
 *    sequential significance and none of whose guard-rails is significantly worse, once the
 *    minimum run time has passed. The reason names any guard-rail without an estimate: it is not
 *    "not worse", only unknown.
 * 4. Otherwise continue, saying what is missing.
 * A decision before the plan's users (the fixed-horizon size for the MDE) says why it may come
 * early: the always-valid interval may be read at any time, and a lift larger than the MDE is
 * detected with fewer users; a rollback, that a harm is acted on as soon as it is certain.
 * `mode` is the experiment's setting for that action: `auto` acts, `recommend` only says.
 */
export interface Decision {
  action: 'ship' | 'rollback' | 'continue';
  /** The arm shipped, or the arm whose guard-rail failed. */
  arm?: string;
  mode: 'auto' | 'recommend';
  reason: string;
  /** The numbers behind it: the comparison that decided, as the results had it. */
  evidence?: { metric: string; arm: string; lift?: number; interval?: [number, number]; pValue?: number; srmPValue?: number };
}

/** A decision as the service records it: on which experiment, on results of when, and whether it was acted on (auto) or only recommended. */
export interface DecisionRecord extends Decision {
  experiment: string;
  /** Event time of the results it was made on. */
  asOf?: string;
  acted: boolean;
}

/**
 * A relative change as a signed percentage: +1.23%.
 *
 * @example
 * ```ts
 * fmtLift(0.0123); // '+1.23%'
 * ```
 */
export const fmtLift = (x: number | undefined) =>
  x === undefined ? 'n/a' : !Number.isFinite(x) ? infinite(x) : `${x >= 0 ? '+' : ''}${(100 * x).toFixed(2)}%`;
/** The open end of a one-sided interval. */
const infinite = (x: number) => (Number.isNaN(x) ? 'n/a' : x > 0 ? '+∞' : '-∞');
/** An effect as the comparison reads it: a relative lift in percent, an absolute difference as a signed number. */
const fmtEffect = (c: Comparison, x: number | undefined) =>
  c.effect === 'relative' ? fmtLift(x) : x === undefined ? 'n/a' : !Number.isFinite(x) ? infinite(x) : `${x >= 0 ? '+' : ''}${Number(x.toPrecision(3))}`;
const interval = (c: Comparison) => (c.sequential.ci ? `[${fmtEffect(c, c.sequential.ci[0])}, ${fmtEffect(c, c.sequential.ci[1])}]` : '(no interval)');
const lift = (c: Comparison) => `${c.effect === 'relative' ? 'lift' : 'absolute difference'} ${fmtEffect(c, c.sequential.estimate)}`;

/**
 * `elapsedDays`: event time since the experiment started running.
 *
 * @example
 * ```ts
 * const decision = decide(experiment, results, 14);
 * console.log(decision.action, decision.reason);
 * ```
 */
export function decide(e: Experiment, results: ExperimentResults, elapsedDays: number): Decision {
  if (results.srm.mismatch) {
    return {
      action: 'continue',
      mode: 'recommend',
      reason: `sample ratio mismatch (p = ${results.srm.pValue.toExponential(2)}, users ${results.arms.map((a) => `${a.arm} ${a.users}`).join(', ')}): no automatic decision until assignment or logging is fixed`,
      evidence: { metric: '(srm)', arm: results.control, srmPValue: results.srm.pValue },
    };
  }
  for (const m of results.metrics.filter((r) => r.role === 'guardrail')) {
    const tolerance = m.tolerance ?? 0;
    for (const c of m.comparisons) {
      const ci = c.sequential.ci;
      if (!ci) continue;
      // On an absolute effect the relative tolerance is scaled by the control mean (0 when it is 0: any significant move is beyond it).
      const threshold = c.effect === 'relative' ? tolerance : tolerance * Math.abs(c.control.mean ?? 0);
      const beyond = m.goal === 'increase' ? ci[1] < -threshold : ci[0] > threshold;
      if (beyond) {
        const zero = c.effect === 'absolute' && c.control.mean === 0 ? ` (its control mean is 0: judged on the absolute difference)` : '';
        return {
          action: 'rollback',
          arm: c.arm,
          mode: e.decisions.rollback,
          reason: `guard-rail ${m.metric} is worse in ${c.arm} beyond its tolerance of ${fmtLift(m.goal === 'increase' ? -tolerance : tolerance)}${zero}: ${lift(c)}, always-valid 95% interval ${interval(c)}${earlyRollback(results)}`,
          evidence: evidence(m.metric, c),
        };
      }
    }
  }
  const objective = results.metrics.find((r) => r.role === 'objective')!;
  const guardrailWorse = (arm: string) =>
    results.metrics.filter((r) => r.role === 'guardrail').find((r) => r.comparisons.some((c) => c.arm === arm && c.verdict === 'worse'));
  const winners = objective.comparisons
    .filter((c) => c.verdict === 'better' && !guardrailWorse(c.arm))
    .sort((a, b) => Math.abs(b.sequential.estimate ?? 0) - Math.abs(a.sequential.estimate ?? 0));
  const best = winners[0];
  if (best && elapsedDays >= e.minRunDays) {
    return {
      action: 'ship',
      arm: best.arm,
      mode: e.decisions.ship,
      reason: `objective ${objective.metric} is better in ${best.arm}: ${lift(best)}, always-valid 95% interval ${interval(best)}; ${guardrailsSaying(results, best.arm)}, no sample ratio mismatch, ${fmtDays(elapsedDays)} run (minimum ${fmtDays(e.minRunDays)})${early(e, results, best)}`,
      evidence: evidence(objective.metric, best),
    };
  }
  if (best)
    return {
      action: 'continue',
      mode: e.decisions.ship,
      reason: `${best.arm} is better on ${objective.metric} (${fmtEffect(best, best.sequential.estimate)} ${interval(best)}) but the minimum run time has not passed (${fmtDays(elapsedDays)} of ${fmtDays(e.minRunDays)})`,
    };
  const blocked = objective.comparisons.find((c) => c.verdict === 'better');
  if (blocked)
    return {
      action: 'continue',
      mode: e.decisions.ship,
      reason: `${blocked.arm} is better on ${objective.metric} but guard-rail ${guardrailWorse(blocked.arm)!.metric} is significantly worse`,
    };
  const first = objective.comparisons[0]!;
  return {
    action: 'continue',
    mode: e.decisions.ship,
    reason:
      first.verdict === 'no estimate'
        ? `no estimate yet for ${objective.metric}: ${first.sequential.reason ?? 'not enough data'}`
        : `${objective.metric} not yet conclusive: ${first.arm} ${fmtEffect(first, first.sequential.estimate)} ${interval(first)}` +
          (results.plan.daysToDecision !== undefined
            ? `; about ${fmtDays(results.plan.daysToDecision)} more at the current rate for the ${fmtLift(e.mde)} minimum detectable effect`
            : ''),
  };
}

/** What the guard-rails say of an arm that ships: none is worse, and which have no estimate (unknown is not "not worse"). */
function guardrailsSaying(results: ExperimentResults, arm: string): string {
  const guardrails = results.metrics.filter((r) => r.role === 'guardrail');
  if (guardrails.length === 0) return 'no guard-rails';
  const unknown = guardrails.flatMap((r) =>
    r.comparisons.filter((c) => c.arm === arm && c.verdict === 'no estimate').map((c) => `${r.metric} (${c.sequential.reason ?? 'no estimate'})`),
  );
  if (unknown.length === 0) return 'no guard-rail worse';
  if (unknown.length === guardrails.length) return `no guard-rail has an estimate yet: ${unknown.join('; ')}`;
  return `no guard-rail with an estimate worse; no estimate yet for ${unknown.join('; ')}`;
}

/** Why a decision comes before the plan's users: the plan is for a fixed-horizon test at the MDE; the always-valid interval may stop earlier. */
function early(e: Experiment, results: ExperimentResults, c: Comparison): string {
  const p = results.plan;
  if (p.usersPerArm === undefined || p.usersSoFar === undefined || p.usersSoFar >= p.usersPerArm) return '';
  const size = c.effect === 'relative' && c.sequential.estimate !== undefined ? Math.abs(c.sequential.estimate) : undefined;
  return (
    `; decided at ${p.usersSoFar.toLocaleString('en-US')} of the ${p.usersPerArm.toLocaleString('en-US')} users per arm planned: the plan is a fixed-horizon test's size for the ${fmtLift(e.mde)} minimum detectable effect at 80% power, while the always-valid interval may be read at every look and stops as soon as it excludes 0` +
    (size !== undefined && size > e.mde ? `, which comes early when the effect (${fmtLift(c.sequential.estimate)}) is larger than the MDE` : '')
  );
}

/** Why a rollback comes before the plan's users: the plan sizes the objective's test; a harm is acted on as soon as it is certain. */
function earlyRollback(results: ExperimentResults): string {
  const p = results.plan;
  if (p.usersPerArm === undefined || p.usersSoFar === undefined || p.usersSoFar >= p.usersPerArm) return '';
  return (
    `; rolled back at ${p.usersSoFar.toLocaleString('en-US')} of the ${p.usersPerArm.toLocaleString('en-US')} users per arm planned: the plan is the objective's fixed-horizon size, ` +
    `while a guard-rail's always-valid interval may be read at every look and rolls back as soon as it lies wholly past the tolerance, so that no more users than needed meet the harm`
  );
}

function evidence(metric: string, c: Comparison): Decision['evidence'] {
  return {
    metric,
    arm: c.arm,
    ...(c.sequential.estimate !== undefined ? { lift: c.sequential.estimate } : {}),
    ...(c.sequential.ci ? { interval: c.sequential.ci } : {}),
    ...(c.sequential.pValue !== undefined ? { pValue: c.sequential.pValue } : {}),
  };
}

/**
 * Days, or hours/minutes/seconds when the experiment runs on a compressed clock (a replay).
 *
 * @example
 * ```ts
 * fmtDays(3.5); // '3.5 days'
 * ```
 */
export function fmtDays(days: number): string {
  if (days >= 1) return `${days.toFixed(1)} days`;
  const s = days * 86_400;
  if (s >= 3600) return `${(s / 3600).toFixed(1)} h`;
  if (s >= 60) return `${(s / 60).toFixed(1)} min`;
  return `${s.toFixed(1)} s`;
}
