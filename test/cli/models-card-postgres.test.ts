import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it, type TestContext } from 'node:test';
import { openModelRegistry } from '../../src/serving/models/registry-postgres.js';
import { featureSet } from '../../src/workbench/features/definition.js';
import { createBundle, type ModelBundle } from '../../src/workbench/models/bundle.js';
import { columnsFor } from '../../src/workbench/models/preprocess.js';
import { trainClassifier } from '../../src/workbench/models/train.js';
import { postgresTestSchema } from '../helpers/servers.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * `wb models card` on a PostgreSQL OLTP reads the registry the service instances share, like the
 * other `wb models` commands: a version stored only there (none in the data dir's directory) has a card.
 */
const dir = tempDir('wb-cli-card-pg-');
const wb = (env: Record<string, string>, ...args: string[]) => {
  const r = spawnSync(process.execPath, ['bin/wb.cjs', '--data-dir', dir, ...args], {
    encoding: 'utf8',
    env: { ...process.env, WB_DEBUG: '', WB_OLTP_URL: '', WB_DATA_DIR: '', WB_BLOB_STORE: '', ...env },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('wb models card on a PostgreSQL OLTP', { timeout: 120_000 }, () => {
  const pgSchema = postgresTestSchema('wb_cli_card');
  let url = '';
  let skip: string | undefined;
  let bundle: ModelBundle;

  before(async () => {
    const opened = await pgSchema.open(async (u, schema) => {
      // What a process of the deployment is given: the schema rides on the URL as its search_path.
      url = `${u}${u.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
      const features = featureSet([{ name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 }]);
      const model = await trainClassifier(
        Array.from({ length: 60 }, (_, i) => ({ logins_7d: i % 7, y: i % 3 === 0 ? 1 : 0 })),
        'y',
        columnsFor(features),
        { seed: 1, maxEpochs: 2 },
      );
      bundle = await createBundle('churn', model, features, { metrics: { rocAuc: 0.7 }, lineage: { source: 'test', dataSnapshot: 'snap' } });
      model.dispose();
      // Stored as the service stores it: versions and aliases in the schema, the bundle in <data dir>/blobs.
      const registry = await openModelRegistry({ dataDir: dir, oltpUrl: u, schema });
      try {
        await registry.publish(bundle, 'champion', { by: 'test' });
      } finally {
        await registry.close();
      }
      return true;
    });
    if (typeof opened === 'string') skip = opened;
  });

  it('finds a version stored only in the PostgreSQL registry, by --oltp or WB_OLTP_URL', (t: TestContext) => {
    if (skip) return t.skip(skip);
    assert.equal(existsSync(join(dir, 'registry', 'aliases.json')), false, 'no directory registry in the data dir');

    const byFlag = wb({}, 'models', 'card', 'churn', '--oltp', url, '--json');
    assert.equal(byFlag.code, 0, byFlag.err);
    const card = JSON.parse(byFlag.out) as { name: string; version: string };
    assert.deepEqual([card.name, card.version], ['churn', bundle.version]);

    const byEnv = wb({ WB_OLTP_URL: url }, 'models', 'card', 'churn', 'champion');
    assert.equal(byEnv.code, 0, byEnv.err);
    assert.match(byEnv.out, new RegExp(bundle.version));

    const out = join(dir, 'card.html');
    const written = wb({}, 'models', 'card', 'churn', bundle.version, '--oltp', url, '--out', out);
    assert.equal(written.code, 0, written.err);
    assert.match(readFileSync(out, 'utf8'), /<html/i);

    // Without the OLTP, the data dir's directory registry: it has no such model.
    const local = wb({}, 'models', 'card', 'churn');
    assert.notEqual(local.code, 0);
    assert.match(local.err, /no model named churn/);
  });
});
