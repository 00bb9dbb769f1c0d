import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { lakeLayout } from '../../../src/workbench/lakehouse/layout.js';
import { acquireLock } from '../../../src/workbench/lakehouse/lock.js';
import { tempDir } from '../../helpers/tmp.js';

describe('the build lock', () => {
  it('lets one build in at a time and takes over a lock whose builder died', async () => {
    const layout = lakeLayout(tempDir());
    const release = acquireLock(layout);
    assert.equal(readFileSync(layout.lock, 'utf8'), String(process.pid));
    // A live process holding the lock keeps others out.
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)']);
    writeFileSync(layout.lock, String(sleeper.pid));
    assert.throws(() => acquireLock(layout), new RegExp(`another lakehouse build \\(pid ${sleeper.pid}\\) is running`));
    sleeper.kill('SIGKILL');
    await new Promise((r) => sleeper.once('exit', r));
    const again = acquireLock(layout);
    assert.equal(readFileSync(layout.lock, 'utf8'), String(process.pid));
    again();
    assert.equal(existsSync(layout.lock), false);
    release();
  });
});
