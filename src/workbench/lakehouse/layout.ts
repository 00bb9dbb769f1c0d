import { join, resolve } from 'node:path';

/**
 * Where everything lives under a lakehouse root (by default `.wb/lake`):
 *
 *   manifest.json                                    what was built from what, with checksums
 *   archive/events/source=<s>/date=<d>/part-0.parquet  the immutable event archive (hive layout)
 *   replica/<table>/<sha256>.parquet                 OLTP snapshots, named by content
 *   derived/<table>/<sha256>.parquet                 typed tables derived from the archive
 *   quarantine/<source>.csv                          rows that could not be loaded, with the reason
 *   truth/                                           the simulator's ground truth
 */
export interface LakeLayout {
  root: string;
  manifest: string;
  archive: string;
  replica: string;
  derived: string;
  quarantine: string;
  truth: string;
  staging: string;
  lock: string;
}

export function lakeLayout(root: string): LakeLayout {
  const r = resolve(root);
  return {
    root: r,
    manifest: join(r, 'manifest.json'),
    archive: join(r, 'archive', 'events'),
    replica: join(r, 'replica'),
    derived: join(r, 'derived'),
    quarantine: join(r, 'quarantine'),
    truth: join(r, 'truth'),
    staging: join(r, '.staging'),
    lock: join(r, '.build.lock'),
  };
}

export const sourceDir = (layout: LakeLayout, source: string): string => join(layout.archive, `source=${source}`);
