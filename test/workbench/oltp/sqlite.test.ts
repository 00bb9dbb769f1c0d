import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { openOltp } from '../../../src/workbench/oltp/index.js';
import { oltpConformance } from './conformance.js';

const dir = mkdtempSync(join(tmpdir(), 'wb-oltp-'));
after(() => rmSync(dir, { recursive: true, force: true }));

oltpConformance('SQLite', () => openOltp(join(dir, 'conformance.sqlite'), dir));

describe('openOltp', () => {
  it('defaults to a SQLite file in the data dir that keeps its rows across opens', async () => {
    const a = await openOltp(undefined, dir);
    assert.equal(a.kind, 'sqlite');
    assert.equal(a.location, join(dir, 'oltp.sqlite'));
    await a.upsertUsers([{ user_id: 'u', country: 'DE', device: 'web', tier: 'free', first_seen: '2025-01-01T00:00:00Z' }]);
    await a.close();
    const b = await openOltp(`sqlite:${join(dir, 'oltp.sqlite')}`, '/nonexistent');
    assert.equal(await b.count('users'), 1);
    await b.close();
  });

  it('times the claims of a table made before claims were timed; its older rows are never listed as claimed', async () => {
    const file = join(dir, 'untimed.sqlite');
    const old = new Database(file);
    old.exec(`CREATE TABLE assignments (experiment TEXT NOT NULL, user_id TEXT NOT NULL, arm TEXT NOT NULL, assigned_at TEXT NOT NULL,
      PRIMARY KEY (experiment, user_id)) WITHOUT ROWID`);
    old.prepare('INSERT INTO assignments VALUES (?, ?, ?, ?)').run('exp', 'old', 'a', '2025-01-01T00:00:00.000Z');
    old.close();
    const store = await openOltp(file, dir);
    await store.claimAssignments([{ experiment: 'exp', user_id: 'new', arm: 'b', assigned_at: '2025-01-02T00:00:00.000Z' }]);
    assert.deepEqual(
      (await store.claimedAssignments({ experiments: ['exp'], limit: 10 })).rows.map((r) => r.user_id),
      ['new'],
    );
    assert.equal((await store.getAssignments('exp')).length, 2);
    await store.migrate();
    await store.close();
  });

  it('refuses a URL scheme it does not know, naming the setting', async () => {
    await assert.rejects(openOltp('mysql://root:secret@localhost/db', dir), (err: Error) => {
      assert.match(err.message, /unsupported OLTP URL/);
      assert.match(err.message, /WB_OLTP_URL/);
      assert.doesNotMatch(err.message, /secret/);
      return true;
    });
  });
});
