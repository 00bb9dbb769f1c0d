import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { RunRecord } from '../../../src/workbench/jobs/dag.js';
import { serviceCluster } from '../../helpers/cluster.js';
import { tempDir } from '../../helpers/tmp.js';
import { sleep } from '../../helpers/wait.js';

/**
 * Two service instances on one PostgreSQL schema, each with a data dir of its own (so nothing can
 * pass between them through files): a run started through one is listed and shown by the other.
 */
const cluster = serviceCluster('jobruns');

describe('job runs of service instances on PostgreSQL', { timeout: 120_000 }, () => {
  it('shows on one instance the run started through another', async () => {
    const shared = cluster.cluster();
    const a = await cluster.instance('a', shared);
    const b = await cluster.instance('b', { ...shared, dataDir: tempDir('wb-jobruns-b-') });
    const started = await a.post('/v1/jobs/app-churn/runs', { params: { minAuc: '0.99' } });
    assert.equal(started.status, 202, await started.clone().text());
    const { run_id } = (await started.json()) as { run_id: string };
    let run: RunRecord | undefined;
    for (let i = 0; i < 600 && (!run || run.status === 'running'); i++) {
      await sleep(100);
      const res = await b.get(`/v1/jobs/runs/${run_id}`);
      if (res.status === 200) run = (await res.json()) as RunRecord;
    }
    assert.ok(run && run.status !== 'running', `b sees the run end: ${JSON.stringify(run)}`);
    assert.equal(run.trigger, 'api:cluster-test');
    // Written by the job process itself, which found the schema on the URL the service gave it
    // (withSearchPath); a run it could not record is recorded failed by the scheduler with no steps.
    assert.equal(run.steps[0]?.status, 'succeeded', `the job process recorded its steps: ${JSON.stringify(run.steps)}`);
    const listed = (await (await b.get('/v1/jobs/runs?dag=app-churn')).json()) as { runs: RunRecord[] };
    assert.deepEqual(
      listed.runs.map((r) => r.run_id),
      [run_id],
    );
    assert.equal((await b.get('/v1/jobs/runs/no-such-run')).status, 404);
    assert.equal(existsSync(join(shared.dataDir, 'jobs', 'runs')), false, 'not in the data dir');
  });
});
