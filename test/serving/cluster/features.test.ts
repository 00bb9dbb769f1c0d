import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { Redis } from 'ioredis';
import { featureSetKeyPrefix } from '../../../src/serving/features/redis-store.js';
import { serviceCluster, type ClusterInstance } from '../../helpers/cluster.js';
import { serverAvailable } from '../../helpers/servers.js';
import { until } from '../../helpers/wait.js';

/**
 * Online features in one Redis shared by several instances, each running the features consumer into
 * it: every event counts once, whichever instance folds it, and an instance registering a set
 * another has built takes it as it is.
 */
const REDIS = process.env.WB_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const harness = serviceCluster('features');

describe('online features in a shared Redis, several instances', { timeout: 120_000 }, () => {
  it('counts each event once on every instance, and a set built by one is taken by the other', async (t: TestContext) => {
    const redisUp = await serverAvailable('Redis', REDIS);
    if (redisUp !== true) {
      if (process.env.CI) throw new Error(`${redisUp}; CI must test the shared feature store (.ci/run starts Redis)`);
      return t.skip(redisUp);
    }
    // A feature name of this run's own: the set's Redis keys are named by its version, so no other run shares them.
    const name = `views_${process.pid}_${Date.now()}`;
    const c = harness.cluster();
    const a = await harness.instance('a', c, { featureStore: REDIS });
    const b = await harness.instance('b', c, { featureStore: REDIS });
    const redis = new Redis(REDIS);
    let version = '';
    t.after(async () => {
      // The keys are in the deployment's namespace: the OLTP schema, as no ?prefix= is given.
      if (version) await redis.del(`${featureSetKeyPrefix(harness.schema, version)}users`, `${featureSetKeyPrefix(harness.schema, version)}position`);
      redis.disconnect();
    });
    const USERS = 23;
    let sent = 0;
    const expected = new Map<string, number>();
    const send = async (count: number) => {
      const time = new Date(Date.now() - 60_000).toISOString();
      const events = Array.from({ length: count }, () => {
        const user = `fu${sent % USERS}`;
        expected.set(user, (expected.get(user) ?? 0) + 1);
        return { event_id: `fe-${sent++}`, time, user_id: user, event: 'page_view', props: { country: 'GB' } };
      });
      const group: ClusterInstance[] = [a, b];
      for (let k = 0; k < events.length; k += 40) {
        const res = await group[(k / 40) % 2]!.post('/v1/events', events.slice(k, k + 40));
        assert.equal(res.status, 200, await res.text());
      }
    };
    const definition = { features: [{ name, source: { event: 'page_view' }, aggregation: 'count', window: '7d', default: 0 }] };
    await send(200);
    const onA = await a.post('/v1/features', definition);
    const onAText = await onA.text();
    assert.equal(onA.status, 200, onAText);
    version = (JSON.parse(onAText) as { version: string }).version;
    await send(200);
    // b registers the set a has built (a model published through a reaches b the same way).
    const onB = await b.post('/v1/features', definition);
    const onBText = await onB.text();
    assert.equal(onB.status, 200, onBText);
    assert.equal((JSON.parse(onBText) as { version: string }).version, version);
    assert.ok(
      b.lines.some((l) => l.msg === 'new features are served' && (l as { from?: string }).from === 'shared store'),
      'b took the set a built',
    );
    await send(400);

    for (const i of [a, b]) {
      await until(`${i.name} to count every event once`, async () => {
        for (const [user, n] of expected) {
          const res = await i.get(`/v1/features/${user}`);
          const answer = (await res.json()) as { values: Record<string, number>; lag: number; feature_set: string };
          if (answer.lag !== 0 || answer.values[name] !== n) return undefined;
          assert.equal(answer.feature_set, version);
        }
        return true;
      });
    }
    // Past the end: nothing more to count (a double count would show here as a value above the expected).
    for (const [user, n] of expected) {
      const answer = (await (await a.get(`/v1/features/${user}`)).json()) as { values: Record<string, number> };
      assert.equal(answer.values[name], n, user);
    }
    const position = JSON.parse((await redis.get(`${featureSetKeyPrefix(harness.schema, version)}position`)) ?? 'null') as { offset: number } | null;
    assert.ok(position && position.offset >= sent, `the store's offset ${position?.offset} covers the ${sent} events`);
  });
});
