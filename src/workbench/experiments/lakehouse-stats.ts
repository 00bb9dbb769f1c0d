import type { Lakehouse } from '../lakehouse.js';
import { join, raw, sql, type Sql } from '../sql.js';
import type { Experiment, Metric } from './definition.js';
import type { ArmStats, ExperimentStats } from './results.js';

const DAY_MS = 86_400_000;

// DuckDB's ->> binds more loosely than AND and =: every JSON access below is in parentheses.

/**
 * An experiment's per-arm sufficient statistics recomputed in the lakehouse from the archived live
 * events, by a second method: one SQL query instead of the service's event-by-event consumer. The
 * rules are the consumer's: a user enters at their `experiment_exposure` event; Y counts their
 * events tagged with the experiment in [exposure, exposure + window); the CUPED covariate X counts
 * their events in [exposure - pre-period, exposure), or with a CUPAC `covariate` the score of their
 * latest `prediction` event of that model in that period (0 without one); a ratio metric's X is its
 * denominator. Each user's arm is also recomputed from the hash with the `wb_arm` macro and
 * compared with the arm logged at exposure.
 *
 * The sums are of deviations from references, as the live consumer's are: each metric's Y and X
 * averaged over every user of the experiment (returned as `shift_y<i>` and `shift_x<i>`), summed
 * with Kahan's compensation (`fsum`). Raw sums of squares at a mean of 1e8 keep no digit of a
 * variance of 1.5; deviations from a value near the mean keep them all.
 *
 * @example
 * ```ts
 * console.log(experimentStatsSql(experiment, metricCatalog()).toString());
 * ```
 */
export function experimentStatsSql(e: Experiment, metrics: ReadonlyMap<string, Metric>): Sql {
  const keys = [e.objective, ...e.guardrails.map((g) => g.metric)];
  const tagged = sql`(e.experiments->>${`$."${e.key}"`}) IS NOT NULL`;
  const ms = (days: number) => sql`to_milliseconds(CAST(${Math.round(days * DAY_MS)} AS BIGINT))`;
  const perUser: Sql[] = [];
  const perArm: Sql[] = [];
  const refs: Sql[] = [];
  keys.forEach((key, i) => {
    const m = metrics.get(key);
    if (!m) throw new Error(`experiment ${e.key}: metric ${key} is not defined`);
    const inWindow = sql`e.time >= x.exposed_at AND e.time < x.exposed_at + ${ms(m.windowDays)} AND ${tagged}`;
    const inPre = sql`e.time >= x.exposed_at - ${ms(m.preExposureDays)} AND e.time < x.exposed_at`;
    // CUPAC: the score of the user's latest prediction by the covariate's model before exposure.
    const score = sql`TRY_CAST((e.props->>'score') AS DOUBLE)`;
    const cov = m.covariate;
    const isPrediction = cov
      ? sql`${inPre} AND e.event = 'prediction' AND (e.props->>'model') = ${cov.model}${cov.alias !== undefined ? sql` AND (e.props->>'alias') = ${cov.alias}` : sql``} AND ${score} IS NOT NULL`
      : undefined;
    const value = (event: string, prop: string | undefined) =>
      sql`CASE WHEN e.event = ${event} THEN ${prop ? sql`coalesce(TRY_CAST((e.props->>${prop}) AS DOUBLE), 0)` : sql`1`} ELSE 0 END`;
    const y = raw(`y${i}`);
    const x = raw(`x${i}`);
    const num = value(m.event, m.prop);
    if (isPrediction) {
      perUser.push(
        m.kind === 'conversion'
          ? sql`coalesce(max(CASE WHEN ${inWindow} AND ${num} <> 0 THEN 1 ELSE 0 END), 0) AS ${y}`
          : sql`coalesce(sum(CASE WHEN ${inWindow} THEN ${num} ELSE 0 END), 0) AS ${y}`,
      );
      perUser.push(sql`coalesce(arg_max(CASE WHEN ${isPrediction} THEN ${score} END, CASE WHEN ${isPrediction} THEN e.time END), 0) AS ${x}`);
    } else if (m.kind === 'conversion') {
      perUser.push(sql`coalesce(max(CASE WHEN ${inWindow} AND ${num} <> 0 THEN 1 ELSE 0 END), 0) AS ${y}`);
      perUser.push(m.preExposureDays > 0 ? sql`coalesce(max(CASE WHEN ${inPre} AND ${num} <> 0 THEN 1 ELSE 0 END), 0) AS ${x}` : sql`0 AS ${x}`);
    } else if (m.kind === 'mean') {
      perUser.push(sql`coalesce(sum(CASE WHEN ${inWindow} THEN ${num} ELSE 0 END), 0) AS ${y}`);
      perUser.push(m.preExposureDays > 0 ? sql`coalesce(sum(CASE WHEN ${inPre} THEN ${num} ELSE 0 END), 0) AS ${x}` : sql`0 AS ${x}`);
    } else {
      perUser.push(sql`coalesce(sum(CASE WHEN ${inWindow} THEN ${num} ELSE 0 END), 0) AS ${y}`);
      perUser.push(sql`coalesce(sum(CASE WHEN ${inWindow} THEN ${value(m.denominator!.event, m.denominator!.prop)} ELSE 0 END), 0) AS ${x}`);
    }
    const [ky, kx] = [raw(`shift_y${i}`), raw(`shift_x${i}`)];
    refs.push(sql`avg(CAST(${y} AS DOUBLE)) AS ${ky}, avg(CAST(${x} AS DOUBLE)) AS ${kx}`);
    const dy = sql`(CAST(u.${y} AS DOUBLE) - r.${ky})`;
    const dx = sql`(CAST(u.${x} AS DOUBLE) - r.${kx})`;
    perArm.push(
      sql`any_value(r.${ky}) AS ${ky}, any_value(r.${kx}) AS ${kx}, fsum(${dy}) AS ${raw(`sum_y${i}`)}, fsum(${dy} * ${dy}) AS ${raw(`sum_y2_${i}`)}, fsum(${dx}) AS ${raw(`sum_x${i}`)}, fsum(${dx} * ${dx}) AS ${raw(`sum_x2_${i}`)}, fsum(${dx} * ${dy}) AS ${raw(`sum_xy${i}`)}`,
    );
  });
  const weights = e.arms.map((a) => a.weight);
  const armKeys = e.arms.map((a) => a.key);
  return sql`
    WITH exposures AS (
      SELECT user_id, min(time) AS exposed_at, arg_min((props->>'arm'), time) AS arm
      FROM live_events WHERE event = 'experiment_exposure' AND (props->>'experiment') = ${e.key}
      GROUP BY user_id
    ),
    per_user AS (
      SELECT x.user_id, x.arm, x.exposed_at,
        list_extract(${armKeys}, wb_arm(wb_hash(${e.seed ?? e.key}, x.user_id, ${e.hashVersion}), ${weights}, ${e.coverage}) + 1) AS rehashed,
        ${join(perUser)}
      FROM exposures x LEFT JOIN live_events e ON e.user_id = x.user_id
      GROUP BY x.user_id, x.arm, x.exposed_at
    ),
    refs AS (SELECT ${join(refs)} FROM per_user)
    SELECT u.arm, count(*) AS users, count(*) FILTER (WHERE u.rehashed IS DISTINCT FROM u.arm) AS rehash_mismatches,
      min(u.exposed_at) AS first_exposure, ${join(perArm)}
    FROM per_user u CROSS JOIN refs r GROUP BY u.arm ORDER BY u.arm`;
}

/** An experiment's per-arm sums recomputed from the lakehouse, with the count of users whose arm rehashes differently. */
export interface LakehouseExperimentStats extends ExperimentStats {
  /** Users whose arm recomputed with the hash macro differs from the arm logged at exposure (0 unless weights changed while running). */
  rehashMismatches: number;
}

/**
 * An experiment's per-arm sufficient statistics recomputed from the lakehouse's archived events (runs `experimentStatsSql`).
 *
 * @example
 * ```ts
 * const metrics = metricCatalog();
 * const stats = await experimentStatsFromLake(lake, experiment, metrics);
 * const results = experimentResults(experiment, metrics, stats);
 * ```
 */
export async function experimentStatsFromLake(
  lake: Pick<Lakehouse, 'query'>,
  e: Experiment,
  metrics: ReadonlyMap<string, Metric>,
): Promise<LakehouseExperimentStats> {
  const keys = [e.objective, ...e.guardrails.map((g) => g.metric)];
  const rows = await lake.query(experimentStatsSql(e, metrics));
  const n = (v: unknown) => Number(v ?? 0);
  const arms: ArmStats[] = rows.map((r) => ({
    arm: String(r.arm),
    users: n(r.users),
    metrics: Object.fromEntries(
      keys.map((key, i) => [
        key,
        {
          n: n(r.users),
          sumY: n(r[`sum_y${i}`]),
          sumY2: n(r[`sum_y2_${i}`]),
          sumX: n(r[`sum_x${i}`]),
          sumX2: n(r[`sum_x2_${i}`]),
          sumXY: n(r[`sum_xy${i}`]),
          shiftY: n(r[`shift_y${i}`]),
          shiftX: n(r[`shift_x${i}`]),
        },
      ]),
    ),
  }));
  const firsts = rows.map((r) => r.first_exposure).filter((v): v is Date => v instanceof Date);
  const newest = await lake.query(
    sql`SELECT max(time) AS t FROM live_events WHERE (experiments->>${`$."${e.key}"`}) IS NOT NULL OR (event = 'experiment_exposure' AND (props->>'experiment') = ${e.key})`,
  );
  return {
    arms,
    rehashMismatches: rows.reduce((s, r) => s + n(r.rehash_mismatches), 0),
    ...(firsts.length > 0 ? { firstExposure: new Date(Math.min(...firsts.map((d) => d.getTime()))).toISOString() } : {}),
    ...(newest[0]?.t instanceof Date ? { asOf: (newest[0].t as Date).toISOString() } : {}),
  };
}
