import assert from 'node:assert/strict';
import { after, beforeEach, describe, it, type TestContext } from 'node:test';
import { offsetsOf, type EventLog } from '../../../src/serving/pipeline/event-log.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/**
 * The behaviour every EventLog implementation must have. `open` opens the same log each time it is
 * called (after the previous handle is closed), or returns a string: the reason to skip.
 */
export function eventLogConformance(name: string, open: () => Promise<EventLog | string>): void {
  describe(`EventLog conformance: ${name}`, () => {
    let log: EventLog;
    let skipped: string | undefined;
    const reopen = async () => {
      await log.close();
      const again = await open();
      if (typeof again === 'string') throw new Error(again);
      log = again;
    };
    beforeEach(async (t) => {
      if (skipped) return (t as TestContext).skip(skipped);
      if (!log) {
        const opened = await open();
        if (typeof opened === 'string') {
          skipped = opened;
          return (t as TestContext).skip(skipped);
        }
        log = opened;
      }
    });
    after(async () => {
      await log?.close();
    });

    it('starts empty', async () => {
      assert.equal(await log.next(), 0);
      assert.deepEqual(await log.read(0, 10), []);
      assert.equal(await log.committed('anyone'), 0);
    });

    it('appends batches with dense offsets and reads them back from any offset', async () => {
      assert.deepEqual(await log.append([enc('a'), enc('b'), enc('c')]), { first: 0, next: 3 });
      assert.deepEqual(await log.append([enc('d')]), { first: 3, next: 4 });
      assert.deepEqual(await log.append([]), { first: 4, next: 4 });
      const all = await log.read(0, 100);
      assert.deepEqual(
        all.map((e) => [e.offset, dec(e.payload)]),
        [
          [0, 'a'],
          [1, 'b'],
          [2, 'c'],
          [3, 'd'],
        ],
      );
      assert.deepEqual(
        (await log.read(2, 1)).map((e) => dec(e.payload)),
        ['c'],
      );
      assert.deepEqual(await log.read(4, 10), []);
      assert.equal(await log.next(), 4);
    });

    it('keeps binary payloads and large ones intact', async () => {
      const binary = Uint8Array.from({ length: 256 }, (_, i) => i);
      const large = enc('x'.repeat(200_000));
      const { first } = await log.append([binary, large]);
      const [a, b] = await log.read(first, 2);
      assert.deepEqual(Buffer.from(a!.payload), Buffer.from(binary));
      assert.equal(b!.payload.length, 200_000);
    });

    it('stores text payloads as UTF-8, mixed with bytes in one batch', async () => {
      const { first } = await log.append(['{"city":"Zürich ✓"}', enc('plain'), '']);
      const [a, b, c] = await log.read(first, 3);
      assert.equal(Buffer.from(a!.payload).toString('utf8'), '{"city":"Zürich ✓"}');
      assert.equal(Buffer.from(a!.payload).length, Buffer.byteLength('{"city":"Zürich ✓"}'));
      assert.equal(Buffer.from(b!.payload).toString('utf8'), 'plain');
      assert.equal(c!.payload.length, 0);
    });

    it('keeps concurrent batches contiguous and loses none', async () => {
      const start = await log.next();
      const results = await Promise.all(Array.from({ length: 40 }, (_, i) => log.append(Array.from({ length: 5 }, (_, j) => enc(`batch${i}-${j}`)))));
      const entries = await log.read(start, 1000);
      assert.equal(entries.length, 200);
      for (const [i, r] of results.entries()) {
        assert.equal(r.next - r.first, 5);
        const batch = entries.filter((e) => e.offset >= r.first && e.offset < r.next).map((e) => dec(e.payload));
        assert.deepEqual(
          batch,
          Array.from({ length: 5 }, (_, j) => `batch${i}-${j}`),
          'a batch is contiguous',
        );
      }
      assert.equal(await log.next(), start + 200);
    });

    it('keeps appends right while readers ask for the end of the log at the same time', async () => {
      // A reader's next() racing an append once wrote a stale end back over a newer one.
      const start = await log.next();
      let reading = true;
      const readers = Array.from({ length: 3 }, async () => {
        while (reading) {
          await log.next();
          await new Promise((r) => setImmediate(r)); // let I/O in: an in-memory next() never yields
        }
      });
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => log.append(Array.from({ length: 50 }, (_, j) => enc(`race${i}-${j}`)))));
      reading = false;
      await Promise.all(readers);
      assert.equal(await log.next(), start + 1000);
      assert.deepEqual(
        results.map((r) => r.next - r.first),
        Array.from({ length: 20 }, () => 50),
      );
    });

    it('takes an id per record, and says where each record is', async () => {
      const ids = ['id-1', 'id \u2713 2', 'x'.repeat(128)];
      const appended = await log.append(['one', 'two', 'three'], ids);
      const offsets = offsetsOf(appended, 3);
      assert.equal(appended.next, Math.max(...offsets) + 1);
      for (const [i, text] of ['one', 'two', 'three'].entries()) assert.equal(dec((await log.read(offsets[i]!, 1))[0]!.payload), text);
      await assert.rejects(log.append(['a', 'b'], ['only one id']), /ids/);
      // A log that recognises ids stores a repeat within its window once; one that does not (one
      // writer, whose ingest dedupes) stores it again.
      const end = await log.next();
      const again = await log.append(['one'], ['id-1']);
      if (log.duplicateWindowMs === undefined) assert.deepEqual(again, { first: end, next: end + 1 });
      else {
        assert.deepEqual(again, { first: offsets[0]!, next: offsets[0]! + 1, offsets: [offsets[0]!], duplicates: [0] });
        assert.equal(await log.next(), end);
      }
    });

    it('keeps a committed offset per consumer', async () => {
      await log.commit('archiver', 3);
      await log.commit('aggregates', 1);
      await log.commit('archiver', 5);
      assert.equal(await log.committed('archiver'), 5);
      assert.equal(await log.committed('aggregates'), 1);
      assert.equal(await log.committed('metrics'), 0);
    });

    it('wakes a waiting reader when a record arrives, and times out otherwise', async () => {
      const next = await log.next();
      const t0 = Date.now();
      await log.waitFor(next, 200);
      assert.ok(Date.now() - t0 >= 150, 'waited for the timeout');
      const waiting = log.waitFor(next, 10_000);
      setTimeout(() => void log.append([enc('wake')]), 50);
      const t1 = Date.now();
      await waiting;
      assert.ok(Date.now() - t1 < 5_000, 'woken by the append');
      assert.equal(dec((await log.read(next, 1))[0]!.payload), 'wake');
      await log.waitFor(0, 10_000); // an existing offset returns at once
    });

    it('keeps records and committed offsets across a close and reopen', async () => {
      const before = await log.read(0, 10_000);
      await reopen();
      const afterReopen = await log.read(0, 10_000);
      assert.equal(afterReopen.length, before.length);
      assert.deepEqual(
        afterReopen.map((e) => Buffer.from(e.payload).toString('hex')),
        before.map((e) => Buffer.from(e.payload).toString('hex')),
      );
      assert.equal(await log.committed('archiver'), 5);
      const { first } = await log.append([enc('after reopen')]);
      assert.equal(first, before.length);
    });
  });
}
