import { z } from 'zod';
import { InputError } from '../errors.js';
import { bucketRanges, chooseArm, hashBucket, inRange, type HashVersion, type Range } from './hash.js';

/**
 * Experiments and their metrics, as plain data shared by notebooks and the service. Creation is
 * strict where the SDK is lenient: weights must add up to 1, coverage must be within [0, 1], every
 * metric named must exist, and two running experiments may not overlap in a namespace.
 */
const KEY = /^[a-z][a-z0-9_-]{0,63}$/;
/** `__proto__` is no prop name: validation at every edge drops that key from parsed JSON, so no event can carry it. */
const PROP = /^(?!__proto__$)[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const PROP_RULE = 'prop names are letters, digits and _ (not __proto__)';
const METRIC_RULE = 'metric keys are lower-case letters, digits, _ and -';
const WEIGHT_TOLERANCE = 1e-6;

/** The zod schema of a metric definition: its key, kind (mean, conversion, ratio), event and windows. */
export const MetricSchema = z
  .object({
    key: z.string().regex(KEY, METRIC_RULE),
    description: z.string().max(500).optional(),
    /**
     * conversion: did the user do `event` within `windowDays` after exposure (0/1 per user);
     * mean: the sum of `prop` of `event` per user in the window (the count of `event` without a
     * prop); ratio: sum of `prop` (or counts) over the sum of `denominator.prop` (or counts).
     */
    kind: z.enum(['conversion', 'mean', 'ratio']),
    event: z.string().regex(/^[a-z][a-z0-9_]*$/),
    prop: z.string().regex(PROP, PROP_RULE).optional(),
    denominator: z.object({ event: z.string().regex(/^[a-z][a-z0-9_]*$/), prop: z.string().regex(PROP, PROP_RULE).optional() }).optional(),
    windowDays: z.number().positive().max(365).default(14),
    /** Days before exposure whose value is the CUPED covariate (0: no CUPED). */
    preExposureDays: z.number().min(0).max(365).default(14),
    /**
     * CUPAC (Tang, Huang, Li, Zhang & Wang, DoorDash 2020): the covariate is a served model's
     * prediction made before exposure (of this metric from pre-period features, or a related score
     * such as churn risk) instead of the metric's own pre-period value: the user's latest
     * `prediction` event of `model` (of `alias`, when given) in the `preExposureDays` before
     * exposure; 0 for a user without one. Made before exposure, the prediction cannot depend on the
     * arm, so the adjusted lift stays unbiased however good or bad the model is; the better it
     * predicts the metric, the more variance it removes.
     */
    covariate: z
      .object({
        model: z.string().regex(/^[a-z][a-z0-9-]{0,63}$/, 'model names are lower-case letters, digits and -'),
        alias: z
          .string()
          .regex(/^[a-z][a-z0-9_-]{0,31}$/, 'aliases are lower-case letters, digits, _ and -')
          .optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((m, ctx) => {
    if (m.kind === 'ratio' && !m.denominator) ctx.addIssue({ code: 'custom', path: ['denominator'], message: 'a ratio metric needs a denominator' });
    if (m.kind !== 'ratio' && m.denominator) ctx.addIssue({ code: 'custom', path: ['denominator'], message: 'only ratio metrics have a denominator' });
    if (m.covariate && m.kind === 'ratio')
      ctx.addIssue({ code: 'custom', path: ['covariate'], message: "a ratio metric's covariate slot is its denominator: no CUPAC covariate" });
    if (m.covariate && m.preExposureDays === 0)
      ctx.addIssue({ code: 'custom', path: ['preExposureDays'], message: 'a CUPAC covariate is read in the pre-exposure period: preExposureDays > 0' });
  });

/** A checked metric definition (see `metricCatalog`). */
export type Metric = z.output<typeof MetricSchema>;

const ArmSchema = z
  .object({
    key: z.string().regex(KEY, 'arm keys are lower-case letters, digits, _ and -'),
    weight: z.number().min(0).max(1),
    /** The model this arm serves: predictions for its users use this alias. */
    model: z.object({ name: z.string().regex(/^[a-z][a-z0-9-]{0,63}$/), alias: z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/) }).optional(),
  })
  .strict();

export const STATUSES = ['draft', 'running', 'stopped', 'shipped', 'rolled_back'] as const;
export type ExperimentStatus = (typeof STATUSES)[number];

/** The zod schema of an experiment definition: arms, targeting, coverage, objective, guardrails and status. */
export const ExperimentSchema = z
  .object({
    key: z.string().regex(KEY, 'experiment keys are lower-case letters, digits, _ and -'),
    hypothesis: z.string().min(1).max(2000),
    arms: z.array(ArmSchema).min(2).max(20),
    coverage: z.number().min(0, 'coverage is a share of users, from 0 to 1').max(1, 'coverage is a share of users, from 0 to 1').default(1),
    seed: z.string().min(1).max(128).optional(),
    hashVersion: z.union([z.literal(1), z.literal(2)]).default(2),
    /** Only users whose dimensions are among these values. */
    targeting: z
      .object({ country: z.array(z.string()).optional(), device: z.array(z.string()).optional(), tier: z.array(z.string()).optional() })
      .strict()
      .default({}),
    /** Mutually exclusive experiments share a namespace and take disjoint ranges of it. */
    namespace: z
      .object({
        name: z.string().regex(KEY, 'namespace names are lower-case letters, digits, _ and -'),
        range: z.tuple([z.number().min(0).max(1), z.number().min(0).max(1)]),
      })
      .optional(),
    /** Users enter at their first such event while the experiment runs; without it, only through the assignment API. */
    exposureEvent: z
      .string()
      .regex(/^[a-z][a-z0-9_]*$/)
      .optional(),
    objective: z.string().regex(KEY, METRIC_RULE),
    /** Which way the objective should move. */
    objectiveGoal: z.enum(['increase', 'decrease']).default('increase'),
    guardrails: z
      .array(z.object({ metric: z.string().regex(KEY, METRIC_RULE), bad: z.enum(['increase', 'decrease']), tolerance: z.number().min(0).max(10) }).strict())
      .default([]),
    /** Minimum detectable effect, relative (0.05: 5%). */
    mde: z.number().positive().max(10),
    /**
     * The users per arm the experiment is planned to run to, fixed before it starts: what
     * `sampleSizePerArm` gives for the objective at the MDE (in the smallest arm, when the weights
     * differ). The always-valid intervals are tuned to it (see `analysis.sequentialTuning`).
     */
    plannedUsersPerArm: z.number().int().positive().max(1e12).optional(),
    minRunDays: z.number().min(0).max(365).default(7),
    /**
     * How the results are read where two conventions are standard; the defaults are GrowthBook's
     * frequentist engine: the relative effect (m_t - m_c) / |m_c|, Student's t with Welch's degrees
     * of freedom, and CUPED's theta pooled within arms (`joint`: GrowthBook's, from both arms' sums).
     */
    analysis: z
      .object({
        effect: z.enum(['relative', 'absolute']).default('relative'),
        distribution: z.enum(['t', 'z']).default('t'),
        cupedTheta: z.enum(['within', 'joint']).default('within'),
        /**
         * `one-sided`: each metric is tested in one direction only (GrowthBook's one-sided tests,
         * fixed-horizon and sequential): the objective towards its goal (is the treatment better?),
         * each guard-rail towards its bad direction (is it worse?). Narrower where it looks, blind the
         * other way: an objective that gets worse is never "worse", only not better.
         */
        alternative: z.enum(['two-sided', 'one-sided']).default('two-sided'),
        /**
         * The always-valid intervals' tuning parameter: the users in a comparison (control and
         * treatment together) at which its interval is tightest. Without it, the users the
         * comparison will have when the plan is reached (`plannedUsersPerArm`, scaled by the two
         * arms' weights over the smallest arm's), else GrowthBook's default of 5,000. GrowthBook's
         * documentation: set it to the sample size at which a decision is most likely, and keep it
         * fixed for the experiment (a tuning that moved with the data would void the guarantee).
         */
        sequentialTuning: z.number().positive().max(1e12).optional(),
        /**
         * A proper normal prior on the effect read (relative by default), for the chance to win and
         * the expected loss (GrowthBook's `GaussianPrior`: mean 0, variance 0.3^2 is its informative
         * default); without it the prior is flat. Not applied where the comparison falls back to the
         * absolute difference (a control mean of 0), whose scale the prior does not know.
         */
        prior: z
          .object({ mean: z.number().min(-10).max(10), variance: z.number().positive().max(100) })
          .strict()
          .optional(),
      })
      .strict()
      .default({ effect: 'relative', distribution: 't', cupedTheta: 'within', alternative: 'two-sided' }),
    status: z.enum(STATUSES).default('draft'),
    /** The arm everyone gets once the experiment is shipped. */
    winner: z.string().regex(KEY, 'arm keys are lower-case letters, digits, _ and -').optional(),
    /** `auto` acts on its own; `recommend` only says what it would do. */
    decisions: z
      .object({ ship: z.enum(['auto', 'recommend']).default('recommend'), rollback: z.enum(['auto', 'recommend']).default('auto') })
      .strict()
      .default({ ship: 'recommend', rollback: 'auto' }),
  })
  .strict()
  .superRefine((e, ctx) => {
    const total = e.arms.reduce((s, a) => s + a.weight, 0);
    if (Math.abs(total - 1) > WEIGHT_TOLERANCE) ctx.addIssue({ code: 'custom', path: ['arms'], message: `arm weights add up to ${total}, not 1` });
    const keys = e.arms.map((a) => a.key);
    if (new Set(keys).size !== keys.length) ctx.addIssue({ code: 'custom', path: ['arms'], message: `arm keys repeat: ${keys.join(', ')}` });
    const models = new Set(e.arms.filter((a) => a.model).map((a) => a.model!.name));
    if (models.size > 1)
      ctx.addIssue({
        code: 'custom',
        path: ['arms'],
        message: `the arms serve different models (${[...models].join(', ')}): a model experiment compares aliases of one model`,
      });
    if (models.size === 1 && !e.arms.every((a) => a.model))
      ctx.addIssue({ code: 'custom', path: ['arms'], message: 'in a model experiment every arm names its alias of the model' });
    // Shipping moves the control arm's alias, and default traffic is served by the champion.
    if (models.size === 1 && e.arms[0]!.model?.alias !== 'champion')
      ctx.addIssue({
        code: 'custom',
        path: ['arms', 0, 'model', 'alias'],
        message: 'in a model experiment the control (first) arm serves the champion alias: shipping moves it to the winner',
      });
    // A prediction is logged after it is served: enrolling on it would serve the first one from the wrong arm.
    if (models.size === 1 && e.exposureEvent === 'prediction')
      ctx.addIssue({
        code: 'custom',
        path: ['exposureEvent'],
        message: 'a model experiment cannot enroll users on their predictions (logged after they are served): use an earlier event or POST /v1/assignments',
      });
    if (e.status === 'shipped' && !keys.includes(e.winner ?? ''))
      ctx.addIssue({ code: 'custom', path: ['winner'], message: `a shipped experiment names its winning arm (one of ${keys.join(', ')})` });
    if (e.namespace && !(e.namespace.range[0] < e.namespace.range[1]))
      ctx.addIssue({ code: 'custom', path: ['namespace', 'range'], message: 'a namespace range is [start, end) with start < end' });
  });

/** An experiment definition as written, before defaults are applied (what `ExperimentClient.create` takes). */
export type ExperimentInput = z.input<typeof ExperimentSchema>;
/** A checked experiment definition (see `checkExperiment`). */
export type Experiment = z.output<typeof ExperimentSchema>;

/**
 * Checks an experiment against its schema and the context it is created in: the metrics that exist
 * and the other experiments (a running one in the same namespace must not overlap its range).
 *
 * @example
 * ```ts
 * const experiment = checkExperiment(input, { metrics: new Set(metricCatalog().keys()) });
 * ```
 */
export function checkExperiment(input: unknown, context: { metrics: ReadonlySet<string>; others?: readonly Experiment[] }): Experiment {
  const parsed = ExperimentSchema.safeParse(input);
  const name = typeof (input as { key?: unknown })?.key === 'string' ? (input as { key: string }).key : '(no key)';
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InputError(`experiment ${name}: ${issue.path.join('.') || 'experiment'}: ${issue.message}`);
  }
  const e = parsed.data;
  for (const metric of [e.objective, ...e.guardrails.map((g) => g.metric)]) {
    if (!context.metrics.has(metric))
      throw new InputError(`experiment ${e.key}: unknown metric ${metric} (metrics: ${[...context.metrics].join(', ') || 'none defined'})`);
  }
  if (e.namespace) {
    for (const other of context.others ?? []) {
      if (other.key === e.key || other.status !== 'running' || other.namespace?.name !== e.namespace.name) continue;
      const [a, b] = namespaceRange(e.namespace);
      const [c, d] = namespaceRange(other.namespace);
      if (a < d && c < b)
        throw new InputError(`experiment ${e.key}: namespace ${e.namespace.name} range [${a}, ${b}) overlaps running experiment ${other.key} [${c}, ${d})`);
    }
  }
  return e;
}

export interface UserForAssignment {
  user_id: string;
  dims?: { country?: string; device?: string; tier?: string };
}

/**
 * The arm of a user, a pure function of the experiment and the user: the arm key, or undefined
 * when the user is not in the experiment (not running, not targeted, outside the namespace range,
 * outside coverage).
 *
 * @example
 * ```ts
 * const arm = assign(experiment, { user_id: 'u42', dims: { country: 'GB' } }); // undefined when not in it
 * ```
 */
export function assign(e: Experiment, user: UserForAssignment): string | undefined {
  if (e.status !== 'running') return undefined;
  for (const dim of ['country', 'device', 'tier'] as const) {
    const allowed = e.targeting[dim];
    if (allowed && !allowed.includes(user.dims?.[dim] ?? '')) return undefined;
  }
  // GrowthBook's namespaces: hash version 1 of the user under "__" + the namespace name.
  if (e.namespace && !inRange(hashBucket(`__${e.namespace.name}`, user.user_id, 1)!, namespaceRange(e.namespace))) return undefined;
  const bucket = hashBucket(e.seed ?? e.key, user.user_id, e.hashVersion as HashVersion)!;
  const arm = chooseArm(bucket, rangesOf(e));
  return arm === -1 ? undefined : e.arms[arm]!.key;
}

/** A namespace's [start, end), typed the same by every TypeScript version (tslab compiles with 5.0). */
function namespaceRange(ns: { range: readonly unknown[] }): Range {
  return [Number(ns.range[0]), Number(ns.range[1])];
}

/** An experiment's arm ranges, computed once per experiment object (assignment runs per request; experiments are values: a change makes a new object). */
const ranges = new WeakMap<Experiment, Range[]>();
function rangesOf(e: Experiment): Range[] {
  let r = ranges.get(e);
  if (!r)
    ranges.set(
      e,
      (r = bucketRanges(
        e.arms.length,
        e.coverage,
        e.arms.map((a) => a.weight),
      )),
    );
  return r;
}
