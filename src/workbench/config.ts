import { resolve } from 'node:path';

/**
 * Where generated state lives: `WB_DATA_DIR`, or `.wb` in the current directory (git-ignored).
 * The OLTP database (`oltp.sqlite`), the lakehouse (`lake/`), the model registry (`registry/`) and
 * notebook runs (`runs/`) go there.
 */
export function dataDir(explicit?: string): string {
  return resolve(explicit ?? process.env.WB_DATA_DIR ?? '.wb');
}

export const lakeDir = (data?: string): string => resolve(dataDir(data), 'lake');

/** The model registry of a data dir: bundles, aliases and their history. */
export const registryDir = (data?: string): string => resolve(dataDir(data), 'registry');

/** The OLTP database URL: `WB_OLTP_URL` (postgres://... or a SQLite file), else the embedded SQLite. */
export const oltpUrl = (explicit?: string): string | undefined => explicit ?? process.env.WB_OLTP_URL ?? undefined;
