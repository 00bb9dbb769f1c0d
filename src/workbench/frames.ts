import { InputError } from './errors.js';

/**
 * The pandas habits (describe, value_counts, groupby, pivot_table, head) on query results, typed and
 * keeping their labels: each returns plain rows whose first column is the label (the statistic, the
 * value, the group keys), so `show()` prints the labels like any table and the result is still rows
 * for the next step. Column names come from data (pivot, describe): they are set as own properties,
 * never through a plain-object key lookup, so a column named `__proto__` is just a column.
 *
 *   show(describe(rows));
 *   show(groupBy(rows, ['country'], { revenue: agg('sum', 'amount'), buyers: agg('nunique', 'user_id') }));
 */

/** A cell of a query result or of a danfo frame. */
type Cell = unknown;
/** Rows of any object type: query results, interfaces, literals. */
type Rows<T> = readonly T[];

/** A danfo DataFrame or Series, by shape (danfo's own types are invisible to tslab). */
export interface FrameLike {
  columns?: string[];
  values: unknown[] | unknown[][];
  index?: (string | number)[];
}

/**
 * A danfo frame as rows, its row labels (`index`) kept as the first column: `show(rowsOf(df.describe()))`
 * prints the statistic names that `show(df.describe())` loses.
 *
 * @example
 * ```ts
 * const df = await lake.frame(sql`SELECT country, amount FROM retail_lines`);
 * const rows = rowsOf(df.head(10)); // the row labels become the first column
 * ```
 */
export function rowsOf(frame: FrameLike, labelColumn = 'index'): Record<string, Cell>[] {
  const values = frame.values;
  const columns = frame.columns ?? ['value'];
  return values.map((row, i) => {
    const out: Record<string, Cell> = {};
    if (frame.index) setField(out, labelColumn, frame.index[i]);
    const cells = Array.isArray(row) ? row : [row];
    columns.forEach((c, j) => setField(out, c, cells[j]));
    return out;
  });
}

/**
 * The first `n` rows (default 5), typed as they came.
 *
 * @example
 * ```ts
 * show(head(rows, 10));
 * ```
 */
export function head<T>(rows: Rows<T>, n = 5): T[] {
  if (!Number.isInteger(n) || n < 0) throw new InputError(`head: n must be a whole number of at least 0, not ${n}`);
  return rows.slice(0, n);
}

/** One row per statistic (count, mean, std, min, 25%, 50%, 75%, max), one column per numeric column. */
export type DescribeRow = { statistic: string } & Record<string, number | string | null>;

export const DESCRIBE_STATISTICS = ['count', 'mean', 'std', 'min', '25%', '50%', '75%', 'max'] as const;

/**
 * pandas' `describe()` for the numeric columns (numbers and bigints; nulls are skipped, as NaN is in
 * pandas): std is the sample standard deviation (n - 1) and the quartiles interpolate linearly
 * between order statistics, pandas' default (numpy's `linear`, R's type 7).
 *
 * @example
 * ```ts
 * show(describe(await lake.query(sql`SELECT amount, quantity FROM retail_lines`)));
 * ```
 */
export function describe<T extends object>(rows: Rows<T>, columns?: readonly (keyof T & string)[]): DescribeRow[] {
  const names = columns ?? numericColumns(rows);
  const stats = names.map((name) => {
    const xs: number[] = [];
    rows.forEach((row, i) => {
      const v = field(row, name);
      if (v === null || v === undefined) return;
      const x = toNumber(v);
      if (x === undefined) throw new InputError(`describe: column ${JSON.stringify(name)} is not numeric: row ${i} holds ${JSON.stringify(String(v))}`);
      xs.push(x);
    });
    return summarise(xs);
  });
  return DESCRIBE_STATISTICS.map((statistic, s) => {
    const out = { statistic } as DescribeRow;
    names.forEach((name, c) => setField(out, name, stats[c]![s]!));
    return out;
  });
}

/**
 * The linear-interpolation quantile (pandas' and numpy's default) of sorted values; null if empty.
 *
 * @example
 * ```ts
 * quantile([1, 2, 3, 4], 0.5); // 2.5
 * ```
 */
export function quantile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const h = (sorted.length - 1) * p;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

function summarise(xs: number[]): (number | null)[] {
  const n = xs.length;
  if (n === 0) return [0, null, null, null, null, null, null, null];
  const sorted = [...xs].sort((a, b) => a - b);
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : null;
  return [n, mean, std, sorted[0]!, quantile(sorted, 0.25), quantile(sorted, 0.5), quantile(sorted, 0.75), sorted[n - 1]!];
}

/**
 * How often each value occurs, most frequent first (ties in value order), with its share of the rows.
 *
 * @example
 * ```ts
 * show(valueCounts(await lake.query(sql`SELECT event FROM events`), 'event'));
 * ```
 */
export function valueCounts<T extends object, K extends keyof T & string>(
  rows: Rows<T>,
  column: K,
): Array<{ [P in K]: T[K] } & { count: number; share: number }> {
  const groups = groupRows(rows, [column]);
  const out = [...groups.values()].map((g) => {
    const row = {} as { [P in K]: T[K] } & { count: number; share: number };
    setField(row, column, field(g.rows[0]!, column));
    row.count = g.rows.length;
    row.share = g.rows.length / rows.length;
    return row;
  });
  return out.sort((a, b) => b.count - a.count || compareValues(a[column], b[column]));
}

/** The aggregations `agg` knows: count, sum, mean, min, max, std, median, nunique. */
export type AggregationName = 'count' | 'sum' | 'mean' | 'min' | 'max' | 'std' | 'median' | 'nunique';

/** An aggregation over one column (or, for `count` without a column, over rows). */
export interface Aggregation {
  readonly fn: AggregationName;
  readonly column?: string;
}

const AGGREGATION_NAMES: readonly AggregationName[] = ['count', 'sum', 'mean', 'min', 'max', 'std', 'median', 'nunique'];

/**
 * `agg('sum', 'amount')`: count and nunique count non-null values; the others skip nulls and want numbers.
 *
 * @example
 * ```ts
 * groupBy(rows, ['country'], { revenue: agg('sum', 'amount'), customers: agg('nunique', 'customer_id') });
 * ```
 */
export function agg(fn: AggregationName, column?: string): Aggregation {
  if (!AGGREGATION_NAMES.includes(fn)) throw new InputError(`agg: unknown aggregation ${JSON.stringify(fn)}: use one of ${AGGREGATION_NAMES.join(', ')}`);
  if (column === undefined && fn !== 'count') throw new InputError(`agg('${fn}') needs a column`);
  return { fn, column };
}

/**
 * pandas' `groupby(keys).agg(...)`: one row per group, the keys first then one column per
 * aggregation, groups in key order (pandas' `sort=True`).
 *
 * @example
 * ```ts
 * const byCountry = groupBy(rows, ['country'], { orders: agg('count'), revenue: agg('sum', 'amount') });
 * show(byCountry);
 * ```
 */
export function groupBy<T extends object, K extends keyof T & string, A extends Record<string, Aggregation>>(
  rows: Rows<T>,
  keys: readonly K[],
  aggregations: A,
): Array<{ [P in K]: T[P] } & { [P in keyof A]: number | null }> {
  if (keys.length === 0) throw new InputError('groupBy: give at least one key column');
  const groups = [...groupRows(rows, keys).values()].sort((a, b) => compareKeys(a.key, b.key));
  return groups.map((g) => {
    const out = {} as { [P in K]: T[P] } & { [P in keyof A]: number | null };
    keys.forEach((k, i) => setField(out, k, g.key[i]));
    for (const name of Object.keys(aggregations)) {
      if (keys.includes(name as K)) throw new InputError(`groupBy: the aggregation ${JSON.stringify(name)} has the name of a key column`);
      setField(out, name, aggregate(g.rows, aggregations[name]!, name));
    }
    return out;
  });
}

/** What `pivot` spreads: the row labels (`index`), the column labels (`columns`), the values and their aggregation. */
export interface PivotOptions<K extends string> {
  /** The column whose values label the rows. */
  index: K;
  /** The column whose values become columns. */
  columns: string;
  /** The column aggregated in each cell (leave out with `agg: 'count'`). */
  values?: string;
  /** Default 'mean', like pandas' `pivot_table`. Empty cells are null. */
  agg?: AggregationName;
}

/**
 * pandas' `pivot_table`: one row per `index` value, one column per `columns` value (both sorted).
 *
 * @example
 * ```ts
 * show(pivot(rows, { index: 'country', columns: 'month', values: 'amount', agg: 'sum' }));
 * ```
 */
export function pivot<T extends object, K extends keyof T & string>(rows: Rows<T>, options: PivotOptions<K>): Array<{ [P in K]: T[P] } & Record<string, Cell>> {
  const fn = options.agg ?? 'mean';
  const aggregation = agg(fn, options.values);
  const columnValues = [...groupRows(rows, [options.columns]).values()].map((g) => g.key[0]).sort(compareValues);
  const names = columnValues.map((v) => label(v));
  if (names.includes(options.index))
    throw new InputError(`pivot: a value of ${JSON.stringify(options.columns)} is ${JSON.stringify(options.index)}, the name of the index column`);
  const rowGroups = [...groupRows(rows, [options.index]).values()].sort((a, b) => compareKeys(a.key, b.key));
  return rowGroups.map((g) => {
    const out = {} as { [P in K]: T[P] } & Record<string, Cell>;
    setField(out, options.index, g.key[0]);
    const cells = groupRows(g.rows, [options.columns]);
    columnValues.forEach((v, i) => {
      const cell = cells.get(keyOf([v]));
      setField(out, names[i]!, cell ? aggregate(cell.rows, aggregation, names[i]!) : null);
    });
    return out;
  });
}

function aggregate(rows: readonly object[], a: Aggregation, name: string): number | null {
  if (a.column === undefined) return rows.length;
  const present = rows.map((r) => field(r, a.column!)).filter((v) => v !== null && v !== undefined);
  if (a.fn === 'count') return present.length;
  if (a.fn === 'nunique') return new Set(present.map((v) => keyOf([v]))).size;
  const xs = present.map((v) => {
    const x = toNumber(v);
    if (x === undefined) throw new InputError(`${name}: ${a.fn} of ${JSON.stringify(a.column)} needs numbers, and it holds ${JSON.stringify(String(v))}`);
    return x;
  });
  if (a.fn === 'sum') return xs.reduce((s, x) => s + x, 0);
  if (xs.length === 0) return null;
  const [, mean, std, min, , median, , max] = summarise(xs);
  switch (a.fn) {
    case 'mean':
      return mean!;
    case 'std':
      return std!;
    case 'min':
      return min!;
    case 'max':
      return max!;
    default:
      return median!;
  }
}

interface Group {
  key: Cell[];
  rows: object[];
}

/** Rows by the values of `keys`, in order of first appearance. A Map: keys come from data. */
function groupRows(rows: readonly object[], keys: readonly string[]): Map<string, Group> {
  const groups = new Map<string, Group>();
  for (const row of rows) {
    const key = keys.map((k) => field(row, k));
    const id = keyOf(key);
    const g = groups.get(id);
    if (g) g.rows.push(row);
    else groups.set(id, { key, rows: [row] });
  }
  return groups;
}

/** A value's identity for grouping: type-tagged, so 1, 1n, '1' and a Date stay apart. */
function keyOf(values: readonly Cell[]): string {
  return values
    .map((v) =>
      v instanceof Date
        ? `d${v.getTime()}`
        : v === null || v === undefined
          ? 'n'
          : typeof v === 'object'
            ? `o${JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x))}`
            : `${typeof v}:${String(v)}`,
    )
    .join('\u0000');
}

/** The column name a pivoted value becomes. */
function label(v: Cell): string {
  if (v === null || v === undefined) return 'null';
  if (v instanceof Date) return v.toISOString();
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

/** Nulls last; numbers, bigints and dates by value; anything else by its text. */
function compareValues(a: Cell, b: Cell): number {
  const na = a === null || a === undefined;
  const nb = b === null || b === undefined;
  if (na || nb) return na === nb ? 0 : na ? 1 : -1;
  const xa = toNumber(a);
  const xb = toNumber(b);
  if (xa !== undefined && xb !== undefined) return xa - xb;
  const sa = label(a);
  const sb = label(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

function compareKeys(a: readonly Cell[], b: readonly Cell[]): number {
  for (let i = 0; i < a.length; i++) {
    const c = compareValues(a[i], b[i]);
    if (c !== 0) return c;
  }
  return 0;
}

function toNumber(v: Cell): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof Date) return v.getTime();
  return undefined;
}

function numericColumns(rows: readonly object[]): string[] {
  const names: string[] = [];
  for (const row of rows) {
    for (const name of Object.keys(row)) {
      if (names.includes(name)) continue;
      const v = field(row, name);
      if (typeof v === 'number' || typeof v === 'bigint') names.push(name);
    }
  }
  return names;
}

function field(row: object, name: string): Cell {
  return Object.prototype.hasOwnProperty.call(row, name) ? (row as Record<string, Cell>)[name] : undefined;
}

/** An own, enumerable property even for names like `__proto__`. */
function setField(target: object, name: string, value: Cell): void {
  Object.defineProperty(target, name, { value, enumerable: true, writable: true, configurable: true });
}
