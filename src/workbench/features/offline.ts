import { InputError } from '../errors.js';
import type { Lakehouse, Row } from '../lakehouse.js';
import { defaultProgress, type Progress } from '../progress.js';
import { ident, join, raw, sql, type Identifier, type Sql } from '../sql.js';
import { WINDOWS, type Feature } from './definition.js';

/**
 * The offline compiler: a feature set and a spine of (user_id, as_of, labels...) become one DuckDB
 * query that computes every feature for every spine row from the events strictly before its as_of
 * (point in time: no leakage from the future, nor from the instant itself), with the bucketed
 * window of definition.ts. One row out per spine row, in spine order, spine columns first.
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
}

const NUMBER_TYPES = raw(`('BIGINT', 'UBIGINT', 'DOUBLE')`);
const CATEGORY_TYPES = raw(`('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE', 'BOOLEAN')`);
const ROW = ident('__spine_row');

/**
 * The point-in-time SQL of a training set (the spine's rows, one column per feature as of `as_of`), without running it.
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
  return sql`WITH __spine AS MATERIALIZED (SELECT *, row_number() OVER () AS ${ROW} FROM ${source.spine}),
    ${join(ctes, ',\n    ')}
    SELECT s.* EXCLUDE (${ROW}), ${join(columns)}
    FROM __spine s ${join(joins, ' ')}
    ORDER BY s.${ROW}`;
}

/**
 * Checks the spine (no missing user or time), then computes the training set. `progress` (default a
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
  const rows = await lake.query(trainingSetSql(features, source));
  task.finish(`${rows.length.toLocaleString('en-US')} rows x ${features.length} features`);
  return rows;
}

/**
 * The events a feature reads, with its value taken out of the JSON props once per event (not once
 * per spine row that sees the event, which is many times more).
 */
function featureEvents(f: Feature, events: Sql): Sql {
  const conditions: Sql[] = [sql`TRUE`];
  if (f.source.event !== '*') conditions.push(sql`e.event = ${f.source.event}`);
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
  return sql`SELECT e.user_id, e.time, e.event_id, ${value} AS v FROM ${events} e WHERE ${join(conditions, ' AND ')}`;
}

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
      return sql`sum(e.v)`;
    case 'mean':
      return sql`avg(e.v)`;
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

/** The same rule as `matchesWhere`: the prop has this JSON type and this value. */
function propEquals(prop: string, value: string | number | boolean): Sql {
  const path = `$.${prop}`;
  if (typeof value === 'string') return sql`(json_type(e.props, ${path}) = 'VARCHAR' AND json_extract_string(e.props, ${path}) = ${value})`;
  if (typeof value === 'number') return sql`(json_type(e.props, ${path}) IN ${NUMBER_TYPES} AND CAST(json_extract(e.props, ${path}) AS DOUBLE) = ${value})`;
  return sql`(json_type(e.props, ${path}) = 'BOOLEAN' AND json_extract_string(e.props, ${path}) = ${String(value)})`;
}

function defaultOf(f: Feature): Sql {
  return Array.isArray(f.default) ? sql`CAST(${f.default} AS VARCHAR[])` : sql`CAST(${f.default} AS DOUBLE)`;
}
