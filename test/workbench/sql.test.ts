import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DuckDb } from '../../src/workbench/duckdb.js';
import { ident, join, literal, raw, sql } from '../../src/workbench/sql.js';

describe('sql tagged template', () => {
  it('escapes string values so that quotes cannot end the literal', () => {
    const name = "O'Brien'); DROP TABLE users; --";
    assert.equal(sql`SELECT ${name}`.toString(), `SELECT 'O''Brien''); DROP TABLE users; --'`);
  });

  it('quotes identifiers, including qualified names and embedded quotes', () => {
    assert.equal(sql`SELECT * FROM ${ident('main', 'my "table"')}`.toString(), 'SELECT * FROM "main"."my ""table"""');
  });

  it('writes numbers, bigints, booleans, nulls, dates and lists as literals', () => {
    const q = sql`VALUES (${1.5}, ${2n ** 70n}, ${true}, ${null}, ${undefined}, ${new Date('2025-01-02T03:04:05.678Z')}, ${[1, 'a']})`;
    assert.equal(q.toString(), "VALUES (1.5, 1180591620717411303424, TRUE, NULL, NULL, TIMESTAMP '2025-01-02 03:04:05.678', [1, 'a'])");
  });

  it('refuses values that have no faithful literal', () => {
    assert.throws(() => literal(Number.NaN), /NaN/);
    assert.throws(() => literal(Number.POSITIVE_INFINITY), /Infinity/);
    assert.throws(() => literal('a\0b'), /NUL/);
    assert.throws(() => literal(new Date('nope')), /invalid Date/);
    assert.throws(() => ident(''), /invalid SQL identifier/);
  });

  it('nests fragments and joins lists', () => {
    const cols = join([ident('a'), ident('b')]);
    const where = sql`WHERE ${ident('c')} IN (${join(['x', 'y'])})`;
    assert.equal(sql`SELECT ${cols} FROM t ${where} ${raw('LIMIT 1')}`.toString(), `SELECT "a", "b" FROM t WHERE "c" IN ('x', 'y') LIMIT 1`);
  });

  it('renders bound parameters in both placeholder styles, flattening nested fragments', () => {
    const inner = sql`b = ${2}`;
    const q = sql`SELECT * FROM ${ident('t')} WHERE a = ${'x'} AND ${inner}`;
    assert.deepEqual(q.toParameterized('dollar'), { text: 'SELECT * FROM "t" WHERE a = $1 AND b = $2', params: ['x', 2] });
    assert.deepEqual(q.toParameterized('question'), { text: 'SELECT * FROM "t" WHERE a = ? AND b = ?', params: ['x', 2] });
  });

  it('round-trips hostile strings through a real DuckDB unchanged', async () => {
    const db = await DuckDb.open();
    const hostile = ["'", "''", "\\'", 'a"b', '-- c', '/* d */', "'; SELECT 1; --", 'é✓\n\t'];
    for (const s of hostile) {
      const r = await db.query(sql`SELECT ${s} AS v, ${ident(s)} AS x FROM (SELECT 1 AS ${ident(s)})`);
      assert.deepEqual([r.names[1], r.columns[0]?.[0], r.columns[1]?.[0]], ['x', s, 1]);
    }
    db.close();
  });
});

describe('values read from a query go back into sql', () => {
  it('round-trips every kind of value DuckDB returns, without a cast', async () => {
    const db = await DuckDb.open();
    const r = await db.query(sql`SELECT 42::BIGINT AS i, 2::BIGINT ** 70 AS d, 9223372036854775807 AS big, 1.25 AS f, 'it''s' AS s, TRUE AS b, NULL AS n,
      TIMESTAMP '2025-01-02 03:04:05.678' AS t, DATE '2025-01-02' AS day, TIMESTAMPTZ '2025-01-02 03:04:05+00' AS tz, 'a\\x00b'::BLOB AS blob,
      [1, NULL, 3] AS l, ['x', 'y''z'] AS ls, {'k': 1, 'q''uote': [TIMESTAMP '2025-01-01']} AS st`);
    for (let c = 0; c < r.names.length; c++) {
      const value = r.columns[c]![0]!; // typed Scalar: accepted by sql as it is
      const back = await db.query(sql`SELECT ${value} AS v`);
      assert.deepEqual(digits(back.columns[0]![0]), digits(value), `${r.names[c]} (${r.types[c]}) came back changed: ${sql`${value}`.toString()}`);
      const same = await db.query(sql`SELECT ${value} IS NOT DISTINCT FROM v AS same FROM (SELECT ${value} AS v)`);
      assert.equal(same.columns[0]![0], true, r.names[c]);
    }
    db.close();
  });

  it('writes blobs as hex and structs as struct literals, and refuses other objects', () => {
    assert.equal(literal(new Uint8Array([0, 255])), "from_hex('00ff')");
    assert.equal(literal({ "it's": 1, b: [null] }), "{'it''s': 1, 'b': [NULL]}");
    assert.throws(() => literal({}), /empty object/);
    assert.throws(() => literal(new Map() as never), /cannot write a \[object Map\]/);
  });
});

/** Integers compared by value: a BIGINT literal comes back as the narrowest integer type that holds it. */
const digits = (v: unknown): unknown => (typeof v === 'bigint' || typeof v === 'number' ? String(v) : Array.isArray(v) ? v.map(digits) : v);
