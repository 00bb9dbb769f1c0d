import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
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
    assert.deepEqual({ read: retail.read, accepted: retail.accepted, quarantined: retail.quarantined }, { read: 11, accepted: 5, quarantined: 6 });
    for (const s of report.sources) assert.equal(s.accepted + s.quarantined, s.read, s.name);
    const telco = report.sources.find((s) => s.name === 'telco_customers')!;
    assert.deepEqual([telco.read, telco.accepted, telco.quarantined], [4, 3, 1]);

    const quarantine = readFileSync(join(lakeDir, 'quarantine', 'retail.csv'), 'utf8');
    const lines = quarantine.trim().split('\n').slice(1);
    assert.deepEqual(
      lines.map((l) => l.split(',')[0]),
      ['5', '6', '7', '9', '10', '11'],
      'quarantined rows carry their line numbers in the source file',
    );
    assert.match(quarantine, /^5,missing CustomerID,/m);
    assert.match(quarantine, /^6,"InvoiceDate is not a date and time/m);
    assert.match(quarantine, /^7,"expected 8 fields, found 7",/m);
    assert.match(quarantine, /^9,malformed CSV: a quote inside an unquoted field,/m);
    assert.match(quarantine, /^10,"?InvoiceDate is in the future/m);
    assert.match(quarantine, /^11,"Quantity is not a whole number/m);
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
      assert.deepEqual(lines.map((l) => l.is_return), [false, false, false, true, false]);
      assert.equal(lines[0]!.amount, 15.3);
      const [customer] = await lake.query(sql`SELECT * FROM retail_customers WHERE customer_id = ${'17850'}`);
      assert.equal(customer!.invoices, 2);
      assert.equal(customer!.country, 'United Kingdom');
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
    assert.ok(again.sources.every((s) => s.upToDate), JSON.stringify(again.sources));
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
    await assert.rejects(build({ retail: empty }), /empty\.csv: the file is empty/);
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
    assert.deepEqual(report.sources.map((s) => [s.name, s.read, s.accepted, s.quarantined]), [['app', 5, 1, 4]]);
    const q = readFileSync(join(dir, 'lake', 'quarantine', 'app.csv'), 'utf8');
    assert.match(q, /^2,user_id: Too small/m);
    assert.match(q, /^3,event: event names are lower_snake_case/m);
    assert.match(q, /^4,time is in the future: 2030-01-01T00:00:00Z/m);
    assert.match(q, /^5,time: Invalid ISO datetime/m);
    const lake = await Lakehouse.open(join(dir, 'lake'));
    assert.deepEqual(await lake.query(sql`SELECT event_id, user_id, props->>'device' AS device FROM app_events`), [{ event_id: 'e1', user_id: 'u1', device: 'ios' }]);
    lake.close();
  });
});
