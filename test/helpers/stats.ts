import { ExperimentSchema, type Experiment, type ExperimentInput } from '../../src/workbench/experiments/definition.js';
import type { CovariateSums } from '../../src/workbench/stats/cuped.js';
import type { Random } from '../../src/workbench/random.js';

/**
 * The sums of n simulated users whose metric Y (mean `mean`) has correlation `rho` with its
 * pre-period value X (mean 10); both have standard deviation `sd`.
 */
export function correlatedSums(r: Random, n: number, rho: number, mean = 10, sd = 2): CovariateSums {
  const s: CovariateSums = { n, sumY: 0, sumY2: 0, sumX: 0, sumX2: 0, sumXY: 0 };
  for (let i = 0; i < n; i++) {
    const x = r.normal(10, sd);
    const y = mean + rho * (x - 10) + Math.sqrt(1 - rho * rho) * r.normal(0, sd);
    s.sumY += y;
    s.sumY2 += y * y;
    s.sumX += x;
    s.sumX2 += x * x;
    s.sumXY += x * y;
  }
  return s;
}

/** A running experiment `e` of two even arms (control, b) on `logins` with a 5% MDE, with `over` on top. */
export function twoArmExperiment(over: Partial<ExperimentInput> = {}): Experiment {
  return ExperimentSchema.parse({
    key: 'e',
    hypothesis: 'h',
    arms: [
      { key: 'control', weight: 0.5 },
      { key: 'b', weight: 0.5 },
    ],
    objective: 'logins',
    mde: 0.05,
    status: 'running',
    ...over,
  });
}
