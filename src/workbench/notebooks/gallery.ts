import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, type Stats } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { z } from 'zod';
import { InputError, IntegrityError, NotFoundError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import { cellSource, cellTags, readNotebook, type Notebook } from './notebook.js';
import { findParameterCell, type ParamValue } from './parameters.js';
import type { RunResult } from './run.js';

/**
 * The report gallery on disk, shared by `wb nb run --publish` (which writes) and the service (which
 * reads): `<data-dir>/reports/<id>/report.html` and `meta.json`. A report is written in a hidden
 * temporary folder that is renamed into place, so a reader sees a whole report or none. The id is
 * made here (time, then random) and is the only thing a request may name: it must match REPORT_ID,
 * so no path from outside ever reaches the file system.
 */
export const REPORT_ID = /^\d{8}-\d{6}-\d{3}-[0-9a-f]{8}$/;
/** Reports are 5 to 7 MB with plotly inlined; anything much bigger is not a report a colleague opens. */
export const MAX_REPORT_BYTES = 32 * 1024 * 1024;
const MAX_META_BYTES = 256 * 1024;
/** The list shows the newest reports; older ones stay on disk and open by id. */
export const MAX_LISTED_REPORTS = 500;

const ParameterSchema = z.object({ name: z.string().max(200), value: z.union([z.number(), z.string().max(2000), z.boolean()]) }).strict();

export const ReportMetaSchema = z
  .object({
    id: z.string().regex(REPORT_ID),
    title: z.string().max(500),
    /** The notebook file, relative to where `wb nb run` ran. */
    notebook: z.string().max(1000),
    /** As a list, not an object: parameter names are outside strings and never become object keys. */
    parameters: z.array(ParameterSchema).max(200),
    startedAt: z.iso.datetime(),
    finishedAt: z.iso.datetime(),
    seconds: z.number().nonnegative(),
    status: z.enum(['ok', 'failed']),
    /** `+dirty` when files differed from the commit; null outside a git checkout. */
    gitCommit: z.string().max(100).nullable(),
    /** Of report.html: checked every time the report is served. */
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    bytes: z.number().int().nonnegative(),
    /** The first lines of the failure, for a failed run. */
    error: z.string().max(2000).optional(),
  })
  .strict();
export type ReportMeta = z.infer<typeof ReportMetaSchema>;

/** A report whose file no longer has the hash it was published with: refused, never served. */
export class ReportChangedError extends IntegrityError {
  override readonly code: string = 'report_changed';
  override readonly status: number = 409;
}

export const reportsDir = (dataDir: string): string => join(dataDir, 'reports');

/** `20250101-120000-123-1a2b3c4d`: sorts by time, unique by its random tail. */
export function newReportId(now: Date = new Date()): string {
  const iso = now.toISOString(); // 2025-01-01T12:00:00.123Z
  const stamp = `${iso.slice(0, 10).replaceAll('-', '')}-${iso.slice(11, 19).replaceAll(':', '')}-${iso.slice(20, 23)}`;
  return `${stamp}-${randomBytes(4).toString('hex')}`;
}

export interface PublishInput {
  result: RunResult;
  /** When the run started; it finished now (or at `now`). */
  startedAt: Date;
  /** The commit of the code the run used (see lineageOf). */
  gitCommit?: string;
  now?: Date;
}

/** Adds a run's HTML report to the gallery in the data dir; returns what was written. */
export function publishReport(dataDir: string, input: PublishInput): ReportMeta {
  const { result } = input;
  if (!existsSync(result.report)) {
    throw new NotFoundError(`${result.notebook}: the run wrote no HTML report (${result.report}), so there is nothing to publish`);
  }
  const html = readFileSync(result.report);
  if (html.length > MAX_REPORT_BYTES) {
    throw new InputError(`the report is ${mb(html.length)}, over the gallery's limit of ${mb(MAX_REPORT_BYTES)}`, { file: result.report });
  }
  const nb = existsSync(result.executed) ? readNotebook(result.executed) : readNotebook(result.notebook);
  const now = input.now ?? new Date();
  const id = newReportId(now);
  const meta = ReportMetaSchema.parse({
    id,
    title: notebookTitle(nb, result.notebook),
    notebook: relative(process.cwd(), result.notebook) || result.notebook,
    parameters: runParameters(nb),
    startedAt: input.startedAt.toISOString(),
    finishedAt: now.toISOString(),
    seconds: Math.round(result.seconds * 1000) / 1000,
    status: result.ok ? 'ok' : 'failed',
    gitCommit: input.gitCommit ?? null,
    sha256: sha256(html),
    bytes: html.length,
    ...(result.error ? { error: result.error.message.slice(0, 2000) } : {}),
  } satisfies ReportMeta);
  const root = reportsDir(dataDir);
  mkdirSync(root, { recursive: true });
  const staging = join(root, `.${id}.${process.pid}.tmp`);
  mkdirSync(staging);
  try {
    writeFileAtomic(join(staging, 'report.html'), html);
    writeFileAtomic(join(staging, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
    renameSync(staging, join(root, id));
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
  return meta;
}

/**
 * The gallery, newest first (at most MAX_LISTED_REPORTS). A folder that is not a valid report (a
 * meta.json that does not parse, an id that does not match its folder) is left out and passed to
 * `onInvalid`, so one bad entry cannot hide the others.
 */
export function listReports(dataDir: string, onInvalid: (id: string, reason: string) => void = () => {}): ReportMeta[] {
  const root = reportsDir(dataDir);
  if (!existsSync(root)) return [];
  const ids = readdirSync(root)
    .filter((name) => REPORT_ID.test(name))
    .sort()
    .reverse()
    .slice(0, MAX_LISTED_REPORTS);
  const out: ReportMeta[] = [];
  for (const id of ids) {
    try {
      out.push(readMeta(root, id));
    } catch (err) {
      onInvalid(id, (err as Error).message);
    }
  }
  return out.sort((a, b) => b.finishedAt.localeCompare(a.finishedAt) || b.id.localeCompare(a.id));
}

/**
 * One report's HTML and its metadata. The id must match REPORT_ID (a 400 otherwise), the folder and
 * its files must be plain files, not links, within the size limits, and the HTML must still have the
 * hash meta.json recorded (a ReportChangedError otherwise).
 */
export function readReport(dataDir: string, id: string): { meta: ReportMeta; html: Buffer } {
  if (!REPORT_ID.test(id)) {
    throw new InputError(`not a report id: ${JSON.stringify(id.slice(0, 100))} (ids look like 20250101-120000-123-1a2b3c4d; see GET /v1/reports)`);
  }
  const root = reportsDir(dataDir);
  const meta = readMeta(root, id);
  const file = join(root, id, 'report.html');
  const stats = plainFile(file, id);
  if (stats.size > MAX_REPORT_BYTES) throw new ReportChangedError(`report ${id} is ${mb(stats.size)}, over the limit of ${mb(MAX_REPORT_BYTES)}`);
  const html = readFileSync(file);
  const actual = sha256(html);
  if (actual !== meta.sha256) {
    throw new ReportChangedError(
      `report ${id} was changed after it was published (sha256 ${actual.slice(0, 12)}..., published as ${meta.sha256.slice(0, 12)}...); it is not served`,
    );
  }
  return { meta, html };
}

function readMeta(root: string, id: string): ReportMeta {
  const dir = join(root, id);
  if (!existsSync(dir)) throw new NotFoundError(`no report ${id} (see GET /v1/reports)`);
  if (!lstatSync(dir).isDirectory()) throw new ReportChangedError(`report ${id} is not a plain folder; it is not served`);
  const file = join(dir, 'meta.json');
  const stats = plainFile(file, id);
  if (stats.size > MAX_META_BYTES) throw new ReportChangedError(`report ${id}: meta.json is ${mb(stats.size)}, over the limit of ${mb(MAX_META_BYTES)}`);
  let parsed: z.ZodSafeParseResult<ReportMeta>;
  try {
    parsed = ReportMetaSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  } catch (err) {
    throw new ReportChangedError(`report ${id}: meta.json is not valid JSON: ${(err as Error).message}`);
  }
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ReportChangedError(`report ${id}: meta.json: ${issue.path.join('.') || 'top level'}: ${issue.message}`);
  }
  if (parsed.data.id !== id) throw new ReportChangedError(`report ${id}: meta.json names another report (${parsed.data.id}); it is not served`);
  return parsed.data;
}

/** A regular file, never a symbolic link (which could point anywhere). */
function plainFile(file: string, id: string): Stats {
  let stats: Stats;
  try {
    stats = lstatSync(file);
  } catch {
    throw new ReportChangedError(`report ${id} has no ${basename(file)}`);
  }
  if (!stats.isFile()) throw new ReportChangedError(`report ${id}: ${basename(file)} is not a plain file; it is not served`);
  return stats;
}

/** The text of the notebook's first Markdown heading, or its file name. */
export function notebookTitle(nb: Notebook, file: string): string {
  for (const cell of nb.cells) {
    if (cell.cell_type !== 'markdown') continue;
    const heading = /^#{1,6}[ \t]+(.+?)[ \t#]*$/m.exec(cellSource(cell));
    if (heading) return heading[1]!.slice(0, 500);
  }
  return basename(file, '.ipynb');
}

/** The values the run used: the parameters cell's defaults, overridden by the cell `wb nb run` injected. */
export function runParameters(nb: Notebook): { name: string; value: ParamValue }[] {
  const values = new Map<string, ParamValue>();
  try {
    for (const [name, value] of Object.entries(findParameterCell(nb, 'notebook')?.defaults ?? {})) values.set(name, value);
  } catch {
    // A parameters cell with lines other than literals: the defaults are unknown, the injected values still count.
  }
  const injected = nb.cells.find((c) => c.cell_type === 'code' && cellTags(c).includes('injected-parameters'));
  for (const line of injected ? cellSource(injected).split('\n') : []) {
    const m = /^\s*const\s+([A-Za-z_$][\w$]*)\s*=\s*(.+?);\s*$/.exec(line);
    if (!m) continue;
    try {
      const value: unknown = JSON.parse(m[2]!);
      if (typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean') values.set(m[1]!, value);
    } catch {
      // Not a line wb nb run wrote.
    }
  }
  return [...values].map(([name, value]) => ({ name, value }));
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
