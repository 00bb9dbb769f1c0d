import assert from 'node:assert/strict';
import { after, describe, it, type TestContext } from 'node:test';
import { Redis } from 'ioredis';
import { featureSetKeyPrefix, parseRedisFeatureStore, RedisOnlineStore } from '../../../src/serving/features/redis-store.js';
import { InputError } from '../../../src/workbench/errors.js';
import type { UserState } from '../../../src/workbench/features/online.js';
import { serverAvailable } from '../../helpers/servers.js';
import { startTestService, type TestService } from '../../helpers/service.js';
import { until } from '../../helpers/wait.js';

/** Each deployment's feature keys in its own namespace, so that several share one Redis database. */
const redisUrl = process.env.WB_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const run = `${process.pid}_${Date.now()}`;

describe('parseRedisFeatureStore', () => {
  it('takes ?prefix= off the URL, else defaults to the OLTP schema, else to no namespace', () => {
    assert.deepEqual(parseRedisFeatureStore('redis://127.0.0.1:6379/0?prefix=shop-eu.v2'), { url: 'redis://127.0.0.1:6379/0', namespace: 'shop-eu.v2' });
    assert.deepEqual(parseRedisFeatureStore('redis://127.0.0.1:6379/0?prefix=a_1', 'wb_prod'), { url: 'redis://127.0.0.1:6379/0', namespace: 'a_1' });
    assert.deepEqual(parseRedisFeatureStore('redis://127.0.0.1:6379/0', 'wb_prod'), { url: 'redis://127.0.0.1:6379/0', namespace: 'wb_prod' });
    assert.deepEqual(parseRedisFeatureStore('redis://127.0.0.1:6379'), { url: 'redis://127.0.0.1:6379', namespace: undefined });
    assert.deepEqual(parseRedisFeatureStore('rediss://h:6380/2?family=6&prefix=x'), { url: 'rediss://h:6380/2?family=6', namespace: 'x' });
    assert.equal(featureSetKeyPrefix(undefined, 'abc'), 'wb:features:abc:', 'keys as before namespaces: existing data stays readable');
    assert.equal(featureSetKeyPrefix('wb_prod', 'abc'), 'wb:wb_prod:features:abc:');
  });

  it('refuses a bad prefix, naming the URL (without its password)', () => {
    for (const bad of ['a:b', 'a b', '', 'x'.repeat(65), 'é', 'a/b', '*']) {
      assert.throws(
        () => parseRedisFeatureStore(`redis://:secret@127.0.0.1:6379/0?prefix=${encodeURIComponent(bad)}`),
        (err: unknown) =>
          err instanceof InputError &&
          err.message.includes('redis://:***@127.0.0.1:6379/0') &&
          !err.message.includes('secret') &&
          /prefix .* must be 1 to 64 letters, digits/.test(err.message),
        JSON.stringify(bad),
      );
    }
    assert.throws(() => parseRedisFeatureStore('redis://127.0.0.1:6379/0?prefix=a&prefix=b'), /give \?prefix= once/);
    assert.throws(() => parseRedisFeatureStore('redis://127.0.0.1:6379/0', 'my:schema'), /OLTP schema "my:schema" .*add \?prefix=NAME/);
  });
});

describe('two deployments on one Redis database', { timeout: 60_000 }, () => {
  const services: TestService[] = [];
  const namespaces = [`nsa_${run}`, `nsb_${run}`];
  after(async () => {
    for (const s of services) await s.stop().catch(() => undefined);
    if ((await serverAvailable('Redis', redisUrl)) !== true) return;
    const redis = new Redis(redisUrl);
    for (const ns of namespaces) {
      const keys = await redis.keys(`wb:${ns}:*`);
      if (keys.length) await redis.del(...keys);
    }
    redis.disconnect();
  });

  it('do not see each other’s states, with the same feature set', async (t: TestContext) => {
    const ok = await serverAvailable('Redis', redisUrl);
    if (ok !== true) return t.skip(ok);
    const [a, b] = [
      await startTestService({ featureStore: `${redisUrl}?prefix=${namespaces[0]}` }),
      await startTestService({ featureStore: `${redisUrl}?prefix=${namespaces[1]}` }),
    ];
    services.push(a, b);
    const name = `views_${run}`;
    const definition = { features: [{ name, source: { event: 'page_view' }, aggregation: 'count', window: '7d', default: 0 }] };
    const versions: string[] = [];
    for (const s of [a, b]) {
      const res = await s.post('/v1/features', definition, s.keys.admin);
      const text = await res.text();
      assert.equal(res.status, 200, text);
      versions.push((JSON.parse(text) as { version: string }).version);
    }
    assert.equal(versions[0], versions[1], 'one set version: without namespaces the two would share its keys');
    const time = new Date(Date.now() - 60_000).toISOString();
    const send = async (s: TestService, user: string, n: number) => {
      const events = Array.from({ length: n }, (_, i) => ({ event_id: `${user}-${i}`, time, user_id: user, event: 'page_view', props: { country: 'GB' } }));
      const res = await s.post('/v1/events', events);
      assert.equal(res.status, 200, await res.text());
    };
    await send(a, 'shared', 3);
    await send(b, 'shared', 5);
    const valueOn = async (s: TestService, user: string) => {
      const answer = (await (await s.call(`/v1/features/${user}`, { key: s.keys.admin })).json()) as { values: Record<string, number>; lag: number };
      return answer.lag === 0 ? answer.values[name] : undefined;
    };
    await until('a to count its 3 events', async () => ((await valueOn(a, 'shared')) === 3 ? true : undefined));
    await until('b to count its 5 events', async () => ((await valueOn(b, 'shared')) === 5 ? true : undefined));

    const redis = new Redis(redisUrl);
    t.after(() => redis.disconnect());
    for (const [i, ns] of namespaces.entries()) {
      const prefix = featureSetKeyPrefix(ns, versions[0]!);
      assert.equal(JSON.parse((await redis.get(`${prefix}position`)) ?? 'null')?.offset, [3, 5][i]);
      assert.equal(await redis.hlen(`${prefix}users`), 1);
    }
    assert.equal(await redis.exists(`${featureSetKeyPrefix(undefined, versions[0]!)}position`), 0, 'nothing outside the namespaces');
  });

  it('stores opened in different namespaces of one database hold different states', async (t: TestContext) => {
    const ok = await serverAvailable('Redis', redisUrl);
    if (ok !== true) return t.skip(ok);
    const open = async (ns: string) => {
      const { url, namespace } = parseRedisFeatureStore(`${redisUrl}?prefix=${ns}`);
      const s = await RedisOnlineStore.open(url, featureSetKeyPrefix(namespace, 'set'));
      t.after(() => s.close());
      return s;
    };
    const [a, b] = [await open(namespaces[0]!), await open(namespaces[1]!)];
    await a.reset('set');
    await b.reset('set');
    await a.write(new Map([['u', [[1]] as unknown as UserState]]), 7, 0);
    assert.equal(await b.peek('u'), undefined);
    assert.deepEqual(await b.position(), { setVersion: 'set', offset: 0 });
    await b.reset('set');
    assert.deepEqual(await a.position(), { setVersion: 'set', offset: 7 }, "b's reset leaves a's states");
    assert.equal(await a.size(), 1);
  });

  it('a service refuses to start with a bad prefix, saying why', async (t: TestContext) => {
    const ok = await serverAvailable('Redis', redisUrl);
    if (ok !== true) return t.skip(ok);
    await assert.rejects(
      startTestService({ featureStore: `${redisUrl}?prefix=no:colons` }),
      (err: unknown) => err instanceof InputError && err.message.includes(redisUrl) && /prefix "no:colons" must be/.test(err.message),
    );
  });
});
