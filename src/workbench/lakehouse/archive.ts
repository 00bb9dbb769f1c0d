import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { AppendType, DuckDb } from '../duckdb.js';
import { sha256File } from '../files.js';
import { ident, sql, type Sql } from '../sql.js';
import type { FileEntry } from './manifest.js';

/** The event table the app's history is loaded into: the contract's shape, props as JSON text. */
export const EVENT_COLUMNS: readonly (readonly [string, AppendType])[] = [
  ['event_id', 'VARCHAR'],
  ['time', 'TIMESTAMP'],
  ['user_id', 'VARCHAR'],
  ['event', 'VARCHAR'],
  ['props', 'VARCHAR'],
];

export async function createEventTable(db: DuckDb, table: string): Promise<void> {
  await db.run(sql`CREATE OR REPLACE TEMP TABLE ${ident(table)} (
    event_id VARCHAR NOT NULL, time TIMESTAMP NOT NULL, user_id VARCHAR NOT NULL, event VARCHAR NOT NULL, props VARCHAR NOT NULL)`);
}

/**
 * Writes events (a SELECT of event_id, time, user_id, event, props) as date partitions under `dir`,
 * sorted by time so files are deterministic and time filters prune row groups.
 */
export async function writeEventPartitions(db: DuckDb, events: Sql, dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  // One writer thread: parallel writers may split a partition into several files, and the same
  // input must always give the same files.
  await db.run(sql`SET threads = 1`);
  await db.run(sql`COPY (
      SELECT event_id, time, user_id, event, CAST(props AS JSON) AS props, CAST(time AS DATE) AS date
      FROM (${events}) ORDER BY time, event_id
    ) TO ${dir} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (date), FILENAME_PATTERN 'part-{i}', OVERWRITE_OR_IGNORE true)`);
  await db.run(sql`RESET threads`);
}

/**
 * Puts a fully written directory in place of `target`, keeping the old one aside until the new one
 * is in, so a crash leaves either the old or the new archive (the next build restores from `aside`).
 */
export function swapDirectory(staged: string, target: string, aside: string): void {
  rmSync(aside, { recursive: true, force: true });
  if (existsSync(target)) renameSync(target, aside);
  mkdirSync(join(target, '..'), { recursive: true });
  renameSync(staged, target);
  rmSync(aside, { recursive: true, force: true });
}

/**
 * Takes `target` away as a swap would (so a crash leaves the old directory or none), for a source
 * that now holds no event: an empty source directory would break every glob over the archive.
 */
export function retireDirectory(target: string, aside: string): void {
  rmSync(aside, { recursive: true, force: true });
  if (existsSync(target)) renameSync(target, aside);
  rmSync(aside, { recursive: true, force: true });
}

/** Undoes a swap that a crash interrupted: the old directory comes back if the new one never arrived. */
export function recoverSwap(target: string, aside: string): void {
  if (existsSync(aside) && !existsSync(target)) renameSync(aside, target);
  rmSync(aside, { recursive: true, force: true });
}

/** Every Parquet file under `dir`, with checksums, paths relative to `root`. */
export async function listParquet(dir: string, root: string): Promise<FileEntry[]> {
  const out: FileEntry[] = [];
  const walk = async (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) await walk(p);
      else if (name.endsWith('.parquet')) out.push({ path: relative(root, p), sha256: await sha256File(p), bytes: statSync(p).size });
    }
  };
  if (existsSync(dir)) await walk(dir);
  return out;
}
