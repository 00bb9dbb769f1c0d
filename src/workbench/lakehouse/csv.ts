import { createReadStream, statSync } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { InputError, NotFoundError } from '../errors.js';
import { CsvRecordSplitter } from './csv-records.js';

/** A row that could not be loaded, kept with its reason and original text. */
export interface Rejected {
  line: number;
  reason: string;
  record: string;
}

/**
 * How one CSV file maps to typed rows. `parse` gets the fields by header name and returns the row,
 * or a string saying why the row cannot be loaded (it then goes to quarantine, not to the error).
 */
export interface CsvSpec<T> {
  columns: readonly string[];
  parse(fields: Record<string, string>, line: number): T | string;
}

/**
 * Counted in lines of the file after the header (blank ones included): every line is either
 * accepted or quarantined, so accepted + quarantined = read always holds and read is the file's
 * line count minus one.
 */
export interface CsvCounts {
  read: number;
  accepted: number;
  quarantined: number;
}

export interface ReadCsvOptions {
  /**
   * Accept a file that yields no row (empty, header only, or every line quarantined). Off by
   * default: such a file is far more often a truncated export than a table that really emptied,
   * and loading it would silently replace the table with 0 rows.
   */
  allowEmpty?: boolean;
}

/**
 * Streams a CSV file (gzip if it ends in .gz) through a spec, line by line (see csv-records.ts for
 * the dialect). A header that is not exactly the spec's columns is an error naming the file and the
 * column, and so is a file that yields no row unless `allowEmpty`; a line that cannot be loaded
 * (wrong field count, broken quoting, a blank line, a value the spec refuses) is handed to
 * `onReject` with its line number. `onBytes` reports progress in bytes of the file on disk.
 */
export async function readCsv<T>(
  file: string,
  spec: CsvSpec<T>,
  handlers: { onRow(row: T): void; onReject(r: Rejected): void; onBytes?(read: number, total: number): void },
  options: ReadCsvOptions = {},
): Promise<CsvCounts> {
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    throw new NotFoundError(`${file}: no such file (expected the dataset there; see data/README.md)`);
  }
  const counts: CsvCounts = { read: 0, accepted: 0, quarantined: 0 };
  if (size === 0) {
    if (options.allowEmpty) return counts;
    throw new InputError(`the file is empty: expected a header line and data lines; ${REFUSE_EMPTY}`, { file });
  }

  let header: string[] | undefined;
  let firstReject: Rejected | undefined;
  const reject = (r: Rejected) => {
    counts.read++;
    counts.quarantined++;
    firstReject ??= r;
    handlers.onReject(r);
  };
  const splitter = new CsvRecordSplitter({
    record(record, line, raw) {
      if (!header) {
        header = record.map((h) => h.trim());
        checkHeader(file, header, spec.columns);
        return;
      }
      if (record.length !== header.length) {
        return reject({ line, reason: `expected ${header.length} fields, found ${record.length}`, record: raw });
      }
      const fields: Record<string, string> = {};
      for (let i = 0; i < header.length; i++) fields[header[i]!] = record[i]!;
      const row = spec.parse(fields, line);
      if (typeof row === 'string') return reject({ line, reason: row, record: raw });
      counts.read++;
      counts.accepted++;
      handlers.onRow(row);
    },
    malformed(reason, line, raw) {
      if (!header) throw new InputError(`malformed header: ${reason}`, { file, line });
      reject({ line, reason: `malformed CSV: ${reason}`, record: raw });
    },
  });

  let bytes = 0;
  const source = createReadStream(file, { highWaterMark: 1 << 20 });
  source.on('data', (b) => {
    bytes += b.length;
    handlers.onBytes?.(bytes, size);
  });
  const text = (file.endsWith('.gz') ? source.pipe(createGunzip({ chunkSize: 1 << 20 })) : source).setEncoding('utf8');
  source.on('error', (err) => text.destroy(err));
  try {
    for await (const chunk of text) splitter.push(chunk as string);
    splitter.end();
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`cannot read the file: ${(err as Error).message}`, { file });
  } finally {
    source.destroy();
  }
  if (counts.accepted === 0 && !options.allowEmpty) {
    if (!header) throw new InputError(`the file is empty: expected a header line and data lines; ${REFUSE_EMPTY}`, { file });
    if (counts.read === 0) throw new InputError(`the file has a header but no data lines; ${REFUSE_EMPTY}`, { file });
    throw new InputError(
      `no row could be loaded: ${counts.read === 1 ? 'its only data line was' : `all ${counts.read} data lines were`} quarantined (the first, line ${firstReject!.line}: ${firstReject!.reason}); ${REFUSE_EMPTY}`,
      { file },
    );
  }
  return counts;
}

const REFUSE_EMPTY = 'refusing to replace the table with 0 rows (pass --allow-empty to accept an empty table)';

function checkHeader(file: string, header: readonly string[], expected: readonly string[]): void {
  const unknown = header.filter((h) => !expected.includes(h));
  if (unknown.length > 0) {
    throw new InputError(`unknown column ${JSON.stringify(unknown[0])} in the header (expected ${expected.join(', ')})`, {
      file,
      line: 1,
      column: unknown[0],
    });
  }
  const missing = expected.filter((c) => !header.includes(c));
  if (missing.length > 0) {
    throw new InputError(`missing column ${JSON.stringify(missing[0])} in the header (expected ${expected.join(', ')})`, {
      file,
      line: 1,
      column: missing[0],
    });
  }
  const dup = header.find((h, i) => header.indexOf(h) !== i);
  if (dup) throw new InputError(`column ${JSON.stringify(dup)} appears twice in the header`, { file, line: 1, column: dup });
}
