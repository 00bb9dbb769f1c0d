import assert from 'node:assert/strict';
import { describe as suite, it } from 'node:test';
import { DuckDb } from '../../src/workbench/duckdb.js';
import { agg, describe, groupBy, head, pivot, rowsOf, valueCounts } from '../../src/workbench/frames.js';
import { sql } from '../../src/workbench/sql.js';

interface Sale {
  country: string;
  month: string;
  amount: number | null;
  user_id: number;
}

const SALES: Sale[] = [
  { country: 'GB', month: '2025-01', amount: 7, user_id: 1 },
  { country: 'FR', month: '2025-01', amount: 2, user_id: 2 },
  { country: 'GB', month: '2025-02', amount: 1, user_id: 1 },
  { country: 'DE', month: '2025-02', amount: null, user_id: 3 },
  { country: 'GB', month: '2025-02', amount: 4, user_id: 4 },
];

suite('frames', () => {
  it('describes numeric columns as pandas does: sample std, linearly interpolated quartiles', async () => {
    const table = describe(SALES);
    assert.deepEqual(
      table.map((r) => r.statistic),
      ['count', 'mean', 'std', 'min', '25%', '50%', '75%', 'max'],
    );
    const amount = Object.fromEntries(table.map((r) => [r.statistic, r.amount]));
    // pandas: pd.Series([7, 2, 1, 4]).describe() gives 25% 1.75, 50% 3.0, 75% 4.75, std sqrt(7)
    assert.deepEqual(amount, { count: 4, mean: 3.5, std: Math.sqrt(7), min: 1, '25%': 1.75, '50%': 3, '75%': 4.75, max: 7 });
    // and the same numbers from DuckDB's quantile_cont (linear interpolation) and stddev_samp
    const db = await DuckDb.open();
    const r = await db.query(sql`SELECT count(x) AS n, avg(x), stddev_samp(x), min(x), quantile_cont(x, 0.25), median(x), quantile_cont(x, 0.75), max(x)
                                  FROM (SELECT unnest(${[7, 2, 1, null, 4]}) AS x)`);
    db.close();
    const duck = r.columns.map((c) => Number(c[0]));
    table.forEach((t, i) => assert.ok(Math.abs((t.amount as number) - duck[i]!) < 1e-12, `${t.statistic}: ${t.amount} vs DuckDB ${duck[i]}`));
    assert.ok(
      table.every((t) => !('country' in t)),
      'only numeric columns',
    );
  });

  it('counts values, most frequent first, with their share', () => {
    assert.deepEqual(valueCounts(SALES, 'country'), [
      { country: 'GB', count: 3, share: 0.6 },
      { country: 'DE', count: 1, share: 0.2 },
      { country: 'FR', count: 1, share: 0.2 },
    ]);
  });

  it('groups by keys with named aggregations, groups in key order, nulls skipped', () => {
    const byMonth = groupBy(SALES, ['month'], {
      revenue: agg('sum', 'amount'),
      rows: agg('count'),
      buyers: agg('nunique', 'user_id'),
      avg: agg('mean', 'amount'),
    });
    assert.deepEqual(byMonth, [
      { month: '2025-01', revenue: 9, rows: 2, buyers: 2, avg: 4.5 },
      { month: '2025-02', revenue: 5, rows: 3, buyers: 3, avg: 2.5 },
    ]);
    const label: string = byMonth[0]!.month; // typed from the rows: no cast
    assert.equal(label, '2025-01');
    assert.throws(() => groupBy(SALES, ['month'], { x: agg('sum', 'country') }), /x: sum of "country" needs numbers, and it holds "GB"/);
  });

  it('pivots into one column per value, empty cells null, column names from data set safely', () => {
    assert.deepEqual(pivot(SALES, { index: 'country', columns: 'month', values: 'amount', agg: 'sum' }), [
      { country: 'DE', '2025-01': null, '2025-02': 0 },
      { country: 'FR', '2025-01': 2, '2025-02': null },
      { country: 'GB', '2025-01': 7, '2025-02': 5 },
    ]);
    const hostile = pivot([{ k: 'a', c: '__proto__', v: 1 }], { index: 'k', columns: 'c', values: 'v' });
    assert.deepEqual(Object.keys(hostile[0]!), ['k', '__proto__']);
    assert.equal(Object.getPrototypeOf(hostile[0]), Object.prototype);
  });

  it('takes the head, and turns danfo frames into rows that keep their row labels', () => {
    assert.deepEqual(head(SALES, 2), SALES.slice(0, 2));
    const dfd = require('danfojs') as {
      DataFrame: new (d: Record<string, unknown[]>) => { describe(): { columns: string[]; values: unknown[][]; index: string[] } };
    };
    const stats = rowsOf(new dfd.DataFrame({ x: [7, 2, 1, 4] }).describe(), 'statistic');
    assert.deepEqual(
      stats.map((r) => r.statistic),
      ['count', 'mean', 'std', 'min', 'median', 'max', 'variance'],
    );
    assert.equal(stats[1]!.x, 3.5);
  });
});
