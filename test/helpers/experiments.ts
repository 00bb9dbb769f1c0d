import { ExperimentSchema, type Experiment, type ExperimentInput } from '../../src/workbench/experiments/definition.js';

// Experiment definitions several test files use as they are. A test that needs its own key, arms or
// status writes its own definition (or `twoArmExperiment` of ./stats.js, for the statistics): a
// variant spelled out where it is used reads better than overrides of a fixture.

/**
 * The definition (as posted, not parsed) of a running experiment `exp`: two even arms `a` and `b`,
 * users exposed on `login`, objective `logins` with a 5% MDE.
 */
export const loginsExperiment: ExperimentInput = {
  key: 'exp',
  hypothesis: 'h',
  arms: [
    { key: 'a', weight: 0.5 },
    { key: 'b', weight: 0.5 },
  ],
  exposureEvent: 'login',
  objective: 'logins',
  mde: 0.05,
  status: 'running',
};

/**
 * A running experiment `exp` (parsed): two even arms `a` and `b`, objective `mrr` (from `upgrade`
 * events) with a 5% MDE, and a guardrail on `logins` (bad: a 10% decrease).
 */
export const mrrExperiment: Experiment = ExperimentSchema.parse({
  key: 'exp',
  hypothesis: 'h',
  arms: [
    { key: 'a', weight: 0.5 },
    { key: 'b', weight: 0.5 },
  ],
  objective: 'mrr',
  guardrails: [{ metric: 'logins', bad: 'decrease', tolerance: 0.1 }],
  mde: 0.05,
  status: 'running',
});
