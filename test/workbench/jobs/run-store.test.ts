import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import pg from 'pg';
import { InputError, NotFoundError } from '../../../src/workbench/errors.js';
import { runDag, type Dag, type RunRecord } from '../../../src/workbench/jobs/dag.js';
import { openJobRuns } from '../../../src/workbench/jobs/open-runs.js';
import { PostgresRunStore } from '../../../src/workbench/jobs/run-store-postgres.js';
import { RunStore, type JobRunStore } from '../../../src/workbench/jobs/run-store.js';
import { postgresTestSchema } from '../../helpers/servers.js';
import { tempDir } from '../../helpers/tmp.js';

const record = (runId: string, dag: string, startedAt: string, extra: Partial<RunRecord> = {}): RunRecord => ({
  run_id: runId,
  dag,
  status: 'running',
  started_at: startedAt,
  params: { alias: 'challenger' },
  trigger: 'test',
  steps: [{ job: 'train', status: 'pending' }],
  ...extra,
});

/** What every job run store does, the directory's and PostgreSQL's alike. */
function conformance(name: string, open: () => Promise<JobRunStore | string>): void {
  describe(`job run records: ${name}`, () => {
    let store: JobRunStore | undefined;
    let skip: string | undefined;
    before(async () => {
      const opened = await open();
      if (typeof opened === 'string') skip = opened;
      else store = opened;
    });
    after(async () => void (await store?.close()));
    const ready = (t: TestContext): JobRunStore | undefined => (skip ? void t.skip(skip) : store);

    it('saves, replaces and gets a record whole', async (t) => {
      const s = ready(t);
      if (!s) return;
      const run = record('demo-20250301000000-aaaaaa', 'demo', '2025-03-01T00:00:00.000Z');
      await s.save(run);
      assert.deepEqual(await s.get(run.run_id), run);
      const done: RunRecord = {
        ...run,
        status: 'succeeded',
        ended_at: '2025-03-01T00:01:00.000Z',
        steps: [
          {
            job: 'train',
            status: 'succeeded',
            started_at: run.started_at,
            ended_at: '2025-03-01T00:01:00.000Z',
            outputs: { auc: 0.71, nested: { n: [1, 2] } },
          },
        ],
      };
      await s.save(done);
      assert.deepEqual(await s.get(run.run_id), done);
    });

    it('lists newest first, by DAG, at most the limit', async (t) => {
      const s = ready(t);
      if (!s) return;
      await s.save(record('list-a-20250302000000-000001', 'list-a', '2025-03-02T00:00:00.000Z'));
      await s.save(record('list-a-20250304000000-000002', 'list-a', '2025-03-04T00:00:00.000Z'));
      await s.save(record('list-b-20250303000000-000003', 'list-b', '2025-03-03T00:00:00.000Z'));
      assert.deepEqual(
        (await s.list({ dag: 'list-a' })).map((r) => r.run_id),
        ['list-a-20250304000000-000002', 'list-a-20250302000000-000001'],
      );
      assert.deepEqual(
        (await s.list({ limit: 2 })).map((r) => r.run_id),
        ['list-a-20250304000000-000002', 'list-b-20250303000000-000003'],
      );
      assert.deepEqual(await s.list({ dag: 'nothing-here' }), []);
    });

    it('refuses what is not a run id, on read and on write, and says when there is no such run', async (t) => {
      const s = ready(t);
      if (!s) return;
      for (const bad of ['../../etc/passwd', 'UPPER', '', "x'; DROP TABLE job_runs; --", 'a'.repeat(101)]) {
        await assert.rejects(s.get(bad), InputError, bad);
        await assert.rejects(s.save(record(bad, 'demo', '2025-03-01T00:00:00.000Z')), InputError, bad);
      }
      await assert.rejects(s.get('demo-20990101000000-ffffff'), NotFoundError);
    });

    it('records a DAG run given as its store', async (t) => {
      const s = ready(t);
      if (!s) return;
      const dag: Dag = { name: 'conf-dag', description: '', jobs: [{ name: 'one', run: async () => ({ n: 1 }) }] };
      const run = await runDag(dag, { dataDir: tempDir('wb-runs-dag-'), store: s, trigger: 'test' });
      assert.equal(run.status, 'succeeded');
      const got = await s.get(run.run_id);
      assert.deepEqual(got, run);
      // Shown as written (`wb jobs show`), whatever order the store keeps keys in.
      assert.deepEqual(Object.keys(got), Object.keys(run));
      assert.deepEqual(Object.keys(got.steps[0]!), Object.keys(run.steps[0]!));
      assert.deepEqual(
        (await s.list({ dag: 'conf-dag' })).map((r) => r.run_id),
        [run.run_id],
      );
    });
  });
}

conformance('a directory', async () => RunStore.forDataDir(tempDir('wb-runs-')));

const pgSchema = postgresTestSchema('wb_job_runs');
let url = '';
let schema = '';
let n = 0;
const made: string[] = [];
/** A new schema name in the test database (dropped with the others at the end), or why PostgreSQL is not there. */
const freshSchema = async (): Promise<string> => {
  const available = await pgSchema.open(async (u, s) => ((url = u), (schema = s), true));
  if (typeof available === 'string') return available;
  const ns = `${schema}_${++n}`;
  made.push(ns);
  return ns;
};
after(async () => {
  if (made.length === 0) return;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  for (const ns of made) await admin.query(`DROP SCHEMA IF EXISTS "${ns}" CASCADE`);
  await admin.end();
});

conformance('PostgreSQL', async () => {
  const ns = await freshSchema();
  return ns.startsWith('SKIPPED') ? ns : PostgresRunStore.open(url, { schema: ns });
});

describe('job run records in PostgreSQL, shared by instances', { timeout: 60_000 }, () => {
  let ns = '';
  let skip: string | undefined;
  const opened: JobRunStore[] = [];
  before(async () => {
    ns = await freshSchema();
    if (ns.startsWith('SKIPPED')) skip = ns;
  });
  after(async () => {
    for (const s of opened.splice(0)) await s.close();
  });
  const skipped = (t: TestContext) => (skip ? (t.skip(skip), true) : false);
  const track = <T extends JobRunStore>(s: T): T => (opened.push(s), s);

  it('opens on a fresh schema from several instances at once', async (t) => {
    if (skipped(t)) return;
    const race = await freshSchema();
    const stores = await Promise.all(Array.from({ length: 6 }, () => PostgresRunStore.open(url, { schema: race }).then(track)));
    await stores[0]!.save(record('race-20250301000000-000001', 'race', '2025-03-01T00:00:00.000Z'));
    for (const s of stores) assert.equal((await s.get('race-20250301000000-000001')).dag, 'race');
  });

  it("shows each instance the runs another recorded, through the schema on the URL's search_path as a job process gets it", async (t) => {
    if (skipped(t)) return;
    const service = track(await PostgresRunStore.open(url, { schema: ns }));
    // What the service gives its job processes as WB_OLTP_URL (see withSearchPath in service.ts).
    const child = new URL(url);
    child.searchParams.set('options', `-c search_path=${ns}`);
    const job = track(await openJobRuns(child.toString(), tempDir('wb-runs-unused-')));
    assert.ok(job instanceof PostgresRunStore, 'a postgres:// OLTP puts the runs in PostgreSQL');
    const dag: Dag = { name: 'shared', description: '', jobs: [{ name: 'one', run: async () => ({ ok: true }) }] };
    const run = await runDag(dag, { dataDir: tempDir('wb-runs-job-'), store: job, trigger: 'schedule' });
    assert.deepEqual(await service.get(run.run_id), run);
    const other = track(await PostgresRunStore.open(url, { schema: ns }));
    await other.save({ ...run, run_id: 'shared-20990101000000-000002', started_at: '2099-01-01T00:00:00.000Z' });
    assert.deepEqual(
      (await service.list({ dag: 'shared' })).map((r) => r.run_id),
      ['shared-20990101000000-000002', run.run_id],
    );
  });

  it('keeps a step error with a NUL character (which JSONB refuses)', async (t) => {
    if (skipped(t)) return;
    const s = track(await PostgresRunStore.open(url, { schema: ns }));
    const run = record('nul-20250301000000-000001', 'nul', '2025-03-01T00:00:00.000Z', { steps: [{ job: 'x', status: 'failed', error: 'bad\u0000byte' }] });
    await s.save(run);
    assert.equal((await s.get(run.run_id)).steps[0]!.error, 'bad\uFFFDbyte');
  });

  it('keeps the directory when the OLTP is not PostgreSQL', async () => {
    const dir = tempDir('wb-runs-sqlite-');
    const store = await openJobRuns(undefined, dir);
    assert.ok(store instanceof RunStore);
    const sqlite = await openJobRuns('sqlite:///tmp/x.sqlite', dir);
    assert.ok(sqlite instanceof RunStore);
  });
});
