import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { simulateIntoOltp } from '../../src/app/history.js';
import { parseSchedule } from '../../src/serving/jobs/scheduler.js';
import { buildLakehouse, openOltp } from '../../src/workbench/index.js';
import { startTestService, type TestService } from '../helpers/service.js';
import { sleep } from '../helpers/wait.js';

interface Run {
  run_id: string;
  status: string;
  trigger: string;
  steps: { job: string; status: string; outputs?: Record<string, unknown> }[];
}

describe('training jobs run by the service', { timeout: 180_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'wb-jobs-'));
  let t: TestService;
  before(async () => {
    const oltp = await openOltp(undefined, dir);
    await buildLakehouse({ lakeDir: join(dir, 'lake'), app: await simulateIntoOltp({ seed: 5, users: 200, days: 50, start: '2025-03-01' }, oltp), oltp });
    await oltp.close();
    t = await startTestService({ modelRefreshMs: 200 }, dir);
  });
  after(async () => {
    await t?.service.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts a run through the API (admin only), records it, and serves the model it publishes', async () => {
    const start = (key: string) => t.call('/v1/jobs/app-churn/runs', { method: 'POST', key, body: '{}', headers: { 'content-type': 'application/json' } });
    assert.equal((await start(t.keys.read)).status, 403);
    const res = await start(t.keys.admin);
    assert.equal(res.status, 202);
    const { run_id } = (await res.json()) as { run_id: string };
    assert.equal((await start(t.keys.admin)).status, 409, 'one run of a DAG at a time');
    let run: Run | undefined;
    for (let i = 0; i < 600 && run?.status !== 'succeeded' && run?.status !== 'failed'; i++) {
      await sleep(100);
      const r = await t.call(`/v1/jobs/runs/${run_id}`, { key: t.keys.read });
      if (r.status === 200) run = (await r.json()) as Run;
    }
    assert.equal(run?.status, 'succeeded', JSON.stringify(run));
    assert.equal(run!.trigger, 'api:test-admin');
    assert.deepEqual(
      run!.steps.map((s) => s.job),
      ['snapshot-replica', 'training-set', 'train', 'evaluate-vs-champion', 'publish'],
    );
    const version = run!.steps.find((s) => s.job === 'publish')!.outputs!.version as string;
    const list = (await (await t.call('/v1/jobs/runs?dag=app-churn', { key: t.keys.read })).json()) as { runs: Run[] };
    assert.deepEqual(
      list.runs.map((r) => r.run_id),
      [run_id],
    );
    // The service follows the registry: the job's model answers predictions.
    let served: { model: { version: string } } | undefined;
    for (let i = 0; i < 100 && served?.model.version !== version; i++) {
      const p = await t.call('/v1/predict', {
        method: 'POST',
        key: t.keys.read,
        body: JSON.stringify({ model: 'app-churn', user_id: 'u000001', values: {} }),
        headers: { 'content-type': 'application/json' },
      });
      if (p.status === 200) served = (await p.json()) as typeof served;
      await sleep(100);
    }
    assert.equal(served?.model.version, version);
  });

  it('runs a DAG on its schedule', async () => {
    const { JobScheduler } = await import('../../src/serving/jobs/scheduler.js');
    const lines: string[] = [];
    const scheduler = new JobScheduler(dir, [{ dag: 'app-churn', everyMs: 300 }], { info: (_o, m) => lines.push(m), error: (_o, m) => lines.push(m) });
    try {
      let scheduled: Run | undefined;
      for (let i = 0; i < 600 && !(scheduled && scheduled.status !== 'running'); i++) {
        await sleep(100);
        scheduled = (await scheduler.runs.list({ dag: 'app-churn' })).find((r) => r.trigger === 'schedule') as Run | undefined;
      }
      assert.equal(scheduled?.status, 'succeeded', lines.slice(-5).join('\n'));
      assert.ok(lines.some((l) => l === 'job run started'));
    } finally {
      await scheduler.stop();
    }
  });

  it('lists the DAGs and refuses unknown ones', async () => {
    const jobs = (await (await t.call('/v1/jobs', { key: t.keys.read })).json()) as { dags: { name: string }[] };
    assert.deepEqual(jobs.dags.map((d) => d.name).sort(), ['app-churn', 'retail-propensity']);
    const bad = await t.call('/v1/jobs/nope/runs', { method: 'POST', key: t.keys.admin, body: '{}', headers: { 'content-type': 'application/json' } });
    assert.equal(bad.status, 400);
    assert.equal((await t.call('/v1/jobs/runs/..%2F..%2Fkeys', { key: t.keys.read })).status, 400);
  });
});

describe('parseSchedule', () => {
  it('reads dag=every pairs and refuses anything else', () => {
    assert.deepEqual(parseSchedule('retail-propensity=24h, app-churn=30m'), [
      { dag: 'retail-propensity', everyMs: 86_400_000 },
      { dag: 'app-churn', everyMs: 1_800_000 },
    ]);
    assert.deepEqual(parseSchedule(''), []);
    assert.throws(() => parseSchedule('app-churn=often'), /write dag=every/);
    assert.throws(() => parseSchedule('nope=1h'), /no DAG named "nope"/);
    assert.throws(() => parseSchedule('app-churn=1s'), /at most every 10 seconds/);
  });
});
