import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import pg from 'pg';
import { migrateOrClose, openPgPool, shownUrl } from '../../../src/workbench/oltp/pg-pool.js';
import { serverAvailable } from '../../helpers/servers.js';
import { until } from '../../helpers/wait.js';

const url = process.env.WB_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

describe('the pg pool every PostgreSQL store opens', () => {
  it('masks the password of the URL it shows', () => {
    assert.equal(shownUrl('postgres://wb:s3cret@db.internal:5432/wb?sslmode=require'), 'postgres://wb:***@db.internal:5432/wb?sslmode=require');
    assert.equal(shownUrl('postgres://wb@db/wb'), 'postgres://wb@db/wb');
  });

  it('survives the server dropping its idle connections, and the next query gets a new one', async (t: TestContext) => {
    const available = await serverAvailable('PostgreSQL', url);
    if (available !== true) return t.skip(available);
    const name = `wb-pool-test-${process.pid}`;
    const pool = openPgPool(`${url}?application_name=${name}`);
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      const before = (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      // What a server restart or an idle timeout on a proxy does to the pool's idle connection: an
      // 'error' on the pool, which ends the process unless the pool listens for it (no listener here).
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [name]);
      await until('the pool to drop its dead connection', async () => (pool.totalCount === 0 ? true : undefined), 5_000);
      const after = (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      assert.notEqual(after, before);
    } finally {
      await admin.end();
      await pool.end();
    }
  });

  it('closes a store whose migration failed, and passes the error on', async () => {
    const closed: string[] = [];
    const store = { close: async () => void closed.push('closed') };
    await assert.rejects(
      migrateOrClose(store, async () => {
        throw new Error('relation "job_runs" already exists as a view');
      }),
      /already exists as a view/,
    );
    assert.deepEqual(closed, ['closed']);
    assert.equal(await migrateOrClose(store, async () => undefined), store);
    assert.deepEqual(closed, ['closed'], 'a store that migrated stays open');
  });
});
