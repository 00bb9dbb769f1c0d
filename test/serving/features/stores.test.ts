import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MemoryOnlineStore } from '../../../src/serving/features/memory-store.js';
import { RedisOnlineStore } from '../../../src/serving/features/redis-store.js';
import { serverAvailable } from '../../helpers/servers.js';
import { tempDir } from '../../helpers/tmp.js';
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
