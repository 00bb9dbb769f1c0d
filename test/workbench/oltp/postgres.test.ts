import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { PostgresOltp } from '../../../src/workbench/oltp/index.js';
import { postgresTestSchema } from '../../helpers/servers.js';
import { oltpConformance } from './conformance.js';

const postgres = postgresTestSchema('wb_test');

oltpConformance('PostgreSQL', () =>
  postgres.open(async (url, schema) => {
    const store = new PostgresOltp(url, schema);
    await store.migrate();
    return store;
  }),
);

const untimed = postgresTestSchema('wb_test_untimed');

describe('PostgreSQL OLTP made before claims were timed', () => {
  it('gains the claim time on migrate; its older rows are never listed as claimed', async (t) => {
    const store = await untimed.open(async (url, schema) => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE SCHEMA "${schema}"`);
        await client.query(`CREATE TABLE "${schema}".assignments (experiment TEXT NOT NULL, user_id TEXT NOT NULL, arm TEXT NOT NULL,
          assigned_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (experiment, user_id))`);
        await client.query(`INSERT INTO "${schema}".assignments VALUES ('exp', 'old', 'a', '2025-01-01T00:00:00Z')`);
      } finally {
        await client.end();
      }
      const opened = new PostgresOltp(url, schema);
      await opened.migrate();
      return opened;
    });
    if (typeof store === 'string') return t.skip(store);
    try {
      await store.claimAssignments([{ experiment: 'exp', user_id: 'new', arm: 'b', assigned_at: '2025-01-02T00:00:00.000Z' }]);
      assert.deepEqual(
        (await store.claimedAssignments({ experiments: ['exp'], limit: 10 })).rows.map((r) => r.user_id),
        ['new'],
      );
      assert.equal((await store.getAssignments('exp')).length, 2);
      await store.migrate();
    } finally {
      await store.close();
    }
  });
});
