import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { RecentIds } from '../../../src/serving/pipeline/recent-ids.js';

/** The reference: the ids themselves in a Map, in arrival order (what RecentIds replaced). */
class MapIds {
  private readonly seen = new Map<string, number>();
  constructor(
    private readonly windowMs: number,
    private readonly maxIds: number,
  ) {}
  has(id: string): boolean {
    return this.seen.has(id);
  }
  add(id: string, atMs: number): void {
    this.seen.set(id, atMs);
    if (this.seen.size > this.maxIds) this.seen.delete(this.seen.keys().next().value!);
  }
  delete(id: string): void {
    this.seen.delete(id);
  }
  expire(nowMs: number): void {
    for (const [id, at] of this.seen) {
      if (at >= nowMs - this.windowMs) break;
      this.seen.delete(id);
    }
  }
  get size(): number {
    return this.seen.size;
  }
}

type Op = { kind: 'add' | 'delete' | 'has'; id: string } | { kind: 'tick'; ms: number } | { kind: 'expire' };

describe('the ids ingest remembers', () => {
  it('answers as a Map of the ids would, through growth, deletions, expiry and the count bound', () => {
    // Few distinct ids, so that adds, re-adds, deletes and lookups meet; a tiny first capacity, so the ring and table grow and are rebuilt.
    const id = fc.oneof(
      fc.integer({ min: 0, max: 40 }).map((i) => `e${i}`),
      fc.constantFrom('', '\uD800', '\uDC00', '\uFFFD', 'é', 'e\u0301'),
    );
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: id.map((i) => ({ kind: 'add' as const, id: i })) },
      { weight: 2, arbitrary: id.map((i) => ({ kind: 'delete' as const, id: i })) },
      { weight: 3, arbitrary: id.map((i) => ({ kind: 'has' as const, id: i })) },
      { weight: 2, arbitrary: fc.integer({ min: 0, max: 40 }).map((ms) => ({ kind: 'tick' as const, ms })) },
      { weight: 1, arbitrary: fc.constant({ kind: 'expire' as const }) },
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 200 }),
        fc.integer({ min: 0, max: 30 }),
        fc.integer({ min: 1, max: 8 }),
        fc.array(op, { maxLength: 300 }),
        (windowMs, maxIds, capacity, ops) => {
          const ids = new RecentIds(windowMs, maxIds, capacity);
          const model = new MapIds(windowMs, maxIds);
          let now = 0;
          for (const o of ops) {
            if (o.kind === 'tick') now += o.ms;
            else if (o.kind === 'expire') {
              ids.expire(now);
              model.expire(now);
            } else if (o.kind === 'add') {
              ids.add(o.id, now);
              model.add(o.id, now);
            } else if (o.kind === 'delete') {
              ids.delete(o.id);
              model.delete(o.id);
            } else assert.equal(ids.has(o.id), model.has(o.id), `has(${JSON.stringify(o.id)})`);
            assert.equal(ids.size, model.size);
          }
          for (const i of ['', '\uD800', '\uDC00', ...Array.from({ length: 41 }, (_, k) => `e${k}`)]) assert.equal(ids.has(i), model.has(i), i);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps ids that differ only in a lone surrogate apart (they are one text once encoded as UTF-8)', () => {
    const ids = new RecentIds(60_000, 10);
    ids.add('a\uD800', 0);
    assert.equal(ids.has('a\uD800'), true);
    assert.equal(ids.has('a\uDC00'), false);
    assert.equal(ids.has('a\uFFFD'), false);
  });

  it('holds its bound of ids however many arrive, forgetting the oldest first', () => {
    const ids = new RecentIds(Number.POSITIVE_INFINITY, 50_000);
    for (let i = 0; i < 120_000; i++) ids.add(`event-${i}`, i);
    assert.equal(ids.size, 50_000);
    assert.equal(ids.has('event-69999'), false);
    assert.equal(ids.has('event-70000'), true);
    assert.equal(ids.has('event-119999'), true);
    assert.equal(ids.has('event-120000'), false);
  });

  it('forgets ids older than its window, and only those', () => {
    const ids = new RecentIds(1_000, 1_000_000);
    for (let i = 0; i < 5_000; i++) ids.add(`e${i}`, i);
    ids.expire(3_500);
    assert.equal(ids.size, 2_500, 'the ids that arrived from 2,500 ms on');
    assert.equal(ids.has('e2499'), false);
    assert.equal(ids.has('e2500'), true);
  });
});
