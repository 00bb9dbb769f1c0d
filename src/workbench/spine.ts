import { InputError } from './errors.js';
import { ident, sql, Sql } from './sql.js';

/**
 * Spines and labels in SQL: the (user_id, as_of) grid a training set is computed on, and 0/1 labels
 * that look only forward from each as_of. Both return `Sql` subqueries, so they nest into each
 * other and into `buildTrainingSet({ spine })`, and nothing is read until the query runs.
 *
 *   const grid = spine({ entities: sql`SELECT DISTINCT user_id FROM app_events`, from: '2025-01-08', to: '2025-02-01', every: '7d' });
 *   const rows = await lake.query(labels(grid, { event: 'purchase', within: '30d', name: 'bought' }));
 */

/** A length of time: a whole number and a unit, minutes (m), hours (h), days (d) or weeks (w): `7d`, `12h`. */
export type Duration = `${number}${'m' | 'h' | 'd' | 'w'}`;

/** A table or view name (quoted as an identifier), or a query. */
export type Relation = string | Sql;

/** The as-of grid of `spine`: the entities, the first and last moment, the step, and when each entity came to be. */
export interface SpineOptions {
  /** Who is scored: a table, view or query with one row per entity and a `user_id` column. */
  entities: Relation;
  /** The first and last moment (both included), as a `Date` or an ISO date or timestamp (UTC). */
  from: Date | string;
  to: Date | string;
  every: Duration;
  /**
   * A column of `entities` holding when the entity came to be (first purchase, signup): an entity
   * enters the grid only at moments strictly after it, so nobody is scored before they exist.
   */
  since?: string;
}

/**
 * The as-of grid: every entity at every moment from `from` to `to`, `every` apart, as rows
 * (user_id, as_of), ordered by as_of then user_id so results are deterministic.
 *
 * @example
 * ```ts
 * const grid = spine({ entities: 'users', from: '2024-01-01', to: '2024-03-01', every: '7d' });
 * const rows = await buildTrainingSet(lake, appFeatures, { spine: grid });
 * ```
 */
export function spine(options: SpineOptions): Sql {
  const step = interval(options.every, 'every');
  const entered = options.since === undefined ? sql`TRUE` : sql`e.${ident(options.since)} < g.as_of`;
  return sql`(
    SELECT e.user_id, g.as_of
    FROM ${relation(options.entities)} e
    JOIN (SELECT unnest(generate_series(CAST(${moment(options.from, 'from')} AS TIMESTAMP), CAST(${moment(options.to, 'to')} AS TIMESTAMP), ${step})) AS as_of) g
      ON ${entered}
    ORDER BY g.as_of, e.user_id)`;
}

/** What `labels` counts: the label's name, the window after each moment, and the event. */
export interface LabelOptions {
  /** The label column's name. */
  name: string;
  /** The window after each as_of in which the event counts. */
  within: Duration;
  /** The event's name (the `event` column); leave out to count any event of `events`. */
  event?: string;
  /** Where events are read from: a table, view or query with user_id and time (default the `events` view). */
  events?: Relation;
}

/**
 * The spine with one more column, `name`: 1 if the user had the event in (as_of, as_of + within],
 * else 0. Strictly after as_of: features see events strictly before as_of, so no event is both a
 * feature input and the label.
 *
 * @example
 * ```ts
 * const grid = spine({ entities: 'users', from: '2024-01-01', to: '2024-03-01', every: '7d', since: 'first_seen' });
 * const rows = await lake.query(labels(grid, { name: 'churned', within: '14d', event: 'subscription_cancelled' }));
 * ```
 */
export function labels(spineRows: Relation, options: LabelOptions): Sql {
  const window = interval(options.within, 'within');
  const sameEvent = options.event === undefined ? sql`TRUE` : sql`x.event = ${options.event}`;
  return sql`(
    SELECT s.*,
           CAST(EXISTS (SELECT 1 FROM ${relation(options.events ?? 'events')} x
                        WHERE x.user_id = s.user_id AND ${sameEvent} AND x.time > s.as_of AND x.time <= s.as_of + ${window}) AS INTEGER) AS ${ident(options.name)}
    FROM ${relation(spineRows)} s
    ORDER BY s.as_of, s.user_id)`;
}

const UNITS = { m: 'to_minutes', h: 'to_hours', d: 'to_days', w: 'to_weeks' } as const;

/** A duration as a DuckDB INTERVAL expression; bad text is an InputError naming the option. */
export function interval(duration: string, option: string): Sql {
  const match = /^([1-9][0-9]{0,5})([mhdw])$/.exec(typeof duration === 'string' ? duration : '');
  if (!match) throw new InputError(`${option}: ${JSON.stringify(duration)} is not a duration: write a whole number and m, h, d or w, like '7d' or '12h'`);
  const fn = UNITS[match[2] as keyof typeof UNITS];
  return new Sql([`${fn}(`, ')'], [Number(match[1])]);
}

function moment(value: Date | string, option: string): Date | string {
  const time = value instanceof Date ? value.getTime() : typeof value === 'string' && /^\d{4}-\d{2}-\d{2}/.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(time)) throw new InputError(`${option}: ${JSON.stringify(String(value))} is not a date: give a Date or an ISO date like '2025-01-31'`);
  return value;
}

function relation(r: Relation): Sql {
  return typeof r === 'string' ? sql`${ident(r)}` : sql`(${r})`;
}
