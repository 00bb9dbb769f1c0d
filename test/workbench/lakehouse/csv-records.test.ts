import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'csv-parse/sync';
import { CsvRecordSplitter } from '../../../src/workbench/lakehouse/csv-records.js';
import { Random } from '../../../src/workbench/random.js';

interface Out {
  records: { fields: string[]; line: number; raw: string }[];
  malformed: { reason: string; line: number; raw: string }[];
}

function split(chunks: string[]): Out {
  const out: Out = { records: [], malformed: [] };
  const s = new CsvRecordSplitter({
    record: (fields, line, raw) => out.records.push({ fields, line, raw }),
    malformed: (reason, line, raw) => out.malformed.push({ reason, line, raw }),
  });
  for (const c of chunks) s.push(c);
  s.end();
  return out;
}

describe('CsvRecordSplitter', () => {
  it('splits plain and quoted fields, with the line each record starts on and its raw text', () => {
    const text = 'a,b,c\r\n1,"x, y",3\n2,"he said ""hi""","multi\nline"\n\n4,,\n';
    const out = split([text]);
    assert.deepEqual(
      out.records.map((r) => r.fields),
      [['a', 'b', 'c'], ['1', 'x, y', '3'], ['2', 'he said "hi"', 'multi\nline'], ['4', '', '']],
    );
    assert.deepEqual(out.records.map((r) => r.line), [1, 2, 3, 6]);
    assert.equal(out.records[1]!.raw, '1,"x, y",3');
    assert.equal(out.malformed.length, 0);
  });

  it('gives the same records however the text is cut into chunks', () => {
    const text = '\ufeffh1,h2\n"a\nb",c\r\nd,"e"""\nf,g';
    const whole = split([text]);
    for (let cut = 0; cut <= text.length; cut++) {
      for (let cut2 = cut; cut2 <= text.length; cut2 += 3) {
        assert.deepEqual(split([text.slice(0, cut), text.slice(cut, cut2), text.slice(cut2)]), whole, `cut at ${cut}, ${cut2}`);
      }
    }
    assert.deepEqual(whole.records[0]!.fields, ['h1', 'h2'], 'the byte-order mark is dropped');
    assert.deepEqual(whole.records.at(-1)!.fields, ['f', 'g'], 'a last line without a newline is a record');
  });

  it('reports broken quoting as malformed, with the line, and goes on', () => {
    const out = split(['x,y\n1,"a"b,2\n3,ok"ay,4\n5,6\n7,"never closed\n8,9\n']);
    assert.deepEqual(out.malformed.map((m) => [m.line, m.reason]), [
      [2, 'unexpected "b" after a closing quote'],
      [3, 'a quote inside an unquoted field'],
      [5, 'a quote opened on line 5 is never closed'],
    ]);
    assert.deepEqual(out.records.map((r) => r.fields), [['x', 'y'], ['5', '6']]);
  });

  it('agrees with csv-parse on random well-formed CSV', () => {
    const rng = new Random(7);
    const alphabet = ['a', 'b', ' ', ',', '"', '\n', '\r\n', 'é', '1'];
    for (let round = 0; round < 200; round++) {
      const rows = Array.from({ length: 1 + rng.int(6) }, () =>
        Array.from({ length: 3 }, () => Array.from({ length: rng.int(6) }, () => alphabet[rng.int(alphabet.length)]).join('')),
      );
      const text = rows.map((r) => r.map((f) => (/[",\r\n]/.test(f) || f === '' ? `"${f.replaceAll('"', '""')}"` : f)).join(',')).join('\n');
      const expected = parse(text, { relax_column_count: true }) as string[][];
      const cut = rng.int(text.length + 1);
      const got = split([text.slice(0, cut), text.slice(cut)]);
      assert.deepEqual(got.records.map((r) => r.fields), expected, JSON.stringify(text));
    }
  });
});
