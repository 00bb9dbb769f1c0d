import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildLakehouse, Lakehouse, sql } from '../../src/workbench/index.js';
import { labels, spine } from '../../src/workbench/spine.js';
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

  it('matches the retail pipeline spine row for row, except at the window edges it treats differently', async () => {
    // the retail pipeline's hand-written spine, with its label window [as_of, as_of + h)
    const old = await lake.query<{ user_id: string; as_of: Date; bought: number }>(sql`
      WITH moments AS (SELECT unnest(generate_series(CAST(${'2011-01-08'} AS TIMESTAMP), CAST(${'2011-01-29'} AS TIMESTAMP), to_days(${7}))) AS as_of),
      purchases AS (SELECT user_id, time FROM events WHERE source = 'retail' AND event = 'purchase'),
      firsts AS (SELECT user_id, min(time) AS first FROM purchases GROUP BY 1)
      SELECT f.user_id, m.as_of,
             CAST(EXISTS (SELECT 1 FROM purchases p WHERE p.user_id = f.user_id AND p.time >= m.as_of AND p.time < m.as_of + to_days(${7})) AS INTEGER) AS bought
      FROM moments m JOIN firsts f ON f.first < m.as_of ORDER BY m.as_of, f.user_id`);
    const fresh = await lake.query<{ user_id: string; as_of: Date; bought: number }>(labelled());
    assert.deepEqual(old.map((r) => [r.user_id, r.as_of]), fresh.map((r) => [r.user_id, r.as_of]), 'the same grid');
    const differ = fresh.filter((r, i) => r.bought !== old[i]!.bought).map((r) => [r.user_id, r.as_of.toISOString().slice(5, 10)]);
    assert.deepEqual(differ, [['1002', '01-29']], 'only the purchase exactly on the closing edge');
  });

  it('refuses durations and dates it cannot read, naming the option', () => {
    assert.throws(() => spine({ entities: 'users', from: '2011-01-01', to: '2011-02-01', every: '7 days' as never }), /every: "7 days" is not a duration/);
    assert.throws(() => spine({ entities: 'users', from: 'soon', to: '2011-02-01', every: '7d' }), /from: "soon" is not a date/);
    assert.throws(() => labels('s', { name: 'y', within: '0d' as never }), /within: "0d" is not a duration/);
  });
});
