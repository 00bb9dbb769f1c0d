import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, after, describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { Lakehouse, SqlError, buildLakehouse, ident, sql } from '../../src/workbench/index.js';
import { tempDir } from '../helpers/tmp.js';

describe('Lakehouse query API', () => {
  const dir = tempDir();
  let lake: Lakehouse;
  before(async () => {
    await buildLakehouse({ lakeDir: join(dir, 'lake'), telco: 'test/fixtures/telco-small.csv' });
    lake = await Lakehouse.open(join(dir, 'lake'));
  });
  after(() => lake?.close());

  it('defines only the views whose data was built', () => {
    assert.deepEqual(
      lake.views.map((v) => v.name),
      ['telco_customers', 'quarantine'],
    );
  });

  it('returns plain rows with safe BIGINTs as numbers and larger ones as bigint', async () => {
    const rows = await lake.query(
      sql`SELECT count(*) AS n, CAST(2 AS BIGINT) ** 62 AS big_double, CAST(4611686018427387904 AS BIGINT) AS big FROM telco_customers`,
    );
    assert.deepEqual(rows, [{ n: 3, big_double: 2 ** 62, big: 4611686018427387904n }]);
    assert.equal(typeof rows[0]!.n, 'number');
  });

  it('keeps a column aliased __proto__ as a column, not the row prototype', async () => {
    const [row] = await lake.query(sql`SELECT 1 AS ${ident('__proto__')}, 2 AS b`);
    assert.equal(Object.getPrototypeOf(row), Object.prototype);
    assert.deepEqual(Object.keys(row!), ['__proto__', 'b']);
    assert.equal(Object.getOwnPropertyDescriptor(row, '__proto__')?.value, 1);
  });

  it('escapes interpolated values: a hostile string is data, not SQL', async () => {
    const rows = await lake.query(sql`SELECT count(*) AS n FROM telco_customers WHERE customer_id = ${"x' OR '1'='1"}`);
    assert.equal(rows[0]!.n, 0);
    const named = await lake.query(sql`SELECT ${ident('customer_id')} FROM ${ident('telco_customers')} WHERE churn ORDER BY 1`);
    assert.deepEqual(named, [{ customer_id: '9237-HQITU' }]);
  });

  it('returns Apache Arrow tables, BIGINT as Int64 and timestamps as timestamps', async () => {
    const table = await lake.arrow(
      sql`SELECT customer_id, count(*) AS n, TIMESTAMP '2025-01-02 03:04:05' AS t, monthly_charges FROM telco_customers GROUP BY ALL ORDER BY 1`,
    );
    assert.ok(table instanceof arrow.Table);
    assert.equal(table.numRows, 3);
    assert.equal(String(table.schema.fields.find((f) => f.name === 'n')!.type), 'Int64');
    assert.equal(table.getChild('n')!.get(0), 1n);
    assert.equal(table.getChild('t')!.get(0), Date.UTC(2025, 0, 2, 3, 4, 5));
    assert.equal(table.getChild('monthly_charges')!.get(0), 52.55);
  });

  it('returns danfo DataFrames with BIGINT converted to numbers', async () => {
    const df = await lake.frame(sql`SELECT customer_id, count(*) AS n, tenure FROM telco_customers GROUP BY ALL ORDER BY 1`);
    assert.deepEqual(df.shape, [3, 3]);
    assert.deepEqual(df.columns, ['customer_id', 'n', 'tenure']);
    assert.deepEqual(
      df.values.map((r) => r[1]),
      [1, 1, 1],
    );
  });

  it('carries the SQL that failed in its error', async () => {
    await assert.rejects(lake.query(sql`SELECT no_such_column FROM telco_customers`), (err: Error) => {
      assert.ok(err instanceof SqlError);
      assert.equal(err.sql, 'SELECT no_such_column FROM telco_customers');
      assert.match(err.message, /no_such_column[\s\S]*-- in SQL:\n {4}SELECT no_such_column FROM telco_customers/);
      return true;
    });
  });
});
