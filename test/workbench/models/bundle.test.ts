import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { checkBundle, createBundle, loadClassifier, verifyBundle, verifyBundleAsync, type ModelBundle } from '../../../src/workbench/models/bundle.js';
import { publish } from '../../../src/workbench/models/publish.js';
import { columnsFor } from '../../../src/workbench/models/preprocess.js';
import { ModelRegistry } from '../../../src/workbench/models/registry.js';
import { trainClassifier, type Classifier } from '../../../src/workbench/models/train.js';
import { Random } from '../../../src/workbench/random.js';
import { tempDir } from '../../helpers/tmp.js';
import { hostileBundles, rehashed, withWeight } from './hostile.js';

const features = featureSet([
  { name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 },
  { name: 'last_features', source: { event: 'feature_used' }, aggregation: 'last_n', prop: 'feature', n: 3, window: '30d', default: [] },
]);
const r = new Random(11);
const rows = Array.from({ length: 600 }, () => {
  const logins = r.int(10);
  const last = ['reports', 'alerts', 'exports'].filter(() => r.bernoulli(0.4));
  return { logins_7d: logins, last_features: last, churned: r.bernoulli(logins < 3 ? 0.6 : 0.2) ? 1 : 0 };
});

describe('model bundles and the registry', { timeout: 60_000 }, () => {
  let trained: Classifier;
  let bundle: ModelBundle;
  before(async () => {
    trained = await trainClassifier(rows, 'churned', columnsFor(features), { model: 'mlp', hidden: [4], seed: 2, maxEpochs: 20 });
    bundle = await createBundle('app-churn', trained, features, {
      metrics: { rocAuc: 0.71 },
      lineage: { source: 'notebooks/04-app-churn.ipynb', gitCommit: 'abc123', createdAt: '2026-11-27T00:00:00.000Z' },
    });
  });
  after(() => trained?.dispose());

  it('is versioned by content: the same model and metadata give the same version, any change another', async () => {
    const again = await createBundle('app-churn', trained, features, {
      metrics: { rocAuc: 0.71 },
      lineage: { source: 'notebooks/04-app-churn.ipynb', gitCommit: 'abc123', createdAt: '2026-11-27T00:00:00.000Z' },
    });
    assert.equal(again.version, bundle.version);
    const other = await createBundle('app-churn', trained, features, { metrics: { rocAuc: 0.72 }, lineage: { createdAt: '2026-11-27T00:00:00.000Z' } });
    assert.notEqual(other.version, bundle.version);
    assert.deepEqual(bundle.signature.inputs, trained.preprocessing.inputs);
  });

  it('round-trips through the registry and scores exactly as the model it was made from', async () => {
    const registry = ModelRegistry.open(tempDir('wb-registry-'));
    registry.put(JSON.parse(JSON.stringify(bundle)));
    const loaded = await loadClassifier(registry.get(bundle.version));
    try {
      assert.deepEqual([...loaded.predict(rows.slice(0, 40))], [...trained.predict(rows.slice(0, 40))]);
    } finally {
      loaded.dispose();
    }
  });

  it('refuses a bundle changed after it was made, on upload and on disk', () => {
    const tampered = JSON.parse(JSON.stringify(bundle)) as ModelBundle;
    tampered.preprocessing.steps[0] = { ...(tampered.preprocessing.steps[0] as object), mean: 99 } as never;
    assert.throws(() => verifyBundle(tampered), /hashes to [0-9a-f]{16}, not to its version .* refusing it/);
    const dir = tempDir('wb-registry-');
    const registry = ModelRegistry.open(dir);
    registry.put(bundle);
    const path = join(dir, 'bundles', `${bundle.version}.json`);
    writeFileSync(
      path,
      readFileSync(path, 'utf8').replace(/"weights":"(.)/, (_, c: string) => `"weights":"${c === 'A' ? 'B' : 'A'}`),
    );
    assert.throws(() => registry.get(bundle.version), /the bundle was changed after it was made/);
  });

  it('comes out of its checks frozen, so a checked bundle is not checked twice and cannot be changed unnoticed', async () => {
    const input = JSON.parse(JSON.stringify(bundle)) as ModelBundle;
    const checked = verifyBundle(input);
    // The input is the caller's: left as it was, unfrozen.
    assert.ok(!Object.isFrozen(input) && !Object.isFrozen(input.preprocessing.steps[0]) && !Object.isFrozen(input.model.topology));
    for (const part of [checked, checked.model, checked.model.topology, checked.features[0], checked.preprocessing.steps[0], checked.lineage])
      assert.ok(Object.isFrozen(part));
    assert.throws(() => {
      (checked.metrics as Record<string, unknown>).rocAuc = 0.99;
    }, TypeError);
    assert.equal(verifyBundle(checked), checked);
    assert.equal(await verifyBundleAsync(checked), checked);
    // A copy is checked afresh: changed, it is refused.
    const copy = JSON.parse(JSON.stringify(checked)) as ModelBundle;
    (copy.metrics as Record<string, unknown>).rocAuc = 0.99;
    await assert.rejects(verifyBundleAsync(copy), /the bundle was changed after it was made/);
  });

  it('is checked a step at a time by verifyBundleAsync: requests waiting are answered between its steps', async () => {
    let turns = 0;
    let counting = true;
    const count = () => {
      turns++;
      if (counting) setImmediate(count);
    };
    setImmediate(count);
    const checked = await verifyBundleAsync(JSON.parse(JSON.stringify(bundle)));
    counting = false;
    assert.equal(checked.version, bundle.version);
    assert.ok(turns >= 2, `the event loop turned ${turns} times during the check`);
  });

  it('refuses a bundle whose preprocessing reads a feature it does not carry', async () => {
    await assert.rejects(createBundle('app-churn', trained, features.slice(0, 1)), /the model reads last_features, which is not one of the bundle's features/);
    const { version: _v, ...body } = bundle;
    assert.throws(() => verifyBundle({ ...body, format: 'other', version: bundle.version }), /format: Invalid input/);
  });

  it('moves aliases per model name, keeps their history, and refuses versions of another model', async () => {
    const registry = ModelRegistry.open(tempDir('wb-registry-'));
    registry.put(bundle);
    const other = await createBundle('app-churn', trained, features, { lineage: { createdAt: '2026-11-28T00:00:00.000Z', parent: bundle.version } });
    registry.put(other);
    registry.setAlias('app-churn', 'champion', bundle.version, { by: 'test' });
    registry.setAlias('app-churn', 'champion', other.version, { by: 'test', reason: 'better AUC' });
    registry.setAlias('app-churn', 'champion', bundle.version, { by: 'test', reason: 'rollback' });
    assert.equal(registry.resolve('app-churn', 'champion'), bundle.version);
    assert.deepEqual(
      registry.history('app-churn').map((m) => [m.from, m.to, m.reason ?? null]),
      [
        [null, bundle.version, null],
        [bundle.version, other.version, 'better AUC'],
        [other.version, bundle.version, 'rollback'],
      ],
    );
    assert.deepEqual(
      registry.list('app-churn').map((v) => [v.version, v.aliases]),
      [
        [other.version, []],
        [bundle.version, ['champion']],
      ],
    );
    assert.throws(() => registry.setAlias('other-model', 'champion', bundle.version), /is a version of app-churn, not of other-model/);
    assert.throws(() => registry.setAlias('app-churn', 'champion', '0123456789abcdef'), /no model version 0123456789abcdef/);
    assert.throws(() => registry.setAlias('app-churn', 'Bad Alias', bundle.version), /alias "Bad Alias"/);
  });
});

describe('a bundle that cannot serve is refused before it is stored or published', { timeout: 60_000 }, () => {
  const small = featureSet([
    { name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 },
    { name: 'spend_30d', source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: '30d', default: 0 },
  ]);
  const smallRows = rows.map((r, i) => ({ logins_7d: r.logins_7d, spend_30d: (i * 7) % 50, churned: r.churned }));
  let model: Classifier;
  let good: ModelBundle;
  before(async () => {
    model = await trainClassifier(smallRows, 'churned', columnsFor(small), { seed: 3, maxEpochs: 5 });
    good = await createBundle('small', model, small, { lineage: { createdAt: '2026-11-27T00:00:00.000Z' } });
  });
  after(() => model?.dispose());

  it('names the layer, weight or value at fault, and stores nothing', async () => {
    const dir = tempDir('wb-registry-');
    const registry = ModelRegistry.open(dir);
    for (const h of hostileBundles(good)) {
      const input: unknown = h.json ? JSON.parse(h.json) : h.bundle;
      const started = Date.now();
      await assert.rejects(registry.save(input), (err: Error & { code?: string; status?: number }) => {
        assert.equal(err.code, h.code, `${h.what}: ${err.message}`);
        assert.equal(err.status, 400, h.what);
        assert.match(err.message, h.message, h.what);
        return true;
      });
      assert.ok(Date.now() - started < 1000, `${h.what}: refused in ${Date.now() - started} ms`);
    }
    assert.deepEqual(readdirSync(join(dir, 'bundles')), [], 'nothing stored');
    // The service's stepwise check refuses each with the same error as the one-piece check.
    for (const h of hostileBundles(good)) {
      const input = () => (h.json ? JSON.parse(h.json) : structuredClone(h.bundle)) as unknown;
      let sync: unknown;
      try {
        verifyBundle(input());
      } catch (err) {
        sync = err;
      }
      await verifyBundleAsync(input()).then(
        () => assert.equal(sync, undefined, `${h.what}: refused by verifyBundle only`),
        (err: Error) => assert.deepEqual([err.constructor, err.message], [(sync as Error)?.constructor, (sync as Error)?.message], h.what),
      );
    }
    // The checks that need no model (shape, weights, topology) refuse a bundle on `put` as well.
    assert.throws(() => registry.put(withWeight(good, 0, Number.NaN)), /holds NaN/);
    assert.equal((await registry.save(good)).version, good.version);
  });

  it('refuses a model whose score of the default values is not finite, and a trained model with NaN weights', async () => {
    // Linear layers and weights near float32's largest: finite weights, an infinite score.
    const overflowing = rehashed(good, (b) => {
      b.model.topology.config.layers.at(-1).config.activation = 'linear';
      const bytes = Buffer.from(b.model.weights, 'base64');
      for (let i = 0; i < bytes.length / 4; i++) bytes.writeFloatLE(3e38, i * 4);
      b.model.weights = bytes.toString('base64');
    });
    await assert.rejects(
      checkBundle(overflowing),
      (err: Error & { code?: string }) =>
        err.code === 'bundle_non_finite' && /scores the features' default values \(logins_7d=0, spend_30d=0\) as (-)?Infinity/.test(err.message),
    );
    const diverged = await trainClassifier(smallRows, 'churned', columnsFor(small), { seed: 3, maxEpochs: 1 });
    try {
      const weights = diverged.model.getWeights();
      diverged.model.setWeights(weights.map((w, i) => (i === 0 ? w.mul(Number.NaN) : w)));
      await assert.rejects(
        createBundle('small', diverged, small),
        (err: Error & { code?: string }) => err.code === 'bundle_non_finite' && /the weight \S+ holds NaN at \[0,0\] \(and \d+ more/.test(err.message),
      );
    } finally {
      diverged.dispose();
    }
  });

  it('is refused by publish() before the upload, with the code the service would answer', async () => {
    // Nothing listens on port 9: a refusal that were not local would be `unreachable` (503).
    for (const h of hostileBundles(good).filter((x) => x.bundle)) {
      await assert.rejects(publish(h.bundle!, { url: 'http://127.0.0.1:9', key: 'wb_any' }), (err: Error & { code?: string; status?: number }) => {
        assert.deepEqual([err.status, err.code], [400, h.code], `${h.what}: ${err.message}`);
        assert.match(err.message, /refused before upload \(400\)/);
        return true;
      });
    }
  });
});
