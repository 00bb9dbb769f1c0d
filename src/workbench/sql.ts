/**
 * The one way SQL is written in this project: a tagged template whose interpolated values are
 * escaped as literals (or bound as parameters) and whose identifiers are quoted. Fragments nest, so
 * queries are composed from pieces without ever concatenating user input into SQL text.
 *
 *   sql`SELECT * FROM ${ident('events')} WHERE user_id = ${userId} AND time < ${asOf}`
 */

/** A trusted piece of SQL text, written by the programmer (never from input). */
export class RawSql {
  constructor(readonly text: string) {}
}

/** A quoted, possibly qualified, identifier: "schema"."table". */
export class Identifier {
  readonly parts: readonly string[];
  constructor(parts: readonly string[]) {
    if (parts.length === 0) throw new TypeError('ident() needs at least one name');
    for (const p of parts) {
      if (typeof p !== 'string' || p.length === 0 || p.includes('\0')) {
        throw new TypeError(`invalid SQL identifier: ${JSON.stringify(p)}`);
      }
    }
    this.parts = parts;
  }
  toString(): string {
    return this.parts.map((p) => `"${p.replaceAll('"', '""')}"`).join('.');
  }
}

/**
 * Every value a query returns can go back into a query: scalars, `Date` (TIMESTAMP, DATE, TIMESTAMPTZ
 * all arrive as one), `Uint8Array` (BLOB), lists and structs (plain objects). So a value read with
 * `lake.query()` is passed to `sql` as it is, without a cast.
 */
export type SqlValue = null | undefined | boolean | number | bigint | string | Date | Uint8Array | readonly SqlValue[] | { readonly [field: string]: SqlValue };
type Part = SqlValue | Sql | RawSql | Identifier;

/**
 * A SQL statement or fragment built by `sql`: text plus values, never concatenated (`toString()` inlines them escaped).
 *
 * @example
 * ```ts
 * const recent: Sql = sql`time > now() - INTERVAL 7 DAY`;
 * const rows = await lake.query(sql`SELECT * FROM events WHERE ${recent}`);
 * ```
 */
export class Sql {
  constructor(
    readonly strings: readonly string[],
    readonly values: readonly Part[],
  ) {}

  /** The statement with every value inlined as an escaped literal (for DuckDB). */
  toString(): string {
    let out = this.strings[0] ?? '';
    for (let i = 0; i < this.values.length; i++) {
      out += render(this.values[i]) + (this.strings[i + 1] ?? '');
    }
    return out;
  }

  /**
   * The statement with values as bound parameters, in the placeholder style of the driver:
   * `$1, $2` (PostgreSQL) or `?` (SQLite). Identifiers and nested fragments are still inlined.
   */
  toParameterized(style: 'dollar' | 'question'): { text: string; params: unknown[] } {
    const params: unknown[] = [];
    const walk = (s: Sql): string => {
      let out = s.strings[0] ?? '';
      for (let i = 0; i < s.values.length; i++) {
        const v = s.values[i];
        if (v instanceof Sql) out += walk(v);
        else if (v instanceof RawSql || v instanceof Identifier) out += render(v);
        else {
          params.push(v === undefined ? null : v);
          out += style === 'dollar' ? `$${params.length}` : '?';
        }
        out += s.strings[i + 1] ?? '';
      }
      return out;
    };
    return { text: walk(this), params };
  }
}

/**
 * Builds SQL from a template: interpolated values become escaped literals, `Sql` fragments nest, `ident()` quotes names.
 *
 * @example
 * ```ts
 * const rows = await lake.query(sql`SELECT * FROM events WHERE user_id = ${userId} AND time < ${asOf}`);
 * ```
 */
export function sql(strings: TemplateStringsArray, ...values: Part[]): Sql {
  return new Sql(strings, values);
}

/**
 * Quote a name (or a qualified name from several parts) as an identifier.
 *
 * @example
 * ```ts
 * await lake.query(sql`SELECT ${ident(column)} FROM ${ident('main', 'events')} LIMIT 5`);
 * ```
 */
export function ident(...parts: string[]): Identifier {
  return new Identifier(parts);
}

/**
 * Trusted SQL text. Use only for text the program wrote, never for input.
 *
 * @example
 * ```ts
 * const order = raw('ORDER BY time DESC');
 * await lake.query(sql`SELECT * FROM events ${order} LIMIT 10`);
 * ```
 */
export function raw(text: string): RawSql {
  return new RawSql(text);
}

/**
 * Join fragments or values with a separator, e.g. a column list or an IN list.
 *
 * @example
 * ```ts
 * const columns = ['user_id', 'time'];
 * await lake.query(sql`SELECT ${join(columns.map((c) => ident(c)))} FROM events WHERE event IN (${join(['login', 'signup'])})`);
 * ```
 */
export function join(parts: readonly Part[], separator = ', '): Sql {
  if (parts.length === 0) return new Sql([''], []);
  const strings = [''];
  for (let i = 1; i < parts.length; i++) strings.push(separator);
  strings.push('');
  return new Sql(strings, parts);
}

/** A value as a SQL literal. Exported for the rare place that needs one outside a template. */
export function literal(value: SqlValue): string {
  return render(value);
}

function render(v: Part): string {
  if (v instanceof Sql) return v.toString();
  if (v instanceof RawSql) return v.text;
  if (v instanceof Identifier) return v.toString();
  if (v === null || v === undefined) return 'NULL';
  switch (typeof v) {
    case 'boolean':
      return v ? 'TRUE' : 'FALSE';
    case 'number':
      if (!Number.isFinite(v)) throw new TypeError(`cannot write ${v} as a SQL literal`);
      return String(v);
    case 'bigint':
      return v.toString();
    case 'string':
      return quoteString(v);
  }
  if (v instanceof Date) {
    if (Number.isNaN(v.getTime())) throw new TypeError('cannot write an invalid Date as a SQL literal');
    // An explicit UTC timestamp: the lakehouse stores times as naive UTC TIMESTAMPs.
    return `TIMESTAMP ${quoteString(v.toISOString().replace('T', ' ').replace('Z', ''))}`;
  }
  if (Array.isArray(v)) return `[${v.map((x) => render(x as SqlValue)).join(', ')}]`;
  if (v instanceof Uint8Array) return `from_hex('${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}')`;
  if (isPlainObject(v)) {
    // A struct literal. DuckDB has no empty struct, and an object of another class (a Map, a class
    // instance) is more likely a mistake than a struct: both are refused rather than guessed at.
    const fields = Object.keys(v);
    if (fields.length === 0) throw new TypeError('cannot write an empty object as a SQL struct literal');
    return `{${fields.map((f) => `${quoteString(f)}: ${render(v[f] as SqlValue)}`).join(', ')}}`;
  }
  throw new TypeError(`cannot write a ${Object.prototype.toString.call(v)} as a SQL literal`);
}

function isPlainObject(v: object): v is { readonly [field: string]: SqlValue } {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function quoteString(s: string): string {
  if (s.includes('\0')) throw new TypeError('SQL string literals cannot contain NUL characters');
  return `'${s.replaceAll("'", "''")}'`;
}
