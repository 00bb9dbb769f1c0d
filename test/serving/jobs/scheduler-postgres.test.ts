import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { JobScheduler } from '../../../src/serving/jobs/scheduler.js';
import type { RunRecord } from '../../../src/workbench/jobs/dag.js';
import { openJobRuns } from '../../../src/workbench/jobs/open-runs.js';
import { PostgresRunStore } from '../../../src/workbench/jobs/run-store-postgres.js';
import { postgresTestSchema } from '../../helpers/servers.js';
import { tempDir } from '../../helpers/tmp.js';
import { sleep } from '../../helpers/wait.js';

/**
 * The scheduler of one instance with a PostgreSQL OLTP: its job processes, told WB_OLTP_URL with the
 * schema on the search_path as the service tells them, record their runs in `job_runs`, where
 * another instance's store reads them; and a job process it ends is recorded as failed there.
 */
describe('job runs recorded in PostgreSQL by the scheduler and its job processes', { timeout: 120_000 }, () => {
  const pgSchema = postgresTestSchema('wb_sched_runs');
  let url = '';
  let schema = '';
  let skip: string | undefined;
  let other: PostgresRunStore | undefined;
  const lines: string[] = [];
  const log = { info: (_o: object, m: string) => void lines.push(m), error: (_o: object, m: string) => void lines.push(`ERROR ${m}`) };

  before(async () => {
    const available = await pgSchema.open(async (u, s) => ((url = u), (schema = s), true));
    if (typeof available === 'string') return void (skip = available);
    // Another instance: its own store on the same schema.
    other = await PostgresRunStore.open(url, { schema });
  });
  after(async () => void (await other?.close()));
  const skipped = (t: TestContext) => (skip ? (t.skip(skip), true) : false);

  /** A scheduler as the service makes it with a PostgreSQL OLTP, on a data dir of its own. */
  async function scheduler(dataDir: string): Promise<JobScheduler> {
    const child = new URL(url);
    child.searchParams.set('options', `-c search_path=${schema}`);
    return new JobScheduler(dataDir, [], log, {
      paused: true,
      env: { WB_OLTP_URL: child.toString() },
      runs: await openJobRuns(url, dataDir, { schema }),
    });
  }

  async function ended(runId: string): Promise<RunRecord | undefined> {
    let run: RunRecord | undefined;
    for (let i = 0; i < 1200 && (!run || run.status === 'running'); i++) {
      await sleep(100);
      run = await other!.get(runId).catch(() => undefined);
    }
    return run;
  }

  it('shows another instance the run a job process recorded, not in the data dir', async (t) => {
    if (skipped(t)) return;
    const dir = tempDir('wb-sched-pg-');
    const jobs = await scheduler(dir);
    try {
      const runId = jobs.start('app-churn', 'test', { minAuc: '0.99' });
      const run = await ended(runId);
      assert.ok(run && run.status !== 'running', `the run ended: ${JSON.stringify(run)}\n${lines.slice(-10).join('\n')}`);
      assert.equal(run.trigger, 'test');
      assert.deepEqual(run.params, { minAuc: '0.99' });
      assert.equal(run.steps[0]!.job, 'snapshot-replica');
      assert.ok(!run.steps.some((s) => s.job === '(process)'), 'the job process recorded its own end');
      assert.deepEqual(
        (await jobs.runs.list({ dag: 'app-churn' })).map((r) => r.run_id),
        [runId],
      );
      assert.equal(existsSync(join(dir, 'jobs', 'runs')), false, 'nothing in the data dir');
    } finally {
      await jobs.stop();
    }
  });

  it('records a job process it ends as failed, before closing its store', async (t) => {
    if (skipped(t)) return;
    const jobs = await scheduler(tempDir('wb-sched-pg-'));
    const runId = jobs.start('app-churn', 'schedule');
    await jobs.stop();
    const run = await other!.get(runId);
    assert.equal(run.status, 'failed');
    assert.equal(run.trigger, 'schedule');
    assert.match(run.steps.at(-1)!.error ?? '', /the job process exited with SIGTERM before finishing/);
  });
});
