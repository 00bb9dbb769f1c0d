import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'csv-parse/sync';
import fc from 'fast-check';
import { CsvRecordSplitter, MAX_LINE_CHARS, UNTERMINATED_QUOTE, parseCsvLine } from '../../../src/workbench/lakehouse/csv-records.js';
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

/** RFC 4180 quoting, only where needed (and for the empty field, to exercise quoted empties). */
const quoteField = (f: string) => (/[",\r\n]/.test(f) || f === '' ? `"${f.replaceAll('"', '""')}"` : f);

describe('CsvRecordSplitter', () => {
  it('splits plain and quoted fields, with each line number and its raw text', () => {
    const text = 'a,b,c\r\n1,"x, y",3\n2,"he said ""hi""",""\n4,,\n';
    const out = split([text]);
    assert.deepEqual(
      out.records.map((r) => r.fields),
      [
        ['a', 'b', 'c'],
        ['1', 'x, y', '3'],
        ['2', 'he said "hi"', ''],
        ['4', '', ''],
      ],
    );
    assert.deepEqual(
      out.records.map((r) => r.line),
      [1, 2, 3, 4],
    );
    assert.equal(out.records[1]!.raw, '1,"x, y",3');
    assert.equal(out.malformed.length, 0);
  });

  it('gives the same result however the text is cut into chunks', () => {
    const text = '\ufeffh1,h2\r\n"a,b",c\r\n\r\nd,"e"""\nbad,"open\nf,g';
    const whole = split([text]);
    for (let cut = 0; cut <= text.length; cut++) {
      for (let cut2 = cut; cut2 <= text.length; cut2 += 3) {
        assert.deepEqual(split([text.slice(0, cut), text.slice(cut, cut2), text.slice(cut2)]), whole, `cut at ${cut}, ${cut2}`);
      }
    }
    assert.deepEqual(whole.records[0]!.fields, ['h1', 'h2'], 'the byte-order mark is dropped');
    assert.deepEqual(whole.records.at(-1)!.fields, ['f', 'g'], 'a last line without a newline is a record');
    assert.deepEqual(
      whole.malformed.map((m) => [m.line, m.reason]),
      [
        [3, 'blank line'],
        [5, `${UNTERMINATED_QUOTE} (field 2)`],
      ],
    );
  });

  it('quarantines each line with broken quoting alone, with its line, and goes on with the next', () => {
    const out = split(['x,y\n1,"a"b,2\n3,ok"ay,4\n5,6\n7,"never closed\n8,9\n"10,11\n12,13']);
    assert.deepEqual(
      out.malformed.map((m) => [m.line, m.reason, m.raw]),
      [
        [2, 'unexpected "b" after a closing quote (field 2)', '1,"a"b,2'],
        [3, 'a quote inside an unquoted field (field 2)', '3,ok"ay,4'],
        [5, `${UNTERMINATED_QUOTE} (field 2)`, '7,"never closed'],
        [7, `${UNTERMINATED_QUOTE} (field 1)`, '"10,11'],
      ],
    );
    assert.deepEqual(
      out.records.map((r) => [r.line, r.fields]),
      [
        [1, ['x', 'y']],
        [4, ['5', '6']],
        [6, ['8', '9']],
        [8, ['12', '13']],
      ],
    );
  });

  it('does not join lines: a field spanning lines quarantines each of its lines, and the next line is read', () => {
    const out = split(['a,b,c\n1,"multi\nline",3\n4,5,6\n']);
    assert.deepEqual(
      out.malformed.map((m) => [m.line, m.reason]),
      [
        [2, `${UNTERMINATED_QUOTE} (field 2)`],
        [3, 'a quote inside an unquoted field (field 1)'],
      ],
    );
    assert.deepEqual(
      out.records.map((r) => r.line),
      [1, 4],
    );
  });

  it('accounts for every line: blank ones are reported, the final newline opens no line', () => {
    const out = split(['a\n\n1\r\n\r\n2\n']);
    assert.deepEqual(
      out.records.map((r) => r.line),
      [1, 3, 5],
    );
    assert.deepEqual(
      out.malformed.map((m) => [m.line, m.reason]),
      [
        [2, 'blank line'],
        [4, 'blank line'],
      ],
    );
  });

  it('quarantines a line longer than the limit by its start, without holding it, and goes on', () => {
    const long = 'x'.repeat(MAX_LINE_CHARS + 10);
    const text = `a,b\n${long}\n1,2\n`;
    for (const chunks of [[text], text.match(/[\s\S]{1,65536}/g)!]) {
      const out = split(chunks);
      assert.deepEqual(
        out.records.map((r) => [r.line, r.fields]),
        [
          [1, ['a', 'b']],
          [3, ['1', '2']],
        ],
      );
      assert.equal(out.malformed.length, 1);
      assert.equal(out.malformed[0]!.line, 2);
      assert.match(out.malformed[0]!.reason, /^line longer than 1048576 characters/);
      assert.equal(out.malformed[0]!.raw, 'x'.repeat(200));
    }
  });

  it('agrees with csv-parse on random well-formed single-line CSV', () => {
    const rng = new Random(7);
    const alphabet = ['a', 'b', ' ', ',', '"', '""', 'é', '1', '\r'];
    for (let round = 0; round < 200; round++) {
      const rows = Array.from({ length: 1 + rng.int(6) }, () =>
        Array.from({ length: 3 }, () => Array.from({ length: rng.int(6) }, () => alphabet[rng.int(alphabet.length)]).join('')),
      );
      const text = rows.map((r) => r.map(quoteField).join(',')).join('\n');
      const expected = parse(text, { relax_column_count: true }) as string[][];
      const cut = rng.int(text.length + 1);
      const got = split([text.slice(0, cut), text.slice(cut)]);
      assert.deepEqual(
        got.records.map((r) => r.fields),
        expected,
        JSON.stringify(text),
      );
    }
  });

  it('property: clean lines come back exactly, every line with a stray quote is quarantined with its line number', () => {
    // Fields with commas, quotes and any unicode (not line breaks: a record is one line by design;
    // not a byte-order mark, which is dropped at the start of a file).
    const fieldChar = fc.oneof(fc.constantFrom(',', '"', '""', ' ', 'a', 'Z', '0', 'é', '€', '😀', '\u0000'), fc.string({ unit: 'grapheme', maxLength: 1 }));
    const field = fc.array(fieldChar, { maxLength: 6 }).map((cs) => cs.join('').replace(/[\r\n\ufeff]/g, ''));
    const row = fc.array(field, { minLength: 1, maxLength: 5 });
    // For each line: whether to damage it, and where to put the stray quote (a fraction of its length).
    const line = fc.record({ fields: row, stray: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { freq: 3 }) });
    fc.assert(
      fc.property(fc.array(line, { minLength: 1, maxLength: 30 }), fc.array(fc.nat(), { maxLength: 4 }), fc.boolean(), (lines, cuts, crlf) => {
        const texts = lines.map(({ fields, stray }) => {
          // A single field that is empty serialises as "" so that the line is never blank.
          const clean = fields.map(quoteField).join(',');
          if (stray === null) return clean;
          const at = Math.floor(stray * (clean.length + 1));
          return `${clean.slice(0, at)}"${clean.slice(at)}`;
        });
        const text = texts.join(crlf ? '\r\n' : '\n') + (crlf ? '\r\n' : '\n');
        const positions = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
        const chunks = [0, ...positions].map((p, i, all) => text.slice(p, all[i + 1] ?? text.length));
        const out = split(chunks);

        const expectedRecords = lines.flatMap((l, i) => (l.stray === null ? [{ line: i + 1, fields: l.fields, raw: texts[i]! }] : []));
        assert.deepEqual(out.records, expectedRecords);
        const damaged = lines.flatMap((l, i) => (l.stray === null ? [] : [{ line: i + 1, raw: texts[i]! }]));
        assert.deepEqual(
          out.malformed.map((m) => ({ line: m.line, raw: m.raw })),
          damaged,
        );
        for (const m of out.malformed) assert.match(m.reason, /quote/);
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 300) },
    );
  });
});

describe('parseCsvLine', () => {
  it('reads quoted commas and escaped quotes, and names the field whose quote runs on', () => {
    assert.deepEqual(parseCsvLine('536540,"CHARLIE+LOLA""EXTREMELY BUSY"" SIGN","HAND WARMER, UNION JACK",6'), [
      '536540',
      'CHARLIE+LOLA"EXTREMELY BUSY" SIGN',
      'HAND WARMER, UNION JACK',
      '6',
    ]);
    assert.deepEqual(parseCsvLine('a,'), ['a', '']);
    assert.deepEqual(parseCsvLine('"a",'), ['a', '']);
    assert.deepEqual(parseCsvLine('x,"7"" frame'), { reason: `${UNTERMINATED_QUOTE} (field 2)` });
  });
});
