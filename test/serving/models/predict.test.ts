import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { createBundle, type ModelBundle } from '../../../src/workbench/models/bundle.js';
import { columnsFor } from '../../../src/workbench/models/preprocess.js';
import { publish } from '../../../src/workbench/models/publish.js';
import { trainClassifier, type Classifier } from '../../../src/workbench/models/train.js';
import { Random } from '../../../src/workbench/random.js';
import { event, startTestService, type TestService } from '../../helpers/service.js';
import { sleep } from '../../helpers/wait.js';

const features = featureSet([
  { name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 },
  { name: 'spend_30d', source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: '30d', default: 0 },
]);
const r = new Random(21);
const rows = Array.from({ length: 800 }, () => {
  const logins = r.int(8);
  const spend = r.next() * 100;
  return { logins_7d: logins, spend_30d: spend, bought: r.bernoulli(1 / (1 + Math.exp(-(0.5 * logins + 0.02 * spend - 2)))) ? 1 : 0 };
});

interface Prediction {
  score: number;
  model: { name: string; version: string; alias?: string };
  features: Record<string, number>;
  defaulted: string[];
}

describe('publishing models and serving predictions', { timeout: 120_000 }, () => {
  let t: TestService;
  let first: Classifier;
  let second: Classifier;
  let v1: ModelBundle;
  let v2: ModelBundle;
  before(async () => {
    t = await startTestService();
    first = await trainClassifier(rows, 'bought', columnsFor(features), { seed: 1, maxEpochs: 30 });
    second = await trainClassifier(rows, 'bought', columnsFor(features), { model: 'mlp', hidden: [8], seed: 2, maxEpochs: 30 });
    v1 = await createBundle('propensity', first, features, { lineage: { source: 'test' } });
    v2 = await createBundle('propensity', second, features, { lineage: { source: 'test', parent: v1.version } });
  });
  after(async () => {
    first?.dispose();
    second?.dispose();
    await t?.stop();
  });
  const predict = async (body: Record<string, unknown>, key = t.keys.read) => {
    const res = await t.call('/v1/predict', { method: 'POST', key, body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    return { status: res.status, body: (await res.json()) as Prediction & { error?: { code: string; message: string } } };
  };

  it('publishes with an admin key only, and refuses a tampered bundle', async () => {
    await assert.rejects(publish(v1, { url: t.service.url, key: t.keys.read }), /failed \(403\)/);
    const tampered = { ...v1, label: 'something else' };
    await assert.rejects(
      publish(tampered, { url: t.service.url, key: t.keys.admin }),
      (err: Error & { code?: string }) => err.code === 'bundle_integrity' && /changed after it was made/.test(err.message),
    );
    const result = await publish(v1, { url: t.service.url, key: t.keys.admin, alias: 'champion' });
    assert.deepEqual([result.version, result.alias, result.from], [v1.version, 'champion', null]);
    assert.deepEqual(result.features_added.sort(), ['logins_7d', 'spend_30d']);
  });

  it("scores a user from the online features with the bundle's preprocessing, exactly as the notebook's model does", async () => {
    const now = Date.now();
    await t.post('/v1/events', [
      event('p1', { user_id: 'alice', event: 'login', time: new Date(now - 5000).toISOString() }),
      event('p2', { user_id: 'alice', event: 'login', time: new Date(now - 4000).toISOString() }),
      event('p3', { user_id: 'alice', event: 'purchase', time: new Date(now - 3000).toISOString(), props: { amount: 42 } }),
    ]);
    let p: Prediction | undefined;
    for (let i = 0; i < 100 && p?.features.logins_7d !== 2; i++) {
      p = (await predict({ model: 'propensity', user_id: 'alice' })).body;
      await sleep(50);
    }
    assert.deepEqual(p!.features, { logins_7d: 2, spend_30d: 42 });
    assert.deepEqual(p!.model, { name: 'propensity', version: v1.version, alias: 'champion' });
    assert.equal(p!.score, first.predict([{ logins_7d: 2, spend_30d: 42 }])[0]);
    // Request-time values override the store; features without events use their defaults, reported.
    const withValues = (await predict({ model: 'propensity', user_id: 'alice', values: { spend_30d: 0 } })).body;
    assert.equal(withValues.score, first.predict([{ logins_7d: 2, spend_30d: 0 }])[0]);
    await t.post('/v1/events', [event('p4', { user_id: 'bob', event: 'login' })]);
    await sleep(300);
    const bob = (await predict({ model: 'propensity', user_id: 'bob' })).body;
    assert.deepEqual(bob.defaulted, ['spend_30d']);
    // The answer is JSON with its length and the handler's time, as clients and the benchmark read it.
    const res = await t.call('/v1/predict', {
      method: 'POST',
      key: t.keys.read,
      body: JSON.stringify({ model: 'propensity', user_id: 'bob' }),
      headers: { 'content-type': 'application/json' },
    });
    const text = await res.text();
    assert.equal(res.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(Number(res.headers.get('content-length')), Buffer.byteLength(text));
    assert.match(res.headers.get('server-timing') ?? '', /^predict;dur=\d+\.\d{3}$/);
    assert.deepEqual((JSON.parse(text) as Prediction).features, bob.features);
  });

  it('answers unknown models, aliases, versions and users with a clear 404 or 400', async () => {
    const unknownModel = await predict({ model: 'nope', user_id: 'alice' });
    assert.equal(unknownModel.status, 404);
    assert.match(unknownModel.body.error!.message, /no model named nope has been published/);
    const unknownAlias = await predict({ model: 'propensity', alias: 'canary', user_id: 'alice' });
    assert.equal(unknownAlias.status, 404);
    assert.match(unknownAlias.body.error!.message, /has no alias canary \(it has: champion\)/);
    assert.equal((await predict({ model: 'propensity', version: '0123456789abcdef', user_id: 'alice' })).status, 404);
    const unknownUser = await predict({ model: 'propensity', user_id: 'never-seen' });
    assert.equal(unknownUser.status, 404);
    assert.match(unknownUser.body.error!.message, /unknown user never-seen/);
    assert.equal((await predict({ model: 'propensity', user_id: 'alice', alias: 'champion', version: v1.version })).status, 400);
    assert.equal((await predict({ model: 'propensity', user_id: 'alice' }, 'wb_bad_key')).status, 401);
  });

  it('scores an unknown user only on values for every feature, answers 404 otherwise, and never creates the user', async () => {
    const all = { logins_7d: 3, spend_30d: 12.5 };
    const bare = await predict({ model: 'propensity', user_id: 'newbie' });
    assert.equal(bare.status, 404);
    assert.match(bare.body.error!.message, /unknown user newbie: .*send values for every feature the model reads \(missing: logins_7d, spend_30d\)/);
    const partial = await predict({ model: 'propensity', user_id: 'newbie', values: { logins_7d: 3 } });
    assert.equal(partial.status, 404, 'a default for the rest is no score');
    assert.match(partial.body.error!.message, /unknown user newbie: .*\(missing: spend_30d\)/);

    const logBefore = (await (await t.call('/v1/log', { key: t.keys.read })).json()) as { next: number };
    const scored = await predict({ model: 'propensity', user_id: 'newbie', values: all });
    assert.equal(scored.status, 200, JSON.stringify(scored.body));
    assert.equal(scored.body.score, first.predict([all])[0]);
    assert.deepEqual(scored.body.defaulted, []);
    // The prediction event reaches the log and the aggregates (the dashboard's source)...
    let position = 0;
    for (let i = 0; i < 100 && position <= logBefore.next; i++) {
      await sleep(50);
      position = ((await (await t.call('/v1/aggregates?window=1h&dimension=country', { key: t.keys.read })).json()) as { position: number }).position;
    }
    assert.ok(position > logBefore.next, `the aggregates reached ${position}, past the prediction at ${logBefore.next}`);
    // ...without creating the user: not in OLTP, not counted as a country `unknown` on the dashboard.
    const { openOltp } = await import('../../../src/workbench/oltp/index.js');
    const oltp = await openOltp(undefined, t.dataDir);
    try {
      assert.equal((await oltp.getUsers(['newbie'])).size, 0, 'a prediction created an OLTP user');
    } finally {
      await oltp.close();
    }
    const snapshot = await dashboardSnapshot(t);
    assert.ok(!('unknown' in (snapshot.perMinute.country ?? {})), `the dashboard counts country unknown: ${JSON.stringify(snapshot.perMinute.country)}`);
    // Still unknown: the next prediction without values is a 404 again.
    assert.equal((await predict({ model: 'propensity', user_id: 'newbie' })).status, 404);
  });

  it('swaps to a new version under load without a failed request, and rolls back by moving the alias', async () => {
    let stop = false;
    const seen: { version: string; at: number }[] = [];
    let failures = 0;
    const client = async () => {
      while (!stop) {
        const res = await predict({ model: 'propensity', user_id: 'alice' });
        if (res.status !== 200) failures++;
        else seen.push({ version: res.body.model.version, at: Date.now() });
      }
    };
    const clients = [client(), client(), client(), client()];
    await sleep(200);
    const publishedAt = Date.now();
    await publish(v2, { url: t.service.url, key: t.keys.admin, alias: 'champion', reason: 'mlp' });
    const answeredAt = Date.now();
    await sleep(300);
    stop = true;
    await Promise.all(clients);
    assert.equal(failures, 0);
    const firstNew = seen.find((s) => s.version === v2.version);
    assert.ok(firstNew, 'the new version answered');
    assert.ok(firstNew.at - publishedAt < 1000, `first prediction from the new version ${firstNew.at - publishedAt} ms after publishing`);
    assert.ok(
      seen.filter((s) => s.at > answeredAt + 50).every((s) => s.version === v2.version),
      'only the new version after the swap',
    );

    // A refused publish (a changed bundle, a feature that conflicts) leaves the champion serving.
    const conflicting = await createBundle('propensity', first, featureSet([{ ...features[0]!, window: '30d' }, features[1]!]));
    await assert.rejects(
      publish(conflicting, { url: t.service.url, key: t.keys.admin, alias: 'champion' }),
      /failed \(409\).*logins_7d is already served with another definition/,
    );
    await assert.rejects(
      publish({ ...v1, kind: 'mlp' }, { url: t.service.url, key: t.keys.admin, alias: 'champion' }),
      /refused before upload \(400\).*changed after it was made/,
    );
    assert.equal((await predict({ model: 'propensity', user_id: 'alice' })).body.model.version, v2.version);

    const rollback = await t.call('/v1/models/propensity/aliases/champion', {
      method: 'PUT',
      key: t.keys.admin,
      body: JSON.stringify({ version: v1.version, reason: 'rollback' }),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(rollback.status, 200);
    assert.equal((await predict({ model: 'propensity', user_id: 'alice' })).body.model.version, v1.version);
    const model = (await (await t.call('/v1/models/propensity', { key: t.keys.read })).json()) as {
      history: { from: string | null; to: string; reason?: string }[];
    };
    assert.deepEqual(
      model.history.map((h) => h.reason ?? null),
      [null, 'mlp', 'rollback'],
    );
  });

  it('logs every prediction as an event', async () => {
    const before = (await (await t.call('/v1/log', { key: t.keys.read })).json()) as { next: number };
    for (let i = 0; i < 5; i++) await predict({ model: 'propensity', user_id: 'alice' });
    let points: { event: string; count: number }[] = [];
    for (let i = 0; i < 50; i++) {
      const res = (await (await t.call('/v1/aggregates?window=1h&event=prediction&dimension=all', { key: t.keys.read })).json()) as {
        points: { event: string; count: number }[];
      };
      points = res.points;
      const log = (await (await t.call('/v1/log', { key: t.keys.read })).json()) as { next: number };
      if (log.next >= before.next + 5) break;
      await sleep(50);
    }
    assert.ok(points.reduce((n, p) => n + p.count, 0) >= 5, JSON.stringify(points));
  });
});

/** The dashboard's first snapshot from `/v1/stream` (what the page draws). */
async function dashboardSnapshot(t: TestService): Promise<{ perMinute: Record<string, Record<string, unknown>> }> {
  const abort = new AbortController();
  const res = await t.call('/v1/stream', { key: t.keys.read, signal: abort.signal });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended before a snapshot: ${text}`);
      text += decoder.decode(value, { stream: true });
      const m = /event: snapshot\ndata: (.*)\n\n/.exec(text);
      if (m) return JSON.parse(m[1]!) as { perMinute: Record<string, Record<string, unknown>> };
    }
  } finally {
    abort.abort();
  }
}

describe('a service started over a registry with models in it', { timeout: 60_000 }, () => {
  it('serves the features of every aliased model, so a model saved by a notebook predicts at once', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const { ModelRegistry } = await import('../../../src/workbench/models/registry.js');
    const dir = mkdtempSync(join(tmpdir(), 'wb-registry-start-'));
    const model = await trainClassifier(rows, 'bought', columnsFor(features), { seed: 1, maxEpochs: 5 });
    const bundle = await createBundle('offline-saved', model, features);
    const registry = ModelRegistry.open(join(dir, 'registry'));
    registry.put(bundle);
    registry.setAlias('offline-saved', 'champion', bundle.version);
    const t = await startTestService({}, dir);
    try {
      await t.post('/v1/events', [event('s1', { user_id: 'carol', event: 'login' })]);
      let res: Response | undefined;
      for (let i = 0; i < 50; i++) {
        res = await t.call('/v1/predict', {
          method: 'POST',
          key: t.keys.read,
          body: JSON.stringify({ model: 'offline-saved', user_id: 'carol' }),
          headers: { 'content-type': 'application/json' },
        });
        const body = (await res.clone().json()) as Prediction;
        if (res.status === 200 && body.features.logins_7d === 1) break;
        await sleep(50);
      }
      const body = (await res!.json()) as Prediction;
      assert.equal(res!.status, 200, JSON.stringify(body));
      assert.equal(body.score, model.predict([{ logins_7d: 1, spend_30d: 0 }])[0]);
    } finally {
      model.dispose();
      await t.service.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a model saved to the registry while the service runs', { timeout: 60_000 }, () => {
  it('is followed within the refresh interval, with its new features computed from the log first', async () => {
    const t = await startTestService({ modelRefreshMs: 200 });
    const wide = featureSet([...features, { name: 'logins_lifetime', source: { event: 'login' }, aggregation: 'count', window: 'lifetime', default: 0 }]);
    const wideRows = rows.map((r) => ({ ...r, logins_lifetime: r.logins_7d * 2 }));
    const model = await trainClassifier(wideRows, 'bought', columnsFor(wide), { seed: 1, maxEpochs: 5 });
    try {
      await t.post('/v1/events', [
        event('j1', { user_id: 'dave', event: 'login' }),
        event('j2', { user_id: 'dave', event: 'login', time: new Date(Date.now() - 2000).toISOString() }),
      ]);
      const bundle = await createBundle('job-made', model, wide, { lineage: { source: 'job:test' } });
      const { ModelRegistry } = await import('../../../src/workbench/models/registry.js');
      const { join } = await import('node:path');
      const registry = ModelRegistry.open(join(t.dataDir, 'registry'));
      registry.put(bundle);
      registry.setAlias('job-made', 'champion', bundle.version, { by: 'a job' });
      let body: Prediction | undefined;
      for (let i = 0; i < 100; i++) {
        const res = await t.call('/v1/predict', {
          method: 'POST',
          key: t.keys.read,
          body: JSON.stringify({ model: 'job-made', user_id: 'dave' }),
          headers: { 'content-type': 'application/json' },
        });
        if (res.status === 200) {
          body = (await res.json()) as Prediction;
          if (body.features.logins_lifetime === 2) break;
        }
        await sleep(50);
      }
      assert.deepEqual(body?.features, { logins_7d: 2, spend_30d: 0, logins_lifetime: 2 });
      assert.equal(body!.score, model.predict([{ logins_7d: 2, spend_30d: 0, logins_lifetime: 2 }])[0]);
    } finally {
      model.dispose();
      await t.stop();
    }
  });
});

describe('precomputed predictions', { timeout: 60_000 }, () => {
  it('scores a user on login and writes the score to the OLTP predictions table', async () => {
    const t = await startTestService({ precompute: [{ event: 'login', model: 'precomputed' }] });
    const model = await trainClassifier(rows, 'bought', columnsFor(features), { seed: 1, maxEpochs: 5 });
    const { openOltp } = await import('../../../src/workbench/oltp/index.js');
    const oltp = await openOltp(undefined, t.dataDir);
    try {
      const bundle = await createBundle('precomputed', model, features);
      await publish(bundle, { url: t.service.url, key: t.keys.admin, alias: 'champion' });
      await t.post('/v1/events', [
        event('pc1', { user_id: 'erin', event: 'purchase', props: { amount: 30 } }),
        event('pc2', { user_id: 'erin', event: 'login' }),
        event('pc3', { user_id: 'frank', event: 'purchase', props: { amount: 5 } }),
      ]);
      let found: { user_id: string; score: number; version: string; model: string }[] = [];
      for (let i = 0; i < 100 && found.length === 0; i++) {
        await sleep(50);
        found = [];
        for await (const batch of oltp.scan('predictions')) found.push(...batch);
      }
      assert.deepEqual(
        found.map((p) => [p.model, p.user_id, p.version]),
        [['precomputed', 'erin', bundle.version]],
        'only the user who logged in',
      );
      // Scored with the login itself folded in: logins_7d = 1, spend_30d = 30.
      assert.equal(found[0]!.score, model.predict([{ logins_7d: 1, spend_30d: 30 }])[0]);
      // Scored once: one precompute consumer, counted once in the metrics.
      await sleep(300);
      const metricsText = await (await t.call('/metrics', { key: t.keys.read })).text();
      assert.match(metricsText, /wb_predictions_total\{model="precomputed"\} 1\n/);
    } finally {
      model.dispose();
      await oltp.close();
      await t.stop();
    }
  });

  it('scores each login on the values its user had just after it, not when the precompute gets to it', async () => {
    const t = await startTestService({ precompute: [{ event: 'login', model: 'at-login' }] });
    const model = await trainClassifier(rows, 'bought', columnsFor(features), { seed: 1, maxEpochs: 5 });
    const { openOltp } = await import('../../../src/workbench/oltp/index.js');
    const oltp = await openOltp(undefined, t.dataDir);
    try {
      const bundle = await createBundle('at-login', model, features);
      await publish(bundle, { url: t.service.url, key: t.keys.admin, alias: 'champion' });
      // In one batch: gina logs in twice, then buys; the precompute reads after all of it is folded.
      const at = Date.now() - 3 * 3_600_000;
      await t.post('/v1/events', [
        event('al1', { user_id: 'gina', event: 'login', time: new Date(at).toISOString() }),
        event('al2', { user_id: 'gina', event: 'login', time: new Date(at + 3_600_000).toISOString() }),
        event('al3', { user_id: 'gina', event: 'purchase', time: new Date(at + 2 * 3_600_000).toISOString(), props: { amount: 30 } }),
      ]);
      let found: { user_id: string; score: number; created_at: string }[] = [];
      for (let i = 0; i < 100 && found.length === 0; i++) {
        await sleep(50);
        found = [];
        for await (const batch of oltp.scan('predictions')) found.push(...batch);
      }
      assert.equal(found.length, 1);
      // The second login's moment: both logins in, the later purchase not.
      assert.equal(found[0]!.created_at, new Date(at + 3_600_000 + 1).toISOString());
      assert.equal(found[0]!.score, model.predict([{ logins_7d: 2, spend_30d: 0 }])[0]);
      assert.notEqual(found[0]!.score, model.predict([{ logins_7d: 2, spend_30d: 30 }])[0], 'the purchase after the login changes the score');
      // The table keeps the latest login's score, counted once.
      await sleep(300);
      const metricsText = await (await t.call('/metrics', { key: t.keys.read })).text();
      assert.match(metricsText, /wb_predictions_total\{model="at-login"\} 1\n/);
      // Each login's score is a prediction event too, at its moment, with an id from its login's.
      type Logged = { event_id: string; time: string; event: string; props: { score: number; features: Record<string, number> } };
      const logged = async () =>
        (await t.service.log.read(0, 1000)).map((e) => JSON.parse(new TextDecoder().decode(e.payload)) as Logged).filter((e) => e.event === 'prediction');
      let predictions: Logged[] = [];
      for (let i = 0; i < 100 && predictions.length < 2; i++) {
        await sleep(50);
        predictions = await logged();
      }
      assert.deepEqual(
        predictions.map((e) => [e.event_id, e.time, e.props.features.logins_7d, e.props.features.spend_30d]),
        [
          ['prediction-at-login-al1', new Date(at + 1).toISOString(), 1, 0],
          ['prediction-at-login-al2', new Date(at + 3_600_000 + 1).toISOString(), 2, 0],
        ],
      );
      assert.equal(predictions[1]!.props.score, found[0]!.score);
    } finally {
      model.dispose();
      await oltp.close();
      await t.stop();
    }
  });
});
