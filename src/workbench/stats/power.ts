import { InputError } from '../errors.js';
import { normalCdf, normalQuantile } from './distributions.js';
import { checkProbability, type TestOptions } from './two-sample.js';

/**
 * Power planning for a two-arm test with equal arms, normal approximation (Chow, Shao & Wang,
 * Sample Size Calculations in Clinical Research, §3.2 for means, §4.2 for proportions). With
 * se1 the standard error of the estimate under the alternative, and se0 under the null (the same,
 * except for the pooled two-proportion test), the exact two-tailed power is
 *   Phi((delta - z_{1-alpha/2} se0) / se1) + Phi((-delta - z_{1-alpha/2} se0) / se1),
 * and the sample size is the smallest n whose power reaches the target (the closed form, which
 * drops the second tail, is where the search starts). A one-sided test (`alternative: 'greater'`
 * for an increase of the mean, `'less'` for a decrease: the side of the effect planned for) has one tail
 * at z_{1-alpha}: Phi((|delta| - z_{1-alpha} se0) / se1), so it needs fewer users (about 21% fewer
 * at alpha 0.05 and power 0.8). Per arm:
 * - `mean`: both arms have the control's sd (the treatment's may be given);
 * - `conversion`: each arm has its own binomial variance p (1 - p), at the baseline rate and at the
 *   rate the effect implies (one variance for both arms plans 4-9% too few users);
 * - `effect: 'absolute'` sizes the test on the difference of means (Welch); `relative` (what the
 *   experiment's results and decisions use) on (m_t - m_c) / |m_c| with its delta-method variance,
 *   se1^2 = (var_t / m_c^2 + m_t^2 var_c / m_c^4) / n;
 * - `pooled: true` (conversions, absolute effect): the classical pooled two-proportion z-test, whose
 *   null standard error uses the average rate.
 * The effect is given relative to the baseline mean (the minimum detectable effect, as in an
 * experiment's definition); negative for a decrease. Checked by simulation: the planned power is the
 * detection rate.
 */
export interface PowerInput {
  /** Baseline mean of the metric (for a conversion: its rate, in (0, 1)). */
  mean: number;
  /** Standard deviation per user in the control arm (for a conversion: derived from `mean` unless given). */
  sd?: number;
  /** Standard deviation per user in the treatment arm (default: `sd`; for a conversion, that of its rate). */
  treatmentSd?: number;
  /** Relative effect to detect: 0.05 is 5% of the mean (negative for a decrease). */
  mde: number;
  /** `mean` (default) or `conversion`. */
  kind?: 'mean' | 'conversion';
  /** The estimate the test is on: `absolute` (default) or `relative`. */
  effect?: 'absolute' | 'relative';
  /** Conversions, absolute effect: the pooled two-proportion z-test. */
  pooled?: boolean;
  alpha?: number;
  /** `two-sided` (default), or the one-sided test towards the effect: `greater` when it raises the mean (mean x mde > 0), `less` when it lowers it. */
  alternative?: TestOptions['alternative'];
}

/**
 * The test as a function of the two arms' estimated means, and the truth it is planned for: the
 * test's z statistic f(a, b) for n users per arm, the true means and each arm's variance per user.
 */
interface Plan {
  a: number;
  b: number;
  va: number;
  vb: number;
  z: (a: number, b: number, n: number) => number;
}

function planOf(input: PowerInput): Plan {
  const { mean, mde } = input;
  if (!Number.isFinite(mean) || !Number.isFinite(mde) || mde === 0 || mean === 0)
    throw new InputError(`power needs a non-zero baseline mean and effect (mean ${mean}, mde ${mde})`);
  for (const [name, v] of [
    ['sd', input.sd],
    ['treatment sd', input.treatmentSd],
  ] as const)
    if (v !== undefined && !(v > 0 && Number.isFinite(v))) throw new InputError(`power needs a positive, finite ${name}, not ${v}`);
  const treated = mean * (1 + mde);
  // Each arm's variance per user, at the rates planned for (the textbook convention; a conversion's own p (1 - p) per arm unless given).
  let va: number;
  let vb: number;
  if (input.kind === 'conversion') {
    if (!(mean > 0 && mean < 1 && treated > 0 && treated < 1))
      throw new InputError(`a conversion rate and the rate the effect implies must be in (0, 1): ${mean} and ${treated}`);
    va = input.sd !== undefined ? input.sd ** 2 : mean * (1 - mean);
    vb = input.treatmentSd !== undefined ? input.treatmentSd ** 2 : treated * (1 - treated);
  } else {
    if (input.pooled) throw new InputError('the pooled test is the two-proportion test: pooled needs kind conversion');
    if (input.sd === undefined) throw new InputError('power for a mean metric needs its standard deviation per user (sd)');
    va = input.sd ** 2;
    vb = (input.treatmentSd ?? input.sd) ** 2;
  }
  let z: Plan['z'];
  if (input.effect === 'relative') {
    if (input.pooled) throw new InputError('the pooled test is on the absolute difference: pooled needs effect absolute');
    z = (a, b, n) => (b - a) / Math.abs(a) / Math.sqrt((vb / (a * a) + (b * b * va) / a ** 4) / n);
  } else if (input.pooled) {
    const p = (mean + treated) / 2;
    z = (a, b, n) => (b - a) / Math.sqrt((2 * p * (1 - p)) / n);
  } else {
    z = (a, b, n) => (b - a) / Math.sqrt((va + vb) / n);
  }
  return { a: mean, b: treated, va, vb, z };
}

/** The critical value and the tails a plan's test rejects in: both, or the one towards the effect. */
interface Rejection {
  z: number;
  twoSided: boolean;
}

function rejectionOf(input: PowerInput, alpha: number): Rejection {
  const alternative = input.alternative ?? 'two-sided';
  if (alternative === 'two-sided') return { z: normalQuantile(1 - alpha / 2), twoSided: true };
  if (alternative !== 'greater' && alternative !== 'less') throw new InputError(`the alternative is two-sided, greater or less, not ${String(alternative)}`);
  // A one-sided test away from the effect has power below alpha: no size reaches a target, so the plan is a mistake.
  if ((alternative === 'greater') !== input.mean * input.mde > 0)
    throw new InputError(`a one-sided test '${alternative}' cannot detect a change of ${input.mde} x ${input.mean}: plan the side the effect is on`);
  return { z: normalQuantile(1 - alpha), twoSided: false };
}

/**
 * The power of the plan's test with n users per arm: its z statistic, linearised in the two
 * estimated means (the delta method on the statistic itself), is normal with mean z(a, b) and
 * sd sqrt(z_a^2 va / n + z_b^2 vb / n), the variances per user taken at the planned rates; two
 * tails, or one (towards the effect) for a one-sided test. For the absolute tests this is the
 * textbook formula (unpooled: sd 1; pooled: Fleiss's, R's `power.prop.test(strict = TRUE)`); for
 * the relative lift it also counts that the standard error moves with the estimate (a large
 * observed lift has a wider interval), which a fixed-se formula misses by 5 points of power at a
 * 30% effect on a 10% conversion rate.
 */
function powerOf(plan: Plan, n: number, rejection: Rejection): number {
  const { a, b } = plan;
  const mu = plan.z(a, b, n);
  const ha = 1e-4 * Math.sqrt(plan.va / n);
  const hb = 1e-4 * Math.sqrt(plan.vb / n);
  const za = (plan.z(a + ha, b, n) - plan.z(a - ha, b, n)) / (2 * ha);
  const zb = (plan.z(a, b + hb, n) - plan.z(a, b - hb, n)) / (2 * hb);
  const sd = Math.sqrt((za * za * plan.va + zb * zb * plan.vb) / n);
  // One-sided: only the tail on the effect's side (|mu|: mu has the effect's sign).
  if (!rejection.twoSided) return normalCdf((Math.abs(mu) - rejection.z) / sd);
  return normalCdf((mu - rejection.z) / sd) + normalCdf((-mu - rejection.z) / sd);
}

/**
 * Users per arm that a two-arm test needs to detect a relative effect `mde` with `power` (default 0.8) at `alpha` (default 0.05), two-sided unless `alternative` says which one side.
 *
 * @example
 * ```ts
 * sampleSizePerArm({ kind: 'conversion', mean: 0.1, mde: 0.05, effect: 'relative' }); // users per arm to detect a 5% lift of a 10% rate
 * ```
 */
export function sampleSizePerArm(input: PowerInput & { power?: number }): number {
  const alpha = checkProbability(input.alpha ?? 0.05, 'alpha');
  const power = checkProbability(input.power ?? 0.8, 'power');
  const plan = planOf(input);
  const rejection = rejectionOf(input, alpha);
  // The textbook closed form as the start, then the smallest n whose power reaches the target (power rises with n).
  const start = Math.max(2, Math.ceil(((rejection.z + normalQuantile(power)) ** 2 * (plan.va + plan.vb)) / (plan.b - plan.a) ** 2));
  let lo = 1;
  let hi = start;
  while (powerOf(plan, hi, rejection) < power) {
    lo = hi;
    hi *= 2;
    if (hi > 1e15) throw new InputError('no sample size reaches that power');
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (powerOf(plan, mid, rejection) >= power) hi = mid;
    else lo = mid;
  }
  return Math.max(2, hi);
}

/**
 * The power of a two-arm test with `nPerArm` users per arm to detect a relative effect `mde` (normal approximation, to first order in the estimates): two-tailed, or one-tailed with `alternative`.
 *
 * @example
 * ```ts
 * powerForSize({ mean: 0.1, sd: 0.3, mde: 0.05, nPerArm: 20_000 }); // about 0.38
 * ```
 */
export function powerForSize(input: PowerInput & { nPerArm: number }): number {
  if (!(input.nPerArm > 0 && Number.isFinite(input.nPerArm))) throw new InputError(`users per arm must be a positive number, not ${input.nPerArm}`);
  const alpha = checkProbability(input.alpha ?? 0.05, 'alpha');
  return powerOf(planOf(input), input.nPerArm, rejectionOf(input, alpha));
}

/**
 * Days until every arm has `nPerArm` users, at the current rate of users entering the experiment.
 *
 * @example
 * ```ts
 * const days = daysToDecision(sampleSizePerArm({ mean: 0.1, sd: 0.3, mde: 0.05 }), 2, 500); // at 500 new users a day
 * ```
 */
export function daysToDecision(nPerArm: number, arms: number, usersPerDay: number, alreadyIn = 0): number {
  if (!(usersPerDay > 0)) return Number.POSITIVE_INFINITY;
  return Math.max(0, Math.ceil((nPerArm * arms - alreadyIn) / usersPerDay));
}
