import { InputError } from './errors.js';
import { ident, sql, Sql } from './sql.js';

/**
 * Spines and labels in SQL: the (user_id, as_of) grid a training set is computed on, and 0/1 labels
 * that look only forward from each as_of. Both return `Sql` subqueries, so they nest into each
 * other and into `buildTrainingSet({ spine })`, and nothing is read until the query runs.
 *
 * The time convention, shared with `buildTrainingSet`: features read the events strictly before
 * as_of, labels the events in (as_of, as_of + within]. No event is both a feature input and a label;
 * an event at exactly as_of is in neither (on a grid of midnights, only what is stamped 00:00:00).
 * Both order their rows by (as_of, user_id), a total order when `entities` has one row per user,
 * and `buildTrainingSet` keeps the spine's order: the same lake gives the same rows in the same order.
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
  /**
   * A column of `entities` holding when the entity ceased to be (churned, deleted; NULL while it
   * still is): it leaves the grid at that moment, so it is on the grid only strictly before it and
   * an outcome at that time falls in the label window (as_of, as_of + within] of its last rows.
   */
  until?: string;
}

/**
 * The as-of grid: every entity at every moment from `from` to `to`, `every` apart (between `since`
 * and `until` when given), as rows (user_id, as_of), ordered by as_of then user_id so results are
 * deterministic.
 *
 * @example
 * ```ts
 * const grid = spine({ entities: 'users', from: '2024-01-01', to: '2024-03-01', every: '7d' });
 * const rows = await buildTrainingSet(lake, appFeatures, { spine: grid });
 * ```
 * @example
 * ```ts
 * // Users after signup and before churn (churned_at NULL: still there), labelled with the churn itself.
 * const grid = spine({
 *   entities: sql`SELECT u.user_id, u.first_seen, t.churned_at FROM users u JOIN app_truth t USING (user_id)`,
 *   from: '2025-01-15', to: '2025-02-15', every: '2d', since: 'first_seen', until: 'churned_at',
 * });
 * const rows = await lake.query(labels(grid, { name: 'churned', within: '14d', events: sql`SELECT user_id, churned_at AS time FROM app_truth` }));
 * ```
 */
export function spine(options: SpineOptions): Sql {
  const step = interval(options.every, 'every');
  const entered = options.since === undefined ? sql`TRUE` : sql`e.${ident(options.since)} < g.as_of`;
  const present = options.until === undefined ? sql`TRUE` : sql`(e.${ident(options.until)} IS NULL OR g.as_of < e.${ident(options.until)})`;
  return sql`(
    SELECT e.user_id, g.as_of
    FROM ${relation(options.entities)} e
    JOIN (SELECT unnest(generate_series(CAST(${moment(options.from, 'from')} AS TIMESTAMP), CAST(${moment(options.to, 'to')} AS TIMESTAMP), ${step})) AS as_of) g
      ON ${entered} AND ${present}
    ORDER BY g.as_of, e.user_id)`;
}

/** What `eventSpine` scores: an event, where it is read from, the span, and who is scored. */
export interface EventSpineOptions {
  /** The event whose moments are scored (the `event` column), e.g. `login`. */
  event: string;
  /** Where events are read from: a table, view or query with user_id, time and event; default the `events` view, every source. */
  events?: Relation;
  /** The first and last moment (both included), as a `Date` or an ISO date or timestamp (UTC). */
  from: Date | string;
  to: Date | string;
  /**
   * Who is scored: a table, view or query with one row per entity and a `user_id` column, with the
   * `since` and `until` columns when given; default everyone who did the event.
   */
  entities?: Relation;
  /** A column of `entities`: an entity is scored only at moments strictly after it (as in `spine`). */
  since?: string;
  /** A column of `entities`: an entity is scored only at moments strictly before it, NULL for never (as in `spine`). */
  until?: string;
}

/**
 * A spine of the moments a model is used at: one row (user_id, as_of) per time a user did `event`,
 * with as_of 1 ms after it, so the features (events strictly before as_of) include the event itself,
 * as a service scoring the user on that event sees them. A model served on an event (the precompute
 * scores each user at login) is trained on those moments, not on a calendar grid: users who log in
 * are not the population of every user at midnight, and a model fitted on the grid serves inputs it
 * never saw (a login's `since_last_login` is 0; the grid's is days). Rows are ordered by
 * (as_of, user_id); a user doing the event twice in the same millisecond has one row.
 *
 * @example
 * ```ts
 * // Every login of the app, labelled with a purchase in the next 30 days.
 * const logins = eventSpine({ event: 'login', events: 'app_events', from: '2025-01-15', to: '2025-04-01' });
 * const rows = await lake.query(labels(logins, { name: 'bought', within: '30d', event: 'upgrade', events: 'app_events' }));
 * ```
 */
export function eventSpine(options: EventSpineOptions): Sql {
  const asOf = sql`x.time + INTERVAL 1 MILLISECOND`;
  const within = sql`${asOf} >= CAST(${moment(options.from, 'from')} AS TIMESTAMP) AND ${asOf} <= CAST(${moment(options.to, 'to')} AS TIMESTAMP)`;
  const entered = options.since === undefined ? sql`TRUE` : sql`e.${ident(options.since)} < ${asOf}`;
  const present = options.until === undefined ? sql`TRUE` : sql`(e.${ident(options.until)} IS NULL OR ${asOf} < e.${ident(options.until)})`;
  const who = options.entities === undefined ? sql`` : sql`JOIN ${relation(options.entities)} e ON e.user_id = x.user_id AND ${entered} AND ${present}`;
  if (options.entities === undefined && (options.since !== undefined || options.until !== undefined))
    throw new InputError('eventSpine: since and until are columns of entities: give entities too');
  return sql`(
    SELECT DISTINCT x.user_id, ${asOf} AS as_of
    FROM ${relation(options.events ?? 'events')} x ${who}
    WHERE x.event = ${options.event} AND ${within}
    ORDER BY as_of, user_id)`;
}

/** What `labels` counts: the label's name, the window after each moment, and the event. */
export interface LabelOptions {
  /** The label column's name. */
  name: string;
  /** The window after each as_of in which the event counts. */
  within: Duration;
  /** The event's name (the `event` column); leave out to count any event of `events`. */
  event?: string;
  /**
   * Where events are read from: a table, view or query with user_id, time and (with `event`) event;
   * default the `events` view, every source. A query narrows it to one source, and any table of
   * outcomes with a time fits, like churn times.
   */
  events?: Relation;
}

/**
 * The spine with one more column, `name`: 1 if the user had the event in (as_of, as_of + within],
 * else 0; other spine columns are kept, and rows are ordered by (as_of, user_id). Strictly after
 * as_of: features (`buildTrainingSet`) see events strictly before as_of, so no event is both a
 * feature input and the label; one at exactly as_of is in neither.
 *
 * @example
 * ```ts
 * const grid = spine({ entities: 'users', from: '2024-01-01', to: '2024-03-01', every: '7d', since: 'first_seen' });
 * const rows = await lake.query(labels(grid, { name: 'churned', within: '14d', event: 'subscription_cancelled' }));
 * ```
 * @example
 * ```ts
 * // Customers after their first purchase, labelled with purchases of the retail log only.
 * const retail = sql`SELECT * FROM events WHERE source = 'retail'`;
 * const customers = sql`SELECT user_id, min(time) AS first FROM (${retail}) r WHERE event = 'purchase' GROUP BY 1`;
 * const grid = spine({ entities: customers, from: '2011-02-01', to: '2011-11-01', every: '14d', since: 'first' });
 * const rows = await lake.query(labels(grid, { name: 'bought', within: '30d', event: 'purchase', events: retail }));
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

/** A number of days as a `Duration`, for options given in days; anything else is an InputError naming the option. */
export function days(n: number, option: string): Duration {
  if (!Number.isInteger(n) || n < 1 || n > 999_999) throw new InputError(`${option}: ${String(n)} is not a whole number of days from 1 to 999999`);
  return `${n}d`;
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
