import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { MemoryOnlineStore } from '../../../src/serving/features/memory-store.js';
import { RedisOnlineStore } from '../../../src/serving/features/redis-store.js';
import { FeatureUpdater } from '../../../src/serving/features/updater.js';
import { ConsumerRunner } from '../../../src/serving/pipeline/consumer.js';
import { FileEventLog } from '../../../src/serving/pipeline/file-log.js';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { serverAvailable } from '../../helpers/servers.js';
import { tempDir } from '../../helpers/tmp.js';
import { until } from '../../helpers/wait.js';

const redisUrl = process.env.WB_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const features = featureSet([
  { name: 'views_7d', source: { event: 'view' }, aggregation: 'count', window: '7d', default: 0 },
  { name: 'spend_lifetime', source: { event: 'view' }, aggregation: 'sum', prop: 'price', window: 'lifetime', default: 0 },
]);
const T = Date.now() - 3_600_000;
const USERS = 40;
const record = (i: number) =>
  JSON.stringify({
    event_id: `e${i}`,
    time: new Date(T + i * 100).toISOString(),
    user_id: `u${i % USERS}`,
    event: 'view',
    props: { price: (i % 13) + 0.25 },
    dims: { tier: 'free', country: 'GB', device: 'ios', first_seen: '2024-01-01' },
    experiments: {},
    received_at: new Date(T + i * 100).toISOString(),
  });

/** What one updater alone makes of the log: each user's values, the reference. */
async function alone(log: FileEventLog, end: number): Promise<Map<string, unknown>> {
  const updater = new FeatureUpdater(MemoryOnlineStore.open(join(tempDir('wb-shared-ref-'), 'online.snapshot')), features, 'reference');
  const runner = new ConsumerRunner(log, updater, { batchSize: 97, maxWaitMs: 0 });
  await runner.start();
  await until('the reference to reach the end', async () => (runner.offset >= end ? true : undefined));
  await runner.stop();
  const values = new Map<string, unknown>();
  for (let u = 0; u < USERS; u++) values.set(`u${u}`, (await updater.read(`u${u}`, T + 10_000_000)).values);
  return values;
}

describe('a feature set folded by several instances into one Redis store', { timeout: 60_000 }, () => {
  const stores: RedisOnlineStore[] = [];
  after(async () => {
    for (const s of stores) await s.close().catch(() => undefined);
  });

  it('counts every event once, whichever instance folds it, and an instance that joins late or was rebuilt behind follows the store', async (t: TestContext) => {
    const ok = await serverAvailable('Redis', redisUrl);
    if (ok !== true) return t.skip(ok);
    const log = await FileEventLog.open(join(tempDir('wb-shared-log-'), 'log'));
    t.after(() => log.close());
    const prefix = `wb:test:shared:${process.pid}:${Date.now()}:`;
    const open = async () => {
      const s = await RedisOnlineStore.open(redisUrl, prefix);
      stores.push(s);
      return s;
    };
    // Three instances, each with its own consumer and batch size, folding one log into one store as it grows.
    const updaters = [new FeatureUpdater(await open(), features), new FeatureUpdater(await open(), features), new FeatureUpdater(await open(), features)];
    const runners = updaters.slice(0, 2).map((u, i) => new ConsumerRunner(log, u, { batchSize: [50, 173][i]!, maxWaitMs: 0 }));
    for (const r of runners) await r.start();
    const total = 6_000;
    for (let i = 0; i < total; i += 500) {
      await log.append(Array.from({ length: 500 }, (_, k) => record(i + k)));
      if (i === 3_000) {
        // The third joins half-way: it finds the store ahead of it and jumps there.
        runners.push(new ConsumerRunner(log, updaters[2]!, { batchSize: 311, maxWaitMs: 0 }));
        await runners[2]!.start();
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    await until('every instance to reach the end', async () => (runners.every((r) => r.offset >= total) ? true : undefined), 30_000);
    const reference = await alone(log, total);
    assert.deepEqual(await updaters[0]!.store.position(), { setVersion: updaters[0]!.setVersion, offset: total });
    for (const [u, values] of reference) assert.deepEqual((await updaters[1]!.read(u, T + 10_000_000)).values, values, `user ${u}`);
    assert.equal(reference.get('u0') && (reference.get('u0') as { views_7d: number }).views_7d, total / USERS, 'the reference counts each event once');

    // Rebuilt behind them (a reset, as a new instance starting on an empty store would): every instance goes back and folds again.
    await updaters[2]!.store.reset(updaters[2]!.setVersion);
    await log.append(Array.from({ length: 100 }, (_, k) => record(total + k)));
    await until('every instance to reach the new end', async () => (runners.every((r) => r.offset >= total + 100) ? true : undefined), 30_000);
    await until('the store to be whole again', async () => ((await updaters[0]!.store.position())?.offset === total + 100 ? true : undefined), 30_000);
    const again = await alone(log, total + 100);
    for (const [u, values] of again) assert.deepEqual((await updaters[0]!.read(u, T + 10_000_000)).values, values, `user ${u} after the rebuild`);
    for (const r of runners) await r.stop();
    await updaters[0]!.store.drop();
  });
});
