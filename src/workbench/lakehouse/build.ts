import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { DuckDb, type AppendType } from '../duckdb.js';
import { EventSchema, type Event } from '../event.js';
import { InputError } from '../errors.js';
import { sha256File, writeFileAtomic } from '../files.js';
import { TABLE_COLUMNS, TABLE_NAMES, type OltpStore } from '../oltp/store.js';
import { defaultProgress, type Progress } from '../progress.js';
import { ident, join as joinSql, raw, sql, type RawSql, type Sql } from '../sql.js';
import { EVENT_COLUMNS, createEventTable, listParquet, recoverSwap, retireDirectory, swapDirectory, writeEventPartitions } from './archive.js';
import { readCsv, type CsvCounts } from './csv.js';
import { acquireLock } from './lock.js';
import { QuarantineWriter } from './quarantine.js';
import { lakeLayout, sourceDir, type LakeLayout } from './layout.js';
import { emptyManifest, readManifest, writeManifest, type FileEntry, type Manifest } from './manifest.js';
import { RETAIL_TABLE, countryNamesRelation, retailSpec } from './retail.js';
import { TELCO_TABLE, telcoSpec } from './telco.js';

/** Bumped when a loader changes what it writes, so that a rebuild does not keep stale output. */
const LOADER_VERSION = { retail: 4, telco: 2, app: 1 } as const;

/** The simulated app's history, produced lazily: a build whose inputs are unchanged never asks. */
export interface AppHistory {
  /** Changes whenever the history would (the simulation's config and version). */
  fingerprint: string;
  describe: string;
  load(): { events: Iterable<Event>; truthUsers: readonly Record<string, unknown>[]; truthMeta: unknown };
}

/** What `buildLakehouse` builds from: the lakehouse root, the retail and Telco files, the app history and the OLTP store. */
export interface BuildOptions {
  /** The lakehouse root, e.g. `.wb/lake`. */
  lakeDir: string;
  /** The shipped files: the retail log and the Telco table (either may be left out). */
  retail?: string;
  telco?: string;
  app?: AppHistory;
  /** The OLTP database to replicate (users, predictions). */
  oltp?: OltpStore;
  /** Rebuild sources whose inputs have not changed. */
  force?: boolean;
  progress?: Progress;
  /** Rows dated after this are quarantined. */
  now?: Date;
  /**
   * Build a CSV source that yields no row (empty file, header only, every line quarantined) as an
   * empty table. Without it such a file is refused and the source's existing output kept.
   */
  allowEmpty?: boolean;
}

/**
 * What a source's read / accepted / quarantined count: lines of a CSV file after its header
 * (blank ones included, so that read is the file's line count minus one), events of the app's
 * history, or rows of a table.
 */
export type CountUnit = 'lines' | 'events' | 'rows';

export interface SourceReport {
  name: string;
  input: string;
  unit: CountUnit;
  read: number;
  accepted: number;
  quarantined: number;
  /** True when the inputs were unchanged and the existing output was kept. */
  upToDate: boolean;
}

/** What `buildLakehouse` did: per source the rows read, accepted and quarantined, and the time it took. */
export interface BuildReport {
  lake: string;
  sources: SourceReport[];
  seconds: number;
}

/**
 * Builds (or brings up to date) the lakehouse: the event archive from the retail log and the app's
 * history, the OLTP replica and the Telco table as Parquet snapshots, quarantine files for rows that
 * could not be loaded, and the manifest that records it all with checksums. Each source is written
 * to a staging directory, swapped in whole and recorded in the manifest at once, so an interrupted
 * build leaves a readable lakehouse whose manifest matches its files. Building twice from the same
 * inputs changes nothing.
 *
 * @example
 * ```ts
 * const report = await buildLakehouse({ lakeDir: lakeDir(), retail: 'data/online_retail_II.csv', oltp: await openOltp(oltpUrl(), dataDir()) });
 * ```
 */
export async function buildLakehouse(options: BuildOptions): Promise<BuildReport> {
  const started = Date.now();
  const layout = lakeLayout(options.lakeDir);
  const progress = options.progress ?? defaultProgress();
  mkdirSync(layout.root, { recursive: true });
  const release = acquireLock(layout);
  const db = await DuckDb.open();
  try {
    rmSync(layout.staging, { recursive: true, force: true });
    mkdirSync(layout.staging, { recursive: true });
    for (const source of ['retail', 'app']) recoverSwap(sourceDir(layout, source), join(layout.staging, `aside-${source}`));
    const manifest = readManifest(layout.manifest) ?? emptyManifest();
    const ctx: Ctx = { db, layout, manifest, progress, force: Boolean(options.force), now: options.now ?? new Date(), allowEmpty: Boolean(options.allowEmpty) };
    const reports: SourceReport[] = [];

    if (options.retail) reports.push(...(await buildRetail(ctx, options.retail)));
    if (options.app) reports.push(await buildApp(ctx, options.app));
    if (options.telco) reports.push(await buildTelco(ctx, options.telco));
    if (options.oltp) for (const table of TABLE_NAMES) reports.push(await buildReplica(ctx, options.oltp, table));

    manifest.built_at = new Date().toISOString();
    writeManifest(layout.manifest, manifest);
    pruneSnapshots(layout, manifest);
    return { lake: layout.root, sources: reports, seconds: (Date.now() - started) / 1000 };
  } finally {
    db.close();
    rmSync(layout.staging, { recursive: true, force: true });
    release();
  }
}

interface Ctx {
  db: DuckDb;
  layout: LakeLayout;
  manifest: Manifest;
  progress: Progress;
  force: boolean;
  now: Date;
  allowEmpty: boolean;
}

async function buildRetail(ctx: Ctx, file: string): Promise<SourceReport[]> {
  const fingerprint = `v${LOADER_VERSION.retail}:${await sha256File(requireFile(file))}`;
  const kept = keptSource(ctx, 'retail', fingerprint, file, 'lines');
  if (kept) {
    // The derived tables follow the archive: they are rebuilt only if missing.
    const lines = keptTable(ctx, 'retail_lines', fingerprint) ?? (await writeRetailLines(ctx, retailLinesFromArchive(ctx), fingerprint));
    const customers = keptTable(ctx, 'retail_customers', fingerprint) ?? (await writeRetailCustomers(ctx, fingerprint));
    return [kept, lines, customers];
  }

  const task = ctx.progress.task(`reading ${relative(process.cwd(), file) || file}`, statSync(file).size, 'bytes');
  await createTable(ctx.db, 'retail', RETAIL_TABLE);
  const quarantine = new QuarantineWriter(ctx.layout, 'retail');
  const appender = await ctx.db.appender(
    'retail',
    RETAIL_TABLE.map(([, t]) => t),
  );
  let counts: CsvCounts;
  try {
    counts = await readCsv(
      file,
      retailSpec(ctx.now),
      {
        onRow: (row) => appender.append(row),
        onReject: (r) => quarantine.add(r),
        onBytes: (b) => task.update(b),
      },
      { allowEmpty: ctx.allowEmpty },
    );
  } finally {
    appender.close();
    quarantine.close();
  }
  task.finish(`${counts.read.toLocaleString('en-US')} lines read`);
  const events = sql`SELECT event_id, time, user_id, event,
      json_object('invoice', invoice, 'stock_code', stock_code, 'description', description, 'quantity', quantity,
                  'unit_price', unit_price, 'amount', amount, 'country', country) AS props
    FROM retail`;
  const report = await archiveSource(ctx, 'retail', events, file, fingerprint, counts, 'lines', quarantine);
  const lines = await writeRetailLines(
    ctx,
    sql`SELECT event_id, time, user_id AS customer_id, event = 'return' AS is_return, invoice, stock_code, description,
          quantity, unit_price, amount, country FROM retail`,
    fingerprint,
  );
  await ctx.db.run(sql`DROP TABLE retail`);
  return [report, lines, await writeRetailCustomers(ctx, fingerprint)];
}

/** The typed lines read back from the archive, for a lakehouse whose archive is current but whose table is not. */
function retailLinesFromArchive(ctx: Ctx): Sql {
  const glob = join(sourceDir(ctx.layout, 'retail'), '*', '*.parquet');
  return sql`SELECT event_id, time, user_id AS customer_id, event = 'return' AS is_return,
      j[1] AS invoice, j[2] AS stock_code, j[3] AS description, CAST(j[4] AS INTEGER) AS quantity,
      CAST(j[5] AS DOUBLE) AS unit_price, CAST(j[6] AS DOUBLE) AS amount, j[7] AS country
    FROM (SELECT *, json_extract_string(props, ['invoice', 'stock_code', 'description', 'quantity', 'unit_price', 'amount', 'country']) AS j
          FROM read_parquet(${glob}))`;
}

/**
 * The retail archive as a typed table (the archive keeps props as JSON, which every query would
 * otherwise parse again: a GROUP BY over the lines drops from about 500 ms to tens).
 */
async function writeRetailLines(ctx: Ctx, lines: Sql, fingerprint: string): Promise<SourceReport> {
  const select = sql`SELECT event_id, time, CAST(time AS DATE) AS date, customer_id, is_return, invoice, stock_code,
      description, quantity, unit_price, amount, country, country_names.name AS country_name
    FROM (${lines}) LEFT JOIN ${countryNamesRelation()} ON country_names.code = country ORDER BY time, event_id`;
  return writeTable(ctx, 'retail_lines', ctx.layout.derived, select, 'derived from the retail archive', { read: 0, accepted: 0, quarantined: 0 }, fingerprint);
}

/** The shop's customer table, as its OLTP database would hold it, derived from the typed lines. */
async function writeRetailCustomers(ctx: Ctx, fingerprint: string): Promise<SourceReport> {
  const lines = join(ctx.layout.root, ctx.manifest.tables.retail_lines!.file.path);
  const select = sql`SELECT customer_id,
      min_by(country, strftime(time, '%Y%m%d%H%M%S') || event_id) AS country,
      min_by(country_name, strftime(time, '%Y%m%d%H%M%S') || event_id) AS country_name,
      min(time) AS first_purchase, max(time) AS last_purchase,
      count(DISTINCT invoice) AS invoices
    FROM read_parquet(${lines}) GROUP BY customer_id ORDER BY customer_id`;
  return writeTable(
    ctx,
    'retail_customers',
    ctx.layout.replica,
    select,
    'derived from the retail archive',
    { read: 0, accepted: 0, quarantined: 0 },
    fingerprint,
  );
}

async function buildApp(ctx: Ctx, app: AppHistory): Promise<SourceReport> {
  const fingerprint = `v${LOADER_VERSION.app}:${app.fingerprint}`;
  const kept = keptSource(ctx, 'app', fingerprint, app.describe, 'events');
  if (kept) return kept;

  const task = ctx.progress.task('loading the app history', undefined, 'rows');
  const history = app.load();
  await createEventTable(ctx.db, 'app');
  const quarantine = new QuarantineWriter(ctx.layout, 'app');
  const counts: CsvCounts = { read: 0, accepted: 0, quarantined: 0 };
  const appender = await ctx.db.appender(
    'app',
    EVENT_COLUMNS.map(([, t]) => t),
  );
  const reject = (e: unknown, reason: string) => {
    counts.quarantined++;
    quarantine.add({ line: counts.read, reason, record: JSON.stringify(e) });
  };
  try {
    for (const e of history.events) {
      counts.read++;
      const parsed = EventSchema.safeParse(e);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        reject(e, `${issue?.path.join('.') || 'event'}: ${issue?.message}`);
        continue;
      }
      const time = Date.parse(parsed.data.time);
      if (time > ctx.now.getTime()) {
        reject(e, `time is in the future: ${parsed.data.time}`);
        continue;
      }
      counts.accepted++;
      appender.append([e.event_id, time, e.user_id, e.event, JSON.stringify(parsed.data.props)]);
      if (counts.read % 50_000 === 0) task.update(counts.read);
    }
  } finally {
    appender.close();
    quarantine.close();
  }
  task.finish(`${counts.read.toLocaleString('en-US')} events`);
  const report = await archiveSource(ctx, 'app', sql`SELECT * FROM app`, app.describe, fingerprint, counts, 'events', quarantine);
  await ctx.db.run(sql`DROP TABLE app`);
  await writeTruth(ctx, history.truthUsers, history.truthMeta, fingerprint);
  return report;
}

async function archiveSource(
  ctx: Ctx,
  name: string,
  events: Sql,
  input: string,
  fingerprint: string,
  counts: CsvCounts,
  unit: CountUnit,
  quarantine: QuarantineWriter,
): Promise<SourceReport> {
  const task = ctx.progress.task(`writing the ${name} archive`);
  const staged = join(ctx.layout.staging, `source=${name}`);
  await writeEventPartitions(ctx.db, events, staged);
  const span = await ctx.db.query(sql`SELECT min(time) AS first, max(time) AS last FROM (${events})`);
  if (readdirSync(staged).length > 0) swapDirectory(staged, sourceDir(ctx.layout, name), join(ctx.layout.staging, `aside-${name}`));
  else retireDirectory(sourceDir(ctx.layout, name), join(ctx.layout.staging, `aside-${name}`)); // no event: an empty input let through by allowEmpty
  quarantine.commit();
  const files = await listParquet(sourceDir(ctx.layout, name), ctx.layout.root);
  const iso = (v: unknown) => (v instanceof Date ? v.toISOString() : null);
  ctx.manifest.sources[name] = {
    kind: 'events',
    fingerprint,
    input,
    ...counts,
    first_time: iso(span.columns[0]?.[0]),
    last_time: iso(span.columns[1]?.[0]),
    files,
    built_at: new Date().toISOString(),
  };
  // Committed at once: a build that dies later still leaves a manifest that matches the files.
  writeManifest(ctx.layout.manifest, ctx.manifest);
  task.finish(`${files.length} date partitions`);
  return { name, input, unit, ...counts, upToDate: false };
}

async function buildTelco(ctx: Ctx, file: string): Promise<SourceReport> {
  const fingerprint = `v${LOADER_VERSION.telco}:${await sha256File(requireFile(file))}`;
  const kept = keptTable(ctx, 'telco_customers', fingerprint, 'lines');
  if (kept) return kept;
  const task = ctx.progress.task(`reading ${relative(process.cwd(), file) || file}`, statSync(file).size, 'bytes');
  await createTable(ctx.db, 'telco', TELCO_TABLE);
  const quarantine = new QuarantineWriter(ctx.layout, 'telco');
  const rows: unknown[][] = [];
  let counts: CsvCounts;
  try {
    counts = await readCsv(
      file,
      telcoSpec,
      {
        onRow: (r) => rows.push(r),
        onReject: (r) => quarantine.add(r),
        onBytes: (b) => task.update(b),
      },
      { allowEmpty: ctx.allowEmpty },
    );
    await ctx.db.append(
      'telco',
      TELCO_TABLE.map(([, t]) => t),
      rows,
    );
  } finally {
    quarantine.close();
  }
  task.finish(`${counts.read.toLocaleString('en-US')} lines read`);
  const report = await writeTable(
    ctx,
    'telco_customers',
    ctx.layout.replica,
    sql`SELECT * FROM telco ORDER BY customer_id`,
    file,
    counts,
    fingerprint,
    'lines',
  );
  quarantine.commit();
  return report;
}

async function buildReplica(ctx: Ctx, oltp: OltpStore, table: (typeof TABLE_NAMES)[number]): Promise<SourceReport> {
  const columns = Object.entries(TABLE_COLUMNS[table]) as [string, AppendType][];
  const temp = `oltp_${table}`;
  await createTable(ctx.db, temp, columns);
  let read = 0;
  for await (const batch of oltp.scan(table)) {
    read += batch.length;
    await ctx.db.append(
      temp,
      columns.map(([, t]) => t),
      batch.map((row) =>
        columns.map(([c, t]) =>
          t === 'TIMESTAMP' ? Date.parse((row as unknown as Record<string, string>)[c]!) : (row as unknown as Record<string, unknown>)[c],
        ),
      ),
    );
  }
  const order = joinSql(columns.map(([c]) => ident(c)));
  return writeTable(ctx, table, ctx.layout.replica, sql`SELECT * FROM ${ident(temp)} ORDER BY ${order}`, `${oltp.kind} ${oltp.location}`, {
    read,
    accepted: read,
    quarantined: 0,
  });
}

async function writeTruth(ctx: Ctx, users: readonly Record<string, unknown>[], meta: unknown, fingerprint: string): Promise<void> {
  const first = users[0];
  if (!first) return;
  const columns = Object.entries(first).map(([k, v]) => [k, typeof v === 'number' ? 'DOUBLE' : 'VARCHAR'] as [string, AppendType]);
  const timestampish = new Set(columns.filter(([k]) => k.endsWith('_at')).map(([k]) => k));
  const typed = columns.map(([k, t]) => [k, timestampish.has(k) ? 'TIMESTAMP' : t] as [string, AppendType]);
  await createTable(ctx.db, 'truth_users', typed);
  await ctx.db.append(
    'truth_users',
    typed.map(([, t]) => t),
    users.map((u) => typed.map(([k, t]) => (t === 'TIMESTAMP' ? (u[k] == null ? null : Date.parse(u[k] as string)) : u[k]))),
  );
  mkdirSync(ctx.layout.truth, { recursive: true });
  await writeTable(
    ctx,
    'app_truth',
    ctx.layout.truth,
    sql`SELECT * FROM truth_users ORDER BY user_id`,
    'the simulator',
    {
      read: users.length,
      accepted: users.length,
      quarantined: 0,
    },
    fingerprint,
  );
  writeFileAtomic(join(ctx.layout.truth, 'app.json'), `${JSON.stringify(meta, null, 2)}\n`);
}

/** Writes a query's result as a content-addressed snapshot `<dir>/<name>/<sha256>.parquet`. */
async function writeTable(
  ctx: Ctx,
  name: string,
  dir: string,
  select: Sql,
  input: string,
  counts: CsvCounts,
  fingerprint?: string,
  unit: CountUnit = 'rows',
): Promise<SourceReport> {
  const staged = join(ctx.layout.staging, `${name}.parquet`);
  await ctx.db.run(sql`COPY (${select}) TO ${staged} (FORMAT parquet, COMPRESSION zstd)`);
  const sha256 = await sha256File(staged);
  const target = join(dir, name, `${sha256}.parquet`);
  mkdirSync(join(dir, name), { recursive: true });
  const unchanged = existsSync(target) && ctx.manifest.tables[name]?.file.sha256 === sha256;
  if (existsSync(target)) rmSync(staged);
  else renameSync(staged, target);
  const rows = Number((await ctx.db.query(sql`SELECT count(*) AS n FROM read_parquet(${target})`)).columns[0]?.[0] ?? 0);
  const file: FileEntry = { path: relative(ctx.layout.root, target), sha256, bytes: statSync(target).size };
  // A CSV source's counts are its lines; a derived or replicated table's are its rows.
  const read = unit === 'lines' ? counts.read : counts.read || rows;
  const accepted = unit === 'lines' ? counts.accepted : counts.accepted || rows;
  ctx.manifest.tables[name] = {
    kind: 'table',
    fingerprint: fingerprint ?? sha256,
    input,
    read,
    accepted,
    quarantined: counts.quarantined,
    file,
    built_at: unchanged ? ctx.manifest.tables[name]!.built_at : new Date().toISOString(),
  };
  return { name, input, unit, read, accepted, quarantined: counts.quarantined, upToDate: unchanged };
}

function keptTable(ctx: Ctx, name: string, fingerprint: string, unit: CountUnit = 'rows'): SourceReport | undefined {
  const existing = ctx.manifest.tables[name];
  if (ctx.force || existing?.fingerprint !== fingerprint || !existsSync(join(ctx.layout.root, existing.file.path))) return undefined;
  return { name, input: existing.input, unit, read: existing.read, accepted: existing.accepted, quarantined: existing.quarantined, upToDate: true };
}

function keptSource(ctx: Ctx, name: string, fingerprint: string, input: string, unit: CountUnit): SourceReport | undefined {
  const existing = ctx.manifest.sources[name];
  if (ctx.force || existing?.fingerprint !== fingerprint) return undefined;
  if (!existing.files.every((f) => existsSync(join(ctx.layout.root, f.path)))) return undefined;
  return { name, input, unit, read: existing.read, accepted: existing.accepted, quarantined: existing.quarantined, upToDate: true };
}

async function createTable(db: DuckDb, table: string, columns: readonly (readonly [string, string])[]): Promise<void> {
  const defs = joinSql(columns.map(([name, type]) => sql`${ident(name)} ${rawType(type)}`));
  await db.run(sql`CREATE OR REPLACE TEMP TABLE ${ident(table)} (${defs})`);
}

function rawType(type: string): RawSql {
  if (!/^[A-Z]+$/.test(type)) throw new TypeError(`not a column type: ${type}`);
  return raw(type);
}

function requireFile(file: string): string {
  if (!existsSync(file)) throw new InputError('no such file: the data folder is missing or incomplete (expected the shipped datasets under data/)', { file });
  return file;
}

/** Keeps the current snapshot of every table and the two before it; older ones are removed. */
function pruneSnapshots(layout: LakeLayout, manifest: Manifest): void {
  for (const entry of Object.values(manifest.tables)) {
    const dir = join(layout.root, entry.file.path, '..');
    if (!existsSync(dir)) continue;
    const files = readdirSync(dir)
      .filter((f) => f.endsWith('.parquet'))
      .map((f) => ({ f, t: statSync(join(dir, f)).mtimeMs }))
      .sort((a, b) => b.t - a.t);
    const current = entry.file.path.split('/').pop();
    for (const { f } of files.slice(3)) if (f !== current) rmSync(join(dir, f));
  }
}

/**
 * The SHA-256 of a value's JSON (key order counts), to tell whether a source's inputs changed.
 *
 * @example
 * ```ts
 * const version = fingerprintOf({ users: 300, days: 60 }); // same value, same fingerprint
 * ```
 */
export const fingerprintOf = (value: unknown): string => createHash('sha256').update(JSON.stringify(value)).digest('hex');
