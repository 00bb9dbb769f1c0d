import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EnrichedEvent } from '../../../src/workbench/event.js';
import { RecentEvents } from '../../../src/serving/pipeline/recent-events.js';

const events = (first: number, n: number) => Array.from({ length: n }, (_, i) => ({ event_id: `e${first + i}` }) as EnrichedEvent);

describe('the ring of recent events', () => {
  it('hands consecutive events from an offset, and wraps around by count', () => {
    const ring = new RecentEvents(5);
    ring.put(0, events(0, 2));
    ring.put(2, events(2, 1));
    assert.deepEqual(
      ring.take(0, 10).map((e) => e.event_id),
      ['e0', 'e1', 'e2'],
    );
    ring.put(3, events(3, 4));
    assert.deepEqual(ring.take(0, 10), [], 'overwritten offsets are gone');
    assert.deepEqual(
      ring.take(2, 10).map((e) => e.event_id),
      ['e2', 'e3', 'e4', 'e5', 'e6'],
    );
  });

  it("holds events at the offsets given, the ones between being another writer's (a shared log)", () => {
    const ring = new RecentEvents(100);
    ring.put([3, 4, 7, 9], events(0, 4));
    assert.deepEqual(
      ring.take(3, 10).map((e) => e.event_id),
      ['e0', 'e1'],
    );
    assert.deepEqual(ring.take(5, 10), [], 'offset 5 is not held: read from the log');
    assert.deepEqual(
      ring.take(7, 10).map((e) => e.event_id),
      ['e2'],
    );
    assert.deepEqual(
      ring.take(9, 10).map((e) => e.event_id),
      ['e3'],
    );
    assert.equal(ring.expects(10), true, 'past the newest offset put, more may come');
    ring.put([5, 6], events(10, 2));
    assert.deepEqual(
      ring.take(3, 10).map((e) => e.event_id),
      ['e0', 'e1', 'e10', 'e11', 'e2'],
    );
  });

  it('keeps to its byte bound when ingest gives record sizes, dropping the oldest first (a burst of large events)', () => {
    const ring = new RecentEvents(1_000, 1_000);
    ring.put(0, events(0, 3), [400, 400, 400]);
    assert.equal(ring.heldBytes, 800);
    assert.deepEqual(ring.take(0, 10), [], 'the oldest was dropped: consumers read it from the log');
    assert.deepEqual(
      ring.take(1, 10).map((e) => e.event_id),
      ['e1', 'e2'],
    );
    ring.put(3, events(3, 1), [5_000]);
    assert.equal(ring.heldBytes, 0, 'one record over the bound is not kept at all');
    assert.deepEqual(ring.take(3, 10), []);
    ring.put(4, events(4, 2), [10, 10]);
    assert.deepEqual(
      ring.take(4, 10).map((e) => e.event_id),
      ['e4', 'e5'],
    );
  });

  it('releases what every consumer has read, so memory falls back after a burst', () => {
    const ring = new RecentEvents(1_000, 1_000_000);
    ring.put(0, events(0, 10), new Array(10).fill(100));
    ring.release(7);
    assert.equal(ring.heldBytes, 300);
    assert.deepEqual(ring.take(6, 10), [], 'released offsets are read from the log');
    assert.deepEqual(
      ring.take(7, 10).map((e) => e.event_id),
      ['e7', 'e8', 'e9'],
    );
    ring.release(1e12);
    assert.equal(ring.heldBytes, 0, 'a release past the end drops everything, at once');
    ring.put(10, events(10, 2), [100, 100]);
    assert.deepEqual(
      ring.take(10, 10).map((e) => e.event_id),
      ['e10', 'e11'],
      'later events are held again',
    );
  });
});

describe('waiting for the ring', () => {
  /** 'resolved' when the promise settles within a second, else 'pending'. */
  const within = (p: Promise<unknown>) => Promise.race([p.then(() => 'resolved'), new Promise((r) => setTimeout(() => r('pending'), 1_000))]);

  it('expects only offsets it may still be given: not those it holds, dropped, or when never put to', () => {
    const ring = new RecentEvents(1_000, 1_000_000);
    assert.equal(ring.expects(0), false, 'a ring never put to expects nothing (a consumer reading a backlog)');
    ring.put(5, events(5, 2));
    assert.equal(ring.expects(4), false, 'before the first put');
    assert.equal(ring.expects(5), false, 'held');
    assert.equal(ring.expects(7), true, 'not yet put');
    ring.release(6);
    assert.equal(ring.expects(5), false, 'released');
    assert.equal(ring.expects(6), false, 'still held');
    assert.equal(ring.expects(7), true);
  });

  it('ends a wait when the offset is put, when the ring drops past it, or at the timeout', async () => {
    const ring = new RecentEvents(4, 1_000_000);
    ring.put(0, events(0, 1));
    let done = false;
    const put = ring.waitFor(2, 10_000).then(() => (done = true));
    ring.put(1, events(1, 1));
    await new Promise((r) => setImmediate(r));
    assert.equal(done, false, 'a put before the offset does not end the wait');
    ring.put(2, events(2, 1));
    assert.equal(await within(put), 'resolved');
    assert.deepEqual(
      ring.take(2, 1).map((e) => e.event_id),
      ['e2'],
    );

    const skipped = ring.waitFor(3, 10_000);
    ring.put(4, events(4, 4));
    assert.equal(await within(skipped), 'resolved', 'offsets 4-7 in a ring of 4: offset 3 will never be held');

    const t0 = Date.now();
    await ring.waitFor(8, 30);
    const waited = Date.now() - t0;
    assert.ok(waited >= 25 && waited < 5_000, `the wait ended at its timeout (${waited} ms)`);
    assert.equal(
      await Promise.race([ring.waitFor(4, 10_000).then(() => 'at once'), new Promise((r) => setImmediate(() => r('pending')))]),
      'at once',
      'a held offset is not waited for',
    );
  });
});
