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
    assert.deepEqual(ring.take(0, 10).map((e) => e.event_id), ['e0', 'e1', 'e2']);
    ring.put(3, events(3, 4));
    assert.deepEqual(ring.take(0, 10), [], 'overwritten offsets are gone');
    assert.deepEqual(ring.take(2, 10).map((e) => e.event_id), ['e2', 'e3', 'e4', 'e5', 'e6']);
  });

  it('keeps to its byte bound when ingest gives record sizes, dropping the oldest first (a burst of large events)', () => {
    const ring = new RecentEvents(1_000, 1_000);
    ring.put(0, events(0, 3), [400, 400, 400]);
    assert.equal(ring.heldBytes, 800);
    assert.deepEqual(ring.take(0, 10), [], 'the oldest was dropped: consumers read it from the log');
    assert.deepEqual(ring.take(1, 10).map((e) => e.event_id), ['e1', 'e2']);
    ring.put(3, events(3, 1), [5_000]);
    assert.equal(ring.heldBytes, 0, 'one record over the bound is not kept at all');
    assert.deepEqual(ring.take(3, 10), []);
    ring.put(4, events(4, 2), [10, 10]);
    assert.deepEqual(ring.take(4, 10).map((e) => e.event_id), ['e4', 'e5']);
  });

  it('releases what every consumer has read, so memory falls back after a burst', () => {
    const ring = new RecentEvents(1_000, 1_000_000);
    ring.put(0, events(0, 10), new Array(10).fill(100));
    ring.release(7);
    assert.equal(ring.heldBytes, 300);
    assert.deepEqual(ring.take(6, 10), [], 'released offsets are read from the log');
    assert.deepEqual(ring.take(7, 10).map((e) => e.event_id), ['e7', 'e8', 'e9']);
    ring.release(1e12);
    assert.equal(ring.heldBytes, 0, 'a release past the end drops everything, at once');
    ring.put(10, events(10, 2), [100, 100]);
    assert.deepEqual(ring.take(10, 10).map((e) => e.event_id), ['e10', 'e11'], 'later events are held again');
  });
});
