import { execFileSync } from 'node:child_process';
import { contentHash } from '../features/definition.js';
import type { Lakehouse } from '../lakehouse.js';
import type { Lineage } from './bundle.js';

/**
 * Where a model came from, for its bundle: the notebook or job, the git commit of the code (marked
 * `+dirty` when files differ from it), and the lakehouse snapshot: the hash of the manifest's
 * source fingerprints, which changes whenever the data does.
 *
 * @example
 * ```ts
 * const bundle = await createBundle('app-churn', model, features, { lineage: lineageOf('notebooks/04-app-churn.ipynb', lake) });
 * ```
 */
export function lineageOf(source: string, lake?: Lakehouse, parent?: string): Omit<Lineage, 'createdAt'> {
  return {
    source,
    gitCommit: gitCommit(),
    ...(lake ? { dataSnapshot: dataSnapshot(lake) } : {}),
    ...(parent ? { parent } : {}),
  };
}

/**
 * The lakehouse's data as one line for a model's lineage: the hash of its sources' and tables' fingerprints, and when it was built.
 *
 * @example
 * ```ts
 * console.log(dataSnapshot(lake)); // changes when the lakehouse's data does
 * ```
 */
export function dataSnapshot(lake: Lakehouse): string {
  const m = lake.manifest;
  const fingerprints = [...Object.entries(m.sources), ...Object.entries(m.tables)].map(([name, e]) => [name, e.fingerprint]).sort();
  return `lakehouse ${contentHash(fingerprints)} (built ${m.built_at})`;
}

function gitCommit(): string | undefined {
  try {
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty =
      execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== '';
    return dirty ? `${head}+dirty` : head;
  } catch {
    return undefined; // not a git checkout
  }
}
