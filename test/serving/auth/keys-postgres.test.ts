import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import pg from 'pg';
import { KeyStore, PostgresKeyStore, openKeyStore } from '../../../src/serving/auth/keys.js';
import { PostgresChangeFeed } from '../../../src/serving/cluster/changes.js';
import { followChanges } from '../../../src/serving/cluster/follow.js';
import { silentLogger } from '../../../src/serving/observability/logger.js';
import { startService, type RunningService } from '../../../src/serving/service.js';
import { postgresTestSchema } from '../../helpers/servers.js';
import { within } from '../../helpers/wait.js';
import { tempDir } from '../../helpers/tmp.js';
import { wbInProcess } from '../../helpers/wb.js';

const wb = wbInProcess;

describe('API keys in PostgreSQL', { timeout: 60_000 }, () => {
  const pgSchema = postgresTestSchema('wb_keys');
  let base = '';
  /** The URL every process of a deployment would be given: its search_path is this test's schema. */
  let url = '';
  let schema = '';
  let skip: string | undefined;
  let admin: pg.Client | undefined;
  before(async () => {
    const opened = await pgSchema.open(async (u, s) => {
      base = u;
      schema = s;
      url = `${u}${u.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${s}`)}`;
      admin = new pg.Client({ connectionString: u });
      await admin.connect();
      await admin.query(`CREATE SCHEMA IF NOT EXISTS "${s}"`);
      return true;
    });
    if (typeof opened === 'string') skip = opened;
  });
  after(async () => {
    await admin?.end();
  });
  const skipped = (t: TestContext) => {
    if (skip) t.skip(skip);
    return skip !== undefined;
  };

  it('keeps only hashes, verifies from memory, revokes, and refuses a tampered row', async (t) => {
    if (skipped(t)) return;
    const a = await PostgresKeyStore.open(base, { schema });
    const b = await PostgresKeyStore.open(base, { schema });
    try {
      const { key, info } = await a.create('ingest bot', ['ingest', 'ingest']);
      assert.deepEqual(info.scopes, ['ingest']);
      const secret = key.slice('wb_'.length + 12 + 1);
      const { rows } = await admin!.query(`SELECT * FROM "${schema}".wb_keys WHERE id = $1`, [info.id]);
      assert.equal(rows.length, 1);
      assert.ok(!JSON.stringify(rows).includes(secret), 'the secret is not stored');
      assert.deepEqual(a.verify(key), info);
      assert.equal(b.verify(key), undefined, 'not loaded yet');
      await b.reload();
      assert.deepEqual(b.verify(key), info);
      assert.equal(b.verify(`${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`), undefined);
      await assert.rejects(Promise.resolve(a.create('x', ['write'])), /unknown scope "write"/);
      await b.revoke(info.id);
      const revokedAt = b.list().find((k) => k.id === info.id)?.revoked_at;
      assert.ok(revokedAt);
      assert.equal(b.verify(key), undefined);
      await a.revoke(info.id); // again: keeps the first time
      await a.reload();
      assert.equal(a.list().find((k) => k.id === info.id)?.revoked_at, revokedAt);
      assert.equal(a.verify(key), undefined);
      await assert.rejects(a.revoke('000000000000'), /no key with id/);
      const other = await a.create('reader', ['read']);
      await admin!.query(`INSERT INTO "${schema}".wb_keys VALUES ('zz', 'n', 'root', 'zz', '', NULL)`);
      await assert.rejects(b.reload(), /the row of key "zz" is not valid/);
      assert.equal(b.verify(other.key), undefined, 'the keys it had are kept');
      await admin!.query(`DELETE FROM "${schema}".wb_keys WHERE id = 'zz'`);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('is chosen for a PostgreSQL OLTP, and warns of a key file it does not use', async (t) => {
    if (skipped(t)) return;
    const dir = tempDir();
    KeyStore.open(join(dir, 'keys.json')).create('old', ['read']);
    const warnings: string[] = [];
    const file = await openKeyStore(dir, undefined);
    const inPostgres = await openKeyStore(dir, url, { warn: (m) => warnings.push(m) });
    try {
      assert.equal(file.kind, 'file');
      assert.equal(inPostgres.kind, 'postgres');
      assert.match(warnings.join('\n'), /keys\.json holds 1 active keys that are not used/);
      writeFileSync(join(dir, 'keys.json'), 'not json');
      assert.equal((await openKeyStore(dir, url, { warn: (m) => warnings.push(m) })).kind, 'postgres', 'an unreadable unused file does not stop it');
    } finally {
      await inPostgres.close();
    }
  });

  it('makes a key from `wb keys create` work on a running instance within a second, and a revoked one stop', async (t) => {
    if (skipped(t)) return;
    const dir = tempDir();
    // The other instance: the key store and change feed a service has (its own reload timer is 5 s: only the notification explains a second).
    const store = await PostgresKeyStore.open(base, { schema });
    const feed = new PostgresChangeFeed(base, { namespace: schema });
    const following = followChanges(feed, { keys: store, logger: silentLogger() });
    let service: RunningService | undefined;
    try {
      service = await startService({ dataDir: tempDir(), port: 0, host: '127.0.0.1', oltpUrl: url, logger: silentLogger() });
      await feed.ready();
      const key = (await wb(dir, 'keys', 'create', '--name', 'dash', '--scope', 'read', '--oltp', url)).trim();
      assert.match(key, /^wb_[0-9a-f]{12}_/);
      const id = key.slice(3, 15);
      assert.match(await wb(dir, 'keys', 'list', '--oltp', url), new RegExp(`^${id}  dash`, 'm'));
      const get = () =>
        fetch(`${service!.url}/v1/aggregates?window=1h&dimension=country`, { headers: { authorization: `Bearer ${key}` } }).then((r) => r.status);
      const accepted = await within('the other instance accepts the new key', () => store.verify(key) !== undefined);
      const served = await within('the service accepts the new key', async () => (await get()) === 200);
      t.diagnostic(`new key accepted after ${accepted.toFixed(0)} ms (instance), ${served.toFixed(0)} ms (service over HTTP)`);

      await wb(dir, 'keys', 'revoke', id, '--oltp', url);
      const refused = await within('the other instance refuses the revoked key', () => store.verify(key) === undefined);
      const unserved = await within('the service refuses the revoked key', async () => (await get()) === 401);
      t.diagnostic(`revoked key refused after ${refused.toFixed(0)} ms (instance), ${unserved.toFixed(0)} ms (service over HTTP)`);
    } finally {
      await service?.stop();
      await following.close();
      await store.close();
    }
  });
});
