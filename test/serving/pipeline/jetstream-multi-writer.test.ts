import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { connect } from 'nats';
import type { EnrichedEvent } from '../../../src/workbench/event.js';
import { openOltp } from '../../../src/workbench/oltp/index.js';
import { offsetsOf, type LogEntry } from '../../../src/serving/pipeline/event-log.js';
import { Ingest } from '../../../src/serving/pipeline/ingest.js';
import { JetStreamEventLog } from '../../../src/serving/pipeline/jetstream-log.js';
import { RecentEvents } from '../../../src/serving/pipeline/recent-events.js';
import { serverAvailable } from '../../helpers/servers.js';
import { event } from '../../helpers/service.js';
import { tempDir } from '../../helpers/tmp.js';

const servers = 'nats://127.0.0.1:4222';
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const streams: string[] = [];
/** A stream of the test's own: several writers share it, nothing else does. */
const newStream = (name: string) => {
  const stream = `WB_TEST_MW_${name}_${process.pid}_${Date.now()}`;
  streams.push(stream);
  return stream;
};

let available: Promise<true | string> | undefined;
const natsAvailable = () => (available ??= serverAvailable('NATS JetStream', servers));

after(async () => {
  if (streams.length === 0 || (await natsAvailable().catch(() => false)) !== true) return;
  const nc = await connect({ servers });
  const jsm = await nc.jetstreamManager();
  for (const s of streams) for (const name of [s, `KV_${s}_offsets`]) await jsm.streams.delete(name).catch(() => undefined);
  await nc.close();
});

interface Reported {
  ids: string[];
  offsets: number[];
  duplicates: number[];
}

/** Runs test/serving/pipeline/jetstream-writer.ts to its end: the batches it had acknowledged. */
function writer(stream: string, tag: string, batches: number, size: number, retry: string[][] = []): Promise<Reported[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'jetstream-writer.ts'), stream, tag, String(batches), String(size)], {
      env: { ...process.env, RETRY: JSON.stringify(retry) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`writer ${tag} exited with ${code}: ${err}`));
      resolve(
        out
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Reported),
      );
    });
  });
}

/** Every record of the stream, checked dense from offset 0. */
async function readAll(log: JetStreamEventLog): Promise<LogEntry[]> {
  // The end first: a handle reads up to the end it knows of, which other writers move on.
  const end = await log.next();
  const entries = await log.read(0, 1_000_000);
  assert.equal(entries.length, end);
  assert.deepEqual(
    entries.map((e) => e.offset),
    entries.map((_, i) => i),
    'offsets are dense from 0',
  );
  return entries;
}

/** Asserts that each reported record is at the offset its append returned. */
function assertWhereSaid(entries: readonly LogEntry[], batches: readonly Reported[]): void {
  for (const b of batches) {
    assert.equal(b.offsets.length, b.ids.length);
    for (const [i, id] of b.ids.entries()) assert.equal(dec(entries[b.offsets[i]!]!.payload), id, `record ${id} is at the offset its append returned`);
  }
}

describe('JetStreamEventLog with several writers on one stream', { timeout: 120_000 }, () => {
  it('stores every record of two processes appending at once exactly once, each at the offset its append returned', async (t: TestContext) => {
    const ok = await natsAvailable();
    if (ok !== true) return t.skip(ok);
    const stream = newStream('PROC');
    const [a, b] = await Promise.all([writer(stream, 'a', 120, 40), writer(stream, 'b', 120, 40)]);
    assert.equal(a.length, 120);
    assert.equal(b.length, 120);
    const log = await JetStreamEventLog.open({ servers, stream });
    t.after(() => log.close());
    const entries = await readAll(log);
    const stored = entries.map((e) => dec(e.payload));
    assert.equal(stored.length, 2 * 120 * 40);
    assert.equal(new Set(stored).size, stored.length, 'no record twice');
    for (const batch of [...a, ...b]) assert.deepEqual(batch.duplicates, []);
    assertWhereSaid(entries, [...a, ...b]);
    for (const batch of [...a, ...b]) {
      const sorted = [...batch.offsets].sort((x, y) => x - y);
      assert.deepEqual(batch.offsets, sorted, 'a batch keeps its order');
    }
    const interleaved = [...a, ...b].filter((x) => x.offsets[x.offsets.length - 1]! - x.offsets[0]! !== x.offsets.length - 1).length;
    t.diagnostic(`${interleaved} of 240 batches had the other writer's records between theirs`);

    // Clients resend: to the other instance (b takes a's batches), and to the same one.
    const resend = [...a.slice(0, 10).map((x) => x.ids), ...b.slice(0, 2).map((x) => x.ids)];
    const [again] = await Promise.all([writer(stream, 'b2', 0, 40, resend)]);
    assert.equal(await log.next(), entries.length, 'nothing stored again');
    for (const [i, r] of again!.entries()) {
      assert.deepEqual(
        r.duplicates,
        r.ids.map((_, j) => j),
        'each record recognised',
      );
      const original = i < 10 ? a[i]! : b[i - 10]!;
      assert.deepEqual(r.offsets, original.offsets, "a duplicate's offset is its original's");
    }
  });

  it('stores only what is missing when a batch that was partly stored is appended again', async (t: TestContext) => {
    const ok = await natsAvailable();
    if (ok !== true) return t.skip(ok);
    const stream = newStream('RETRY');
    const one = await JetStreamEventLog.open({ servers, stream });
    const two = await JetStreamEventLog.open({ servers, stream });
    t.after(() => Promise.all([one.close(), two.close()]));
    const ids = Array.from({ length: 50 }, (_, i) => `r-${i}`);
    // The failed append stored records 0-19 (and another writer one record after them), then died.
    await one.append(ids.slice(0, 20), ids.slice(0, 20));
    await two.append(['other'], ['other']);
    const appended = await one.append(ids, ids);
    assert.deepEqual(
      appended.duplicates,
      ids.slice(0, 20).map((_, i) => i),
    );
    assert.deepEqual(offsetsOf(appended, ids.length), [...ids.slice(0, 20).map((_, i) => i), ...ids.slice(20).map((_, i) => 21 + i)]);
    assert.deepEqual({ first: appended.first, next: appended.next }, { first: 0, next: 51 });
    const stored = (await readAll(one)).map((e) => dec(e.payload));
    assert.deepEqual(stored, [...ids.slice(0, 20), 'other', ...ids.slice(20)]);
    // An id is not the payload: a copy with other bytes (a re-enriched event) is recognised by its id.
    const copy = await two.append(['r-3 with another received_at'], ['r-3']);
    assert.deepEqual(copy, { first: 3, next: 4, offsets: [3], duplicates: [0] });
    assert.equal(await two.next(), 51);
    // Without ids, records are stored as they come.
    assert.deepEqual(await two.append(['r-3']), { first: 51, next: 52 });
  });

  it('recognises a batch whose append failed with the connection when another handle appends it again', async (t: TestContext) => {
    const ok = await natsAvailable();
    if (ok !== true) return t.skip(ok);
    const stream = newStream('CRASH');
    const dying = await JetStreamEventLog.open({ servers, stream });
    const ids = Array.from({ length: 2000 }, (_, i) => `c-${i}`);
    const pending = dying.append(ids, ids);
    await dying['nc'].close(); // no drain: some records may have reached the server, and no acknowledgement comes
    await assert.rejects(pending, /records confirmed, the others may or may not be stored; appending the batch again with the same ids/);
    const log = await JetStreamEventLog.open({ servers, stream });
    t.after(() => log.close());
    const before = await log.next();
    const appended = await log.append(ids, ids);
    assert.equal(appended.duplicates?.length ?? 0, before, 'the records stored before are recognised');
    const entries = await readAll(log);
    assert.deepEqual(
      entries.map((e) => dec(e.payload)),
      ids,
    );
    assertWhereSaid(entries, [{ ids, offsets: [...offsetsOf(appended, ids.length)], duplicates: [] }]);
  });

  it("gives each instance's ring of recent events only the offsets it wrote, and counts a client's resend to another instance as duplicates", async (t: TestContext) => {
    const ok = await natsAvailable();
    if (ok !== true) return t.skip(ok);
    const stream = newStream('RING');
    const dir = tempDir('wb-mw-');
    const oltp = await openOltp(undefined, dir);
    const logs = [await JetStreamEventLog.open({ servers, stream }), await JetStreamEventLog.open({ servers, stream })];
    t.after(async () => {
      await Promise.all(logs.map((l) => l.close()));
      await oltp.close();
    });
    const rings = [new RecentEvents(), new RecentEvents()];
    const ingests = [await Ingest.open(logs[0]!, oltp, {}, Date.now, rings[0]), await Ingest.open(logs[1]!, oltp, {}, Date.now, rings[1])];
    const batch = (who: number, n: number) => Array.from({ length: 30 }, (_, i) => event(`i${who}-${n}-${i}`, { user_id: `u${i % 7}` }));
    const results = await Promise.all(
      [0, 1].flatMap((who) =>
        Array.from({ length: 20 }, async (_, n) => {
          const r = await ingests[who]!.ingest(batch(who, n));
          assert.equal(r.accepted, 30);
          return r;
        }),
      ),
    );
    assert.equal(results.length, 40);
    const entries = await readAll(logs[0]!);
    assert.equal(entries.length, 1200);
    const idAt = entries.map((e) => (JSON.parse(dec(e.payload)) as EnrichedEvent).event_id);
    for (const [who, ring] of rings.entries()) {
      let held = 0;
      for (let o = 0; o < entries.length; o++) {
        const [e] = ring.take(o, 1);
        if (!e) continue;
        held++;
        assert.equal(e.event_id, idAt[o], `ring ${who} holds the record the log has at offset ${o}`);
        assert.ok(e.event_id.startsWith(`i${who}-`), `ring ${who} holds only its own instance's events`);
      }
      assert.equal(held, 600, `ring ${who} holds each event its instance wrote`);
    }

    // The client resends instance 0's first batch to instance 1, which has not seen its ids.
    const resent = await ingests[1]!.ingest(batch(0, 0));
    assert.deepEqual({ accepted: resent.accepted, duplicates: resent.duplicates }, { accepted: 0, duplicates: 30 });
    assert.equal(await logs[1]!.next(), 1200, 'nothing stored twice');
    for (let o = 0; o < entries.length; o++) {
      const [e] = rings[1]!.take(o, 1);
      if (e) assert.equal(e.event_id, idAt[o], 'the resend put nothing in the ring');
    }
  });
});
