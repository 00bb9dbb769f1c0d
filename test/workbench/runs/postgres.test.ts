import { PostgresTracking } from '../../../src/workbench/runs/index.js';
import { postgresTestSchema } from '../../helpers/servers.js';
import { trackingConformance } from './conformance.js';

const postgres = postgresTestSchema('wb_runs_test');

trackingConformance('PostgreSQL', () =>
  postgres.open(async (url, schema) => {
    const store = new PostgresTracking(url, schema);
    await store.migrate();
    return store;
  }),
);
