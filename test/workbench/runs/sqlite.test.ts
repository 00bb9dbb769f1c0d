import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openTracking } from '../../../src/workbench/runs/index.js';
import { tempDir } from '../../helpers/tmp.js';
import { trackingConformance } from './conformance.js';

const dir = tempDir('wb-runs-');

trackingConformance('SQLite', () => openTracking(undefined, join(dir, 'conformance')));

describe('openTracking', () => {
  it('keeps runs in tracking.sqlite in the data dir, whatever SQLite file the OLTP URL names, across opens', async () => {
    const a = await openTracking(`sqlite:${join(dir, 'oltp.sqlite')}`, dir);
    assert.equal(a.kind, 'sqlite');
    assert.equal(a.location, join(dir, 'tracking.sqlite'));
    await a.createRun({
      id: '1234567890abcdef',
      name: 'n',
      source: null,
      description: null,
      startedAt: new Date().toISOString(),
      gitCommit: null,
      dataSnapshot: null,
      params: new Map(),
    });
    await a.close();
    const b = await openTracking(undefined, dir);
    assert.deepEqual(
      (await b.listRuns()).map((r) => r.id),
      ['1234567890abcdef'],
    );
    await b.close();
  });
});
