import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { simulateIntoOltp } from '../../../src/app/history.js';
import {
  appChurnData,
  buildLakehouse,
  Lakehouse,
  openOltp,
  Random,
  retailPropensityData,
  silentProgress,
  sql,
  type Row,
} from '../../../src/workbench/index.js';
import { RETAIL_PROPENSITY_DEFAULTS } from '../../../src/workbench/pipelines/retail-propensity.js';
import { tempDir } from '../../helpers/tmp.js';

const DAY = 86_400_000;
const HORIZON = RETAIL_PROPENSITY_DEFAULTS.horizonDays;

/**
 * A shop log big enough that DuckDB splits the work across threads (the old hand-written spine came
 * back in a different order on each run at this size), and three customers at the edges of the
 * default grid (every 14 days from 2011-02-01) and of its 30-day label window.
 */
function retailCsv(): string {
  const rng = new Random(11);
  const lines = ['InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country'];
  const stamp = (ms: number) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
  let invoice = 500_000;
  const buy = (customer: number, ms: number) => {
    invoice++;
    for (let l = 0; l <= rng.int(3); l++)
      lines.push(`${invoice},P${rng.int(40)},THING,${1 + rng.int(12)},${stamp(ms)},${(0.5 + rng.int(900) / 100).toFixed(2)},${customer}.0,United Kingdom`);
  };
  for (let c = 0; c < 500; c++) {
    for (let i = 0; i <= rng.int(8); i++)
      buy(20_000 + c, Date.parse('2010-12-01T00:00:00Z') + rng.int(373) * DAY + (8 + rng.int(12)) * 3_600_000 + rng.int(3600) * 1000);
  }
  // 10001 buys at 2011-03-01 00:00:00, a moment of the grid: neither a feature nor the label of that moment.
  buy(10_001, Date.parse('2011-01-10T12:00:00Z'));
  buy(10_001, Date.parse('2011-03-01T00:00:00Z'));
  // 10002 buys at 2011-03-17 00:00:00, the closing edge of 2011-02-15's window (02-15 + 30 days): its label.
  buy(10_002, Date.parse('2011-01-05T12:00:00Z'));
  buy(10_002, Date.parse('2011-03-17T00:00:00Z'));
  // 10003's first purchase is at 2011-02-15 00:00:00: not a customer yet at that moment.
  buy(10_003, Date.parse('2011-02-15T00:00:00Z'));
  return `${lines.join('\n')}\n`;
}

const key = (r: Row) => `${r.user_id as string}@${(r.as_of as Date).toISOString().slice(0, 10)}`;
const all = (d: { train: Row[]; test: Row[] }) => [...d.train, ...d.test];

/**
 * Row by row the same keys, labels and values; numbers to 1e-9 relative (so counts and labels exactly), because DuckDB
 * adds a sum's doubles in the order its threads deliver them (sum and mean features differ in the
 * last bits between runs: buildTrainingSet's doing, not the spine's).
 */
function assertSameRows(actual: Row[], expected: Row[]): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    assert.equal(key(a), key(e), `row ${i}`);
    assert.deepEqual(Object.keys(a), Object.keys(e));
    for (const [column, value] of Object.entries(e)) {
      const other = a[column];
      if (typeof value === 'number' && typeof other === 'number') {
        assert.ok(Math.abs(other - value) <= 1e-9 * Math.max(1, Math.abs(value)), `row ${i} (${key(e)}) ${column}: ${other} vs ${value}`);
      } else {
        assert.deepEqual(other, value, `row ${i} (${key(e)}) ${column}`);
      }
    }
  }
}

describe('the training pipelines on spine() and labels()', { timeout: 180_000 }, () => {
  const dir = tempDir('wb-pipelines-');
  let lake: Lakehouse;
  before(async () => {
    writeFileSync(join(dir, 'retail.csv'), retailCsv());
    const oltp = await openOltp(undefined, dir);
    await buildLakehouse({
      lakeDir: join(dir, 'lake'),
      retail: join(dir, 'retail.csv'),
      app: await simulateIntoOltp({ seed: 5, users: 200, days: 50, start: '2025-03-01' }, oltp),
      oltp,
      progress: silentProgress,
    });
    await oltp.close();
    // Several threads even on a one-core machine, so an order that depends on them would show.
    lake = await Lakehouse.open(join(dir, 'lake'), { threads: 4 });
  });
  after(() => lake?.close());

  it('give the same retail rows in the same order, sorted by (as_of, user_id), on every run', async () => {
    const first = all(await retailPropensityData(lake, { progress: silentProgress }));
    const second = all(await retailPropensityData(lake, { progress: silentProgress }));
    assert.ok(first.length > 5000, `only ${first.length} rows`);
    assertSameRows(second, first);
    const keys = first.map(key);
    const sorted = [...first].sort(
      (a, b) => (a.as_of as Date).getTime() - (b.as_of as Date).getTime() || ((a.user_id as string) < (b.user_id as string) ? -1 : 1),
    );
    assert.deepEqual(keys, sorted.map(key));
    assert.equal(new Set(keys).size, keys.length, 'one row per customer and moment');
  });

  it('give the same app rows in the same order on every run', async () => {
    const first = all(await appChurnData(lake, { progress: silentProgress }));
    const second = all(await appChurnData(lake, { progress: silentProgress }));
    assert.ok(first.length > 200, `only ${first.length} rows`);
    assertSameRows(second, first);
  });

  it('label a retail row only with purchases after its moment, and compute its features only from purchases before it', async () => {
    const data = await retailPropensityData(lake, { progress: silentProgress });
    const rows = all(data);
    // Straight from the raw events, not through the feature compiler nor the spine helpers.
    const purchases = new Map<string, number[]>();
    for (const e of await lake.query<{ user_id: string; time: Date }>(sql`SELECT user_id, time FROM events WHERE source = 'retail' AND event = 'purchase'`)) {
      const times = purchases.get(e.user_id) ?? [];
      times.push(e.time.getTime());
      purchases.set(e.user_id, times);
    }
    const expected = new Map<string, number>();
    const cut = Date.parse(RETAIL_PROPENSITY_DEFAULTS.testFrom);
    for (
      let m = Date.parse(`${RETAIL_PROPENSITY_DEFAULTS.from}T00:00:00Z`);
      m <= Date.parse(`${RETAIL_PROPENSITY_DEFAULTS.to}T00:00:00Z`);
      m += RETAIL_PROPENSITY_DEFAULTS.stepDays * DAY
    ) {
      for (const [user, times] of purchases) {
        if (Math.min(...times) >= m) continue;
        expected.set(`${user}@${new Date(m).toISOString().slice(0, 10)}`, times.some((t) => t > m && t <= m + HORIZON * DAY) ? 1 : 0);
      }
    }
    assert.deepEqual(new Map(rows.map((r) => [key(r), r.bought as number])), expected);
    const train = new Set(data.train);
    let positives = 0;
    for (const r of rows) {
      const asOf = (r.as_of as Date).getTime();
      const times = purchases.get(r.user_id as string)!;
      const seen = times.filter((t) => t < asOf);
      const labelled = times.filter((t) => t > asOf && t <= asOf + HORIZON * DAY);
      // The newest purchase the features counted, from the recency feature, is the newest one strictly before as_of.
      const newestSeen = asOf - (r.since_last_purchase as number) * 1000;
      assert.equal(newestSeen, Math.max(...seen), `${key(r)}: recency`);
      assert.ok(
        labelled.every((t) => t > newestSeen),
        `${key(r)}: a purchase is both a feature input and the label`,
      );
      assert.equal(asOf < cut, train.has(r), `${key(r)}: train before ${RETAIL_PROPENSITY_DEFAULTS.testFrom}, test from it`);
      positives += r.bought as number;
    }
    assert.ok(positives > 100 && positives < rows.length - 100, `${positives} positives of ${rows.length}`);
    const byKey = new Map(rows.map((r) => [key(r), r]));
    // The purchase at 03-01 00:00 is in neither: the features of 03-01 end at 01-10, its label is 0; 02-15's label has it.
    assert.equal(byKey.get('10001@2011-03-01')!.since_last_purchase, Date.parse('2011-03-01T00:00:00Z') / 1000 - Date.parse('2011-01-10T12:00:00Z') / 1000);
    assert.equal(byKey.get('10001@2011-03-01')!.bought, 0);
    assert.equal(byKey.get('10001@2011-02-15')!.bought, 1);
    assert.equal(byKey.get('10001@2011-03-15')!.since_last_purchase, 14 * 86_400);
    // (as_of, as_of + 30 days]: the closing edge is in.
    assert.equal(byKey.get('10002@2011-02-15')!.bought, 1);
    assert.equal(byKey.get('10002@2011-02-01')!.bought, 0);
    assert.ok(!byKey.has('10003@2011-02-15') && byKey.has('10003@2011-03-01'), 'a customer enters the grid strictly after the first purchase');
  });

  it('refuse a step or horizon that is not a whole number of days, naming the option', async () => {
    await assert.rejects(retailPropensityData(lake, { stepDays: 1.5, progress: silentProgress }), /stepDays: 1.5 is not a whole number of days/);
    await assert.rejects(appChurnData(lake, { horizonDays: 0, progress: silentProgress }), /horizonDays: 0 is not a whole number of days/);
  });

  it("score an app user at each login, from the first and before churning, labelled with the simulator's churn in (as_of, as_of + horizon]", async () => {
    const horizonDays = 14;
    const rows = all(await appChurnData(lake, { horizonDays, progress: silentProgress }));
    const truth = new Map(
      (
        await lake.query<{ user_id: string; churned_at: Date | null; first_seen: Date }>(
          sql`SELECT user_id, churned_at, first_seen FROM app_truth JOIN users USING (user_id)`,
        )
      ).map((t) => [t.user_id, t]),
    );
    const logins = await lake.query<{ user_id: string; time: Date }>(sql`SELECT user_id, time FROM events WHERE source = 'app' AND event = 'login'`);
    let churned = 0;
    for (const r of rows) {
      const asOf = (r.as_of as Date).getTime();
      const t = truth.get(r.user_id as string)!;
      const churnedAt = t.churned_at?.getTime();
      assert.ok(t.first_seen.getTime() < asOf, `${key(r)}: signed up before`);
      assert.ok(churnedAt === undefined || churnedAt > asOf, `${key(r)}: churned at or before its moment`);
      assert.equal(r.churned, churnedAt !== undefined && churnedAt <= asOf + horizonDays * DAY ? 1 : 0, `${key(r)}: label`);
      // The login itself is in the features, as the service sees them when it scores the login.
      assert.ok((r.logins_7d as number) >= 1, `${key(r)}: its own login counted`);
      churned += r.churned as number;
    }
    assert.ok(churned > 10, `${churned} churned rows`);
    // Each row is a login 1 ms before its as_of, and every login of a user not churned yet,
    // inside the span (from when the 30-day windows are covered), is there: none missing, none made up.
    const [span] = await lake.query<{ first: Date; last: Date }>(sql`SELECT min(time) AS first, max(time) AS last FROM app_events`);
    const from = span!.first.getTime() + 30 * DAY;
    const to = span!.last.getTime() - horizonDays * DAY;
    const expected = new Set<string>();
    for (const e of logins) {
      const asOf = e.time.getTime() + 1;
      const t = truth.get(e.user_id)!;
      if (asOf < from || asOf > to || t.first_seen.getTime() >= asOf || (t.churned_at !== null && t.churned_at.getTime() <= asOf)) continue;
      expected.add(`${e.user_id}@${asOf}`);
    }
    assert.deepEqual(new Set(rows.map((r) => `${r.user_id as string}@${(r.as_of as Date).getTime()}`)), expected);
    assert.equal(rows.length, expected.size, 'one row per login');
  });
});
