import assert from 'node:assert/strict';
import { after, describe, it, type TestContext } from 'node:test';
import { connect } from 'nats';
import { JetStreamEventLog } from '../../../src/serving/pipeline/jetstream-log.js';
import { serverAvailable } from '../../helpers/servers.js';
import { eventLogConformance } from './conformance.js';

const servers = 'nats://127.0.0.1:4222';
const stream = `WB_TEST_${process.pid}_${Date.now()}`;
const crashStream = `${stream}_CRASH`;
const watchStream = `${stream}_WATCH`;
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

let available: Promise<true | string> | undefined;
const natsAvailable = () => (available ??= serverAvailable('NATS JetStream', servers));

after(async () => {
  if ((await natsAvailable().catch(() => false)) !== true) return;
  const nc = await connect({ servers });
  const jsm = await nc.jetstreamManager();
  for (const name of [stream, `KV_${stream}_offsets`, crashStream, `KV_${crashStream}_offsets`, watchStream, `KV_${watchStream}_offsets`]) {
    await jsm.streams.delete(name).catch(() => undefined); // a test that failed early may not have made it
  }
  await nc.close();
});

eventLogConformance('jetstream', async () => {
  const ok = await natsAvailable();
  return ok === true ? JetStreamEventLog.open({ servers, stream }) : ok;
});

describe('JetStreamEventLog', () => {
  it('keeps every acknowledged record and committed offset when a client dies', async (t: TestContext) => {
    const ok = await natsAvailable();
    if (ok !== true) return t.skip(ok);
    const first = await JetStreamEventLog.open({ servers, stream: crashStream });
    const acked: string[] = [];
    for (let b = 0; b < 5; b++) {
      const batch = Array.from({ length: 20 }, (_, i) => `b${b}-${i}`);
      assert.deepEqual(await first.append(batch.map(enc)), { first: acked.length, next: acked.length + 20 });
      acked.push(...batch);
    }
    await first.commit('archiver', 42);
    // In flight when the connection dies: each batch is either acknowledged (and must survive) or failed.
    const inFlight = Array.from({ length: 5 }, (_, b) => Array.from({ length: 20 }, (_, i) => `late${b}-${i}`));
    const pending = inFlight.map((batch) => first.append(batch.map(enc)));
    await first['nc'].close(); // no drain: the client "crashes"
    const settled = await Promise.allSettled(pending);

    const second = await JetStreamEventLog.open({ servers, stream: crashStream });
    t.after(() => second.close());
    const entries = await second.read(0, 10_000);
    assert.deepEqual(
      entries.map((e) => e.offset),
      entries.map((_, i) => i),
      'offsets are dense from 0',
    );
    assert.deepEqual(
      entries.slice(0, acked.length).map((e) => dec(e.payload)),
      acked,
    );
    for (const [b, result] of settled.entries()) {
      if (result.status !== 'fulfilled') continue;
      const { first: at, next } = result.value;
      assert.deepEqual(
        entries.slice(at, next).map((e) => dec(e.payload)),
        inFlight[b],
        `acknowledged batch ${b} survived`,
      );
    }
    assert.equal(await second.next(), entries.length);
    assert.equal(await second.committed('archiver'), 42);
    assert.deepEqual(await second.append([enc('after crash')]), { first: entries.length, next: entries.length + 1 });
  });

  it('returns at once when reading at the end, and reads across fetch chunks', async (t: TestContext) => {
    const ok = await natsAvailable();
    if (ok !== true) return t.skip(ok);
    const log = await JetStreamEventLog.open({ servers, stream: crashStream });
    t.after(() => log.close());
    await log.append(Array.from({ length: 2500 }, (_, i) => enc(`bulk${i}`)));
    const end = await log.next();
    const t0 = Date.now();
    assert.deepEqual(await log.read(end, 100), []);
    assert.ok(Date.now() - t0 < 100, `a read at the end took ${Date.now() - t0} ms`);
    const tailEntries = await log.read(end - 2500, 5000);
    assert.equal(tailEntries.length, 2500);
    assert.deepEqual(
      tailEntries.map((e) => e.offset),
      Array.from({ length: 2500 }, (_, i) => end - 2500 + i),
    );
    assert.equal(dec(tailEntries[2499]!.payload), 'bulk2499');
  });

  it('takes appends from a second writer on the same stream, each told where its records are', async (t: TestContext) => {
    const ok = await natsAvailable();
    if (ok !== true) return t.skip(ok);
    const a = await JetStreamEventLog.open({ servers, stream: crashStream });
    const b = await JetStreamEventLog.open({ servers, stream: crashStream });
    t.after(() => Promise.all([a.close(), b.close()]));
    const { next } = await a.append([enc('from a')]);
    // b has not seen a's record: the old single-writer log refused this append.
    assert.deepEqual(await b.append([enc('b1'), enc('b2')]), { first: next, next: next + 2 });
    assert.deepEqual(
      (await b.read(next - 1, 3)).map((e) => dec(e.payload)),
      ['from a', 'b1', 'b2'],
    );
  });

  it('sets the duplicate window on the stream, also on one made with another', async (t: TestContext) => {
    const ok = await natsAvailable();
    if (ok !== true) return t.skip(ok);
    const log = await JetStreamEventLog.open({ servers, stream: crashStream, duplicateWindowMs: 30_000 });
    const nc = await connect({ servers });
    t.after(() => Promise.all([log.close(), nc.close()]));
    const jsm = await nc.jetstreamManager();
    assert.equal(log.duplicateWindowMs, 30_000);
    assert.equal((await jsm.streams.info(crashStream)).config.duplicate_window, 30_000 * 1e6);
    const again = await JetStreamEventLog.open({ servers, stream: crashStream });
    await again.close();
    assert.equal((await jsm.streams.info(crashStream)).config.duplicate_window, 120_000 * 1e6, 'the default, two minutes');
  });

  it("wakes every wait on one consumer of the stream, at once on another connection's append, and removes it on close", async (t: TestContext) => {
    const ok = await natsAvailable();
    if (ok !== true) return t.skip(ok);
    const log = await JetStreamEventLog.open({ servers, stream: watchStream });
    const writer = await JetStreamEventLog.open({ servers, stream: watchStream });
    const nc = await connect({ servers });
    t.after(() => Promise.all([log.close(), writer.close(), nc.close()]));
    const jsm = await nc.jetstreamManager();
    const consumers = async () => (await jsm.streams.info(watchStream)).state.consumer_count;
    const end = await log.next();
    // Six consumers' waits, as a service instance has, each renewed every 50 ms: one watcher serves them all.
    for (let round = 0; round < 5; round++) await Promise.all(Array.from({ length: 6 }, () => log.waitFor(end, 50)));
    assert.equal(await consumers(), 1, 'one consumer watches for every wait');
    assert.deepEqual(await log.read(end, 10), [], 'nothing to read at the end');

    const latencies: number[] = [];
    for (let i = 0; i < 5; i++) {
      const at = await log.next();
      const waits = Array.from({ length: 6 }, () => log.waitFor(at, 10_000));
      const t0 = Date.now();
      await writer.append([enc(`other ${i}`)]);
      await Promise.all(waits);
      latencies.push(Date.now() - t0);
      assert.deepEqual(
        (await log.read(at, 10)).map((e) => dec(e.payload)),
        [`other ${i}`],
        "the woken reader reads the other connection's record",
      );
    }
    t.diagnostic(`woken ${latencies.join(', ')} ms after the append started`);
    assert.ok(Math.min(...latencies) < 500, `woken within ${Math.min(...latencies)} ms`);

    const t1 = Date.now();
    await log.waitFor(await log.next(), 300);
    assert.ok(Date.now() - t1 >= 250, 'a wait with nothing appended lasts its timeout');

    const pending = log.waitFor(await log.next(), 60_000);
    const t2 = Date.now();
    await log.close();
    await pending;
    assert.ok(Date.now() - t2 < 2000, 'close ends the waits');
    assert.equal(await consumers(), 0, 'close deletes the watching consumer');
  });

  it('starts another watcher when its consumer is deleted on the server', async (t: TestContext) => {
    const ok = await natsAvailable();
    if (ok !== true) return t.skip(ok);
    const log = await JetStreamEventLog.open({ servers, stream: watchStream });
    const writer = await JetStreamEventLog.open({ servers, stream: watchStream });
    const nc = await connect({ servers });
    t.after(() => Promise.all([log.close(), writer.close(), nc.close()]));
    const jsm = await nc.jetstreamManager();
    await log.waitFor(await log.next(), 50);
    const [watcher] = await jsm.consumers.list(watchStream).next();
    assert.ok(watcher, 'a watcher runs');
    const at = await log.next();
    const waiting = log.waitFor(at, 10_000);
    await jsm.consumers.delete(watchStream, watcher.name);
    await waiting; // the watcher's end ends its waits: the caller reads, and waits again
    const again = log.waitFor(at, 10_000);
    const t0 = Date.now();
    await writer.append([enc('after the watcher was deleted')]);
    await again;
    assert.ok(Date.now() - t0 < 5000, 'the next wait is woken by another connection');
    assert.deepEqual(
      (await log.read(at, 1)).map((e) => dec(e.payload)),
      ['after the watcher was deleted'],
    );
    const names = (await jsm.consumers.list(watchStream).next()).map((c) => c.name);
    assert.equal(names.length, 1);
    assert.notEqual(names[0], watcher.name, 'a new watcher');
  });

  it('rejects consumer names that are not plain keys', async (t: TestContext) => {
    const ok = await natsAvailable();
    if (ok !== true) return t.skip(ok);
    const log = await JetStreamEventLog.open({ servers, stream: crashStream });
    t.after(() => log.close());
    for (const bad of ['', 'has space', 'a/b', '.hidden', 'x'.repeat(65), 'a..b', 'wild*']) {
      await assert.rejects(log.commit(bad, 1), /Invalid consumer name/);
      await assert.rejects(log.committed(bad), /Invalid consumer name/);
    }
  });

  it('names the unreachable server and how to start NATS', async () => {
    const t0 = Date.now();
    await assert.rejects(JetStreamEventLog.open({ servers: 'nats://127.0.0.1:4299', stream: 'WB_UNREACHABLE', connectTimeoutMs: 1000 }), (err: Error) => {
      assert.match(err.message, /nats:\/\/127\.0\.0\.1:4299/);
      assert.match(err.message, /nats-server -js/);
      assert.match(err.message, /start-stop-daemon/);
      return true;
    });
    assert.ok(Date.now() - t0 < 3000, 'fails fast');
  });
});
