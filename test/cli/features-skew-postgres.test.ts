import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { openKeyStore } from '../../src/serving/auth/keys.js';
import { silentLogger } from '../../src/serving/observability/logger.js';
import { startService } from '../../src/serving/service.js';
import { featureSet } from '../../src/workbench/features/definition.js';
import { Lakehouse } from '../../src/workbench/lakehouse.js';
import { createBundle } from '../../src/workbench/models/bundle.js';
import { columnsFor } from '../../src/workbench/models/preprocess.js';
import { publish } from '../../src/workbench/models/publish.js';
import { trainClassifier } from '../../src/workbench/models/train.js';
import { sql } from '../../src/workbench/sql.js';
import { event } from '../helpers/service.js';
import { postgresTestSchema } from '../helpers/servers.js';
import { tempDir } from '../helpers/tmp.js';
import { sleep, until } from '../helpers/wait.js';

/**
 * `wb features skew` on a PostgreSQL OLTP reads the model versions the predictions name from the
 * registry the service stored them in (PostgreSQL and the blob store), not the data dir's directory.
 */
const features = featureSet([{ name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 }]);

describe('wb features skew on a PostgreSQL OLTP', { timeout: 120_000 }, () => {
  const pgSchema = postgresTestSchema('wb_cli_skew');

  it('finds the versions of predictions served from the shared registry', async (t: TestContext) => {
    const dataDir = tempDir('wb-cli-skew-pg-');
    const opened = await pgSchema.open(async (url, schema) => {
      const keys = await openKeyStore(dataDir, url, { schema });
      const admin = (await keys.create('skew-test', ['admin'])).key;
      await keys.close();
      const service = await startService({ dataDir, port: 0, host: '127.0.0.1', logger: silentLogger(), oltpUrl: url, oltpSchema: schema });
      return { url, schema, admin, service };
    });
    if (typeof opened === 'string') return t.skip(opened);
    const { schema, admin, service } = opened;
    t.after(() => service.stop());
    const call = (path: string, body?: unknown) =>
      fetch(`${service.url}${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });

    const model = await trainClassifier(
      Array.from({ length: 60 }, (_, i) => ({ logins_7d: i % 7, y: i % 3 === 0 ? 1 : 0 })),
      'y',
      columnsFor(features),
      { seed: 1, maxEpochs: 2 },
    );
    const bundle = await createBundle('skewed', model, features);
    model.dispose();
    await publish(bundle, { url: service.url, key: admin, alias: 'champion' });
    const res = await call('/v1/events', [event('s1', { user_id: 'gina', event: 'login', time: new Date(Date.now() - 60_000).toISOString() })]);
    assert.equal(res.status, 200, await res.text());
    await until('the store to hold the login', async () => {
      const body = (await (await call('/v1/features/gina')).json()) as { values?: Record<string, unknown> };
      return body.values?.logins_7d === 1 ? true : undefined;
    });
    const scored = await call('/v1/predict', { model: 'skewed', user_id: 'gina' });
    assert.equal(scored.status, 200, await scored.text());
    await until('the prediction to be archived', async () => {
      await sleep(200);
      const lake = await Lakehouse.open(join(dataDir, 'lake')).catch(() => undefined);
      if (!lake) return undefined;
      try {
        const [r] = await lake.query<{ n: number }>(sql`SELECT count(*) AS n FROM events WHERE source = 'live' AND event = 'prediction'`);
        return Number(r!.n) >= 1 ? true : undefined;
      } catch {
        return undefined;
      } finally {
        lake.close();
      }
    });

    const url = `${opened.url}${opened.url.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
    const wb = (env: Record<string, string>, ...args: string[]) => {
      const r = spawnSync(process.execPath, ['bin/wb.cjs', '--data-dir', dataDir, ...args], {
        encoding: 'utf8',
        env: { ...process.env, WB_DEBUG: '', WB_OLTP_URL: '', WB_DATA_DIR: '', WB_BLOB_STORE: '', ...env },
      });
      return { code: r.status, out: r.stdout, err: r.stderr };
    };
    const shared = wb({}, 'features', 'skew', '--model', 'skewed', '--oltp', url, '--json');
    assert.equal(shared.code, 0, shared.err);
    const report = JSON.parse(shared.out) as { predictions: number; mismatches: number; features: { name: string; compared: number }[] };
    assert.equal(report.predictions, 1);
    assert.equal(report.mismatches, 0);
    assert.deepEqual(
      report.features.map((f) => [f.name, f.compared]),
      [['logins_7d', 1]],
    );
    const byEnv = wb({ WB_OLTP_URL: url }, 'features', 'skew', '--model', 'skewed');
    assert.equal(byEnv.code, 0, byEnv.err);
    assert.match(byEnv.out, /skewed: 1 predictions, 0 served values differ/);

    // The data dir's directory registry has no such version.
    const local = wb({}, 'features', 'skew', '--model', 'skewed');
    assert.notEqual(local.code, 0);
    assert.match(local.err, new RegExp(`no model version ${bundle.version}`));
  });
});
