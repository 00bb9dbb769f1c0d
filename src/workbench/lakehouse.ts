import * as arrow from 'apache-arrow';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ASSIGNMENT_MACROS } from './experiments/macros.js';
import { DuckDb, type ColumnarResult, type Scalar } from './duckdb.js';
import { IntegrityError, NotFoundError } from './errors.js';
import { sha256File } from './files.js';
import { lakeLayout, type LakeLayout } from './lakehouse/layout.js';
import { LIVE_SOURCE } from './lakehouse/live.js';
import { emptyManifest, readManifest, type EventSourceEntry, type Manifest } from './lakehouse/manifest.js';
import { ident, sql, type Sql } from './sql.js';

/** One row of a query result: column name to value as `Lakehouse.query` returns it (a BIGINT that fits a double becomes a number). */
export type Row = Record<string, Scalar>;

/**
 * A danfo DataFrame, described here rather than imported: danfo declares its types only in its
 * package `exports`, which tslab's module resolution cannot see, and notebooks type-check this file.
 */
export interface DataFrame {
  readonly shape: number[];
  readonly columns: string[];
  readonly values: unknown[][];
  readonly dtypes: string[];
  head(rows?: number): DataFrame;
  print(): void;
  [method: string]: unknown;
}

/**
 * A source of the event archive, as the `events` view's `source` column names it. `built`: written
 * by `wb lake build`, and its manifest entry says what was read, accepted and quarantined. `live`:
 * appended by the running service's archiver (after `npm start`); no manifest entry, and it grows
 * while the service runs. `unlisted`: in the archive but not in the manifest (a build interrupted
 * between writing the source and the manifest); `wb lake build --force` accounts for it again.
 *
 *   for (const s of lake.sources()) if (s.kind === 'built') console.log(s.name, s.build.accepted);
 */
export type ArchiveSource = { name: string; kind: 'built'; build: EventSourceEntry } | { name: string; kind: 'live' } | { name: string; kind: 'unlisted' };

export interface OpenOptions {
  /** Check every file the manifest lists against its checksum before use (default true). */
  verify?: boolean;
  threads?: number;
}

/** A view the lakehouse defines, and what it holds. */
export interface ViewInfo {
  name: string;
  description: string;
}

/**
 * The lakehouse, opened in an in-memory DuckDB: views over the Parquet event archive, the OLTP
 * replica snapshots and the views that join them. Queries are `sql` template fragments; results come
 * back as plain rows, Apache Arrow tables or danfo DataFrames.
 *
 *   const lake = await Lakehouse.open('.wb/lake');
 *   const rows = await lake.query(sql`SELECT country, sum(amount) FROM retail_lines GROUP BY 1`);
 *
 * @example
 * ```ts
 * const lake = await Lakehouse.open(lakeDir());
 * const rows = await lake.query(sql`SELECT country, sum(amount) AS revenue FROM retail_lines GROUP BY 1`);
 * lake.close();
 * ```
 */
export class Lakehouse {
  private constructor(
    private readonly db: DuckDb,
    readonly layout: LakeLayout,
    readonly manifest: Manifest,
    readonly views: readonly ViewInfo[],
  ) {}

  static async open(root: string, options: OpenOptions = {}): Promise<Lakehouse> {
    const layout = lakeLayout(root);
    // A lakehouse fed only by the service's archiver has events but no build manifest yet.
    const manifest = readManifest(layout.manifest) ?? (existsSync(layout.archive) ? emptyManifest() : undefined);
    if (!manifest) {
      throw new NotFoundError(`no lakehouse at ${layout.root}: build one with \`wb lake build\` (or \`npm start\`)`);
    }
    if (options.verify !== false) await verifyFiles(layout, manifest);
    const db = await DuckDb.open(':memory:', { threads: options.threads });
    try {
      const views = await defineViews(db, layout, manifest);
      // Experiment assignment as SQL (wb_hash, wb_arm), so notebooks can recompute who saw what.
      for (const macro of ASSIGNMENT_MACROS) await db.run(macro);
      return new Lakehouse(db, layout, manifest, views);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /**
   * Rows as plain objects. BIGINT values that fit a double become numbers; larger ones stay bigint.
   * `T` is a claim about the columns, not checked: in a notebook keep the default `Row` and narrow
   * each value (`typeof`, `instanceof Date`, `Number()`).
   */
  async query<T extends object = Row>(statement: Sql): Promise<T[]> {
    const r = await this.db.query(statement);
    const columns = r.columns.map((c, i) => (isBigIntType(r.types[i]!) ? c.map(narrowBigInt) : c));
    const rows: T[] = new Array(r.rowCount);
    for (let i = 0; i < r.rowCount; i++) {
      const row: Row = {};
      for (let c = 0; c < r.names.length; c++) {
        const name = r.names[c]!;
        // A column aliased __proto__ is a column, not the row's prototype.
        if (name === '__proto__') Object.defineProperty(row, name, { value: columns[c]![i]!, enumerable: true, writable: true, configurable: true });
        else row[name] = columns[c]![i]!;
      }
      rows[i] = row as T;
    }
    return rows;
  }

  /**
   * The result as columns with DuckDB's type names, BIGINT narrowed as in `query`: for tools that
   * print or write any result (`wb sql`), where two columns may share a name.
   */
  async columns(statement: Sql): Promise<ColumnarResult> {
    const r = await this.db.query(statement);
    return { ...r, columns: r.columns.map((c, i) => (isBigIntType(r.types[i]!) ? c.map(narrowBigInt) : c)) };
  }

  /** The result as an Apache Arrow table, BIGINT kept as Int64. */
  async arrow(statement: Sql): Promise<arrow.Table> {
    return toArrow(await this.db.query(statement));
  }

  /** The result as a danfo DataFrame: BIGINT as numbers, timestamps as ISO strings (danfo takes neither). */
  async frame(statement: Sql): Promise<DataFrame> {
    const r = await this.db.query(statement);
    // Loaded on first use: danfo brings tfjs with it, seconds that queries and builds should not pay.
    const dfd = require('danfojs') as { DataFrame: new (data: Record<string, unknown[]>) => DataFrame };
    const data: Record<string, unknown[]> = {};
    r.names.forEach((name, i) => {
      data[name] = r.columns[i]!.map((v) => (typeof v === 'bigint' ? Number(v) : v instanceof Date ? v.toISOString() : v));
    });
    return new dfd.DataFrame(data);
  }

  /** A statement without a result (a temporary table for later queries, a SET). */
  async run(statement: Sql): Promise<void> {
    await this.db.run(statement);
  }

  /** The sources of the `events` view, by name, as the archive holds them now (the live one appears once the service archives). */
  sources(): ArchiveSource[] {
    return archiveSourceNames(this.layout).map((name): ArchiveSource => {
      // Directory names are outside strings: looked up as own keys only.
      const build = Object.prototype.hasOwnProperty.call(this.manifest.sources, name) ? this.manifest.sources[name] : undefined;
      if (build) return { name, kind: 'built', build };
      return name === LIVE_SOURCE ? { name, kind: 'live' } : { name, kind: 'unlisted' };
    });
  }

  /** Row count of a view. */
  async count(view: string): Promise<number> {
    const [row] = await this.query<{ n: number }>(sql`SELECT count(*) AS n FROM ${ident(view)}`);
    return row!.n;
  }

  close(): void {
    this.db.close();
  }
}

async function verifyFiles(layout: LakeLayout, manifest: Manifest): Promise<void> {
  const files = [...Object.values(manifest.sources).flatMap((s) => s.files), ...Object.values(manifest.tables).map((t) => t.file)];
  for (const f of files) {
    const path = join(layout.root, f.path);
    if (!existsSync(path)) throw new IntegrityError(`${path} is listed in the manifest but missing; rebuild with \`wb lake build --force\``);
    if ((await sha256File(path)) !== f.sha256) {
      throw new IntegrityError(`${path} does not match its checksum in the manifest: it was changed after the build; rebuild with \`wb lake build --force\``);
    }
  }
}

async function defineViews(db: DuckDb, layout: LakeLayout, manifest: Manifest): Promise<ViewInfo[]> {
  const views: ViewInfo[] = [];
  const view = async (name: string, description: string, body: Sql) => {
    await db.run(sql`CREATE VIEW ${ident(name)} AS ${body}`);
    views.push({ name, description });
  };
  const table = (name: string) => {
    const entry = manifest.tables[name];
    return entry ? join(layout.root, entry.file.path) : undefined;
  };
  const sources = archiveSourceNames(layout);
  const has = (s: string) => sources.includes(s);

  if (sources.length > 0) {
    const glob = join(layout.archive, 'source=*', 'date=*', '*.parquet');
    await view(
      'events',
      'every archived event: source, date, event_id, time, user_id, event, props (JSON)',
      sql`SELECT source, date, event_id, time, user_id, event, props
          FROM read_parquet(${glob}, hive_partitioning = true, union_by_name = true, hive_types = {'source': VARCHAR, 'date': DATE})`,
    );
  }
  const lines = table('retail_lines');
  if (lines) {
    await view(
      'retail_lines',
      'the retail archive, one typed row per invoice line (materialised from events at build)',
      sql`SELECT * FROM read_parquet(${lines})`,
    );
  }
  const customers = table('retail_customers');
  if (customers) {
    await view('retail_customers', "replica of the shop's customer table: country, first and last purchase", sql`SELECT * FROM read_parquet(${customers})`);
    if (lines) {
      await view(
        'retail_purchases',
        'retail_lines joined with retail_customers: each line with its customer and monthly cohort',
        sql`SELECT l.*, c.country AS customer_country, c.first_purchase,
              CAST(date_trunc('month', c.first_purchase) AS DATE) AS cohort_month
            FROM retail_lines l JOIN retail_customers c USING (customer_id)`,
      );
    }
  }
  if (has('live')) {
    const liveGlob = join(layout.archive, 'source=live', 'date=*', '*.parquet');
    await view(
      'live_events',
      'events archived by the running service, with the dims and experiments added at ingest',
      sql`SELECT date, event_id, time, user_id, event, props, dims, experiments, received_at
          FROM read_parquet(${liveGlob}, hive_partitioning = true, hive_types = {'date': DATE})`,
    );
  }
  if (has('app')) {
    await view(
      'app_events',
      "the simulated app's events, with the feature used (if any)",
      sql`SELECT event_id, time, date, user_id, event, props, props->>'feature' AS feature FROM events WHERE source = 'app'`,
    );
  }
  const users = table('users');
  if (users) {
    await view('users', 'replica of the OLTP users table: country, device, tier, first_seen', sql`SELECT * FROM read_parquet(${users})`);
    if (has('app')) {
      await view(
        'app_events_users',
        'app_events joined with the users replica: every event with its user dimensions and signup week',
        sql`SELECT e.*, u.country, u.device, u.tier, u.first_seen,
              CAST(date_trunc('week', u.first_seen) AS DATE) AS signup_week
            FROM app_events e JOIN users u USING (user_id)`,
      );
    }
  }
  const predictions = table('predictions');
  if (predictions) await view('predictions', 'replica of the OLTP predictions table', sql`SELECT * FROM read_parquet(${predictions})`);
  const assignments = table('assignments');
  if (assignments)
    await view(
      'assignments',
      "replica of the OLTP assignments table: each user's sticky arm per experiment and exposure time",
      sql`SELECT * FROM read_parquet(${assignments})`,
    );
  const telco = table('telco_customers');
  if (telco) await view('telco_customers', 'the IBM Telco customer table, typed, with the churn label', sql`SELECT * FROM read_parquet(${telco})`);
  const truth = table('app_truth');
  if (truth) await view('app_truth', "the simulator's ground truth per user (never a model input)", sql`SELECT * FROM read_parquet(${truth})`);
  if (existsSync(layout.quarantine) && readdirSync(layout.quarantine).some((f) => f.endsWith('.csv'))) {
    await view(
      'quarantine',
      'lines the build could not load, with the source file line number and the reason',
      sql`SELECT regexp_extract(filename, '([^/]+)\\.csv$', 1) AS source, line, reason, record
          FROM read_csv(${join(layout.quarantine, '*.csv')}, header = true, delim = ',', quote = '"', escape = '"', filename = true,
                        columns = {'line': 'VARCHAR', 'reason': 'VARCHAR', 'record': 'VARCHAR'})`,
    );
  }
  return views;
}

/** The `source=<name>` partitions of the event archive, sorted (the hive partitions the `events` view reads). */
function archiveSourceNames(layout: LakeLayout): string[] {
  if (!existsSync(layout.archive)) return [];
  return readdirSync(layout.archive, { withFileTypes: true })
    .filter((d) => d.isDirectory() && d.name.startsWith('source='))
    .map((d) => d.name.slice('source='.length))
    .sort();
}

const isBigIntType = (t: string) => t === 'BIGINT' || t === 'HUGEINT' || t === 'UBIGINT' || t === 'UHUGEINT';

function narrowBigInt(v: Scalar): Scalar {
  return typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
}

function toArrow(r: ColumnarResult): arrow.Table {
  const vectors: Record<string, arrow.Vector> = {};
  r.names.forEach((name, i) => {
    const type = arrowType(r.types[i]!);
    const values = r.columns[i]!;
    vectors[name] =
      type instanceof arrow.Utf8
        ? arrow.vectorFromArray(
            values.map((v) => (v === null || typeof v === 'string' ? v : JSON.stringify(v, bigintJson))),
            type,
          )
        : arrow.vectorFromArray(values as never[], type);
  });
  return new arrow.Table(vectors);
}

function arrowType(t: string): arrow.DataType {
  if (isBigIntType(t)) return new arrow.Int64();
  if (t === 'INTEGER' || t === 'SMALLINT' || t === 'TINYINT' || t === 'USMALLINT' || t === 'UTINYINT') return new arrow.Int32();
  if (t === 'DOUBLE' || t === 'FLOAT' || t.startsWith('DECIMAL') || t === 'UINTEGER') return new arrow.Float64();
  if (t === 'BOOLEAN') return new arrow.Bool();
  if (t.startsWith('TIMESTAMP')) return new arrow.TimestampMillisecond();
  if (t === 'DATE') return new arrow.DateMillisecond();
  return new arrow.Utf8();
}

const bigintJson = (_k: string, v: unknown) => (typeof v === 'bigint' ? v.toString() : v);
