import { InputError } from '../errors.js';
import { normalCdf, normalQuantile } from './distributions.js';

/**
 * Power planning for a two-arm test of means with equal arms, normal approximation (e.g. Chow,
 * Shao & Wang, Sample Size Calculations in Clinical Research, §3.2): to detect a difference delta
 * with a two-sided level alpha and power 1 - beta, each arm needs
 *   n = 2 (z_{1-alpha/2} + z_{1-beta})^2 sd^2 / delta^2.
 * The effect is given relative to the baseline mean (the minimum detectable effect, as in an
 * experiment's definition). Checked by simulation: planned power matches the detection rate.
 */
export interface PowerInput {
  /** Baseline mean of the metric (a conversion rate, a mean per user). */
  mean: number;
  /** Standard deviation per user (for a conversion rate p: sqrt(p (1 - p))). */
  sd: number;
  /** Relative effect to detect: 0.05 is 5% of the mean. */
  mde: number;
  alpha?: number;
}

function delta(input: PowerInput): number {
  const d = Math.abs(input.mde * input.mean);
  if (!(d > 0) || !(input.sd > 0)) throw new InputError(`power needs a non-zero effect and spread (mean ${input.mean}, mde ${input.mde}, sd ${input.sd})`);
  return d;
}

/**
 * Users per arm that a two-arm test needs to detect a relative effect `mde` with `power` (default 0.8) at `alpha` (default 0.05).
 *
 * @example
 * ```ts
 * sampleSizePerArm({ mean: 0.1, sd: 0.3, mde: 0.05, power: 0.8 }); // 56512 users per arm to detect a 5% lift
 * ```
 */
export function sampleSizePerArm(input: PowerInput & { power?: number }): number {
  const z = normalQuantile(1 - (input.alpha ?? 0.05) / 2) + normalQuantile(input.power ?? 0.8);
  return Math.ceil((2 * z * z * input.sd * input.sd) / delta(input) ** 2);
}

/**
 * The power of a two-arm test with `nPerArm` users per arm to detect a relative effect `mde` (two-sided, normal approximation).
 *
 * @example
 * ```ts
 * powerForSize({ mean: 0.1, sd: 0.3, mde: 0.05, nPerArm: 20_000 }); // about 0.38
 * ```
 */
export function powerForSize(input: PowerInput & { nPerArm: number }): number {
  const se = input.sd * Math.sqrt(2 / input.nPerArm);
  const z = delta(input) / se;
  const zAlpha = normalQuantile(1 - (input.alpha ?? 0.05) / 2);
  return normalCdf(z - zAlpha) + normalCdf(-z - zAlpha);
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
