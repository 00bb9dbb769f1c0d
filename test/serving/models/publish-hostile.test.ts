import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { createBundle, type ModelBundle } from '../../../src/workbench/models/bundle.js';
import { columnsFor } from '../../../src/workbench/models/preprocess.js';
import { publish } from '../../../src/workbench/models/publish.js';
import { ModelRegistry } from '../../../src/workbench/models/registry.js';
import { trainClassifier, type Classifier } from '../../../src/workbench/models/train.js';
import { event, startTestService, type TestService } from '../../helpers/service.js';
import { sleep } from '../../helpers/wait.js';
import { hostileBundles, rehashed, weightsOf, withWeight } from '../../workbench/models/hostile.js';

const features = featureSet([
  { name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 },
  { name: 'spend_30d', source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: '30d', default: 0 },
]);
const rows = Array.from({ length: 300 }, (_, i) => ({ logins_7d: i % 8, spend_30d: (i * 17) % 90, bought: (i % 8) + ((i * 17) % 90) / 30 > 5 ? 1 : 0 }));

interface Answer {
  score?: number;
  model?: { version: string };
  error?: { code: string; message: string };
  models?: ({ version: string; aliases: string[] } & { error?: string })[];
  aliases?: Record<string, string>;
}

describe('hostile bundles, a damaged registry and models that score NaN, against the running service', { timeout: 120_000 }, () => {
  let t: TestService;
  let model: Classifier;
  let v1: ModelBundle;
  const json = async (path: string, init: { method?: string; key?: string; body?: string } = {}) => {
    const res = await t.call(path, {
      method: init.method ?? 'GET',
      key: init.key ?? t.keys.admin,
      ...(init.body ? { body: init.body, headers: { 'content-type': 'application/json' } } : {}),
    });
    return { status: res.status, body: (await res.json()) as Answer };
  };
  const predict = (body: Record<string, unknown>) => json('/v1/predict', { method: 'POST', key: t.keys.read, body: JSON.stringify(body) });
  const registryFiles = () =>
    readdirSync(join(t.dataDir, 'registry', 'bundles'))
      .filter((f) => f.endsWith('.json'))
      .sort();

  before(async () => {
    t = await startTestService();
    model = await trainClassifier(rows, 'bought', columnsFor(features), { seed: 4, maxEpochs: 10 });
    v1 = await createBundle('propensity', model, features, { lineage: { createdAt: '2026-11-01T00:00:00.000Z' } });
    await publish(v1, { url: t.service.url, key: t.keys.admin, alias: 'champion' });
    await t.post('/v1/events', [event('h1', { user_id: 'alice', event: 'login' })]);
  });
  after(async () => {
    model?.dispose();
    await t?.stop();
  });

  it('refuses each hostile bundle with a 400 naming the problem; the registry and the champion are unchanged', async () => {
    const files = registryFiles();
    for (const h of hostileBundles(v1)) {
      const body = `{"bundle":${h.json ?? JSON.stringify(h.bundle)},"alias":"champion"}`;
      const started = Date.now();
      const res = await json('/v1/models', { method: 'POST', body });
      assert.equal(res.status, 400, `${h.what}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error!.code, h.code, h.what);
      assert.match(res.body.error!.message, h.message, h.what);
      assert.ok(Date.now() - started < 2000, `${h.what}: answered in ${Date.now() - started} ms`);
    }
    assert.deepEqual(registryFiles(), files, 'nothing stored');
    const listed = await json('/v1/models', { key: t.keys.read });
    assert.deepEqual(
      listed.body.models!.map((m) => m.version),
      [v1.version],
    );
    const alice = await predict({ model: 'propensity', user_id: 'alice' });
    assert.equal(alice.status, 200);
    assert.equal(alice.body.model!.version, v1.version, 'the champion still serves');
  });

  it('lists a damaged registry over HTTP, and refuses alias moves to damaged or unloadable versions with a 409', async () => {
    const registry = ModelRegistry.open(join(t.dataDir, 'registry'));
    // Distinct sources make distinct versions (createdAt is outside the version's hash).
    const changed = registry.put(await createBundle('propensity', model, features, { lineage: { source: 'test 02', createdAt: '2026-11-02T00:00:00.000Z' } }));
    const truncated = registry.put(
      await createBundle('propensity', model, features, { lineage: { source: 'test 03', createdAt: '2026-11-03T00:00:00.000Z' } }),
    );
    const unloadable = registry.put(
      rehashed(
        await createBundle('propensity', model, features, { lineage: { source: 'test 04', createdAt: '2026-11-04T00:00:00.000Z' } }),
        (b) => (b.model.topology.config.layers[0].class_name = 'NoSuchLayer'),
      ),
    );
    const path = (b: ModelBundle) => join(t.dataDir, 'registry', 'bundles', `${b.version}.json`);
    writeFileSync(
      path(changed),
      readFileSync(path(changed), 'utf8').replace(/"weights":"(.)/, (_, c: string) => `"weights":"${c === 'A' ? 'B' : 'A'}`),
    );
    writeFileSync(path(truncated), readFileSync(path(truncated), 'utf8').slice(0, 100));

    const listed = await json('/v1/models', { key: t.keys.read });
    assert.equal(listed.status, 200);
    const byVersion = new Map(listed.body.models!.map((m) => [m.version, m]));
    assert.deepEqual(byVersion.get(v1.version)!.aliases, ['champion']);
    assert.equal(byVersion.get(unloadable.version)!.error, undefined, 'intact: listed (its model is built when an alias moves to it)');
    assert.match(byVersion.get(changed.version)!.error!, /^integrity: .*not to its version/);
    assert.match(byVersion.get(truncated.version)!.error!, /^integrity: .*not valid JSON/);
    const one = await json('/v1/models/propensity', { key: t.keys.read });
    assert.equal(one.status, 200);

    for (const [target, why] of [
      [changed, /the bundle was changed after it was made/],
      [truncated, /not valid JSON/],
      [unloadable, /Unknown layer: NoSuchLayer/],
    ] as const) {
      const move = await json('/v1/models/propensity/aliases/champion', { method: 'PUT', body: JSON.stringify({ version: target.version }) });
      assert.equal(move.status, 409, JSON.stringify(move.body));
      assert.equal(move.body.error!.code, 'alias_refused');
      assert.match(move.body.error!.message, why);
      assert.match(move.body.error!.message, new RegExp(`champion stays at ${v1.version}$`));
    }
    const foreign = await json('/v1/models/other-model/aliases/champion', { method: 'PUT', body: JSON.stringify({ version: v1.version }) });
    assert.deepEqual([foreign.status, foreign.body.error!.code], [409, 'alias_refused']);
    assert.equal((await json('/v1/models/propensity', { key: t.keys.read })).body.aliases!.champion, v1.version);
    assert.equal((await predict({ model: 'propensity', user_id: 'alice' })).body.model!.version, v1.version);
  });

  it('never answers score: null: a NaN score is a 422 when the request values cause it, a 500 naming the version when the model does', async () => {
    // Inputs past float32 from opposite sides: the logit is Infinity - Infinity.
    const [w1, w2] = weightsOf(v1);
    const values = { logins_7d: 1e300 * Math.sign(w1!), spend_30d: -1e300 * Math.sign(w2!) };
    const pushed = await predict({ model: 'propensity', user_id: 'alice', values });
    assert.equal(pushed.status, 422, JSON.stringify(pushed.body));
    assert.equal(pushed.body.error!.code, 'score_non_finite');
    assert.match(pushed.body.error!.message, new RegExp(`model propensity version ${v1.version} gave a score of NaN.*values for logins_7d, spend_30d`));

    // A model that passes every check (a zero weight is finite) but multiplies a huge stored spend by it: 0 x Infinity.
    const fragile = withWeight(await createBundle('fragile', model, features), 1, 0);
    await publish(fragile, { url: t.service.url, key: t.keys.admin, alias: 'champion' });
    await t.post('/v1/events', [event('h2', { user_id: 'whale', event: 'purchase', props: { amount: 1e300 } })]);
    let res: Awaited<ReturnType<typeof predict>> | undefined;
    for (let i = 0; i < 100; i++) {
      // Until the features consumer has the purchase, whale is scored on spend 0 (or unknown).
      res = await predict({ model: 'fragile', user_id: 'whale' });
      if (res.status !== 200 && res.status !== 404) break;
      await sleep(50);
    }
    assert.equal(res!.status, 500, JSON.stringify(res!.body));
    assert.equal(res!.body.error!.code, 'score_non_finite');
    assert.match(res!.body.error!.message, new RegExp(`model fragile version ${fragile.version} gave a score of NaN`));
    const alice = await predict({ model: 'fragile', user_id: 'alice' });
    assert.equal(alice.status, 200);
    assert.ok(Number.isFinite(alice.body.score), 'other users are scored');
  });
});
