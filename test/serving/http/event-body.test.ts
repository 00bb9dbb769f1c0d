import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Request } from 'express';
import { DEFAULT_EVENT_LIMITS } from '../../../src/workbench/event.js';
import { batchOf } from '../../../src/serving/http/event-body.js';
import { Unparsable } from '../../../src/serving/pipeline/ingest.js';

const request = (body: string, type: string) =>
  ({ body: Buffer.from(body), get: (h: string) => (h === 'content-type' ? type : undefined) }) as unknown as Request;

/** Bracket depth of a parsed value, the event object itself being 1: computed apart from the scanner. */
const depthOf = (v: unknown): number => (v !== null && typeof v === 'object' ? 1 + Math.max(0, ...Object.values(v).map(depthOf)) : 0);

/** A random props value `levels` deep (objects and arrays mixed), with brackets and quotes inside strings too. */
function nested(levels: number, rnd: () => number): unknown {
  if (levels === 0) return rnd() < 0.5 ? '{[{["\\"' : 1;
  const inner = nested(levels - 1, rnd);
  return rnd() < 0.5 ? { k: inner, s: '[[[[{{{{' } : ['}}]]', inner];
}

describe('the events body scanner', () => {
  it('refuses an item unparsed exactly when it nests deeper than the limit, brackets in strings not counted', async () => {
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const max = DEFAULT_EVENT_LIMITS.maxPropsDepth;
    const events = Array.from({ length: 400 }, (_, i) => ({ event_id: `e${i}`, props: { x: nested(Math.floor(rnd() * (max + 3)), rnd) } }));
    const texts = events.map((e) => JSON.stringify(e));
    for (const [body, type] of [
      [`[${texts.join(',')}]`, 'application/json'],
      [texts.join('\n'), 'application/x-ndjson'],
    ] as const) {
      const items = await batchOf(request(body, type), 10_000, DEFAULT_EVENT_LIMITS);
      assert.equal(items.length, events.length);
      let refused = 0;
      for (let i = 0; i < events.length; i++) {
        const deep = depthOf(events[i]) > max + 1;
        if (deep) {
          refused++;
          assert.ok(items[i] instanceof Unparsable, `${type} item ${i} (depth ${depthOf(events[i])}) is refused`);
          assert.deepEqual((items[i] as Unparsable).known, { event_id: `e${i}`, field: 'props', limit: { name: 'maxPropsDepth', value: max } });
        } else assert.deepEqual(items[i], events[i], `${type} item ${i} (depth ${depthOf(events[i])}) is parsed`);
      }
      assert.ok(refused > 20 && refused < 380, `both kinds are tried (${refused} refused)`);
    }
  });
});
