import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildLakehouse, Lakehouse, sql } from '../../src/workbench/index.js';
import { days, eventSpine, labels, spine } from '../../src/workbench/spine.js';
import { tempDir } from '../helpers/tmp.js';

// Customer 1001 buys on Jan 5 and Jan 20; 1002 on Jan 12 and at exactly Feb 5 00:00 (a window's
// closing edge); 1003 at exactly Jan 8 00:00 (a moment of the grid).
const CSV = `InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
500001,A1,THING,1,2011-01-05 10:00:00,1.00,1001.0,United Kingdom
500002,A1,THING,1,2011-01-20 10:00:00,1.00,1001.0,United Kingdom
500003,A1,THING,1,2011-01-12 10:00:00,1.00,1002.0,United Kingdom
500004,A1,THING,1,2011-02-05 00:00:00,1.00,1002.0,United Kingdom
500005,A1,THING,1,2011-01-08 00:00:00,1.00,1003.0,United Kingdom
`;

describe('spine and labels', () => {
  const dir = tempDir();
  let lake: Lakehouse;
  before(async () => {
    writeFileSync(join(dir, 'retail.csv'), CSV);
    await buildLakehouse({ lakeDir: join(dir, 'lake'), retail: join(dir, 'retail.csv') });
    lake = await Lakehouse.open(join(dir, 'lake'));
  });
  after(() => lake?.close());

  const buyers = sql`SELECT user_id, min(time) AS first FROM events WHERE source = 'retail' AND event = 'purchase' GROUP BY 1`;
  const grid = () => spine({ entities: buyers, from: '2011-01-08', to: '2011-01-29', every: '7d', since: 'first' });
  const labelled = () => labels(grid(), { events: sql`SELECT * FROM events WHERE source = 'retail'`, event: 'purchase', within: '7d', name: 'bought' });
  const day = (d: string) => new Date(`2011-${d}T00:00:00Z`);

  it('builds the as-of grid of entities that exist strictly before each moment, and labels strictly after it', async () => {
    const rows = await lake.query<{ user_id: string; as_of: Date; bought: number }>(labelled());
    assert.deepEqual(
      rows.map((r) => [r.user_id, r.as_of.toISOString().slice(5, 10), r.bought]),
      [
        ['1001', '01-08', 0], // 1003's first purchase is at 01-08 00:00 exactly: not before the moment
        ['1001', '01-15', 1],
        ['1002', '01-15', 0],
        ['1003', '01-15', 0],
        ['1001', '01-22', 0],
        ['1002', '01-22', 0],
        ['1003', '01-22', 0],
        ['1001', '01-29', 0],
        ['1002', '01-29', 1], // bought at 02-05 00:00, the window's closing edge: (as_of, as_of + 7d]
        ['1003', '01-29', 0],
      ],
    );
    // values read back go into sql as they are: no cast
    const [first] = rows;
    const again = await lake.query(sql`SELECT count(*) AS n FROM ${labelled()} WHERE user_id = ${first!.user_id} AND as_of = ${first!.as_of}`);
    assert.equal(again[0]!.n, 1);
    assert.deepEqual(rows[0]!.as_of, day('01-08'));
  });

  it('keeps an entity on the grid strictly before its until time (NULL: for good), and labels the outcome at that time', async () => {
    // 1001 leaves at exactly 01-15 00:00, a moment; 1002 never; 1003 leaves when it enters, at 01-08 00:00.
    const entities = sql`SELECT user_id, min(time) AS first,
                                CASE user_id WHEN '1001' THEN TIMESTAMP '2011-01-15 00:00:00' WHEN '1002' THEN NULL ELSE max(time) END AS gone
                         FROM events WHERE source = 'retail' AND event = 'purchase' GROUP BY 1`;
    const staying = spine({ entities, from: '2011-01-08', to: '2011-01-29', every: '7d', since: 'first', until: 'gone' });
    const rows = await lake.query<{ user_id: string; as_of: Date; left: number }>(
      labels(staying, { name: 'left', within: '7d', events: sql`SELECT user_id, gone AS time FROM (${entities}) e WHERE gone IS NOT NULL` }),
    );
    assert.deepEqual(
      rows.map((r) => [r.user_id, r.as_of.toISOString().slice(5, 10), r.left]),
      [
        ['1001', '01-08', 1], // leaves at 01-15 00:00: in (01-08, 01-15], and off the grid from 01-15
        ['1002', '01-15', 0],
        ['1002', '01-22', 0],
        ['1002', '01-29', 0],
      ],
    );
  });

  it('puts a moment 1 ms after each event, so its features include the event, between since and until', async () => {
    const retail = sql`SELECT * FROM events WHERE source = 'retail'`;
    const at = (iso: string) => new Date(Date.parse(iso) + 1);
    const every = await lake.query<{ user_id: string; as_of: Date }>(eventSpine({ event: 'purchase', events: retail, from: '2011-01-01', to: '2011-02-05' }));
    assert.deepEqual(
      every.map((r) => [r.user_id, r.as_of]),
      [
        ['1001', at('2011-01-05T10:00:00Z')],
        ['1003', at('2011-01-08T00:00:00Z')],
        ['1002', at('2011-01-12T10:00:00Z')],
        ['1001', at('2011-01-20T10:00:00Z')],
        // 1002's purchase at 02-05 00:00 has its moment 1 ms later, past `to`.
      ],
    );
    // 1001 from its first purchase on (strictly after); 1002 until 01-12 10:00:00.001 (strictly before); 1003 not at all.
    const entities = sql`SELECT * FROM (VALUES ('1001', TIMESTAMP '2011-01-05 10:00:00', NULL), ('1002', TIMESTAMP '2011-01-01 00:00:00', TIMESTAMP '2011-01-12 10:00:00.001')) AS e(user_id, since, gone)`;
    const some = await lake.query<{ user_id: string; as_of: Date }>(
      eventSpine({ event: 'purchase', events: retail, from: '2011-01-01', to: '2011-03-01', entities, since: 'since', until: 'gone' }),
    );
    assert.deepEqual(
      some.map((r) => [r.user_id, r.as_of]),
      [
        ['1001', at('2011-01-05T10:00:00Z')],
        ['1001', at('2011-01-20T10:00:00Z')],
      ],
    );
    const labelled = await lake.query<{ user_id: string; bought: number }>(
      sql`SELECT l.user_id, l.bought FROM ${labels(eventSpine({ event: 'purchase', events: retail, from: '2011-01-01', to: '2011-01-10' }), { name: 'bought', within: '21d', event: 'purchase', events: retail })} l`,
    );
    // 1001's next purchase on 01-20 is within 21 days of 01-05 10:00:00.001; the event itself is not its own label.
    assert.deepEqual(
      labelled.map((r) => [r.user_id, r.bought]),
      [
        ['1001', 1],
        ['1003', 0],
      ],
    );
    assert.throws(() => eventSpine({ event: 'purchase', from: '2011-01-01', to: '2011-02-01', since: 'first' }), /since and until are columns of entities/);
  });

  it('writes whole numbers of days as durations, and refuses the rest naming the option', () => {
    assert.equal(days(14, 'stepDays'), '14d');
    for (const bad of [0, 1.5, -3, Number.NaN, 1_000_000])
      assert.throws(() => days(bad, 'horizonDays'), new RegExp(`^InputError: horizonDays: ${String(bad)} is not a whole number of days`));
  });

  it('refuses durations and dates it cannot read, naming the option', () => {
    assert.throws(() => spine({ entities: 'users', from: '2011-01-01', to: '2011-02-01', every: '7 days' as never }), /every: "7 days" is not a duration/);
    assert.throws(() => spine({ entities: 'users', from: 'soon', to: '2011-02-01', every: '7d' }), /from: "soon" is not a date/);
    assert.throws(() => labels('s', { name: 'y', within: '0d' as never }), /within: "0d" is not a duration/);
  });
});
