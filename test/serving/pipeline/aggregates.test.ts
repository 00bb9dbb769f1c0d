import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { EnrichedEvent } from '../../../src/workbench/event.js';
import { labelVocabulary } from '../../../src/serving/observability/label-vocabulary.js';
import { DEFAULT_AGGREGATES, LiveAggregates, type AggregateOptions } from '../../../src/serving/pipeline/aggregates.js';
import { tempDir } from '../../helpers/tmp.js';

const MINUTE = Date.parse('2026-11-29T10:00:00.000Z');

function event(i: number, over: { event?: string; country?: string; device?: string } = {}): EnrichedEvent {
  return {
    event_id: `e${i}`,
    time: new Date(MINUTE + (i % 50) * 1000).toISOString(),
    user_id: `u${i}`,
    event: over.event ?? 'login',
    props: {},
    dims: { country: over.country ?? 'GB', device: over.device ?? 'ios', tier: 'free', first_seen: '2026-11-01T00:00:00.000Z' },
    experiments: {},
    received_at: new Date(MINUTE).toISOString(),
  };
}

function aggregates(dir: string, over: Partial<AggregateOptions> = {}): LiveAggregates {
  return new LiveAggregates({ ...DEFAULT_AGGREGATES, snapshotPath: join(dir, 'aggregates.json'), known: labelVocabulary(), ...over });
}

/** Counts per value of one dimension in the minute window. */
function byValue(a: LiveAggregates, dimension: 'country' | 'all', event?: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of a.query('1m', { dimension, ...(event ? { event } : {}) })) out.set(p.value, (out.get(p.value) ?? 0) + p.count);
  return out;
}

describe('live aggregates under made-up values', () => {
  it('give known countries their own cells, admit a few unknown ones per window, and count the rest as other', async () => {
    const a = aggregates(tempDir());
    const made = Array.from({ length: 300 }, (_, i) => event(i, { country: `Atlantis-${i}` }));
    await a.handle([...made, event(1000, { country: 'NZ' }), event(1001, { country: 'New Zealand' })], 0);
    const countries = byValue(a, 'country');
    assert.equal(countries.get('NZ'), 1, 'a real country seen after 300 made-up ones is itself');
    assert.equal(countries.get('New Zealand'), 1);
    const unknown = [...countries.keys()].filter((c) => c.startsWith('Atlantis-'));
    assert.equal(unknown.length, 20, 'twenty unknown values admitted in the window');
    assert.equal(countries.get('other'), 280);
    assert.equal(
      [...countries.values()].reduce((x, y) => x + y, 0),
      302,
      'every event is counted once',
    );
  });

  it('bound unknown event names the same way, and keep exact per-event totals when the cell budget is spent', async () => {
    let dropped = 0;
    const a = aggregates(tempDir(), { maxCells: 40, onDropped: (n) => (dropped += n) });
    const names = Array.from({ length: 100 }, (_, i) => event(i, { event: `made_up_${i}`, country: 'GB' }));
    await a.handle(names, 0);
    const totals = byValue(a, 'all');
    assert.equal(totals.size, 1, 'the all dimension has one value');
    const perEvent = new Map<string, number>();
    for (const p of a.query('1m', { dimension: 'all' })) perEvent.set(p.event, p.count);
    assert.equal(perEvent.size, 21, '20 unknown names and other');
    assert.equal(perEvent.get('other'), 80);
    const cells = a.query('1m').length + a.query('1h').length;
    assert.ok(cells <= 40 + 2 * 21, `cells ${cells} stay within the budget plus the per-event totals`);
    assert.ok(dropped > 0, 'events whose cohort cells did not fit are reported');
    await a.handle([event(500, { event: 'login', country: 'GB' })], 100);
    assert.equal(a.query('1m', { event: 'login', dimension: 'all' })[0]?.count, 1, 'a known event is still counted');
  });

  it('snapshot in time slices, and count the next batches while the last snapshot is written', async () => {
    const dir = tempDir();
    const a = aggregates(dir, { snapshotEveryMs: 0, maxUnknownPerWindow: 1_000_000 });
    // A window for each of 6 hours of minutes, each with cells of its own countries: megabytes of JSON.
    const batch = Array.from({ length: 60_000 }, (_, i) => ({
      ...event(i, { country: `C${i % 500}` }),
      time: new Date(MINUTE - (i % 360) * 60_000).toISOString(),
    }));
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 1);
    await a.handle(batch, 0);
    clearInterval(ticker);
    assert.ok(ticks > 0, 'the event loop turned while the snapshot was rendered');
    // Counted while that snapshot is written; the next one lands after it, and the file ends with both.
    await a.handle([event(70_000, { country: 'GB' })], batch.length);
    await a.close();
    const again = aggregates(dir, { maxUnknownPerWindow: 1_000_000 });
    assert.equal(await again.resumeAt(0), batch.length + 1);
    assert.deepEqual(again.query('1m'), a.query('1m'));
    assert.deepEqual(again.query('1h'), a.query('1h'));
  });

  it('keep what each window admitted across a restart from the snapshot', async () => {
    const dir = tempDir();
    const first = aggregates(dir, { snapshotEveryMs: 0 });
    await first.handle(
      Array.from({ length: 20 }, (_, i) => event(i, { country: `Atlantis-${i}` })),
      0,
    );
    await first.close();
    const second = aggregates(dir);
    assert.equal(await second.resumeAt(0), 20);
    await second.handle([event(21, { country: 'Lemuria' }), event(22, { country: 'Atlantis-3' })], 20);
    const countries = byValue(second, 'country');
    assert.equal(countries.get('other'), 1, 'the window was full before the restart');
    assert.equal(countries.get('Atlantis-3'), 2);
    assert.equal(countries.get('__proto__'), undefined);
  });
});
