import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openTracking } from '../../../src/workbench/runs/index.js';
import { startRun } from '../../../src/workbench/runs/run.js';
import { tempDir } from '../../helpers/tmp.js';

describe('startRun: where a run is recorded', () => {
  const root = tempDir('wb-run-');
  const defaultDir = join(root, 'default');
  const notebookDir = join(root, 'notebook');
  const saved = { data: process.env.WB_DATA_DIR, oltp: process.env.WB_OLTP_URL };
  before(() => {
    // The default data dir is somewhere else, and no PostgreSQL: a run that ignored `dataDir` would land there.
    process.env.WB_DATA_DIR = defaultDir;
    delete process.env.WB_OLTP_URL;
  });
  after(() => {
    for (const [key, value] of [
      ['WB_DATA_DIR', saved.data],
      ['WB_OLTP_URL', saved.oltp],
    ] as const)
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
  });

  it('records in the given data dir, not the default one, and closes the store it opened', async () => {
    const run = await startRun({ name: 'nb', params: { seed: 1 }, source: 'notebooks/x.ipynb', dataSnapshot: 'snap', dataDir: notebookDir });
    await run.log({ roc_auc: 0.75 });
    const ended = await run.end();
    assert.equal(ended.status, 'finished');
    assert.ok(existsSync(join(notebookDir, 'tracking.sqlite')));
    assert.ok(!existsSync(join(defaultDir, 'tracking.sqlite')), 'nothing was written to the default data dir');
    // Closed by end: a write now fails on the closed connection (a store left open would say the run has ended).
    await assert.rejects(run.log({ roc_auc: 0.8 }), /not open/);

    const store = await openTracking(undefined, notebookDir);
    try {
      const [stored] = await store.listRuns({ name: 'nb' });
      assert.equal(stored?.id, run.id);
      assert.deepEqual({ ...stored?.params }, { seed: 1 });
      assert.equal(stored?.metrics.roc_auc, 0.75);
      assert.equal(stored?.source, 'notebooks/x.ipynb');
      assert.equal(stored?.dataSnapshot, 'snap');
    } finally {
      await store.close();
    }
  });

  it('uses the default data dir without one', async () => {
    const run = await startRun({ name: 'default' });
    await run.end();
    const store = await openTracking(undefined, defaultDir);
    try {
      assert.deepEqual(
        (await store.listRuns()).map((r) => r.id),
        [run.id],
      );
    } finally {
      await store.close();
    }
  });

  it('refuses a store and a data dir together', async () => {
    const store = await openTracking(undefined, join(root, 'other'));
    try {
      await assert.rejects(startRun({ name: 'both', store, dataDir: notebookDir }), /not both/);
      assert.deepEqual(await store.listRuns(), [], 'nothing was recorded');
    } finally {
      await store.close();
    }
  });
});
