import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import {
  appSource,
  arraySource,
  retailEvent,
  mergeSources,
  replayBatches,
  replayEvents,
  retailSource,
  type ReplaySource,
  type TimedEvent,
} from '../../src/app/replay.js';
import { simulateHistory } from '../../src/app/simulator.js';
import { SimulatedClock } from '../../src/workbench/clock.js';
import { InputError, NotFoundError } from '../../src/workbench/errors.js';
import { EventSchema, type Event } from '../../src/workbench/event.js';
import { readCsv } from '../../src/workbench/lakehouse/csv.js';
import { retailSpec, type RetailRow } from '../../src/workbench/lakehouse/retail.js';
import { tempDir } from '../helpers/tmp.js';

const FIXTURE = join(__dirname, '..', 'fixtures', 'retail-small.csv');
const SIM = { users: 30, days: 3, seed: 5 };

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** `n` events `stepMs` apart from `start`, in time order. */
function evenly(name: string, start: string, n: number, stepMs: number): Event[] {
  return Array.from({ length: n }, (_, i) => ({
    event_id: `${name}-${i}`,
    time: new Date(Date.parse(start) + i * stepMs).toISOString(),
    user_id: `${name}-user`,
    event: 'tick',
    props: { i },
  }));
}

describe('replay sources', () => {
  it('reads the retail log as purchase and return events by customer, in file order, skipping the lines the lakehouse quarantines', async () => {
    const source = retailSource({ file: FIXTURE });
    const events = await collect(source.events());
    assert.deepEqual(
      events.map((e) => e.event_id),
      ['retail-536365-1', 'retail-536365-2', 'retail-536366-1', 'retail-C536379-1', 'retail-536373-1'],
    );
    assert.deepEqual(events[0], {
      event_id: 'retail-536365-1',
      time: '2010-12-01T08:26:00.000Z',
      user_id: 'retail-17850',
      event: 'purchase',
      props: {
        invoice: '536365',
        stock_code: '85123A',
        description: 'WHITE HANGING HEART T-LIGHT HOLDER',
        quantity: 6,
        unit_price: 2.55,
        amount: 15.3,
        country: 'GB',
        device: 'web',
      },
    });
    assert.equal(events[3]!.event, 'return');
    assert.equal(events[4]!.props.country, 'IE', 'the retail log\'s "EIRE" as its ISO code');
    assert.equal(events[4]!.user_id, 'retail-12583');
    for (const e of events) assert.equal(EventSchema.safeParse(e).success, true, JSON.stringify(e));
    // No CustomerID, a bad date, a short line, a stray quote, a future date (the first five kept), a bad
    // quantity, and two countries outside the vocabulary ("Channel Islands", "Atlantis").
    assert.equal(source.skipped.count, 8);
    assert.deepEqual(
      source.skipped.first.map((r) => r.line),
      [5, 6, 7, 9, 10],
    );
    // A second pass starts over and counts again.
    assert.equal((await collect(source.events())).length, 5);
    assert.equal(source.skipped.count, 8);
  });

  it('accepts exactly the rows the lakehouse build (readCsv) accepts, with the same ids', async () => {
    const rows: RetailRow[] = [];
    const rejected: number[] = [];
    await readCsv(FIXTURE, retailSpec(), { onRow: (r) => rows.push(r), onReject: (r) => rejected.push(r.line) });
    const source = retailSource({ file: FIXTURE });
    assert.deepEqual(await collect(source.events()), rows.map(retailEvent));
    assert.equal(source.skipped.count, rejected.length);
  });

  it('names a missing retail file and refuses a file that is not the retail log', async () => {
    const dir = tempDir();
    await assert.rejects(
      collect(retailSource({ file: join(dir, 'nope.csv.gz') }).events()),
      (err: unknown) => err instanceof NotFoundError && /nope\.csv\.gz: no such file/.test(err.message),
    );
    const other = join(dir, 'other.csv');
    writeFileSync(other, 'a,b\n1,2\n');
    await assert.rejects(
      collect(retailSource({ file: other }).events()),
      (err: unknown) => err instanceof InputError && /other\.csv:1.*unknown column "a"/.test(err.message),
    );
  });

  it('plays the simulated app as the simulator writes it, from its start date', async () => {
    const source = appSource(SIM);
    assert.equal(source.origin, Date.parse('2025-01-01T00:00:00Z'));
    assert.deepEqual(await collect(source.events()), simulateHistory(SIM).events);
  });
});

describe('merging sources', () => {
  it('puts every source on one timeline from its own origin, in time order, each source in its own order', async () => {
    const a = appSource(SIM);
    const b: ReplaySource = { ...appSource({ ...SIM, seed: 6, start: '2024-06-01' }), name: 'other' };
    const merged = await collect(mergeSources([a, b]));
    const own = async (s: ReplaySource) => (await collect(s.events())).map((e) => e.event_id);
    assert.equal(merged.length, (await own(a)).length + (await own(b)).length);
    for (let i = 1; i < merged.length; i++) assert.ok(merged[i]!.offset >= merged[i - 1]!.offset, `offset order at ${i}`);
    assert.deepEqual(
      merged.filter((t) => t.source === 'app').map((t) => t.event.event_id),
      await own(a),
    );
    assert.deepEqual(
      merged.filter((t) => t.source === 'other').map((t) => t.event.event_id),
      await own(b),
    );
    // 2024 and 2025 interleave: the offsets, not the dates, order the stream.
    const sources = merged.slice(0, 200).map((t) => t.source);
    assert.ok(sources.includes('app') && sources.includes('other'));
    for (const t of merged) assert.equal(t.offset, t.time - t.origin);
    assert.ok(merged.every((t) => t.offset < 3 * 86_400_000));
  });

  it("aligns the 2010 retail log with the 2025 app on the same first day, keeping the log's order", async () => {
    const merged = await collect(mergeSources([retailSource({ file: FIXTURE }), appSource(SIM)]));
    const retail = merged.filter((t) => t.source === 'retail');
    assert.equal(retail[0]!.origin, Date.parse('2010-12-01T00:00:00Z'));
    assert.equal(retail[0]!.offset, (8 * 60 + 26) * 60_000);
    assert.deepEqual(
      retail.map((t) => t.event.event_id),
      (await collect(retailSource({ file: FIXTURE }).events())).map((e) => e.event_id),
    );
    const app = merged.filter((t) => t.source === 'app');
    assert.equal(app[0]!.origin, Date.parse('2025-01-01T00:00:00Z'));
    // The shop's second day comes after the app's first day and before its third.
    const index = (t: TimedEvent) => merged.indexOf(t);
    const shopDay2 = retail.find((t) => t.event.event_id === 'retail-536373-1')!;
    assert.ok(index(shopDay2) > index(app.find((t) => t.offset < 86_400_000)!));
    assert.ok(index(shopDay2) < index(app.find((t) => t.offset >= 2 * 86_400_000)!));
  });
});

describe('pacing', () => {
  it('respects the speed: 2 simulated hours at speed 36000 take about 0.2 s', async () => {
    const source = arraySource('ticks', evenly('t', '2025-03-01T00:00:00Z', 25, 5 * 60_000));
    const started = Date.now();
    const events = await collect(replayEvents([source], { speed: 36_000 }));
    const elapsed = Date.now() - started;
    assert.equal(events.length, 25);
    const first = Date.parse(events[0]!.time);
    const span = Date.parse(events.at(-1)!.time) - first;
    assert.ok(span >= 195 && span < 320, `stamps span ${span} ms`);
    assert.ok(elapsed >= 195 && elapsed < 450, `replay took ${elapsed} ms`);
    // No event is emitted before it is due (timers and millisecond stamps round by a millisecond or so).
    events.forEach((e, i) => assert.ok(Date.parse(e.time) - first >= (i * 5 * 60_000) / 36_000 - 2, `event ${i} early`));
  });

  it('stamps events with the wall clock and keeps the original time, ids and props', async () => {
    const before = Date.now();
    const events = await collect(replayEvents([retailSource({ file: FIXTURE })], { speed: Infinity }));
    const after = Date.now();
    const original = await collect(retailSource({ file: FIXTURE }).events());
    assert.equal(events.length, original.length);
    events.forEach((e, i) => {
      const t = Date.parse(e.time);
      assert.ok(t >= before && t <= after, `${e.time} is now`);
      assert.ok(e.time.endsWith('Z'));
      assert.equal(e.props.original_time, original[i]!.time);
      assert.deepEqual(
        { ...e, time: original[i]!.time, props: { ...e.props, original_time: undefined } },
        { ...original[i]!, props: { ...original[i]!.props, original_time: undefined } },
      );
      assert.equal(EventSchema.safeParse(e).success, true);
    });
  });

  it('on a simulated clock, stamps events on one calendar and drives the clock, never ahead of the events sent', async () => {
    const calendar = Date.parse('2025-01-01T00:00:00Z');
    const clock = new SimulatedClock(calendar);
    // The 2010 retail log and a source on its own 2025-03-01 origin, both placed on the 2025-01-01 calendar.
    const ticks = evenly('t', '2025-03-01T00:00:00Z', 40, 30 * 60_000);
    const sources = [retailSource({ file: FIXTURE }), arraySource('ticks', ticks, Date.parse('2025-03-01T00:00:00Z'))];
    const merged = await collect(mergeSources(sources));
    const batches: { events: Event[]; clockAt: number }[] = [];
    for await (const batch of replayBatches(sources, { speed: 3_600_000, batch: 7, lingerMs: 1, simulated: { clock, calendar } })) {
      batches.push({ events: batch.events, clockAt: clock.now() });
    }
    const events = batches.flatMap((b) => b.events);
    assert.equal(events.length, merged.length);
    events.forEach((e, i) => {
      assert.equal(Date.parse(e.time), calendar + merged[i]!.offset, `${e.event_id} at its place on the calendar`);
      assert.equal(e.props.original_time, new Date(merged[i]!.time).toISOString());
    });
    for (const b of batches) {
      const newest = Math.max(...b.events.map((e) => Date.parse(e.time)));
      assert.ok(b.clockAt >= newest, `the clock (${new Date(b.clockAt).toISOString()}) has reached every event handed on (${new Date(newest).toISOString()})`);
    }
    const last = Math.max(...events.map((e) => Date.parse(e.time)));
    await sleep(20);
    assert.equal(clock.now(), last, 'after the replay the clock stands at its last event');
  });

  it('prefixes event ids and user ids with a run tag, and refuses a bad tag', async () => {
    const plain = await collect(replayEvents([appSource(SIM)], { speed: Infinity, maxEvents: 50 }));
    const tagged = await collect(replayEvents([appSource(SIM)], { speed: Infinity, maxEvents: 50, run: 'r2' }));
    assert.deepEqual(
      tagged.map((e) => e.event_id),
      plain.map((e) => `r2-${e.event_id}`),
    );
    assert.deepEqual(
      tagged.map((e) => e.user_id),
      plain.map((e) => `r2-${e.user_id}`),
    );
    await assert.rejects(collect(replayEvents([appSource(SIM)], { speed: Infinity, run: 'a b' })), /run tag "a b"/);
  });

  it('stops after max-events, after a number of days, and when aborted', async () => {
    assert.equal((await collect(replayEvents([appSource(SIM), retailSource({ file: FIXTURE })], { speed: Infinity, maxEvents: 17 }))).length, 17);

    const all = simulateHistory(SIM).events;
    const firstDay = all.filter((e) => e.time < '2025-01-02');
    const oneDay = await collect(replayEvents([appSource(SIM)], { speed: Infinity, days: 1 }));
    assert.deepEqual(
      oneDay.map((e) => e.event_id),
      firstDay.map((e) => e.event_id),
    );

    // At speed 1 the second event is due in an hour: the abort ends the wait at once.
    const controller = new AbortController();
    const slow = replayEvents([arraySource('slow', evenly('s', '2025-01-01T00:00:00Z', 3, 3_600_000))], { speed: 1, signal: controller.signal, lingerMs: 0 });
    const got: Event[] = [];
    const started = Date.now();
    setTimeout(() => controller.abort(), 50);
    for await (const e of slow) got.push(e);
    assert.ok(Date.now() - started < 1000);
    assert.equal(got.length, 1);
  });

  it('hands events on in batches of at most the batch size, with where the replay stands', async () => {
    const batches = await collect(replayBatches([retailSource({ file: FIXTURE }), appSource(SIM)], { speed: Infinity, batch: 7 }));
    const total = batches.reduce((n, b) => n + b.events.length, 0);
    assert.equal(total, 5 + simulateHistory(SIM).events.length);
    for (const b of batches.slice(0, -1)) assert.equal(b.events.length, 7);
    const last = batches.at(-1)!;
    assert.ok(last.events.length >= 1 && last.events.length <= 7);
    assert.deepEqual(Object.keys(last.dates), ['retail', 'app']);
    assert.equal(last.dates.app, '2025-01-03');
    assert.equal(last.dates.retail, '2010-12-03');
  });

  it('refuses a speed that is not positive', async () => {
    await assert.rejects(collect(replayEvents([appSource(SIM)], { speed: 0 })), /speed must be a positive number/);
  });
});
