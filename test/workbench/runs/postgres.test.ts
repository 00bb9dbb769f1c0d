import { after } from 'node:test';
import pg from 'pg';
import { PostgresTracking } from '../../../src/workbench/runs/index.js';
import { serverAvailable } from '../../helpers/servers.js';
import { trackingConformance } from './conformance.js';

const url = process.env.WB_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `wb_runs_test_${process.pid}_${Date.now()}`;
let created = false;

after(async () => {
  if (!created) return;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await client.end();
});

trackingConformance('PostgreSQL', async () => {
  const available = await serverAvailable('PostgreSQL', url);
  if (available !== true) return available;
  const store = new PostgresTracking(url, schema);
  await store.migrate();
  created = true;
  return store;
});
