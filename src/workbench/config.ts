import { resolve } from 'node:path';

/**
 * Where generated state lives: `WB_DATA_DIR`, or `.wb` in the current directory (git-ignored).
 * The OLTP database (`oltp.sqlite`), the lakehouse (`lake/`), the model registry (`registry/`) and
 * notebook runs (`runs/`) go there.
 *
 * @example
 * ```ts
 * const dir = dataDir(); // '.wb' under the current directory, or WB_DATA_DIR
 * ```
 */
export function dataDir(explicit?: string): string {
  return resolve(explicit ?? process.env.WB_DATA_DIR ?? '.wb');
}

/**
 * The lakehouse root of a data dir (`<data dir>/lake`).
 *
 * @example
 * ```ts
 * const lake = await Lakehouse.open(lakeDir('.wb'));
 * ```
 */
export const lakeDir = (data?: string): string => resolve(dataDir(data), 'lake');

/**
 * The model registry of a data dir: bundles, aliases and their history.
 *
 * @example
 * ```ts
 * const registry = ModelRegistry.open(registryDir('.wb'));
 * ```
 */
export const registryDir = (data?: string): string => resolve(dataDir(data), 'registry');

/**
 * The OLTP database URL: `WB_OLTP_URL` (postgres://... or a SQLite file), else the embedded SQLite.
 *
 * @example
 * ```ts
 * const oltp = await openOltp(oltpUrl(), dataDir());
 * ```
 */
export const oltpUrl = (explicit?: string): string | undefined => explicit ?? process.env.WB_OLTP_URL ?? undefined;
