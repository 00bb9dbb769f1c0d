import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { WorkbenchError } from '../errors.js';
import type { LakeLayout } from './layout.js';
import { processAlive } from '../files.js';

/**
 * One build at a time per lakehouse: a lock file holding the builder's pid. A lock left by a build
 * that died (its pid is gone) is taken over. Returns the function that releases it.
 */
export function acquireLock(layout: LakeLayout): () => void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(layout.lock, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(layout.lock, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(layout.lock, 'utf8'));
      if (pid && pid !== process.pid && processAlive(pid)) {
        throw new WorkbenchError(`another lakehouse build (pid ${pid}) is running on ${layout.root}; wait for it to finish`);
      }
      rmSync(layout.lock, { force: true }); // left by a build that died
    }
  }
  throw new WorkbenchError(`cannot take the build lock ${layout.lock}`);
}
