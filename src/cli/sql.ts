import { InvalidArgumentError, type Command } from 'commander';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { createInterface } from 'node:readline';
import type { ColumnarResult, Scalar } from '../workbench/duckdb.js';
import { InputError, WorkbenchError } from '../workbench/errors.js';
import { Lakehouse, lakeDir, raw, sql } from '../workbench/index.js';
import { intOption } from './main.js';

/**
 * `wb sql`: the user's own SQL on their own lakehouse, so the query text is trusted and runs as
 * written. What is checked is where results go (`--out`): see `outputPath`.
 */

export const SQL_FORMATS = ['table', 'csv', 'json', 'ndjson', 'parquet'] as const;
export type SqlFormat = (typeof SQL_FORMATS)[number];

interface SqlFlags {
  format: SqlFormat;
  out?: string;
  maxRows: number;
  force?: boolean;
}

export function registerSql(program: Command): void {
  program
    .command('sql')
    .description('run SQL on the lakehouse and print a table (or write CSV, JSON, NDJSON or Parquet); without a query, open a prompt')
    .argument('[query]', 'the SQL to run, e.g. "SELECT country, count(*) FROM retail_lines GROUP BY 1"')
    .option('--format <format>', `output format: ${SQL_FORMATS.join(', ')}`, parseFormat, 'table')
    .option('--out <file>', 'write to this file instead of stdout (relative paths must stay inside the current directory)')
    .option('--max-rows <n>', 'rows a table shows; the rest are counted (other formats write every row)', intOption('--max-rows', 1), 100)
    .option('--force', 'replace the --out file if it exists')
    .action(async (query: string | undefined, flags: SqlFlags) => {
      const root = lakeDir(program.opts().dataDir);
      const lake = await Lakehouse.open(root);
      try {
        if (query === undefined) await prompt(lake, flags.maxRows, Boolean(program.opts().debug || process.env.WB_DEBUG));
        else await runOnce(lake, query, flags);
      } finally {
        lake.close();
      }
    });
}

async function runOnce(lake: Lakehouse, query: string, flags: SqlFlags): Promise<void> {
  const text = statementText(query);
  if (text === '') throw new InputError('the query is empty');
  const out = flags.out === undefined ? undefined : outputPath(flags.out, lake.layout.root, Boolean(flags.force));
  if (flags.format === 'parquet') {
    if (out === undefined && process.stdout.isTTY) throw new InputError('Parquet is binary: give --out <file> or redirect stdout to a file');
    await writeParquet(lake, text, out);
    return;
  }
  const result = await lake.columns(sql`${raw(text)}`);
  const body = flags.format === 'table' ? formatTable(result, flags.maxRows) + '\n' : formatRows(result, flags.format);
  if (out === undefined) process.stdout.write(body);
  else {
    writeFileSync(out, body);
    console.error(`wrote ${result.rowCount.toLocaleString('en-US')} rows to ${relative(process.cwd(), out) || out}`);
  }
}

/** The query without the trailing semicolons a user types out of habit (COPY cannot wrap them). */
export function statementText(query: string): string {
  return query.trim().replace(/[;\s]+$/, '');
}

/**
 * Where `--out` may write. A relative path must resolve inside the current directory (symbolic links
 * followed): one that climbs out (`../x`) is more often a slip than a wish. An absolute path is taken
 * as intended, since the user spelled out where. Never inside the lakehouse, whose files are checked
 * against their checksums and which `wb sql` only reads; never over an existing file without --force.
 */
export function outputPath(path: string, lakeRoot: string, force: boolean): string {
  if (path === '' || path.includes('\0')) throw new InputError(`--out ${JSON.stringify(path)}: not a file name`);
  const target = resolve(path);
  const parent = dirname(target);
  if (!existsSync(parent)) throw new InputError(`--out ${path}: the directory ${parent} does not exist`);
  const realTarget = join(realpathSync(parent), basename(target));
  if (!isAbsolute(path) && !within(realTarget, realpathSync(process.cwd()))) {
    throw new InputError(`--out ${path}: outside the current directory; give an absolute path if you mean to write there`);
  }
  if (existsSync(lakeRoot) && within(realTarget, realpathSync(lakeRoot))) {
    throw new InputError(`--out ${path}: inside the lakehouse (${lakeRoot}), which wb sql only reads; write somewhere else`);
  }
  if (existsSync(realTarget)) {
    if (statSync(realTarget).isDirectory()) throw new InputError(`--out ${path}: is a directory; give a file name`);
    if (!force) throw new InputError(`--out ${path}: the file exists; add --force to replace it`);
  }
  return realTarget;
}

const within = (path: string, dir: string) => path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);

/** Parquet through DuckDB's COPY; to stdout through a temporary file, as COPY writes files. */
async function writeParquet(lake: Lakehouse, text: string, out: string | undefined): Promise<void> {
  const scratch = out === undefined ? mkdtempSync(join(tmpdir(), 'wb-sql-')) : undefined;
  const file = out ?? join(scratch!, 'result.parquet');
  try {
    await lake.run(sql`COPY (${raw(text)}) TO ${file} (FORMAT parquet)`);
    if (out === undefined) process.stdout.write(readFileSync(file));
    else console.error(`wrote ${relative(process.cwd(), out) || out}`);
  } finally {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
}

const NUMERIC = /^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|DOUBLE|DECIMAL.*)$/;

/** An aligned text table: numbers right-aligned, at most `maxRows` rows, then the row count. */
export function formatTable(result: ColumnarResult, maxRows: number): string {
  const shown = Math.min(result.rowCount, maxRows);
  const numeric = result.types.map((t) => NUMERIC.test(t));
  const cells: string[][] = [result.names.map(printable)];
  for (let i = 0; i < shown; i++) cells.push(result.columns.map((c, j) => printable(cellText(c[i] ?? null, result.types[j]!, 'NULL'))));
  const widths = result.names.map((_, j) => Math.max(...cells.map((r) => r[j]!.length)));
  const line = (r: string[]) =>
    r
      .map((v, j) => (numeric[j] ? v.padStart(widths[j]!) : v.padEnd(widths[j]!)))
      .join('  ')
      .trimEnd();
  const lines = [line(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)];
  const count = `${result.rowCount.toLocaleString('en-US')} ${result.rowCount === 1 ? 'row' : 'rows'}`;
  lines.push(
    shown < result.rowCount ? `(${count}; showing the first ${shown.toLocaleString('en-US')}: raise --max-rows, or use --format csv for all)` : `(${count})`,
  );
  return lines.join('\n');
}

/** CSV (RFC 4180, NULL as an empty field), a JSON array, or one JSON object per line. */
export function formatRows(result: ColumnarResult, format: 'csv' | 'json' | 'ndjson'): string {
  const rows: string[] = [];
  for (let i = 0; i < result.rowCount; i++) {
    if (format === 'csv') rows.push(result.columns.map((c, j) => csvField(cellText(c[i] ?? null, result.types[j]!, ''))).join(','));
    // Written pair by pair, not through an object: column names may repeat or be `__proto__`.
    else rows.push(`{${result.names.map((n, j) => `${JSON.stringify(n)}:${jsonValue(result.columns[j]![i] ?? null)}`).join(',')}}`);
  }
  if (format === 'csv') return [result.names.map(csvField).join(','), ...rows].join('\n') + '\n';
  if (format === 'ndjson') return rows.map((r) => r + '\n').join('');
  return `[${rows.join(',\n')}]\n`;
}

function cellText(v: Scalar, type: string, nullText: string): string {
  if (v === null) return nullText;
  if (v instanceof Date)
    return type === 'DATE'
      ? v.toISOString().slice(0, 10)
      : v
          .toISOString()
          .replace('T', ' ')
          .replace(/\.000Z$|Z$/, '');
  if (typeof v === 'object') return jsonValue(v);
  return String(v);
}

/** JSON text of a value; BIGINTs beyond doubles are written as their exact digits. */
function jsonValue(v: Scalar): string {
  if (v === null) return 'null';
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : 'null';
  if (typeof v === 'string' || typeof v === 'boolean') return JSON.stringify(v);
  if (v instanceof Date) return JSON.stringify(v.toISOString());
  if (v instanceof Uint8Array) return JSON.stringify(Buffer.from(v).toString('base64'));
  if (Array.isArray(v)) return `[${v.map(jsonValue).join(',')}]`;
  return `{${Object.keys(v)
    .map((k) => `${JSON.stringify(k)}:${jsonValue(v[k] ?? null)}`)
    .join(',')}}`;
}

function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** Control characters as escapes, so a value cannot break the table or drive the terminal. */
function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => (c === '\n' ? '\\n' : c === '\t' ? '\\t' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

function parseFormat(value: string): SqlFormat {
  if (!(SQL_FORMATS as readonly string[]).includes(value)) throw new InvalidArgumentError(`use one of ${SQL_FORMATS.join(', ')}`);
  return value as SqlFormat;
}

/**
 * The prompt: statements end with `;` and may span lines; `.tables` lists the views, `.exit` (or
 * end of input) leaves. A failing statement prints its error and the prompt goes on.
 */
async function prompt(lake: Lakehouse, maxRows: number, debug: boolean): Promise<void> {
  const interactive = Boolean(process.stdin.isTTY);
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: interactive, historySize: 1000 });
  const ask = (continued: boolean) => {
    if (!interactive) return;
    rl.setPrompt(continued ? '   ...> ' : 'wb sql> ');
    rl.prompt();
  };
  if (interactive) console.log(`lakehouse ${lake.layout.root}: end statements with ';'. .tables lists the views, .exit leaves.`);
  let buffer: string[] = [];
  ask(false);
  for await (const line of rl) {
    const trimmed = line.trim();
    if (buffer.length === 0 && trimmed.startsWith('.')) {
      if (trimmed === '.exit' || trimmed === '.quit') break;
      if (trimmed === '.tables') for (const v of lake.views) console.log(`${v.name.padEnd(18)} ${v.description}`);
      else console.log(`unknown command ${trimmed}: .tables lists the views, .exit leaves`);
    } else if (trimmed !== '' || buffer.length > 0) {
      buffer.push(line);
      if (trimmed.endsWith(';')) {
        const text = statementText(buffer.join('\n'));
        buffer = [];
        if (text !== '') {
          try {
            console.log(formatTable(await lake.columns(sql`${raw(text)}`), maxRows));
          } catch (err) {
            if (!(err instanceof WorkbenchError) || debug) console.error(err);
            else console.error(`error: ${err.message}`);
          }
        }
      }
    }
    ask(buffer.length > 0);
  }
  rl.close();
  if (buffer.length > 0) console.error("the last statement had no ';' and was not run");
}
