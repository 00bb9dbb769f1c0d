import assert from 'node:assert/strict';
import { after, describe, it, type TestContext } from 'node:test';
import { Redis } from 'ioredis';
import { RedisOnlineStore } from '../../../src/serving/features/redis-store.js';
import { StoreMovedError } from '../../../src/serving/features/store.js';
import type { UserState } from '../../../src/workbench/features/online.js';
import { serverAvailable } from '../../helpers/servers.js';

/**
 * A write of more users than one script takes goes in chunks into a staged copy, and the position
 * moves once at the end, by compare-and-set: readers and competing writers never see half of it.
 */
const redisUrl = process.env.WB_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const USERS = 12_000;
const state = (n: number) => [[n, 1]] as unknown as UserState;
const batch = (value: number) => new Map(Array.from({ length: USERS }, (_, i) => [`u${i}`, state(value)] as const));

/** The commands Redis ran on `key` (scripts' calls included), seen through MONITOR. */
async function watch(key: string): Promise<{ commands: string[][]; stop(): void }> {
  const client = new Redis(redisUrl);
  const monitor = await client.monitor();
  const commands: string[][] = [];
  monitor.on('monitor', (_time: string, args: string[]) => {
    if (args.includes(key)) commands.push(args);
  });
  return {
    commands,
    stop: () => {
      monitor.disconnect();
      client.disconnect();
    },
  };
}

describe('RedisOnlineStore: large writes in chunks', { timeout: 60_000 }, () => {
  const prefix = `wb:test:chunked:${process.pid}:${Date.now()}:`;
  const opened: RedisOnlineStore[] = [];
  const open = async (chunkUsers?: number) => {
    const s = await RedisOnlineStore.open(redisUrl, prefix, chunkUsers ? { chunkUsers } : {});
    opened.push(s);
    return s;
  };
  after(async () => {
    for (const s of opened) await s.close().catch(() => undefined);
    if ((await serverAvailable('Redis', redisUrl)) !== true) return;
    const redis = new Redis(redisUrl);
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  it('lands a write of 12,000 users whole, moving the position once, and leaves no stage behind', async (t: TestContext) => {
    const ok = await serverAvailable('Redis', redisUrl);
    if (ok !== true) return t.skip(ok);
    const store = await open();
    await store.reset('set1');
    await store.write(new Map([['before', state(1)]]), 5, 0);
    const watched = await watch(`${prefix}position`);
    await new Promise((r) => setTimeout(r, 100));
    await store.write(batch(2), 10, 5);
    await new Promise((r) => setTimeout(r, 200));
    watched.stop();
    const moves = watched.commands.filter((c) => /^set$/i.test(c[0]!));
    assert.equal(moves.length, 1, `the position moved once: ${JSON.stringify(moves)}`);
    assert.deepEqual(await store.position(), { setVersion: 'set1', offset: 10 });
    assert.equal(await store.size(), USERS + 1);
    assert.deepEqual(await store.peek('u11999'), state(2));
    assert.deepEqual(await store.peek('before'), state(1), 'what the store held before stays');
    const redis = new Redis(redisUrl);
    t.after(() => redis.disconnect());
    assert.deepEqual(await redis.keys(`${prefix}stage:*`), []);

    // Deletes go in chunks too.
    await store.write(new Map(Array.from({ length: USERS }, (_, i) => [`u${i}`, undefined] as const)), 11, 10);
    assert.equal(await store.size(), 1);
    assert.deepEqual(await store.position(), { setVersion: 'set1', offset: 11 });
  });

  it('refuses a chunked write when another writer moved the position first, changing nothing', async (t: TestContext) => {
    const ok = await serverAvailable('Redis', redisUrl);
    if (ok !== true) return t.skip(ok);
    const store = await open();
    const other = await open();
    await store.reset('set2');
    await store.write(new Map([['u1', state(1)]]), 20, 0);

    // The other writer wins before this one starts: refused at once.
    await other.write(new Map([['u1', state(7)]]), 30, 20);
    await assert.rejects(store.write(batch(3), 40, 20), (err: unknown) => err instanceof StoreMovedError && err.position?.offset === 30);
    assert.deepEqual(await store.position(), { setVersion: 'set2', offset: 30 });
    assert.equal(await store.size(), 1);

    // The other writer wins while this one's chunks are being staged: refused at the commit.
    const client = (store as unknown as { redis: Redis }).redis;
    const evaluate = client.eval.bind(client) as (...args: unknown[]) => Promise<unknown>;
    let chunks = 0;
    let raced = false;
    (client as unknown as { eval: (...args: unknown[]) => Promise<unknown> }).eval = async (...args: unknown[]) => {
      const script = String(args[0]);
      if (script.includes("redis.call('HSET', KEYS[1]") && !script.includes('cjson')) chunks++;
      if (script.includes('RENAME') && !raced) {
        raced = true;
        // Meanwhile readers still see the store as it was.
        assert.equal(await store.size(), 1);
        assert.deepEqual(await store.peek('u1'), state(7));
        assert.equal(await store.peek('u5'), undefined);
        await other.write(new Map([['u2', state(8)]]), 35, 30);
      }
      return evaluate(...args);
    };
    await assert.rejects(store.write(batch(4), 40, 30), (err: unknown) => err instanceof StoreMovedError && err.position?.offset === 35);
    assert.ok(raced);
    assert.equal(chunks, 3, 'staged in 3 chunks of up to 5,000 users');
    assert.deepEqual(await store.position(), { setVersion: 'set2', offset: 35 }, "the store's position is the winner's");
    assert.equal(await store.size(), 2, "only the winner's users");
    assert.deepEqual(await store.peek('u1'), state(7));
    assert.deepEqual(await store.peek('u2'), state(8));
    const redis = new Redis(redisUrl);
    t.after(() => redis.disconnect());
    assert.deepEqual(await redis.keys(`${prefix}stage:*`), [], 'the losing stage is gone');

    // A write without `from` (a set coming online after reset) is chunked the same way.
    await store.reset('set2');
    await store.write(batch(5), 50);
    assert.equal(await store.size(), USERS);
    assert.deepEqual(await store.position(), { setVersion: 'set2', offset: 50 });
  });

  it('takes the chunk size as an option', async (t: TestContext) => {
    const ok = await serverAvailable('Redis', redisUrl);
    if (ok !== true) return t.skip(ok);
    await assert.rejects(RedisOnlineStore.open(redisUrl, prefix, { chunkUsers: 0 }), /chunkUsers must be a positive integer/);
    const store = await open(7);
    await store.reset('set3');
    const small = new Map(Array.from({ length: 50 }, (_, i) => [`s${i}`, state(i)] as const));
    await store.write(small, 1, 0);
    assert.equal(await store.size(), 50);
    assert.deepEqual(await store.peek('s49'), state(49));
  });
});
