import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import pg from 'pg';
import { DirectoryBlobStore } from '../../../src/serving/cluster/blob-store/index.js';
import { PostgresChangeFeed } from '../../../src/serving/cluster/changes.js';
import { followChanges } from '../../../src/serving/cluster/follow.js';
import { ModelServer } from '../../../src/serving/models/model-server.js';
import { PostgresRegistryStore, openModelRegistry } from '../../../src/serving/models/registry-postgres.js';
import { silentLogger } from '../../../src/serving/observability/logger.js';
import { AliasRefusedError, InputError, IntegrityError } from '../../../src/workbench/errors.js';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { createBundle, type ModelBundle } from '../../../src/workbench/models/bundle.js';
import { columnsFor } from '../../../src/workbench/models/preprocess.js';
import { ModelRegistry } from '../../../src/workbench/models/registry.js';
import { trainClassifier } from '../../../src/workbench/models/train.js';
import { postgresTestSchema } from '../../helpers/servers.js';
import { tempDir } from '../../helpers/tmp.js';
import { within } from '../../helpers/wait.js';

/**
 * The registry of several instances on a real PostgreSQL: versions and aliases in the schema, the
 * bundles in one blob directory, each registry with its own cache (as each instance has its own dir).
 */
describe('the model registry on PostgreSQL and a blob store', { timeout: 120_000 }, () => {
  const pgSchema = postgresTestSchema('wb_registry');
  let url = '';
  let schema = '';
  let skip: string | undefined;
  const bundles: ModelBundle[] = [];
  let admin: pg.Client | undefined;
  const opened: { close(): Promise<void> }[] = [];

  before(async () => {
    const available = await pgSchema.open(async (u, s) => ((url = u), (schema = s), true));
    if (typeof available === 'string') return void (skip = available);
    admin = new pg.Client({ connectionString: url });
    await admin.connect();
    const features = featureSet([{ name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 }]);
    const rows = Array.from({ length: 60 }, (_, i) => ({ logins_7d: i % 7, bought: i % 3 === 0 ? 1 : 0 }));
    for (const seed of [1, 2, 3]) {
      const model = await trainClassifier(rows, 'bought', columnsFor(features), { seed, maxEpochs: 2 });
      bundles.push(await createBundle('churn', model, features));
      model.dispose();
    }
    const other = await trainClassifier(rows, 'bought', columnsFor(features), { seed: 4, maxEpochs: 2 });
    bundles.push(await createBundle('upsell', other, features));
    other.dispose();
  });
  after(async () => {
    for (const o of opened.splice(0)) await o.close().catch(() => undefined);
    await admin?.end();
  });

  const skipped = (t: TestContext) => (skip ? (t.skip(skip), true) : false);
  let n = 0;
  /** `count` registries sharing a new schema and a new blob dir, each with its own cache dir. */
  async function instances(count: number): Promise<{ registries: ModelRegistry[]; blobDir: string; ns: string }> {
    const ns = `${schema}_${++n}`;
    const blobDir = tempDir('wb-registry-blobs-');
    const registries: ModelRegistry[] = [];
    for (let i = 0; i < count; i++) {
      const store = await PostgresRegistryStore.open(url, new DirectoryBlobStore(blobDir), { schema: ns });
      const registry = await ModelRegistry.openShared(store, tempDir('wb-registry-cache-'));
      opened.push(registry);
      registries.push(registry);
    }
    after(async () => void (await admin?.query(`DROP SCHEMA IF EXISTS "${ns}" CASCADE`)));
    return { registries, blobDir, ns };
  }

  it('serves a version stored through one instance from another', async (t) => {
    if (skipped(t)) return;
    const { registries } = await instances(2);
    const [a, b] = registries as [ModelRegistry, ModelRegistry];
    const v1 = bundles[0]!;
    await a.putAsync(v1);
    assert.equal(b.has(v1.version), false, 'not read yet');
    const server = await ModelServer.open(b, { refreshMs: 60_000 });
    try {
      // Asked for by version, the other instance finds it in PostgreSQL and fetches it from the blob store.
      const loaded = await server.resolve({ model: 'churn', version: v1.version });
      assert.equal(loaded.bundle.version, v1.version);
      assert.deepEqual(loaded.bundle, v1);
    } finally {
      server.close();
    }
    await b.reload();
    assert.deepEqual(
      b.list('churn').map((v) => v.version),
      [v1.version],
    );
    // b's cached copy damaged (a crash cut its write): refused as it is, fetched again from the store by getAsync.
    const cached = join(b.root, 'bundles', `${v1.version}.json`);
    writeFileSync(cached, readFileSync(cached).subarray(0, 100));
    assert.throws(() => b.get(v1.version), IntegrityError);
    assert.deepEqual(await b.getAsync(v1.version), v1);
    assert.deepEqual(b.get(v1.version), v1);
  });

  it('shows an alias moved on one instance to the other within a second, with its history', async (t) => {
    if (skipped(t)) return;
    const { registries, ns } = await instances(2);
    const [ra, rb] = registries as [ModelRegistry, ModelRegistry];
    const [v1, v2] = bundles as [ModelBundle, ModelBundle];
    await ra.publish(v1, 'champion', { by: 'seed' });
    await ra.putAsync(v2);
    // A minute between periodic refreshes: only the notification can make the move visible within a second.
    const [a, b] = await Promise.all([ra, rb].map((r) => ModelServer.open(r, { refreshMs: 60_000 })));
    const feeds = [0, 1].map(() => new PostgresChangeFeed(url, { namespace: ns }));
    const following = [a!, b!].map((models, i) => followChanges(feeds[i]!, { models, logger: silentLogger() }));
    try {
      await Promise.all(feeds.map((f) => f.ready()));
      assert.equal((await b!.resolve({ model: 'churn' })).bundle.version, v1.version);
      await a!.moveAlias('churn', 'champion', v2.version, { by: 'alice', reason: 'better auc' });
      const took = await within('the other instance serves the moved alias', async () => (await b!.resolve({ model: 'churn' })).bundle.version === v2.version);
      t.diagnostic(`alias followed after ${took.toFixed(0)} ms`);
    } finally {
      for (const f of following) await f.close();
      a!.close();
      b!.close();
    }
    // Who, when and why, as the other instance reads it and as the table holds it.
    const history = rb.history('churn');
    assert.equal(history.length, 2);
    assert.deepEqual(
      history.map(({ at: _at, ...m }) => m),
      [
        { name: 'churn', alias: 'champion', from: null, to: v1.version, by: 'seed' },
        { name: 'churn', alias: 'champion', from: v1.version, to: v2.version, by: 'alice', reason: 'better auc' },
      ],
    );
    assert.ok(history.every((m) => !Number.isNaN(Date.parse(m.at))));
    const { rows } = await admin!.query(`SELECT from_version, to_version, moved_by, reason FROM "${ns}".wb_model_alias_history ORDER BY id`);
    assert.deepEqual(rows.at(-1), { from_version: v1.version, to_version: v2.version, moved_by: 'alice', reason: 'better auc' });
    assert.deepEqual({ ...rb.aliases('churn') }, { champion: v2.version });
  });

  it('publishes the same bundle twice as unchanged, from either instance', async (t) => {
    if (skipped(t)) return;
    const { registries, ns } = await instances(2);
    const [a, b] = registries as [ModelRegistry, ModelRegistry];
    const v1 = bundles[0]!;
    const first = await a.publish(v1, 'champion', { by: 'job' });
    assert.equal(first.stored, true);
    assert.equal(first.unchanged, false);
    const again = await a.publish(v1, 'champion', { by: 'job' });
    assert.equal(again.unchanged, true, again.message);
    assert.match(again.message, /^unchanged: /);
    // b has not re-read: the store, not its memory, says the version is there.
    const fromB = await b.publish(v1, 'champion', { by: 'job' });
    assert.equal(fromB.unchanged, true, fromB.message);
    const { rows } = await admin!.query(`SELECT count(*)::int AS n FROM "${ns}".wb_model_alias_history`);
    assert.equal(rows[0].n, 1, 'one move recorded');
  });

  it('refuses a bundle changed in the blob store, with a clear error, and keeps the alias where it was', async (t) => {
    if (skipped(t)) return;
    const { registries, blobDir, ns } = await instances(1);
    const a = registries[0]!;
    const [v1, v2, v3] = bundles as [ModelBundle, ModelBundle, ModelBundle];
    await a.publish(v1, 'champion');
    await a.putAsync(v2);
    await a.putAsync(v3);
    // v2: one byte flipped (the blob store's checksum catches it). v3: rewritten whole through the
    // store with other bytes, so its own checksum agrees; the registry's recorded SHA-256 does not.
    const path = join(blobDir, 'registry', 'bundles', `${v2.version}.json`);
    const bytes = readFileSync(path);
    bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 0x01;
    writeFileSync(path, bytes);
    const blobs = new DirectoryBlobStore(blobDir);
    await blobs.put(`registry/bundles/${v3.version}.json`, Buffer.from(JSON.stringify({ ...v3, label: 'tampered' })));

    // A new instance (an empty cache) fetches every bundle: the changed ones are listed with why, and not served.
    const store = await PostgresRegistryStore.open(url, new DirectoryBlobStore(blobDir), { schema: ns });
    const fresh = await ModelRegistry.openShared(store, tempDir('wb-registry-cache-'));
    opened.push(fresh);
    const list = fresh.list('churn');
    const bad = new Map(list.filter((v) => 'error' in v).map((v) => [v.version, 'error' in v ? v.error : '']));
    assert.equal(bad.size, 2);
    assert.match(bad.get(v2.version)!, /^integrity: blob registry\/bundles\/.*SHA-256 .* differs/);
    assert.match(
      bad.get(v3.version)!,
      new RegExp(`^integrity: model version ${v3.version}: .* not the [0-9a-f]{64} the registry recorded; it was changed after it was stored`),
    );
    assert.throws(() => fresh.get(v3.version), IntegrityError);
    await assert.rejects(fresh.getAsync(v2.version), IntegrityError);
    await assert.rejects(fresh.moveAlias('churn', 'champion', v3.version), (err: unknown) => {
      assert.ok(err instanceof AliasRefusedError);
      assert.match(err.message, /changed after it was stored, and is not served; champion stays at /);
      return true;
    });
    const server = await ModelServer.open(fresh, { refreshMs: 60_000 });
    try {
      await assert.rejects(server.resolve({ model: 'churn', version: v3.version }), IntegrityError);
      assert.equal((await server.resolve({ model: 'churn' })).bundle.version, v1.version);
    } finally {
      server.close();
    }
    assert.deepEqual({ ...fresh.aliases('churn') }, { champion: v1.version });
  });

  it('ends concurrent alias moves from two instances in one consistent state', async (t) => {
    if (skipped(t)) return;
    const { registries, ns } = await instances(2);
    const [a, b] = registries as [ModelRegistry, ModelRegistry];
    const [v1, v2, v3] = bundles as [ModelBundle, ModelBundle, ModelBundle];
    for (const v of [v1, v2, v3]) await a.putAsync(v);
    await b.reload();
    const targets = [v1, v2, v3];
    // The alias does not exist yet: the first moves race on inserting its row too.
    const moves = await Promise.all(
      Array.from({ length: 24 }, (_, i) => (i % 2 === 0 ? a : b).setAliasAsync('churn', 'champion', targets[i % 3]!.version, { by: `mover ${i}` })),
    );
    const { rows: history } = await admin!.query(
      `SELECT from_version, to_version FROM "${ns}".wb_model_alias_history WHERE name = 'churn' AND alias = 'champion' ORDER BY id`,
    );
    const { rows: alias } = await admin!.query(`SELECT version FROM "${ns}".wb_model_aliases WHERE name = 'churn' AND alias = 'champion'`);
    assert.equal(alias.length, 1);
    // Each recorded move starts where the one before it ended, and the last ends where the alias is.
    assert.equal(history[0].from_version, null);
    for (let i = 1; i < history.length; i++) assert.equal(history[i].from_version, history[i - 1].to_version, `move ${i} starts where ${i - 1} ended`);
    assert.equal(history.at(-1).to_version, alias[0].version);
    assert.equal(history.length, moves.filter((m) => !m.unchanged).length, 'one history row per move that was not unchanged');
    for (const r of [a, b]) {
      await r.reload();
      assert.equal(r.resolve('churn', 'champion'), alias[0].version);
    }
  });

  it('refuses the synchronous writes, and a version of another model, on a shared registry', async (t) => {
    if (skipped(t)) return;
    const { registries } = await instances(1);
    const a = registries[0]!;
    const [v1, , , upsell] = bundles as [ModelBundle, ModelBundle, ModelBundle, ModelBundle];
    assert.throws(
      () => a.put(v1),
      (err: unknown) => err instanceof InputError && /use putAsync/.test(err.message),
    );
    await a.putAsync(v1);
    await a.putAsync(upsell);
    assert.throws(
      () => a.setAlias('churn', 'champion', v1.version),
      (err: unknown) => err instanceof InputError && /use setAliasAsync/.test(err.message),
    );
    await assert.rejects(a.setAliasAsync('churn', 'champion', upsell.version), AliasRefusedError);
    await assert.rejects(a.setAliasAsync('churn', 'champion', 'ffffffffffffffff'), /no model version ffffffffffffffff/);
    assert.deepEqual({ ...a.aliases('churn') }, {});
  });

  it('keeps the directory registry when the OLTP is not PostgreSQL', async (t) => {
    if (skipped(t)) return;
    const dataDir = tempDir('wb-registry-data-');
    const registry = await openModelRegistry({ dataDir, oltpUrl: undefined });
    assert.equal(registry.isShared, false);
    assert.equal(registry.root, join(dataDir, 'registry'));
    registry.put(bundles[0]!);
    assert.equal(registry.has(bundles[0]!.version), true);
  });

  it('lists, moves and shows the history with `wb models --oltp postgres://...`', async (t) => {
    if (skipped(t)) return;
    const { registries, ns, blobDir } = await instances(1);
    const a = registries[0]!;
    const [v1, v2] = bundles as [ModelBundle, ModelBundle];
    await a.publish(v1, 'champion', { by: 'seed' });
    await a.putAsync(v2);
    const dataDir = tempDir('wb-registry-cli-');
    // The CLI takes the schema from the connection's search_path, as `wb serve` does.
    const oltp = `${url}${url.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${ns}`)}`;
    const wb = (...args: string[]) => {
      const r = spawnSync(process.execPath, ['bin/wb.cjs', '--data-dir', dataDir, ...args, '--oltp', oltp], {
        encoding: 'utf8',
        env: { ...process.env, WB_DEBUG: '', WB_BLOB_STORE: blobDir },
      });
      assert.equal(r.status, 0, `wb ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const listed = JSON.parse(wb('models', 'list', '--json')) as { version: string; aliases: string[] }[];
    assert.deepEqual(listed.map((v) => v.version).sort(), [v1.version, v2.version].sort());
    assert.deepEqual(listed.find((v) => v.version === v1.version)!.aliases, ['champion']);
    assert.match(
      wb('models', 'alias', 'churn', 'champion', v2.version, '--reason', 'from the cli'),
      new RegExp(`churn champion: ${v1.version} -> ${v2.version}`),
    );
    assert.match(wb('models', 'history', 'churn'), /\(from the cli\)/);
    await a.reload();
    assert.equal(a.resolve('churn', 'champion'), v2.version, 'the move is in PostgreSQL');

    // The data dir's directory registry copied in: its versions, and the aliases the shared one lacks.
    const v3 = bundles[2]!;
    const directory = ModelRegistry.open(join(dataDir, 'registry'));
    await directory.publish(v1, 'champion');
    await directory.publish(v3, 'challenger');
    assert.match(wb('models', 'import'), /^imported 1 version and 1 alias; kept churn\/champion as the shared registry has them/);
    assert.match(wb('models', 'import'), /^imported 0 versions and 0 aliases/, 'a second import copies nothing');
    await a.reload();
    assert.deepEqual({ ...a.aliases('churn') }, { champion: v2.version, challenger: v3.version });
    assert.equal(a.history('churn').at(-1)!.by, 'wb models import');
    assert.equal(a.has(v3.version), true);
  });
});
