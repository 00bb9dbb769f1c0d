import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FeatureUpdater } from '../../../src/serving/features/updater.js';
import { MemoryOnlineStore } from '../../../src/serving/features/memory-store.js';
import type { EnrichedEvent } from '../../../src/workbench/event.js';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { event, startTestService, type TestService } from '../../helpers/service.js';
import { until } from '../../helpers/wait.js';

interface FeatureAnswer {
  values: Record<string, number | string[]>;
  defaulted: string[];
  lag: number;
  feature_set: string;
}

const definitions = [
  { name: 'purchases_7d', source: { event: 'purchase' }, aggregation: 'count', window: '7d', default: 0 },
  { name: 'spend_30d', source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: '30d', default: 0 },
  { name: 'last_items', source: { event: 'purchase' }, aggregation: 'last_n', prop: 'item', n: 2, window: 'lifetime', default: [] },
];

describe('the online feature store in the service', { timeout: 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'wb-features-'));
  let t: TestService;
  after(async () => {
    await t?.service.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const features = async (user: string) => {
    const res = await t.call(`/v1/features/${encodeURIComponent(user)}`, { key: t.keys.read });
    assert.equal(res.status, 200);
    return (await res.json()) as FeatureAnswer;
  };
  const caughtUp = (user: string, check: (a: FeatureAnswer) => boolean) =>
    until(`features of ${user}`, async () => {
      const a = await features(user);
      return a.lag === 0 && check(a) ? a : undefined;
    });
  const register = (body: unknown, key = t.keys.admin) =>
    t.call('/v1/features', { method: 'POST', key, body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });

  it('registers definitions with an admin key, refusing bad ones and conflicting names', async () => {
    t = await startTestService({}, dir);
    assert.equal((await register({ features: definitions }, t.keys.read)).status, 403);
    const bad = await register({ features: [{ ...definitions[0], aggregation: 'median' }] });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: { message: string } }).error.message, /feature purchases_7d: aggregation/);
    const ok = await register({ features: definitions });
    assert.equal(ok.status, 200);
    assert.deepEqual(((await ok.json()) as { added: string[] }).added, ['purchases_7d', 'spend_30d', 'last_items']);
    const again = (await (await register({ features: definitions.slice(0, 1) })).json()) as { added: string[] };
    assert.deepEqual(again.added, []);
    const conflict = await register({ features: [{ ...definitions[0], window: '30d' }] });
    assert.equal(conflict.status, 409);
    assert.equal(((await conflict.json()) as { error: { code: string } }).error.code, 'conflict');
    const listed = (await (await t.call('/v1/features', { key: t.keys.read })).json()) as { features: { name: string; version: string }[]; store: string };
    assert.deepEqual(
      listed.features.map((f) => f.name),
      ['purchases_7d', 'spend_30d', 'last_items'],
    );
    assert.equal(listed.store, 'memory');
  });

  it('serves values updated by ingested events, with defaults reported for a user without events', async () => {
    const now = Date.now();
    const at = (msAgo: number) => new Date(now - msAgo).toISOString();
    await t.post('/v1/events', [
      event('f1', { user_id: 'buyer', event: 'purchase', time: at(60_000), props: { amount: 10, item: 'mug' } }),
      event('f2', { user_id: 'buyer', event: 'purchase', time: at(30_000), props: { amount: 5.5, item: 'tea' } }),
      event('f3', { user_id: 'buyer', event: 'login', time: at(20_000) }),
    ]);
    const a = await caughtUp('buyer', (x) => x.values.purchases_7d === 2);
    assert.deepEqual(a.values, { purchases_7d: 2, spend_30d: 15.5, last_items: ['tea', 'mug'] });
    assert.deepEqual(a.defaulted, []);
    const nobody = await features('nobody');
    assert.deepEqual(nobody.values, { purchases_7d: 0, spend_30d: 0, last_items: [] });
    assert.deepEqual(nobody.defaulted.sort(), ['last_items', 'purchases_7d', 'spend_30d']);
    const bad = await t.call(`/v1/features/buyer?at=yesterday`, { key: t.keys.read });
    assert.equal(bad.status, 400);
  });

  it('resumes after a restart without counting an event twice, and rebuilds from the log for a new feature', async () => {
    await t.service.stop();
    t = await startTestService({}, dir);
    await t.post('/v1/events', [
      event('f4', { user_id: 'buyer', event: 'purchase', time: new Date(Date.now() - 1000).toISOString(), props: { amount: 1, item: 'pen' } }),
    ]);
    const a = await caughtUp('buyer', (x) => x.values.purchases_7d === 3);
    assert.deepEqual(a.values, { purchases_7d: 3, spend_30d: 16.5, last_items: ['pen', 'tea'] });

    // A feature registered now covers the history already in the log, and is served once the
    // registration answers; the features served before kept their values throughout.
    const before = a.feature_set;
    const registering = register({ features: [{ name: 'logins_1h', source: { event: 'login' }, aggregation: 'count', window: '1h', default: 0 }] });
    const during = await features('buyer');
    assert.equal(during.values.purchases_7d, 3, 'the current set keeps serving while the new one is built');
    const res = (await (await registering).json()) as { added: string[]; version: string };
    assert.deepEqual(res.added, ['logins_1h']);
    assert.notEqual(res.version, before);
    const b = await features('buyer');
    assert.equal(b.feature_set, res.version);
    assert.deepEqual(b.values, { purchases_7d: 3, spend_30d: 16.5, last_items: ['pen', 'tea'], logins_1h: 1 });
    const log = (await (await t.call('/v1/log', { key: t.keys.read })).json()) as { consumers: { name: string }[] };
    assert.deepEqual(
      log.consumers.map((c) => c.name).filter((n) => n.startsWith('features')),
      ['features'],
    );
  });
});

describe("the features consumer and the service's own records", () => {
  const dir = mkdtempSync(join(tmpdir(), 'wb-updater-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const T = Date.parse('2026-01-05T10:00:00Z');
  const logged = (user_id: string, name: string, at: number): EnrichedEvent => ({
    event_id: `${name}-${user_id}-${at}`,
    time: new Date(at).toISOString(),
    user_id,
    event: name,
    props: {},
    dims: { country: 'GB', device: 'web', tier: 'free', first_seen: new Date(at).toISOString() },
    experiments: {},
    received_at: new Date(at).toISOString(),
  });

  it('neither counts predictions and exposures in features over every event nor writes the users they name', async () => {
    const features = featureSet([
      { name: 'events_1h', source: { event: '*' }, aggregation: 'count', window: '1h', default: 0 },
      { name: 'age', source: { event: '*' }, aggregation: 'first_seen_age', window: 'lifetime', default: -1 },
    ]);
    const store = MemoryOnlineStore.open(join(dir, 'online.snapshot'), { snapshotEveryMs: 3_600_000 });
    const written: string[][] = [];
    const write = store.write.bind(store);
    store.write = (states, offset, from) => {
      written.push([...states.keys()]);
      return write(states, offset, from);
    };
    const updater = new FeatureUpdater(store, features);
    updater.capture(new Set(['prediction']));
    assert.equal(await updater.resumeAt(), 0);
    await updater.handle([logged('active', 'login', T)], 0);
    const before = await store.peek('active');
    await updater.handle(
      [logged('active', 'prediction', T + 1000), logged('active', 'experiment_exposure', T + 2000), logged('scored-only', 'prediction', T + 3000)],
      1,
    );
    assert.deepEqual(written, [['active'], []], 'the second batch changed no state and wrote none');
    assert.equal(await store.peek('active'), before);
    assert.equal(await store.peek('scored-only'), undefined, 'a user only scored has no features');
    assert.equal((await store.position())?.offset, 4);
    // The prediction's capture reads the user as the model saw them, 1 ms after it: one event in the hour.
    assert.deepEqual({ ...updater.captured.get(1)?.values }, { events_1h: 1, age: 1.001 });
  });
});
