import { InputError } from '../errors.js';
import { SERVICE_EVENTS } from '../event.js';
import type { Lakehouse, Row } from '../lakehouse.js';
import { defaultProgress, type Progress } from '../progress.js';
import { ident, join, raw, sql, type Identifier, type Sql } from '../sql.js';
import { WINDOWS, type Feature } from './definition.js';

/**
 * The offline compiler: a feature set and a spine of (user_id, as_of, labels...) become one DuckDB
 * query that computes every feature for every spine row from the events strictly before its as_of
 * (point in time: no leakage from the future, nor from the instant itself), with the bucketed
 * window of definition.ts. One row out per spine row, spine columns first, in a total order (see
 * `TrainingSetSource.orderBy`), and every value a function of the data alone: sums and means are
 * exact sums (below), not doubles added in the order DuckDB's threads deliver them. So the same
 * lakehouse, features and spine give the same training set, bit for bit, on every run.
 */
export interface TrainingSetSource {
  /**
   * The rows to compute, with `user_id` and `as_of` (TIMESTAMP, UTC); other columns are kept. What
   * `spine()` and `labels()` return, a table or view name (``sql`my_spine` ``), or a query in parentheses
   * (``sql`(SELECT ...)` ``): it is read as `FROM <spine>`, where a bare SELECT does not parse.
   */
  spine: Sql;
  /** The events: `event_id, time, user_id, event, props` (JSON), a name or a query in parentheses as for `spine`. Default the lakehouse's `events` view, every source. */
  events?: Sql;
  /**
   * Spine columns the rows come out sorted by (ascending), e.g. `['as_of', 'user_id']`; rows equal
   * on them keep the spine's own order. `buildTrainingSet` defaults to `['as_of', 'user_id']`, a
   * total order for a spine with one row per user and moment (what `spine()` and `labels()` make),
   * so the order never depends on how the spine's query delivers its rows. `trainingSetSql`
   * defaults to `[]`: the spine's own order, the order DuckDB keeps for a table, a view over one
   * table or a VALUES list (parity and skew reports number their samples so).
   */
  orderBy?: readonly string[];
}

/** JSON types of a numeric prop (sum, mean, min, max) and of a categorical one (distinct_count, last_n); exported for the online bootstrap (serving/features/bootstrap.ts). */
export const NUMBER_TYPES = raw(`('BIGINT', 'UBIGINT', 'DOUBLE')`);
export const CATEGORY_TYPES = raw(`('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE', 'BOOLEAN')`);
const ROW = ident('__spine_row');
const ARRIVAL = ident('__spine_arrival');

/**
 * Exact sums. A double sum depends on the order of its additions, and DuckDB adds a group's values
 * in the order its threads deliver them: the same data gave sums differing by 1e-10 between runs.
 * So each value v (|v| < 2^53) is split, once per event, into two integers: hi = round(v * 2^40)
 * and lo = round((v - hi / 2^40) * 2^92), summed as HUGEINT (integer additions: any order gives the
 * same total). For 2^-40 <= |v| < 2^53 the split is exact (hi / 2^40 + lo / 2^92 = v); below, lo
 * rounds v at 2^-92, the same way on every run. Values of 2^53 and over (never money, counts or
 * durations) are summed as doubles apart. On the retail CI training set (54,074 rows) this costs
 * what sum() does (0-4% more CPU, the same wall time: 3.5 s against 3.9 s on two cores), where
 * sum(v ORDER BY time, event_id) takes twice the CPU (9.0 s), threads=1 gives up parallelism (6.2 s),
 * and DECIMAL(38,10) rounds each value to 10 decimals and fails on a value over 1e28. A group can
 * hold 2^34 values before the HUGEINT total overflows (an error, never a wrong value).
 */
const EXACT_BELOW = 2 ** 53;
const HI_SCALE = 2 ** 40;
const LO_SCALE = 2 ** 92;

/**
 * The point-in-time SQL of a training set (the spine's rows, one column per feature as of `as_of`), without running it.
 * Rows come out in `source.orderBy` order, by default the spine's own (`buildTrainingSet` sorts by as_of, user_id).
 *
 * @example
 * ```ts
 * const statement = trainingSetSql(appFeatures, { spine: sql`(SELECT user_id, as_of FROM my_spine WHERE as_of >= '2025-02-01')` });
 * console.log(statement.toString());
 * ```
 */
export function trainingSetSql(features: readonly Feature[], source: TrainingSetSource): Sql {
  if (features.length === 0) throw new InputError('a training set needs at least one feature');
  const events = source.events ?? sql`events`;
  const ctes = features.flatMap((f, i) => [
    sql`${ident(`__e${i}`)} AS (${featureEvents(f, events)})`,
    sql`${ident(`__f${i}`)} AS (${featureQuery(f, ident(`__e${i}`))})`,
  ]);
  const columns = features.map((f, i) => sql`COALESCE(${ident(`__f${i}`)}.v, ${defaultOf(f)}) AS ${ident(f.name)}`);
  const joins = features.map((_, i) => sql`LEFT JOIN ${ident(`__f${i}`)} ON ${ident(`__f${i}`)}.${ROW} = s.${ROW}`);
  return sql`WITH __spine AS MATERIALIZED (${numberedSpine(source)}),
    ${join(ctes, ',\n    ')}
    SELECT s.* EXCLUDE (${ROW}), ${join(columns)}
    FROM __spine s ${join(joins, ' ')}
    ORDER BY s.${ROW}`;
}

/**
 * Checks the spine (no missing user or time), then computes the training set, its rows sorted by
 * (as_of, user_id) unless `source.orderBy` says otherwise: a total order for a spine with one row per
 * user and moment, so the same data gives the same rows in the same order. `progress` (default a
 * bar in a notebook) shows the two steps; the query itself reports nothing until it ends.
 *
 * @example
 * ```ts
 * const rows = await buildTrainingSet(lake, appFeatures, {
 *   spine: spine({ entities: 'users', from: '2024-01-01', to: '2024-02-01', every: '7d' }),
 * });
 * ```
 */
export async function buildTrainingSet(
  lake: Lakehouse,
  features: readonly Feature[],
  source: TrainingSetSource,
  options: { progress?: Progress } = {},
): Promise<Row[]> {
  const task = (options.progress ?? defaultProgress()).task(`building a training set of ${features.length} features`, 2, 'steps');
  const [check] = await lake.query<{ rows: number; no_user: number; no_time: number; first_bad: number | null }>(sql`
    SELECT count(*) AS rows, count(*) FILTER (WHERE user_id IS NULL) AS no_user, count(*) FILTER (WHERE as_of IS NULL) AS no_time,
           min(r) FILTER (WHERE user_id IS NULL OR as_of IS NULL) AS first_bad
    FROM (SELECT user_id, as_of, row_number() OVER () AS r FROM ${source.spine})`);
  if (check && (check.no_user > 0 || check.no_time > 0)) {
    throw new InputError(
      `the spine has ${check.no_time} rows without as_of and ${check.no_user} without user_id (of ${check.rows}; the first is row ${check.first_bad}): ` +
        'every row needs the user and the time its features are computed at',
    );
  }
  task.update(1);
  const rows = await lake.query(trainingSetSql(features, { ...source, orderBy: source.orderBy ?? ['as_of', 'user_id'] }));
  task.finish(`${rows.length.toLocaleString('en-US')} rows x ${features.length} features`);
  return rows;
}

/**
 * The spine with its row number in the output order: `orderBy`'s columns, then the order the spine's
 * rows arrive in (only rows equal on every `orderBy` column depend on it).
 */
function numberedSpine(source: TrainingSetSource): Sql {
  const keys = (source.orderBy ?? []).map((c) => ident(c));
  if (keys.length === 0) return sql`SELECT *, row_number() OVER () AS ${ROW} FROM ${source.spine}`;
  return sql`SELECT * EXCLUDE (${ARRIVAL}), row_number() OVER (ORDER BY ${join(keys)}, ${ARRIVAL}) AS ${ROW}
    FROM (SELECT *, row_number() OVER () AS ${ARRIVAL} FROM ${source.spine})`;
}

/** The events a feature's `source.event` names, as a condition on `e.event`: one name, or `*`, every event but the service's own records. */
export function eventCondition(f: Feature): Sql {
  return f.source.event === '*' ? sql`e.event NOT IN (${join([...SERVICE_EVENTS])})` : sql`e.event = ${f.source.event}`;
}

/**
 * The events a feature reads, with its value taken out of the JSON props once per event (not once
 * per spine row that sees the event, which is many times more).
 */
function featureEvents(f: Feature, events: Sql): Sql {
  const conditions: Sql[] = [eventCondition(f)];
  for (const [prop, value] of Object.entries(f.source.where ?? {})) conditions.push(propEquals(prop, value));
  let value: Sql = sql`NULL`;
  if (f.prop !== undefined) {
    const path = `$.${f.prop}`;
    if (f.aggregation === 'distinct_count' || f.aggregation === 'last_n') {
      conditions.push(sql`json_type(e.props, ${path}) IN ${CATEGORY_TYPES}`);
      value = sql`json_extract_string(e.props, ${path})`;
    } else {
      conditions.push(sql`json_type(e.props, ${path}) IN ${NUMBER_TYPES}`);
      value = sql`CAST(json_extract(e.props, ${path}) AS DOUBLE)`;
    }
  }
  const read = sql`SELECT e.user_id, e.time, e.event_id, ${value} AS v FROM ${events} e WHERE ${join(conditions, ' AND ')}`;
  if (f.aggregation !== 'sum' && f.aggregation !== 'mean') return read;
  // The exact parts of each value (see EXACT_BELOW); the CASE casts only values that fit.
  const fits = sql`abs(v) < ${EXACT_BELOW}`;
  const hi = sql`round(v * ${HI_SCALE})`;
  return sql`SELECT user_id, time, event_id,
      CASE WHEN ${fits} THEN CAST(${hi} AS HUGEINT) ELSE 0 END AS v_hi,
      CASE WHEN ${fits} THEN CAST((v - ${hi} / ${HI_SCALE}) * ${LO_SCALE} AS HUGEINT) ELSE 0 END AS v_lo,
      CASE WHEN ${fits} THEN 0.0 ELSE v END AS v_rest
    FROM (${read})`;
}

/** The exact sum of a group's values from their parts (see EXACT_BELOW); NULL for no values. */
const EXACT_SUM = sql`(CAST(sum(e.v_hi) AS DOUBLE) / ${HI_SCALE} + CAST(sum(e.v_lo) AS DOUBLE) / ${LO_SCALE} + sum(e.v_rest))`;

function featureQuery(f: Feature, featureEvents: Identifier): Sql {
  const conditions: Sql[] = [sql`e.time < s.as_of`];
  const { ms, bucketMs } = WINDOWS[f.window];
  if (Number.isFinite(ms)) {
    const bucketUs = bucketMs * 1000;
    conditions.push(sql`e.time >= make_timestamp((epoch_us(s.as_of) // ${bucketUs}) * ${bucketUs} - ${ms * 1000})`);
  }
  return sql`SELECT s.${ROW}, ${aggregate(f)} AS v
    FROM __spine s JOIN ${featureEvents} e ON e.user_id = s.user_id
    WHERE ${join(conditions, ' AND ')}
    GROUP BY s.${ROW}`;
}

function aggregate(f: Feature): Sql {
  switch (f.aggregation) {
    case 'count':
      return sql`CAST(count(*) AS DOUBLE)`;
    case 'sum':
      return EXACT_SUM;
    case 'mean':
      return sql`${EXACT_SUM} / count(*)`;
    case 'min':
      return sql`min(e.v)`;
    case 'max':
      return sql`max(e.v)`;
    case 'distinct_count':
      return sql`CAST(count(DISTINCT e.v) AS DOUBLE)`;
    case 'last_n':
      // The n newest by (time, event_id), newest first: a top-n, much faster than sorting every list.
      return sql`max_by(e.v, struct_pack(t := e.time, id := e.event_id), ${f.n!})`;
    case 'time_since_last':
      return sql`(epoch_us(any_value(s.as_of)) - epoch_us(max(e.time))) / 1e6`;
    case 'first_seen_age':
      return sql`(epoch_us(any_value(s.as_of)) - epoch_us(min(e.time))) / 1e6`;
  }
}

/** The same rule as `matchesWhere`: the prop has this JSON type and this value (events aliased `e`; the online bootstrap uses it too). */
export function propEquals(prop: string, value: string | number | boolean): Sql {
  const path = `$.${prop}`;
  if (typeof value === 'string') return sql`(json_type(e.props, ${path}) = 'VARCHAR' AND json_extract_string(e.props, ${path}) = ${value})`;
  if (typeof value === 'number') return sql`(json_type(e.props, ${path}) IN ${NUMBER_TYPES} AND CAST(json_extract(e.props, ${path}) AS DOUBLE) = ${value})`;
  return sql`(json_type(e.props, ${path}) = 'BOOLEAN' AND json_extract_string(e.props, ${path}) = ${String(value)})`;
}

function defaultOf(f: Feature): Sql {
  return Array.isArray(f.default) ? sql`CAST(${f.default} AS VARCHAR[])` : sql`CAST(${f.default} AS DOUBLE)`;
}
