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
