import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { createBundle, type ModelBundle } from '../../../src/workbench/models/bundle.js';
import { columnsFor } from '../../../src/workbench/models/preprocess.js';
import { trainClassifier } from '../../../src/workbench/models/train.js';
import { serviceCluster, type ClusterInstance } from '../../helpers/cluster.js';
import { within } from '../../helpers/wait.js';

/**
 * Two service instances on one PostgreSQL schema, JetStream stream and data dir (the blob store's
 * directory): the registry is PostgreSQL's, not the data dir's directory registry.
 */
const cluster = serviceCluster('regsvc');
const features = featureSet([{ name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 }]);

async function predict(i: ClusterInstance, alias?: string): Promise<{ status: number; version?: string }> {
  const res = await i.post('/v1/predict', { model: 'churn', user_id: 'u1', values: { logins_7d: 3 }, ...(alias ? { alias } : {}) });
  const body = (await res.json()) as { model?: { version: string } };
  return { status: res.status, ...(body.model ? { version: body.model.version } : {}) };
}

describe('the model registry of service instances on PostgreSQL', { timeout: 120_000 }, () => {
  const bundles: ModelBundle[] = [];
  before(async () => {
    const rows = Array.from({ length: 60 }, (_, i) => ({ logins_7d: i % 7, bought: i % 3 === 0 ? 1 : 0 }));
    for (const seed of [1, 2]) {
      const model = await trainClassifier(rows, 'bought', columnsFor(features), { seed, maxEpochs: 2 });
      bundles.push(await createBundle('churn', model, features));
      model.dispose();
    }
  });

  it('serves a model published on one instance from the other, and follows its alias within a second', async (t) => {
    const [v1, v2] = bundles as [ModelBundle, ModelBundle];
    const shared = cluster.cluster();
    // A minute between periodic refreshes: only the change notification can carry the move within a second.
    const a = await cluster.instance('a', shared, { modelRefreshMs: 60_000 });
    const b = await cluster.instance('b', shared, { modelRefreshMs: 60_000 });
    const published = await a.post('/v1/models', { bundle: v1, alias: 'champion', reason: 'first' });
    assert.equal(published.status, 200, await published.clone().text());
    // b reads the registry at once; serving the new model also waits for its new feature to be computed on b.
    const [read, served] = await Promise.all([
      within('b reads the version published on a', () => b.service.models.registry.has(v1.version)),
      within('b serves the model published on a', async () => (await predict(b)).version === v1.version, 5_000),
    ]);
    t.diagnostic(`a version published on a: in b's registry after ${read.toFixed(0)} ms, served by b after ${served.toFixed(0)} ms`);

    // Stored on a, moved on b by the alias route: each instance writes to the one registry.
    assert.equal((await a.post('/v1/models', { bundle: v2, alias: 'challenger' })).status, 200);
    const moved = await fetch(`${b.service.url}/v1/models/churn/aliases/champion`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${cluster.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ version: v2.version, reason: 'promote' }),
    });
    assert.equal(moved.status, 200, await moved.clone().text());
    const followed = await within('a serves the alias moved on b', async () => (await predict(a)).version === v2.version);
    t.diagnostic(`an alias moved on b followed by a after ${followed.toFixed(0)} ms`);

    const model = (await (await a.get('/v1/models/churn')).json()) as {
      aliases: Record<string, string>;
      history: { from: string | null; to: string; reason?: string }[];
    };
    assert.deepEqual(model.aliases, { champion: v2.version, challenger: v2.version });
    assert.deepEqual(
      model.history.filter((m) => m.reason).map((m) => [m.from, m.to, m.reason]),
      [
        [null, v1.version, 'first'],
        [v1.version, v2.version, 'promote'],
      ],
    );
    // The bundles are in the blob store, not in the data dir's directory registry.
    assert.deepEqual(readdirSync(join(shared.dataDir, 'blobs', 'registry', 'bundles')).sort(), [`${v1.version}.json`, `${v2.version}.json`].sort());
    assert.equal(existsSync(join(shared.dataDir, 'registry', 'aliases.json')), false);
  });
});
