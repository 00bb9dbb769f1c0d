import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DuckDb } from '../../../src/workbench/duckdb.js';
import { contentHash, featureSet, type Feature } from '../../../src/workbench/features/definition.js';
import { buildTrainingSet, trainingSetSql } from '../../../src/workbench/features/offline.js';
import { Lakehouse } from '../../../src/workbench/lakehouse.js';
import { bundleVersion, createBundle, verifyBundle, type ModelBundle } from '../../../src/workbench/models/bundle.js';
import { columnsFor } from '../../../src/workbench/models/preprocess.js';
import { publish } from '../../../src/workbench/models/publish.js';
import { ModelRegistry } from '../../../src/workbench/models/registry.js';
import { trainClassifier } from '../../../src/workbench/models/train.js';
import { silentProgress } from '../../../src/workbench/progress.js';
import { Random } from '../../../src/workbench/random.js';
import { join as sqlJoin, sql } from '../../../src/workbench/sql.js';
import { startTestService, type TestService } from '../../helpers/service.js';
import { tempDir } from '../../helpers/tmp.js';
import type { RunSummary } from './determinism-run.js';

/**
 * Item 1 of issue 12: the same lakehouse, definitions and seed give the same training sets, weights
 * and version, in separate processes; publishing a bundle the registry already holds changes nothing
 * and says so.
 */
const CI_DATA = '.wb/ci';
const CI_LAKE = join(CI_DATA, 'lake');

/** Runs determinism-run.ts in a process of its own; resolves with its summary line. */
function trainingRun(outDir: string): Promise<Record<'retail' | 'app', RunSummary>> {
  mkdirSync(outDir, { recursive: true });
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/workbench/models/determinism-run.ts', CI_LAKE, outDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, WB_DEBUG: '' },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`determinism-run.ts exited ${code}: ${err.slice(-2000)}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1)!) as Record<'retail' | 'app', RunSummary>);
      } catch {
        reject(new Error(`determinism-run.ts printed no summary: ${out.slice(-500)} ${err.slice(-1000)}`));
      }
    });
  });
}

/** Every file under a folder, by relative path, as bytes: two snapshots are equal when nothing was written. */
function snapshot(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path);
      else files.set(relative(dir, path), readFileSync(path).toString('base64'));
    }
  };
  walk(dir);
  return files;
}

const readBundle = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as ModelBundle;
/** The same version with another createdAt: a copy of the model made at another time. */
const madeAt = (b: ModelBundle, createdAt: string): ModelBundle => ({ ...b, lineage: { ...b.lineage, createdAt } });

const wb = (...args: string[]) => {
  const r = spawnSync(process.execPath, ['bin/wb.cjs', ...args], { encoding: 'utf8', env: { ...process.env, WB_DEBUG: '' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('the same lakehouse, definitions and seed, trained in two processes', { timeout: 900_000 }, () => {
  const dir = tempDir('wb-determinism-');
  let runs: Record<'retail' | 'app', RunSummary>[];
  before(async () => {
    if (!existsSync(join(CI_LAKE, 'manifest.json'))) {
      const built = spawnSync(process.execPath, ['bin/wb.cjs', 'lake', 'build', '--data-dir', CI_DATA, '--users', '300', '--days', '60'], { encoding: 'utf8' });
      assert.equal(built.status, 0, built.stderr);
    }
    runs = await Promise.all([trainingRun(join(dir, 'first')), trainingRun(join(dir, 'second'))]);
  });

  it('give bit-identical training sets, identical weights and the same version', () => {
    const [first, second] = runs;
    for (const model of ['retail', 'app'] as const) {
      const a = first![model];
      const b = second![model];
      assert.ok(a.rowCount > 500, `${model}: only ${a.rowCount} rows`);
      assert.equal(b.rowCount, a.rowCount, `${model}: rows`);
      assert.equal(b.rows, a.rows, `${model}: the training set differs between the processes`);
      assert.equal(b.weights, a.weights, `${model}: the weights differ`);
      assert.equal(b.version, a.version, `${model}: the version differs`);
    }
    // Made at two moments, by two processes: the one field outside the version.
    const [x, y] = ['first', 'second'].map((run) => readBundle(join(dir, run, 'purchase-propensity.json')));
    assert.deepEqual(madeAt(y!, x!.lineage.createdAt), x);
  });

  it('publishing the same model again into a registry writes nothing, and says so', async () => {
    const first = readBundle(join(dir, 'first', 'purchase-propensity.json'));
    const second = madeAt(readBundle(join(dir, 'second', 'purchase-propensity.json')), '2030-01-01T00:00:00.000Z');
    const dataDir = join(dir, 'local');
    const registry = ModelRegistry.open(join(dataDir, 'registry'));
    const stored = await registry.publish(first, 'champion', { by: 'test' });
    assert.deepEqual([stored.stored, stored.unchanged, stored.from], [true, false, null]);
    assert.equal(stored.message, `stored purchase-propensity ${first.version}; champion: (none) -> ${first.version}`);
    const before = snapshot(registry.root);
    assert.ok(before.size >= 3, 'a bundle, the aliases and their history');

    const again = await registry.publish(second, 'champion', { by: 'test' });
    assert.deepEqual([again.version, again.stored, again.unchanged, again.from], [first.version, false, true, first.version]);
    assert.equal(again.message, `unchanged: version ${first.version} of purchase-propensity is already champion`);
    assert.deepEqual(snapshot(registry.root), before, 'the registry is byte for byte the same');
    assert.equal(registry.get(first.version).lineage.createdAt, first.lineage.createdAt, 'the first copy is kept');

    // The CLI says so too, and writes nothing either.
    const cli = wb('--data-dir', dataDir, 'models', 'alias', 'purchase-propensity', 'champion', first.version);
    assert.equal(cli.code, 0, cli.err);
    assert.equal(cli.out.trim(), `unchanged: version ${first.version} of purchase-propensity is already champion`);
    assert.deepEqual(snapshot(registry.root), before);

    // Another alias does move (and is recorded), but the bundle is not written again.
    const challenger = await registry.publish(second, 'challenger');
    assert.deepEqual([challenger.stored, challenger.unchanged, challenger.from], [false, false, null]);
    assert.match(challenger.message, /was already stored \(the same model\), not written again; challenger: \(none\) -> /);
    const after = snapshot(registry.root);
    const bundleFile = join('bundles', `${first.version}.json`);
    assert.equal(after.get(bundleFile), before.get(bundleFile));
    assert.equal(registry.history('purchase-propensity').length, 2);
  });

  describe('through the service', () => {
    let t: TestService;
    before(async () => (t = await startTestService()));
    after(async () => await t?.stop());

    it('publishing the same bundle twice: the second answer says unchanged, and the registry and aliases are byte-identical', async () => {
      const first = readBundle(join(dir, 'first', 'app-churn.json'));
      const second = madeAt(readBundle(join(dir, 'second', 'app-churn.json')), '2030-01-01T00:00:00.000Z');
      const options = { url: t.service.url, key: t.keys.admin, alias: 'champion', progress: silentProgress };
      const published = await publish(first, options);
      assert.deepEqual([published.version, published.stored, published.unchanged, published.from], [first.version, true, false, null]);
      const root = join(t.dataDir, 'registry');
      const before = snapshot(root);

      const again = await publish(second, options);
      assert.deepEqual([again.version, again.stored, again.unchanged, again.from], [first.version, false, true, first.version]);
      assert.equal(again.message, `unchanged: version ${first.version} of app-churn is already champion`);
      assert.deepEqual(again.features_added, []);
      assert.deepEqual(snapshot(root), before, 'the registry is byte for byte the same');

      // Pointing the alias where it already is, over HTTP: nothing recorded either.
      const moved = await t.call('/v1/models/app-churn/aliases/champion', {
        method: 'PUT',
        key: t.keys.admin,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ version: first.version }),
      });
      assert.equal(moved.status, 200);
      assert.equal(((await moved.json()) as { unchanged?: boolean }).unchanged, true);
      assert.deepEqual(snapshot(root), before);
    });
  });
});

describe('a bundle version', { timeout: 120_000 }, () => {
  const features = featureSet([
    { name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 },
    { name: 'spend_30d', source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: '30d', default: 0 },
  ]);
  const r = new Random(5);
  const rows = Array.from({ length: 400 }, () => {
    const logins = r.int(10);
    const spend = r.int(5000) / 100;
    return { logins_7d: logins, spend_30d: spend, bought: r.bernoulli(logins > 5 ? 0.7 : 0.2) ? 1 : 0 };
  });
  const lineage = { source: 'test', gitCommit: 'abc', dataSnapshot: 'lakehouse 0123 (built 2026-01-01)' };
  let bundle: ModelBundle;
  before(async () => {
    const model = await trainClassifier(rows, 'bought', columnsFor(features), { model: 'mlp', hidden: [4], seed: 3, maxEpochs: 4, progress: silentProgress });
    bundle = await createBundle('det-test', model, features, { metrics: { rocAuc: 0.7 }, lineage: { ...lineage, createdAt: '2026-01-01T00:00:00.000Z' } });
    model.dispose();
  });

  it('is the same when the same model is trained again in the same process, whenever it is made', async () => {
    // tfjs numbers unnamed models and layers per process: the second model would be sequential_2.
    const model = await trainClassifier(rows, 'bought', columnsFor(features), { model: 'mlp', hidden: [4], seed: 3, maxEpochs: 4, progress: silentProgress });
    const again = await createBundle('det-test', model, features, { metrics: { rocAuc: 0.7 }, lineage });
    model.dispose();
    assert.equal(again.model.weights, bundle.model.weights);
    assert.notEqual(again.lineage.createdAt, bundle.lineage.createdAt);
    assert.equal(again.version, bundle.version);
    // Another seed is another model.
    const other = await trainClassifier(rows, 'bought', columnsFor(features), { model: 'mlp', hidden: [4], seed: 4, maxEpochs: 4, progress: silentProgress });
    const otherBundle = await createBundle('det-test', other, features, { metrics: { rocAuc: 0.7 }, lineage });
    other.dispose();
    assert.notEqual(otherBundle.version, bundle.version);
  });

  it('covers weights, features, metrics and lineage (a change fails verification), but not createdAt', () => {
    const copy = () => JSON.parse(JSON.stringify(bundle)) as ModelBundle;
    const changes: [string, (b: ModelBundle) => void][] = [
      ['a weight', (b) => (b.model.weights = `${b.model.weights[0] === 'A' ? 'B' : 'A'}${b.model.weights.slice(1)}`)],
      ['a feature window', (b) => ((b.features[1] as { window: string }).window = '7d')],
      ['a metric', (b) => (b.metrics.rocAuc = 0.9)],
      ['the data snapshot', (b) => (b.lineage.dataSnapshot = 'lakehouse 4567 (built 2026-01-02)')],
      ['the git commit', (b) => (b.lineage.gitCommit = 'def')],
      ['the label', (b) => (b.label = 'churned')],
    ];
    for (const [what, change] of changes) {
      const b = copy();
      change(b);
      assert.throws(() => verifyBundle(b), /hashes to [0-9a-f]{16}, not to its version/, what);
    }
    const dated = copy();
    dated.lineage.createdAt = '2031-05-05T00:00:00.000Z';
    assert.equal(verifyBundle(dated).version, bundle.version, 'createdAt is metadata, outside the version');
    const { version, ...body } = bundle;
    assert.equal(bundleVersion(body), version);
  });

  it('of a bundle made before createdAt left the hash is still accepted, and still covers createdAt', () => {
    const { version: _v, ...body } = JSON.parse(JSON.stringify(bundle)) as ModelBundle;
    const legacy = { ...body, version: contentHash(body) };
    assert.notEqual(legacy.version, bundle.version);
    assert.equal(verifyBundle(legacy).version, legacy.version);
    assert.throws(() => verifyBundle(madeAt(legacy, '2031-05-05T00:00:00.000Z')), /not to its version/);
  });
});

/** x as an exact integer count of 2^-1074 (the smallest double): sums of these are exact. */
function exact(x: number): bigint {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const biased = Number((bits >> 52n) & 0x7ffn);
  const fraction = bits & ((1n << 52n) - 1n);
  const mantissa = biased === 0 ? fraction : fraction | (1n << 52n);
  const magnitude = mantissa << BigInt(Math.max(biased, 1) - 1);
  return bits >> 63n ? -magnitude : magnitude;
}

/** One unit in the last place of x, in the same units as `exact`. */
function ulp(x: number): bigint {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  return 1n << BigInt(Math.max(Number((view.getBigUint64(0) >> 52n) & 0x7ffn), 1) - 1);
}

describe('sums and means in a training set', { timeout: 120_000 }, () => {
  const features: Feature[] = featureSet([
    { name: 'spend', source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: 'lifetime', default: 0 },
    { name: 'mean_amount', source: { event: 'purchase' }, aggregation: 'mean', prop: 'amount', window: 'lifetime', default: 0 },
    { name: 'lines', source: { event: 'purchase' }, aggregation: 'count', window: 'lifetime', default: 0 },
  ]);
  const T0 = Date.UTC(2026, 0, 1);
  const rng = new Random(17);
  // Money with cents (none exact in binary), a few large amounts that cancel, tiny ones: naive sums
  // of these depend on the order of the additions.
  const amounts = (user: number) =>
    Array.from({ length: 3000 }, (_, i) =>
      i % 500 === 0 ? (i % 1000 === 0 ? 4e15 : -4e15) : i % 97 === 0 ? rng.int(1000) * 1e-9 : (rng.int(500_000) + 1) / 100 + user,
    );
  const events = [0, 1, 2].flatMap((u) => amounts(u).map((amount, i) => ({ event_id: `e${u}-${i}`, time: T0 + i * 60_000, user_id: `u${u}`, amount })));
  const spine = [0, 1, 2].flatMap((u) => [1000, 2000, 3001].map((minutes) => ({ user_id: `u${u}`, as_of: T0 + minutes * 60_000 })));

  /** The training set over the events inserted in `order`, on an in-memory DuckDB with 4 threads. */
  async function trainingSet(order: readonly number[], extra: { event_id: string; time: number; user_id: string; amount: number }[] = []) {
    const db = await DuckDb.open(':memory:', { threads: 4 });
    try {
      await db.run(sql`CREATE TABLE raw (event_id VARCHAR, time TIMESTAMP, user_id VARCHAR, event VARCHAR, props VARCHAR)`);
      const all = [...order.map((i) => events[i]!), ...extra];
      await db.append(
        'raw',
        ['VARCHAR', 'TIMESTAMP', 'VARCHAR', 'VARCHAR', 'VARCHAR'],
        all.map((e) => [e.event_id, e.time, e.user_id, 'purchase', JSON.stringify({ amount: e.amount })]),
      );
      await db.run(sql`CREATE VIEW events AS SELECT event_id, time, user_id, event, CAST(props AS JSON) AS props FROM raw`);
      await db.run(sql`CREATE TABLE spine (user_id VARCHAR, as_of TIMESTAMP)`);
      await db.append(
        'spine',
        ['VARCHAR', 'TIMESTAMP'],
        spine.map((s) => [s.user_id, s.as_of]),
      );
      const r = await db.query(trainingSetSql(features, { spine: sql`spine`, orderBy: ['as_of', 'user_id'] }));
      return Array.from({ length: r.rowCount }, (_, i) => Object.fromEntries(r.names.map((n, c) => [n, r.columns[c]![i]])) as Record<string, number | string>);
    } finally {
      db.close();
    }
  }

  const shuffled = (seed: number) => new Random(seed).shuffle(events.map((_, i) => i));

  it('are the same to the last bit whatever order the events arrive in', async () => {
    const orders = [events.map((_, i) => i), events.map((_, i) => events.length - 1 - i), shuffled(1), shuffled(2)];
    // The data is order-sensitive: plain double sums in these orders differ.
    const naive = new Set(orders.map((o) => o.filter((i) => events[i]!.user_id === 'u1').reduce((s, i) => s + events[i]!.amount, 0)));
    assert.ok(naive.size > 1, 'plain double sums of this data depend on the order');
    const sets: Awaited<ReturnType<typeof trainingSet>>[] = [];
    for (const o of orders) sets.push(await trainingSet(o));
    for (const other of sets.slice(1)) {
      assert.equal(other.length, sets[0]!.length);
      other.forEach((row, i) => {
        for (const name of ['spend', 'mean_amount'])
          assert.ok(Object.is(row[name], sets[0]![i]![name]), `row ${i} ${name}: ${row[name]} vs ${sets[0]![i]![name]}`);
      });
    }
  });

  it('are within 2 units in the last place of the exact sum and mean', async () => {
    const rows = await trainingSet(shuffled(3));
    assert.equal(rows.length, spine.length);
    for (const row of rows) {
      const seen = events.filter((e) => e.user_id === row.user_id && e.time < (row.as_of as unknown as Date).getTime());
      const sum = seen.reduce((s, e) => s + exact(e.amount), 0n);
      const spend = row.spend as number;
      const off = exact(spend) - sum;
      assert.ok((off < 0n ? -off : off) <= 2n * ulp(spend), `${row.user_id} ${spend}: ${off} units of 2^-1074 from the exact sum`);
      const n = BigInt(seen.length);
      assert.equal(row.lines, seen.length);
      const mean = row.mean_amount as number;
      const meanOff = n * exact(mean) - sum;
      assert.ok((meanOff < 0n ? -meanOff : meanOff) <= 3n * n * ulp(mean), `${row.user_id} mean ${mean}`);
    }
  });

  it('take values too large for the exact parts as plain doubles, without an error', async () => {
    const huge = [
      { event_id: 'h1', time: T0, user_id: 'u9', amount: 1e300 },
      { event_id: 'h2', time: T0 + 1, user_id: 'u9', amount: 2 ** 60 },
      { event_id: 'h3', time: T0 + 2, user_id: 'u9', amount: 12.5 },
    ];
    spine.push({ user_id: 'u9', as_of: T0 + 10 * 60_000 });
    try {
      const rows = await trainingSet([], huge);
      const u9 = rows.find((r) => r.user_id === 'u9')!;
      assert.equal(u9.spend, 1e300);
      assert.equal(u9.mean_amount, 1e300 / 3);
    } finally {
      spine.pop();
    }
  });
});

describe('the order of a training set', { timeout: 120_000 }, () => {
  let lake: Lakehouse;
  before(async () => {
    if (!existsSync(join(CI_LAKE, 'manifest.json'))) {
      const built = spawnSync(process.execPath, ['bin/wb.cjs', 'lake', 'build', '--data-dir', CI_DATA, '--users', '300', '--days', '60'], { encoding: 'utf8' });
      assert.equal(built.status, 0, built.stderr);
    }
    lake = await Lakehouse.open(CI_LAKE, { threads: 4 });
  });
  after(() => lake?.close());
  const features = featureSet([{ name: 'logins', source: { event: 'login' }, aggregation: 'count', window: 'lifetime', default: 0 }]);
  // Later moments first, users out of order, and (u3, 02-10) twice with another tag.
  const given = [
    ['u3', '2025-02-10', 'a'],
    ['u1', '2025-02-10', 'b'],
    ['u2', '2025-01-20', 'c'],
    ['u3', '2025-02-10', 'd'],
    ['u1', '2025-01-20', 'e'],
  ] as const;
  const spineSql = sql`(SELECT * FROM (VALUES ${sqlJoin(given.map(([u, t, tag]) => sql`(${u}, CAST(${t} AS TIMESTAMP), ${tag})`))}) AS v(user_id, as_of, tag))`;
  const tags = (rows: Record<string, unknown>[]) => rows.map((r) => r.tag).join('');

  it('is (as_of, user_id) in buildTrainingSet, rows equal on both kept in the spine order', async () => {
    const rows = await buildTrainingSet(lake, features, { spine: spineSql, events: sql`app_events` }, { progress: silentProgress });
    assert.equal(tags(rows), 'ecbad');
  });

  it('is the spine order in trainingSetSql by default (what parity and skew reports index by), or orderBy', async () => {
    assert.equal(tags(await lake.query(trainingSetSql(features, { spine: spineSql, events: sql`app_events` }))), 'abcde');
    assert.equal(tags(await lake.query(trainingSetSql(features, { spine: spineSql, events: sql`app_events`, orderBy: ['user_id', 'as_of'] }))), 'ebcad');
  });
});
