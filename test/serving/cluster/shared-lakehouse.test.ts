import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DirectoryBlobStore } from '../../../src/serving/cluster/blob-store/directory.js';
import { SharedLakehouse } from '../../../src/serving/cluster/shared-lakehouse.js';
import { IntegrityError } from '../../../src/workbench/errors.js';
import { Lakehouse, buildLakehouse, sql } from '../../../src/workbench/index.js';
import { lakeLayout } from '../../../src/workbench/lakehouse/layout.js';
import { tempDir } from '../../helpers/tmp.js';

const login = (id: string, time: string) => ({ event_id: id, time, user_id: `u-${id}`, event: 'login', props: { device: 'ios' } });

/** A lakehouse built from `events` as the app source. */
async function build(root: string, events: ReturnType<typeof login>[], fingerprint: string): Promise<void> {
  await buildLakehouse({
    lakeDir: root,
    now: new Date('2025-03-01T00:00:00Z'),
    app: { fingerprint, describe: fingerprint, load: () => ({ events: events as never, truthUsers: [], truthMeta: {} }) },
  });
}

async function eventIds(root: string): Promise<string[]> {
  const lake = await Lakehouse.open(root);
  try {
    const rows = await lake.query<{ event_id: string }>(sql`SELECT event_id FROM events ORDER BY event_id`);
    return rows.map((r) => r.event_id);
  } finally {
    lake.close();
  }
}

describe('The built lakehouse in the blob store', () => {
  it('gives a machine with no lakehouse the published build, verified, and then only what changed, leaving no file of the earlier build', async () => {
    const dir = tempDir();
    const blobs = new DirectoryBlobStore(join(dir, 'blobs'));
    const built = join(dir, 'builder', 'lake');
    await build(built, [login('a', '2025-01-01T10:00:00Z'), login('b', '2025-01-02T10:00:00Z')], 'v1');
    const shared = new SharedLakehouse(blobs);
    assert.equal((await shared.sync(join(dir, 'none'))).changed, false, 'nothing published yet');
    const first = await shared.push(built);
    assert.ok(first.put >= 2 && first.kept === 0, JSON.stringify(first));

    const copy = join(dir, 'other', 'lake');
    const synced = await new SharedLakehouse(blobs).sync(copy);
    assert.equal(synced.changed, true);
    assert.equal(synced.fetched, first.put);
    assert.deepEqual(await eventIds(copy), ['a', 'b']);
    assert.equal(readFileSync(lakeLayout(copy).manifest, 'utf8'), readFileSync(lakeLayout(built).manifest, 'utf8'));
    assert.equal((await new SharedLakehouse(blobs).sync(copy)).changed, false, 'the same build: nothing to do');

    // A new build with other dates: the copy gets it and keeps no partition of the first.
    await build(built, [login('c', '2025-02-05T10:00:00Z')], 'v2');
    const second = await shared.push(built);
    assert.ok(second.put >= 1, JSON.stringify(second));
    const again = await new SharedLakehouse(blobs).sync(copy);
    assert.ok(again.removed >= 1, JSON.stringify(again));
    assert.deepEqual(await eventIds(copy), ['c']);
  });

  it('refuses a file whose bytes differ from the published manifest, and keeps the build the machine had', async () => {
    const dir = tempDir();
    const blobs = new DirectoryBlobStore(join(dir, 'blobs'));
    const built = join(dir, 'builder', 'lake');
    await build(built, [login('a', '2025-01-01T10:00:00Z')], 'v1');
    await new SharedLakehouse(blobs).push(built);
    const copy = join(dir, 'copy', 'lake');
    await new SharedLakehouse(blobs).sync(copy);
    const manifestBefore = readFileSync(lakeLayout(copy).manifest, 'utf8');

    await build(built, [login('b', '2025-01-03T10:00:00Z')], 'v2');
    await new SharedLakehouse(blobs).push(built);
    // Another build's file put in place of this one's (through the store, so its own checksum agrees).
    const keys = (await blobs.list('lake/archive/events/source=app/')).filter((k) => k.includes('2025-01-03'));
    assert.equal(keys.length, 1);
    const other = join(dir, 'forger', 'lake');
    await build(other, [login('x', '2025-01-03T11:00:00Z')], 'v3');
    const forged = readdirSync(join(other, 'archive', 'events', 'source=app', 'date=2025-01-03'))[0]!;
    await blobs.put(keys[0]!, readFileSync(join(other, 'archive', 'events', 'source=app', 'date=2025-01-03', forged)));
    await assert.rejects(
      new SharedLakehouse(blobs).sync(copy),
      (err: unknown) => err instanceof IntegrityError && /does not match the published manifest/.test(err.message),
    );
    assert.equal(readFileSync(lakeLayout(copy).manifest, 'utf8'), manifestBefore, 'the manifest is written last: the copy is still the first build');
    assert.deepEqual(await eventIds(copy), ['a']);
  });

  it('does nothing while a build holds the lakehouse, and refuses to push a lakehouse whose file changed', async () => {
    const dir = tempDir();
    const blobs = new DirectoryBlobStore(join(dir, 'blobs'));
    const built = join(dir, 'builder', 'lake');
    await build(built, [login('a', '2025-01-01T10:00:00Z')], 'v1');
    await new SharedLakehouse(blobs).push(built);
    const copy = join(dir, 'copy', 'lake');
    const layout = lakeLayout(copy);
    await build(copy, [login('z', '2025-01-09T10:00:00Z')], 'local');
    // A lock held by a live process (this one's parent stands for a build running there).
    writeFileSync(layout.lock, String(process.ppid));
    const busy = await new SharedLakehouse(blobs).sync(copy);
    assert.equal(busy.busy, true);
    assert.deepEqual(await eventIds(copy), ['z']);

    const file = readdirSync(join(built, 'archive', 'events', 'source=app', 'date=2025-01-01'))[0]!;
    writeFileSync(join(built, 'archive', 'events', 'source=app', 'date=2025-01-01', file), 'not parquet');
    await assert.rejects(new SharedLakehouse(blobs, { namespace: 'other' }).push(built), /does not match its manifest entry/);
    assert.equal(existsSync(join(dir, 'blobs', 'other', 'lake', 'manifest.json')), false, 'no manifest published');
  });
});
