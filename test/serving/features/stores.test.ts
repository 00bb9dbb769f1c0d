import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { MemoryOnlineStore } from '../../../src/serving/features/memory-store.js';
import { RedisOnlineStore } from '../../../src/serving/features/redis-store.js';
import type { UserState } from '../../../src/workbench/features/online.js';
import { serverAvailable } from '../../helpers/servers.js';
import { tempDir } from '../../helpers/tmp.js';
import { stretch } from '../../helpers/wait.js';
import { onlineStoreConformance } from './conformance.js';

const dir = tempDir('wb-online-');
const snapshot = join(dir, 'online.snapshot');
onlineStoreConformance('memory', async () => MemoryOnlineStore.open(snapshot));

const redisUrl = process.env.WB_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
onlineStoreConformance('redis', async () => {
  const ok = await serverAvailable('Redis', redisUrl);
  // A prefix of this run's own, so that tests never touch a real deployment's keys.
  return ok === true ? RedisOnlineStore.open(redisUrl, `wb:test:${process.pid}:`) : ok;
});

describe('MemoryOnlineStore', () => {
  it('sets aside a snapshot that fails its checksum, says so, and starts empty', async () => {
    const path = join(tempDir('wb-online-bad-'), 'online.snapshot');
    const store = MemoryOnlineStore.open(path);
    await store.reset('v1');
    await store.write(new Map([['u1', [[]]]]), 7);
    await store.flush();
    writeFileSync(path, readFileSync(path, 'utf8').replace('"offset":7', '"offset":9'));
    const warnings: string[] = [];
    const reopened = MemoryOnlineStore.open(path, { warn: (m) => warnings.push(m) });
    assert.equal(await reopened.position(), undefined);
    assert.match(warnings[0] ?? '', /fails its checksum; kept as .*corrupt-\d+, rebuilding the states from the event log/);
    assert.ok(readdirSync(join(path, '..')).some((f) => f.startsWith('online.snapshot.corrupt-')));
  });

  it('writes a large snapshot a few milliseconds at a time, consistent with the offset it started at', async () => {
    const path = join(tempDir('wb-online-large-'), 'online.snapshot');
    const store = MemoryOnlineStore.open(path);
    await store.reset('v1');
    // 20,000 users with a day of hourly buckets each: about 20 MB of JSON.
    const state = (u: number): UserState => [Array.from({ length: 24 }, (_, h) => [h * 3_600_000, u % 7, u * 1.5, 0, h]).flat()];
    const users = new Map(Array.from({ length: 20_000 }, (_, u) => [`user-${u}`, state(u)] as const));
    await store.write(users, 100);
    const started = performance.now();
    const oneStringify = JSON.stringify([...users]).length > 0 ? performance.now() - started : 0;
    let bound = 0;
    let longest = Number.POSITIVE_INFINITY;
    // Best of three, the bound scaled by how loaded the machine is right now (see stretch()).
    for (let attempt = 0; attempt < 3 && longest > bound; attempt++) {
      bound = 25 * Math.min(4, stretch());
      const delay = monitorEventLoopDelay({ resolution: 1 });
      delay.enable();
      const flushed = store.flush();
      // A write while the snapshot is being written (it has started: it yields every few ms) belongs to the next one.
      await new Promise((resolve) => setImmediate(resolve));
      await store.write(new Map([['user-0', undefined]]), 101 + 2 * attempt);
      await flushed;
      delay.disable();
      longest = delay.max / 1e6;
      const written = JSON.parse(readFileSync(path, 'utf8').trimEnd().split('\n')[0]!) as { offset: number; users: [string, UserState][] };
      assert.equal(written.offset, 100 + 2 * attempt, 'the offset of the moment the snapshot started');
      assert.equal(written.users.length, 20_000, 'the users of that moment: user-0 was removed after it');
      await store.write(new Map([['user-0', state(0)]]), 102 + 2 * attempt);
    }
    console.log(`longest event-loop block while flushing ~20 MB: ${longest.toFixed(1)} ms (one synchronous stringify: ${oneStringify.toFixed(1)} ms)`);
    assert.ok(longest <= bound, `the event loop was held ${longest.toFixed(1)} ms (bound ${bound.toFixed(0)} ms)`);
    await store.flush();
    const reopened = MemoryOnlineStore.open(path);
    assert.equal(await reopened.size(), 20_000);
    assert.deepEqual(await reopened.position(), await store.position());
    assert.deepEqual(await reopened.peek('user-19999'), state(19_999));
  });

  it('does not rewrite its snapshot for batches that changed no state, until a state changes, ten intervals pass or it closes', async () => {
    const path = join(tempDir('wb-online-offset-'), 'online.snapshot');
    const store = MemoryOnlineStore.open(path, { snapshotEveryMs: 0 });
    await store.reset('v1');
    const st = (n: number): UserState => [[0, n, n, n, n]];
    await store.write(new Map([['u1', st(1)]]), 10);
    const offsetOnDisk = () => (JSON.parse(readFileSync(path, 'utf8').trimEnd().split('\n')[0]!) as { offset: number }).offset;
    assert.equal(offsetOnDisk(), 10);
    // Prediction records: the offset moves, no state changes (ten intervals of 0 ms pass at once, so
    // an interval of its own is used for this part).
    const slow = MemoryOnlineStore.open(path, { snapshotEveryMs: 60_000 });
    (slow as unknown as { lastSnapshot: number }).lastSnapshot = Date.now() - 61_000;
    for (let offset = 11; offset <= 40; offset++) await slow.write(new Map(), offset);
    assert.equal(offsetOnDisk(), 10, 'not rewritten for an offset alone');
    assert.deepEqual(await slow.position(), { setVersion: 'v1', offset: 40 });
    await slow.write(new Map([['u2', st(2)]]), 41);
    assert.equal(offsetOnDisk(), 41, 'a change of state is written at the next interval, with the offset');
    (slow as unknown as { lastSnapshot: number }).lastSnapshot = Date.now() - 61_000;
    await slow.write(new Map(), 42);
    assert.equal(offsetOnDisk(), 41);
    await slow.close();
    assert.equal(offsetOnDisk(), 42, 'closing writes the offset too');
    const reopened = MemoryOnlineStore.open(path);
    assert.deepEqual(await reopened.position(), { setVersion: 'v1', offset: 42 });
    assert.deepEqual(await reopened.peek('u2'), st(2));
  });

  it('snapshots on its own once the interval has passed', async () => {
    const path = join(tempDir('wb-online-interval-'), 'online.snapshot');
    const store = MemoryOnlineStore.open(path, { snapshotEveryMs: 0 });
    await store.reset('v1');
    await store.write(new Map([['u1', [[]]]]), 1);
    assert.ok(existsSync(path), 'written without flush()');
  });
});

describe('RedisOnlineStore', () => {
  it('names the unreachable server and how to start Redis', async () => {
    await assert.rejects(RedisOnlineStore.open('redis://127.0.0.1:1/0'), /Cannot reach Redis at redis:\/\/127\.0\.0\.1:1\/0 .*start it/);
  });
});
