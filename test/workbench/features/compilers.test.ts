import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DuckDb } from '../../../src/workbench/duckdb.js';
import { featureSet, WINDOWS, type Feature, type FeatureInput, type FeatureValue } from '../../../src/workbench/features/definition.js';
import { trainingSetSql } from '../../../src/workbench/features/offline.js';
import { OnlineFeatures, type FeatureEvent, type UserState } from '../../../src/workbench/features/online.js';
import { Random } from '../../../src/workbench/random.js';
import { sql } from '../../../src/workbench/sql.js';

const T0 = Date.UTC(2026, 0, 5, 0, 0, 0); // a Monday, midnight
const min = 60_000;
const hour = 60 * min;
const day = 24 * hour;

/** Loads events and a spine into a fresh in-memory DuckDB, as the lakehouse's `events` view looks. */
async function database(events: FeatureEvent[], spine: { user_id: string; as_of: number; label?: number }[]): Promise<DuckDb> {
  const db = await DuckDb.open(':memory:', { threads: 1 });
  await db.run(sql`CREATE TABLE events_raw (event_id VARCHAR, time TIMESTAMP, user_id VARCHAR, event VARCHAR, props VARCHAR)`);
  await db.append(
    'events_raw',
    ['VARCHAR', 'TIMESTAMP', 'VARCHAR', 'VARCHAR', 'VARCHAR'],
    events.map((e) => [e.event_id, e.time, e.user_id, e.event, JSON.stringify(e.props)]),
  );
  await db.run(sql`CREATE VIEW events AS SELECT event_id, time, user_id, event, CAST(props AS JSON) AS props FROM events_raw`);
  await db.run(sql`CREATE TABLE spine (user_id VARCHAR, as_of TIMESTAMP, label DOUBLE)`);
  await db.append(
    'spine',
    ['VARCHAR', 'TIMESTAMP', 'DOUBLE'],
    spine.map((s) => [s.user_id, s.as_of, s.label ?? 0]),
  );
  return db;
}

async function offline(db: DuckDb, features: Feature[]): Promise<Record<string, unknown>[]> {
  const r = await db.query(trainingSetSql(features, { spine: sql`spine` }));
  return Array.from({ length: r.rowCount }, (_, i) => Object.fromEntries(r.names.map((n, c) => [n, r.columns[c]![i]])));
}

/**
 * Online values: every event before `at` folded in, in log order (not time order), then read at
 * `at`, expiring buckets as it goes. The state goes through JSON now and then, as in the stores.
 */
function online(features: Feature[], events: FeatureEvent[], user: string, at: number): Record<string, FeatureValue> {
  const compiled = new OnlineFeatures(features);
  let state: UserState | undefined;
  let folded = 0;
  let newest = -Infinity;
  for (const e of events) {
    if (e.user_id !== user || e.time >= at) continue;
    state ??= compiled.emptyState();
    compiled.update(state, e);
    // As the features consumer does: expire as of the user's newest event so far.
    newest = Math.max(newest, e.time);
    if (compiled.expire(state, newest)) state = undefined;
    if (state && ++folded % 50 === 0) state = JSON.parse(JSON.stringify(state)) as UserState;
  }
  return compiled.read(state, at).values;
}

/**
 * The reference: the definition's semantics written out directly over the event list (filter,
 * then aggregate), with nothing shared with either compiler.
 */
/** The service's own records (predictions, exposures): written for a user, not by them, so never one of "every event". */
const OWN_RECORDS = ['prediction', 'experiment_exposure'];

function reference(f: Feature, events: FeatureEvent[], user: string, at: number): FeatureValue {
  const { ms, bucketMs } = WINDOWS[f.window];
  const from = Number.isFinite(ms) ? Math.floor(at / bucketMs) * bucketMs - ms : -Infinity;
  let matched = events.filter(
    (e) => e.user_id === user && e.time < at && e.time >= from && (f.source.event === '*' ? !OWN_RECORDS.includes(e.event) : e.event === f.source.event),
  );
  matched = matched.filter((e) => Object.entries(f.source.where ?? {}).every(([k, v]) => e.props[k] === v));
  const numbers = matched.map((e) => e.props[f.prop ?? '']).filter((v): v is number => typeof v === 'number');
  const texts = matched
    .filter((e) => ['string', 'number', 'boolean'].includes(typeof e.props[f.prop ?? '']))
    .map((e) => ({ e, v: String(e.props[f.prop ?? '']) }));
  const times = matched.map((e) => e.time);
  const orDefault = (ok: boolean, v: () => FeatureValue) => (ok ? v() : f.default);
  switch (f.aggregation) {
    case 'count':
      return orDefault(matched.length > 0, () => matched.length);
    case 'sum':
      return orDefault(numbers.length > 0, () => numbers.reduce((a, b) => a + b, 0));
    case 'mean':
      return orDefault(numbers.length > 0, () => numbers.reduce((a, b) => a + b, 0) / numbers.length);
    case 'min':
      return orDefault(numbers.length > 0, () => Math.min(...numbers));
    case 'max':
      return orDefault(numbers.length > 0, () => Math.max(...numbers));
    case 'distinct_count':
      return orDefault(texts.length > 0, () => new Set(texts.map((t) => t.v)).size);
    case 'last_n': {
      const sorted = texts.sort((a, b) => b.e.time - a.e.time || (b.e.event_id < a.e.event_id ? -1 : 1));
      return orDefault(texts.length > 0, () => sorted.slice(0, f.n).map((t) => t.v));
    }
    case 'time_since_last':
      return orDefault(times.length > 0, () => (at - Math.max(...times)) / 1000);
    case 'first_seen_age':
      return orDefault(times.length > 0, () => (at - Math.min(...times)) / 1000);
  }
}

const close = (a: unknown, b: unknown) =>
  typeof a === 'number' && typeof b === 'number' ? Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)) : JSON.stringify(a) === JSON.stringify(b);

describe('feature definitions', () => {
  const base: FeatureInput = { name: 'purchases_7d', source: { event: 'purchase' }, aggregation: 'count', window: '7d', default: 0 };

  it('are versioned by content, whatever the key order', () => {
    const [a] = featureSet([base]);
    const [b] = featureSet([{ default: 0, window: '7d', aggregation: 'count', source: { event: 'purchase' }, name: 'purchases_7d' }]);
    const [c] = featureSet([{ ...base, window: '30d' }]);
    assert.equal(a!.version, b!.version);
    assert.notEqual(a!.version, c!.version);
    assert.match(a!.version, /^[0-9a-f]{16}$/);
  });

  it('refuse one name with two definitions, and keep one copy of the same definition', () => {
    assert.equal(featureSet([base, base]).length, 1);
    assert.throws(() => featureSet([base, { ...base, window: '30d' }]), /feature purchases_7d has two definitions/);
  });

  it('name the feature and the field that is wrong', () => {
    assert.throws(() => featureSet([{ ...base, aggregation: 'median' as 'count' }]), /feature purchases_7d: aggregation: Invalid option/);
    assert.throws(() => featureSet([{ ...base, window: '2d' as '7d' }]), /feature purchases_7d: window: Invalid option/);
    assert.throws(() => featureSet([{ ...base, aggregation: 'sum' }]), /feature purchases_7d: prop: sum needs the prop it aggregates/);
    assert.throws(() => featureSet([{ ...base, aggregation: 'last_n', prop: 'sku', default: [] }]), /last_n needs n/);
    assert.throws(() => featureSet([{ ...base, aggregation: 'last_n', prop: 'sku', n: 5 }]), /the default of last_n is a list/);
    assert.throws(() => featureSet([{ ...base, name: 'Bad Name' }]), /feature Bad Name: name: feature names are lower_snake_case/);
    assert.throws(
      () => featureSet([{ ...base, source: { event: 'purchase', where: { "x'; DROP": 1 } } }]),
      /feature purchases_7d: source\.where\.x'; DROP: Invalid key/,
    );
    assert.throws(() => featureSet([{ ...base, extra: 1 } as FeatureInput]), /Unrecognized key/);
  });
});

describe('the offline and online compilers on a hand-made log', () => {
  // u1: purchases at known times; the spine asks at an event's exact time and around window edges.
  const p = (id: string, t: number, props: Record<string, unknown>, event = 'purchase', user = 'u1'): FeatureEvent => ({
    event_id: id,
    time: t,
    user_id: user,
    event,
    props,
  });
  const events: FeatureEvent[] = [
    p('e1', T0 + 1 * hour, { amount: 10, sku: 'A', country: 'GB' }),
    p('e2', T0 + 2 * hour, { amount: 30, sku: 'B', country: 'GB' }),
    p('e3', T0 + 3 * day, { amount: 5, sku: 'A', country: 'FR' }),
    p('e4', T0 + 3 * day, { amount: 'n/a', sku: 'C', country: 'GB' }), // same instant as e3; amount not a number
    p('e5', T0 + 3 * day + 30 * min, {}, 'login'),
    p('e6', T0 + 9 * day, { amount: 7, sku: 'D' }),
  ];
  const features = featureSet([
    { name: 'purchases_7d', source: { event: 'purchase' }, aggregation: 'count', window: '7d', default: 0 },
    { name: 'spend_7d', source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: '7d', default: 0 },
    { name: 'gb_spend_30d', source: { event: 'purchase', where: { country: 'GB' } }, aggregation: 'sum', prop: 'amount', window: '30d', default: 0 },
    { name: 'skus_lifetime', source: { event: 'purchase' }, aggregation: 'distinct_count', prop: 'sku', window: 'lifetime', default: 0 },
    { name: 'last_skus', source: { event: 'purchase' }, aggregation: 'last_n', prop: 'sku', n: 2, window: 'lifetime', default: [] },
    { name: 'since_last_event', source: { event: '*' }, aggregation: 'time_since_last', window: 'lifetime', default: -1 },
    { name: 'age', source: { event: '*' }, aggregation: 'first_seen_age', window: 'lifetime', default: -1 },
    { name: 'logins_1h', source: { event: 'login' }, aggregation: 'count', window: '1h', default: 0 },
  ]);
  const spine = [
    { user_id: 'u1', as_of: T0 + 1 * hour }, // exactly at e1: nothing yet
    { user_id: 'u1', as_of: T0 + 3 * day }, // exactly at e3 and e4: only e1, e2
    { user_id: 'u1', as_of: T0 + 3 * day + 1 }, // 1 ms later: e3 and e4 count
    { user_id: 'u1', as_of: T0 + 3 * day + 90 * min }, // login at +30 min is in the 1 h window
    { user_id: 'u1', as_of: T0 + 9 * day + 1 }, // e1 and e2 left the 7 d window (day 2, bucketed to the hour)
    { user_id: 'nobody', as_of: T0 + 5 * day }, // an unknown user: defaults
  ];
  const expected: Record<string, FeatureValue>[] = [
    { purchases_7d: 0, spend_7d: 0, gb_spend_30d: 0, skus_lifetime: 0, last_skus: [], since_last_event: -1, age: -1, logins_1h: 0 },
    {
      purchases_7d: 2,
      spend_7d: 40,
      gb_spend_30d: 40,
      skus_lifetime: 2,
      last_skus: ['B', 'A'],
      since_last_event: 3 * 86_400 - 7200,
      age: 3 * 86_400 - 3600,
      logins_1h: 0,
    },
    // e3 and e4 share a time: the newer by event_id (e4, sku C) comes first. e4's amount is not a number: not summed.
    {
      purchases_7d: 4,
      spend_7d: 45,
      gb_spend_30d: 40,
      skus_lifetime: 3,
      last_skus: ['C', 'A'],
      since_last_event: 0.001,
      age: 3 * 86_400 - 3600 + 0.001,
      logins_1h: 0,
    },
    { purchases_7d: 4, spend_7d: 45, gb_spend_30d: 40, skus_lifetime: 3, last_skus: ['C', 'A'], since_last_event: 3600, age: 3 * 86_400 + 1800, logins_1h: 1 },
    // 7 d window at day 9 + 1 ms starts at day 2 exactly: e3, e4 remain (day 3); e6 is at exactly day 9: before as_of.
    {
      purchases_7d: 3,
      spend_7d: 12,
      gb_spend_30d: 40,
      skus_lifetime: 4,
      last_skus: ['D', 'C'],
      since_last_event: 0.001,
      age: 9 * 86_400 - 3600 + 0.001,
      logins_1h: 0,
    },
    { purchases_7d: 0, spend_7d: 0, gb_spend_30d: 0, skus_lifetime: 0, last_skus: [], since_last_event: -1, age: -1, logins_1h: 0 },
  ];

  let db: DuckDb;
  before(async () => (db = await database(events, spine)));
  after(() => db.close());

  it('computes the known answers offline, excluding events at exactly as_of, keeping spine order and columns', async () => {
    const rows = await offline(db, features);
    assert.equal(rows.length, spine.length);
    rows.forEach((row, i) => {
      assert.equal(row.user_id, spine[i]!.user_id);
      assert.equal((row.as_of as Date).getTime(), spine[i]!.as_of);
      assert.equal(row.label, 0, 'spine columns are kept');
      for (const [name, want] of Object.entries(expected[i]!))
        assert.ok(close(row[name], want), `row ${i} ${name}: offline ${JSON.stringify(row[name])}, expected ${JSON.stringify(want)}`);
    });
  });

  it('computes the same known answers online', () => {
    spine.forEach((s, i) => {
      const got = online(features, events, s.user_id, s.as_of);
      for (const [name, want] of Object.entries(expected[i]!))
        assert.ok(close(got[name], want), `row ${i} ${name}: online ${JSON.stringify(got[name])}, expected ${JSON.stringify(want)}`);
    });
  });

  it('reports which features fell back to their defaults', () => {
    const compiled = new OnlineFeatures(features);
    const state = compiled.emptyState();
    compiled.update(state, events[4]!); // one login
    const read = compiled.read(state, T0 + 3 * day + 31 * min);
    assert.deepEqual(read.defaulted.sort(), ['gb_spend_30d', 'last_skus', 'purchases_7d', 'skus_lifetime', 'spend_7d']);
  });
});

describe('offline, online and a direct reference agree on random logs', () => {
  // Seeded, so that a failure can be replayed.
  const seeded = new Random(20261127);
  const random = () => seeded.next();
  const users = ['a', 'b', 'c', 'd'];
  const names = ['view', 'purchase', 'login', 'prediction', 'experiment_exposure'];
  const events: FeatureEvent[] = Array.from({ length: 3000 }, (_, i) => {
    // Times on a coarse grid, so that many events share an instant and land on bucket edges.
    const time = T0 + Math.floor(random() * 40 * 24 * 12) * 5 * min;
    const props: Record<string, unknown> = { sku: `s${Math.floor(random() * 12)}`, country: random() < 0.5 ? 'GB' : 'FR' };
    if (random() < 0.8) props.amount = Math.round(random() * 10_000) / 100;
    if (random() < 0.1) props.amount = 'unknown';
    if (random() < 0.3) props.vip = random() < 0.5;
    return {
      event_id: `r${String(i).padStart(5, '0')}`,
      time,
      user_id: users[Math.floor(random() * users.length)]!,
      event: names[Math.floor(random() * names.length)]!,
      props,
    };
  });
  const windows = Object.keys(WINDOWS) as (keyof typeof WINDOWS)[];
  const features = featureSet(
    windows.flatMap((w): FeatureInput[] => [
      { name: `views_${w}`, source: { event: 'view' }, aggregation: 'count', window: w, default: 0 },
      { name: `spend_${w}`, source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: w, default: 0 },
      { name: `mean_${w}`, source: { event: 'purchase', where: { country: 'GB' } }, aggregation: 'mean', prop: 'amount', window: w, default: -1 },
      { name: `min_${w}`, source: { event: '*' }, aggregation: 'min', prop: 'amount', window: w, default: -1 },
      { name: `max_${w}`, source: { event: '*', where: { vip: true } }, aggregation: 'max', prop: 'amount', window: w, default: -1 },
      { name: `skus_${w}`, source: { event: 'view' }, aggregation: 'distinct_count', prop: 'sku', window: w, default: 0 },
      { name: `last_${w}`, source: { event: 'view' }, aggregation: 'last_n', prop: 'sku', n: 3, window: w, default: [] },
      { name: `since_${w}`, source: { event: 'login' }, aggregation: 'time_since_last', window: w, default: -1 },
      { name: `age_${w}`, source: { event: '*' }, aggregation: 'first_seen_age', window: w, default: -1 },
      { name: `scored_${w}`, source: { event: 'prediction' }, aggregation: 'count', window: w, default: 0 },
    ]),
  );
  // Sample times: random instants, and instants exactly on events and on bucket edges.
  const spine = Array.from({ length: 120 }, (_, i) => {
    const user = users[i % users.length]!;
    const kind = i % 3;
    const at =
      kind === 0
        ? T0 + Math.floor(random() * 42 * day)
        : kind === 1
          ? events[Math.floor(random() * events.length)]!.time
          : T0 + Math.floor(random() * 42) * day;
    return { user_id: user, as_of: at };
  });

  it(`gives the same value for every feature at every sample (${features.length} features x ${spine.length} samples)`, async () => {
    const db = await database(events, spine);
    try {
      const rows = await offline(db, features);
      let checked = 0;
      spine.forEach((s, i) => {
        const on = online(features, events, s.user_id, s.as_of);
        for (const f of features) {
          const want = reference(f, events, s.user_id, s.as_of);
          assert.ok(
            close(rows[i]![f.name], want),
            `sample ${i} (${s.user_id} at ${new Date(s.as_of).toISOString()}) ${f.name}: offline ${JSON.stringify(rows[i]![f.name])}, reference ${JSON.stringify(want)}`,
          );
          assert.ok(
            close(on[f.name], want),
            `sample ${i} (${s.user_id} at ${new Date(s.as_of).toISOString()}) ${f.name}: online ${JSON.stringify(on[f.name])}, reference ${JSON.stringify(want)}`,
          );
          checked++;
        }
      });
      assert.equal(checked, features.length * spine.length);
    } finally {
      db.close();
    }
  });
});
