import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { parse } from 'csv-parse/sync';
import { simulateIntoOltp } from '../../../src/app/history.js';
import { IntegrityError, InputError, Lakehouse, buildLakehouse, openOltp, sql, type OltpStore } from '../../../src/workbench/index.js';
import { readManifest } from '../../../src/workbench/lakehouse/manifest.js';
import { tempDir } from '../../helpers/tmp.js';

const RETAIL = 'test/fixtures/retail-small.csv';
const TELCO = 'test/fixtures/telco-small.csv';
const NOW = new Date('2026-01-01T00:00:00Z');

describe('buildLakehouse', () => {
  const dir = tempDir();
  const lakeDir = join(dir, 'lake');
  let oltp: OltpStore;
  before(async () => {
    oltp = await openOltp(undefined, dir);
  });
  const build = async (options: { force?: boolean; retail?: string; telco?: string } = {}) =>
    buildLakehouse({
      lakeDir,
      retail: options.retail ?? RETAIL,
      telco: options.telco ?? TELCO,
      app: await simulateIntoOltp({ seed: 1, users: 40, days: 20, start: '2025-03-01' }, oltp),
      oltp,
      force: options.force,
      now: NOW,
    });

  it('loads good rows, quarantines bad ones with line and reason, and accepted + quarantined = read', async () => {
    const report = await build();
    const retail = report.sources.find((s) => s.name === 'retail')!;
    assert.deepEqual({ read: retail.read, accepted: retail.accepted, quarantined: retail.quarantined }, { read: 13, accepted: 5, quarantined: 8 });
    for (const s of report.sources) assert.equal(s.accepted + s.quarantined, s.read, s.name);
    assert.deepEqual(
      report.sources.map((s) => [s.name, s.unit]).filter(([, u]) => u !== 'rows'),
      [
        ['retail', 'lines'],
        ['app', 'events'],
        ['telco_customers', 'lines'],
      ],
    );
    const telco = report.sources.find((s) => s.name === 'telco_customers')!;
    assert.deepEqual([telco.read, telco.accepted, telco.quarantined], [4, 3, 1]);

    const quarantine = readFileSync(join(lakeDir, 'quarantine', 'retail.csv'), 'utf8');
    const lines = quarantine.trim().split('\n').slice(1);
    assert.deepEqual(
      lines.map((l) => l.split(',')[0]),
      ['5', '6', '7', '9', '10', '11', '13', '14'],
      'quarantined rows carry their line numbers in the source file',
    );
    assert.match(quarantine, /^5,missing CustomerID,/m);
    assert.match(quarantine, /^6,"InvoiceDate is not a date and time/m);
    assert.match(quarantine, /^7,"expected 8 fields, found 7",/m);
    assert.match(quarantine, /^9,malformed CSV: a quote inside an unquoted field \(field 3\),/m);
    assert.match(quarantine, /^10,"?InvoiceDate is in the future/m);
    assert.match(quarantine, /^11,"Quantity is not a whole number/m);
    assert.match(quarantine, /^13,"Country is not a known country name or ISO 3166-1 code: ""Channel Islands""","536374,/m);
    assert.match(quarantine, /^14,"Country is not a known country name or ISO 3166-1 code: ""Atlantis""","536375,/m);
    assert.match(readFileSync(join(lakeDir, 'quarantine', 'telco.csv'), 'utf8'), /^4,"Churn is not Yes or No: ""Maybe""","3668-QPYBK/m);
  });

  it('answers queries over the archive joined with the replica', async () => {
    const lake = await Lakehouse.open(lakeDir);
    try {
      const lines = await lake.query(sql`SELECT event_id, is_return, customer_id, quantity, amount, description FROM retail_lines ORDER BY time, event_id`);
      assert.deepEqual(
        lines.map((l) => l.event_id),
        ['retail-536365-1', 'retail-536365-2', 'retail-536366-1', 'retail-C536379-1', 'retail-536373-1'],
      );
      assert.equal(lines[2]!.description, 'HAND WARMER, UNION JACK');
      assert.deepEqual(
        lines.map((l) => l.is_return),
        [false, false, false, true, false],
      );
      assert.equal(lines[0]!.amount, 15.3);
      const [customer] = await lake.query(sql`SELECT * FROM retail_customers WHERE customer_id = ${'17850'}`);
      assert.equal(customer!.invoices, 2);
      assert.deepEqual([customer!.country, customer!.country_name], ['GB', 'United Kingdom']);
      const countries = await lake.query(sql`SELECT DISTINCT country, country_name FROM retail_lines ORDER BY country`);
      assert.deepEqual(countries, [
        { country: 'GB', country_name: 'United Kingdom' },
        { country: 'IE', country_name: 'Ireland' },
      ]);
      const [archived] = await lake.query(
        sql`SELECT count(*) AS n FROM events WHERE event_id LIKE 'retail-%' AND json_extract_string(props, 'country') NOT IN ('GB', 'IE')`,
      );
      assert.equal(archived!.n, 0, 'the archived events carry codes too');
      const [joined] = await lake.query(sql`SELECT count(*) AS n, count(cohort_month) AS with_cohort FROM retail_purchases`);
      assert.deepEqual(joined, { n: 5, with_cohort: 5 });

      const [app] = await lake.query(sql`SELECT count(*) AS events, count(DISTINCT user_id) AS users, count(country) AS with_dims FROM app_events_users`);
      const [appRaw] = await lake.query(sql`SELECT count(*) AS events FROM app_events`);
      assert.equal(app!.events, appRaw!.events, 'every app event joins its user');
      assert.equal(app!.with_dims, app!.events);
      assert.equal(await lake.count('users'), await oltp.count('users'));
      const [telco] = await lake.query(sql`SELECT total_charges, tenure FROM telco_customers WHERE customer_id = ${'4472-LVYGI'}`);
      assert.deepEqual(telco, { total_charges: null, tenure: 0 }, 'blank TotalCharges with zero tenure is NULL, not quarantined');
      assert.equal(await lake.count('app_truth'), 40);
    } finally {
      lake.close();
    }
  });

  it('is idempotent: a rebuild of unchanged inputs keeps every file, a forced one writes the same content', async () => {
    const before = readManifest(join(lakeDir, 'manifest.json'))!;
    const again = await build();
    assert.ok(
      again.sources.every((s) => s.upToDate),
      JSON.stringify(again.sources),
    );
    const forced = await build({ force: true });
    assert.ok(forced.sources.some((s) => !s.upToDate));
    const after = readManifest(join(lakeDir, 'manifest.json'))!;
    for (const name of Object.keys(before.sources)) {
      assert.deepEqual(after.sources[name]!.files, before.sources[name]!.files, `${name}: same files, same checksums`);
    }
    for (const name of Object.keys(before.tables)) assert.equal(after.tables[name]!.file.sha256, before.tables[name]!.file.sha256, name);
  });

  it('refuses an unknown column, naming the file and the column, and leaves the lakehouse as it was', async () => {
    const bad = join(dir, 'extra-column.csv');
    const text = readFileSync(RETAIL, 'utf8').replace('Country\n', 'Country,Foo\n');
    writeFileSync(bad, text);
    const before = readFileSync(join(lakeDir, 'manifest.json'), 'utf8');
    await assert.rejects(build({ retail: bad }), (err: Error) => {
      assert.ok(err instanceof InputError);
      assert.match(err.message, /extra-column\.csv:1, column Foo: unknown column "Foo"/);
      return true;
    });
    assert.equal(readFileSync(join(lakeDir, 'manifest.json'), 'utf8'), before);
    const lake = await Lakehouse.open(lakeDir);
    assert.equal(await lake.count('retail_lines'), 5);
    lake.close();
  });

  it('refuses an empty file and a missing one with the file named', async () => {
    const empty = join(dir, 'empty.csv');
    writeFileSync(empty, '');
    await assert.rejects(build({ retail: empty }), /empty\.csv: the file is empty: .*refusing to replace the table with 0 rows \(pass --allow-empty/);
    const headerOnly = join(dir, 'missing-column.csv');
    writeFileSync(headerOnly, 'InvoiceNo,StockCode\n');
    await assert.rejects(build({ retail: headerOnly }), /missing-column\.csv:1, column Description: missing column "Description"/);
    await assert.rejects(build({ telco: join(dir, 'nope.csv') }), /nope\.csv: no such file/);
  });

  it('refuses to open a lakehouse whose files were changed after the build', async () => {
    const manifest = readManifest(join(lakeDir, 'manifest.json'))!;
    const victim = join(lakeDir, manifest.tables.users!.file.path);
    const backup = join(dir, 'backup.parquet');
    copyFileSync(victim, backup);
    const bytes = readFileSync(victim);
    bytes[10] = bytes[10]! ^ 0xff;
    writeFileSync(victim, bytes);
    await assert.rejects(Lakehouse.open(lakeDir), (err: Error) => err instanceof IntegrityError && /does not match its checksum/.test(err.message));
    copyFileSync(backup, victim);
    (await Lakehouse.open(lakeDir)).close();
  });

  it('says how to build a lakehouse where there is none', async () => {
    await assert.rejects(Lakehouse.open(join(dir, 'nothing-here')), /no lakehouse at .*wb lake build/);
  });
});

describe('buildLakehouse, app history', () => {
  it('quarantines events that break the contract or lie in the future, with the reason', async () => {
    const dir = tempDir();
    const good = { event_id: 'e1', time: '2025-01-01T10:00:00Z', user_id: 'u1', event: 'login', props: { device: 'ios' } };
    const events = [
      good,
      { ...good, event_id: 'e2', user_id: '' },
      { ...good, event_id: 'e3', event: 'Bad Name' },
      { ...good, event_id: 'e4', time: '2030-01-01T00:00:00Z' },
      { ...good, event_id: 'e5', time: 'yesterday' },
    ];
    const report = await buildLakehouse({
      lakeDir: join(dir, 'lake'),
      now: NOW,
      app: { fingerprint: 'fixture', describe: 'fixture', load: () => ({ events: events as never, truthUsers: [], truthMeta: {} }) },
    });
    assert.deepEqual(
      report.sources.map((s) => [s.name, s.read, s.accepted, s.quarantined]),
      [['app', 5, 1, 4]],
    );
    const q = readFileSync(join(dir, 'lake', 'quarantine', 'app.csv'), 'utf8');
    assert.match(q, /^2,user_id: Too small/m);
    assert.match(q, /^3,event: event names are lower_snake_case/m);
    assert.match(q, /^4,time is in the future: 2030-01-01T00:00:00Z/m);
    assert.match(q, /^5,time: Invalid ISO datetime/m);
    const lake = await Lakehouse.open(join(dir, 'lake'));
    assert.deepEqual(await lake.query(sql`SELECT event_id, user_id, props->>'device' AS device FROM app_events`), [
      { event_id: 'e1', user_id: 'u1', device: 'ios' },
    ]);
    lake.close();
  });
});

describe('buildLakehouse, CSV lines', () => {
  const dir = tempDir();
  const lakeDir = join(dir, 'lake');
  const telcoHeader = readFileSync(TELCO, 'utf8').split('\n')[0]!;

  it('quarantines exactly the lines with a stray quote, with line and reason, and loads every other line of the Telco file', async () => {
    const lines = gunzipSync(readFileSync('data/telco-customer-churn/Telco-Customer-Churn.csv.gz')).toString('utf8').trimEnd().split('\n');
    assert.equal(lines.length, 7044);
    const damaged = new Map<number, string>(); // line number -> expected reason
    const edit = (lineNo: number, change: (line: string) => string, reason?: string) => {
      const before = lines[lineNo - 1]!;
      lines[lineNo - 1] = change(before);
      assert.notEqual(lines[lineNo - 1], before);
      if (reason) damaged.set(lineNo, reason);
    };
    // Three stray quotes, each of a different kind, the first far from the end of the file: before
    // lines were parsed on their own, a quote that opened a field ran on until the next quote.
    edit(101, (l) => l.replace(',Yes,', ',"Yes,'), 'unterminated quote: a field opened with " runs past the end of the line (field 4)');
    edit(2001, (l) => l.replace(/,(No|Yes),/, ',$1",'), 'a quote inside an unquoted field');
    edit(5001, (l) => `"${l}`, 'unterminated quote: a field opened with " runs past the end of the line (field 1)');
    // A legitimate quoted field holding a comma and an escaped quote: loaded as written.
    edit(3001, (l) =>
      l
        .split(',')
        .map((f, i) => (i === 17 ? '"Mailed check, ""paper"""' : f))
        .join(','),
    );
    const file = join(dir, 'telco-stray-quotes.csv');
    writeFileSync(file, `${lines.join('\n')}\n`);

    const report = await buildLakehouse({ lakeDir, telco: file });
    const telco = report.sources.find((s) => s.name === 'telco_customers')!;
    assert.deepEqual([telco.unit, telco.read, telco.accepted, telco.quarantined], ['lines', 7043, 7040, 3]);

    const quarantine = parse(readFileSync(join(lakeDir, 'quarantine', 'telco.csv'), 'utf8'), { columns: true }) as {
      line: string;
      reason: string;
      record: string;
    }[];
    assert.deepEqual(
      quarantine.map((q) => Number(q.line)),
      [...damaged.keys()],
    );
    for (const q of quarantine) {
      assert.ok(q.reason.startsWith(`malformed CSV: ${damaged.get(Number(q.line))}`), q.reason);
      assert.equal(q.record, lines[Number(q.line) - 1], 'the record is the line as it was');
    }

    const lake = await Lakehouse.open(lakeDir);
    try {
      const ids = (await lake.query(sql`SELECT customer_id FROM telco_customers ORDER BY customer_id`)).map((r) => r.customer_id);
      const expected = lines
        .slice(1)
        .filter((_, i) => !damaged.has(i + 2))
        .map((l) => l.replace(/^"/, '').split(',')[0])
        .sort();
      assert.deepEqual(ids, expected, 'every line without a stray quote is loaded');
      const id = lines[3000]!.split(',')[0]!;
      const [row] = await lake.query(sql`SELECT payment_method FROM telco_customers WHERE customer_id = ${id}`);
      assert.deepEqual(row, { payment_method: 'Mailed check, "paper"' });
    } finally {
      lake.close();
    }
  });

  it('refuses a header-only file, or one whose every line is quarantined, naming it and keeping the built table', async () => {
    const headerOnly = join(dir, 'header-only.csv');
    writeFileSync(headerOnly, `${telcoHeader}\n`);
    const allBad = join(dir, 'all-bad.csv');
    writeFileSync(allBad, `${telcoHeader}\n${readFileSync(TELCO, 'utf8').split('\n')[3]}\n`);
    const manifest = readFileSync(join(lakeDir, 'manifest.json'), 'utf8');
    await assert.rejects(
      buildLakehouse({ lakeDir, telco: headerOnly }),
      (err: Error) =>
        err instanceof InputError &&
        /header-only\.csv: the file has a header but no data lines; refusing to replace the table with 0 rows \(pass --allow-empty/.test(err.message),
    );
    await assert.rejects(
      buildLakehouse({ lakeDir, telco: allBad }),
      /all-bad\.csv: no row could be loaded: its only data line was quarantined \(the first, line 2: Churn is not Yes or No: "Maybe"\); refusing/,
    );
    assert.equal(readFileSync(join(lakeDir, 'manifest.json'), 'utf8'), manifest, 'the manifest is untouched');
    const lake = await Lakehouse.open(lakeDir);
    assert.equal(await lake.count('telco_customers'), 7040, 'the table is untouched');
    lake.close();
  });

  it('writes an empty table from a header-only file with allowEmpty, for the Telco table and the retail archive', async () => {
    const telco = join(dir, 'header-only.csv');
    const retail = join(dir, 'retail-header-only.csv');
    writeFileSync(retail, `${readFileSync(RETAIL, 'utf8').split('\n')[0]}\r\n`);
    const report = await buildLakehouse({ lakeDir, telco, retail, allowEmpty: true, now: NOW });
    assert.deepEqual(
      report.sources.map((s) => [s.name, s.unit, s.read, s.accepted, s.quarantined]),
      [
        ['retail', 'lines', 0, 0, 0],
        ['retail_lines', 'rows', 0, 0, 0],
        ['retail_customers', 'rows', 0, 0, 0],
        ['telco_customers', 'lines', 0, 0, 0],
      ],
    );
    const lake = await Lakehouse.open(lakeDir);
    try {
      assert.equal(await lake.count('telco_customers'), 0);
      assert.equal(await lake.count('retail_lines'), 0);
    } finally {
      lake.close();
    }
  });

  it('says lines in the summary of `wb lake build`, refuses a header-only file and accepts it with --allow-empty', () => {
    const data = join(dir, 'cli');
    const headerOnly = join(dir, 'header-only.csv');
    const wb = (...args: string[]) =>
      spawnSync(
        process.execPath,
        ['bin/wb.cjs', '--data-dir', data, 'lake', 'build', '--retail', RETAIL, '--telco', headerOnly, '--users', '5', '--days', '2', ...args],
        {
          encoding: 'utf8',
          env: { ...process.env, WB_DEBUG: '' },
        },
      );
    const refused = wb();
    assert.notEqual(refused.status, 0);
    assert.match(
      refused.stderr,
      /error: .*header-only\.csv: the file has a header but no data lines; refusing to replace the table with 0 rows \(pass --allow-empty/,
    );
    const allowed = wb('--allow-empty');
    assert.equal(allowed.status, 0, allowed.stderr);
    assert.match(allowed.stdout, /^retail +13 lines +5 +8 +yes +up to date/m, 'retail was built by the refused run already');
    assert.match(allowed.stdout, /^telco_customers +0 lines +0 +0 +yes +built/m);
    assert.match(allowed.stdout, /telco_customers has 0 rows: it has no data lines \(.*header-only\.csv; written empty because of --allow-empty\)/);
    assert.match(allowed.stdout, /lines that could not be loaded, with the line number and the reason/);
  });
});
