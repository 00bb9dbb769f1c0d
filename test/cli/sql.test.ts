import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { before, describe, it } from 'node:test';
import { DuckDb } from '../../src/workbench/duckdb.js';
import { buildLakehouse, sql } from '../../src/workbench/index.js';
import { tempDir } from '../helpers/tmp.js';

const BIN = resolve('bin/wb.cjs');

describe('wb sql', () => {
  const dir = tempDir();
  const work = join(dir, 'work');
  const wb = (args: string[], input?: string) => {
    const r = spawnSync(process.execPath, [BIN, '--data-dir', dir, 'sql', ...args], {
      cwd: work,
      input,
      encoding: 'utf8',
      env: { ...process.env, WB_DEBUG: '' },
    });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };

  before(async () => {
    mkdirSync(work);
    await buildLakehouse({ lakeDir: join(dir, 'lake'), telco: resolve('test/fixtures/telco-small.csv') });
  });

  it('prints an aligned table, numbers right-aligned, with the row count', () => {
    const r = wb(['SELECT customer_id, tenure, monthly_charges FROM telco_customers ORDER BY tenure;']);
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trimEnd().split('\n');
    assert.deepEqual(lines, [
      'customer_id  tenure  monthly_charges',
      '-----------  ------  ---------------',
      '4472-LVYGI        0            52.55',
      '7590-VHVEG        1            29.85',
      '9237-HQITU        2             70.7',
      '(3 rows)',
    ]);
  });

  it('truncates past --max-rows and says so, and escapes control characters', () => {
    const r = wb(["SELECT range AS i, chr(10) || chr(27) || 'x' AS s FROM range(5)", '--max-rows', '2']);
    assert.equal(r.code, 0, r.err);
    // eslint-disable-next-line no-regex-spaces -- the expected table as printed, two spaces between columns
    assert.match(r.out, /^i  s\n-  -+\n0  \\n\\u001bx\n1  \\n\\u001bx\n\(5 rows; showing the first 2: raise --max-rows, or use --format csv for all\)\n$/);
  });

  it('writes CSV, JSON and NDJSON with NULLs, quotes, lists and exact big integers', () => {
    const q = `SELECT 1 AS a, 'x,"y' AS b, NULL AS c, [1, 2] AS l, 9223372036854775807 AS big, TIMESTAMP '2025-01-02 03:04:05' AS t, DATE '2025-01-02' AS d`;
    assert.equal(wb([q, '--format', 'csv']).out, 'a,b,c,l,big,t,d\n1,"x,""y",,"[1,2]",9223372036854775807,2025-01-02 03:04:05,2025-01-02\n');
    const json = wb([q, '--format', 'json']).out;
    assert.equal(json, '[{"a":1,"b":"x,\\"y","c":null,"l":[1,2],"big":9223372036854775807,"t":"2025-01-02T03:04:05.000Z","d":"2025-01-02T00:00:00.000Z"}]\n');
    assert.equal(JSON.parse(json)[0].b, 'x,"y');
    assert.equal(wb(['SELECT range AS i FROM range(2)', '--format', 'ndjson']).out, '{"i":0}\n{"i":1}\n');
  });

  it('writes Parquet through DuckDB to --out, and refuses to replace it without --force', async () => {
    const r = wb(['SELECT customer_id, tenure FROM telco_customers ORDER BY 1', '--format', 'parquet', '--out', 'out.parquet']);
    assert.equal(r.code, 0, r.err);
    const db = await DuckDb.open();
    const back = await db.query(sql`SELECT count(*) AS n, min(customer_id) AS first FROM read_parquet(${join(work, 'out.parquet')})`);
    db.close();
    assert.deepEqual([back.columns[0]![0], back.columns[1]![0]], [3n, '4472-LVYGI']);
    const again = wb(['SELECT 1', '--format', 'parquet', '--out', 'out.parquet']);
    assert.equal(again.code, 2);
    assert.match(again.err, /^error: --out out\.parquet: the file exists; add --force to replace it/);
    assert.equal(wb(['SELECT 1', '--format', 'parquet', '--out', 'out.parquet', '--force']).code, 0);
  });

  it('keeps --out inside the current directory unless the path is absolute, and never inside the lake', () => {
    const up = wb(['SELECT 1', '--format', 'csv', '--out', '../escape.csv']);
    assert.equal(up.code, 2);
    assert.match(up.err, /outside the current directory; give an absolute path/);
    assert.equal(existsSync(join(dir, 'escape.csv')), false);
    const absolute = wb(['SELECT 1 AS one', '--format', 'csv', '--out', join(dir, 'abs.csv')]);
    assert.equal(absolute.code, 0, absolute.err);
    const lake = wb(['SELECT 1', '--format', 'csv', '--out', join(dir, 'lake', 'x.csv')]);
    assert.equal(lake.code, 2);
    assert.match(lake.err, /inside the lakehouse/);
  });

  it('prints a failing query with its SQL and exits 1 without a stack', () => {
    const r = wb(['SELECT no_such_column FROM telco_customers']);
    assert.equal(r.code, 1);
    assert.match(r.err, /^error: Binder Error: .*no_such_column[\s\S]*-- in SQL:\n {4}SELECT no_such_column FROM telco_customers\n$/);
    assert.doesNotMatch(r.err, /at .*\.ts:\d+/);
  });

  it('opens a prompt without a query: multi-line statements, .tables, errors that do not end it, .exit', () => {
    writeFileSync(join(work, 'noop'), '');
    const r = wb([], 'SELECT 1 AS a,\n  2 AS b;\n.tables\nSELECT nope;\nSELECT 3 AS c;\n.exit\nSELECT 4 AS never;\n');
    assert.equal(r.code, 0, r.err);
    // eslint-disable-next-line no-regex-spaces -- the expected table as printed, two spaces between columns
    assert.match(r.out, /^a  b\n-  -\n1  2\n\(1 row\)\ntelco_customers +the IBM Telco/);
    assert.match(r.out, /\nc\n-\n3\n\(1 row\)\n$/);
    assert.doesNotMatch(r.out, /never/);
    assert.match(r.err, /^error: Binder Error[\s\S]*SELECT nope\n$/);
  });
});
