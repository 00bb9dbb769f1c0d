import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DirectoryBlobStore } from '../../../src/serving/cluster/blob-store/directory.js';
import type { BlobStore } from '../../../src/serving/cluster/blob-store/store.js';
import { SharedArchive } from '../../../src/serving/cluster/shared-archive.js';
import { Archiver } from '../../../src/serving/pipeline/archiver.js';
import { DuckDb } from '../../../src/workbench/duckdb.js';
import { IntegrityError } from '../../../src/workbench/errors.js';
import { lakeLayout, sourceDir } from '../../../src/workbench/lakehouse/layout.js';
import { LIVE_SOURCE, LiveArchiveWriter } from '../../../src/workbench/lakehouse/live.js';
import { sql } from '../../../src/workbench/sql.js';
import { tempDir } from '../../helpers/tmp.js';

/** Log records (the log's JSON) for offsets from..to, two event dates among them. */
function records(from: number, to: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let k = from; k <= to; k++) {
    const time = new Date(Date.UTC(2025, 0, 1 + (k % 2), 10, 0, k % 60)).toISOString();
    out.push(
      Buffer.from(JSON.stringify({ event_id: `e-${k}`, time, user_id: `u${k % 7}`, event: 'login', props: {}, dims: {}, experiments: {}, received_at: time })),
    );
  }
  return out;
}

const liveDir = (lake: string) => sourceDir(lakeLayout(lake), LIVE_SOURCE);

function liveFiles(lake: string): string[] {
  const dir = liveDir(lake);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .flatMap((d) => readdirSync(join(dir, d)).map((f) => `${d}/${f}`))
    .sort();
}

/** Every event_id in a lake's live archive with how often it is there (read by DuckDB, not by the code under test). */
async function archivedIds(lake: string): Promise<Map<string, number>> {
  const db = await DuckDb.open(':memory:');
  try {
    const r = await db.query(sql`SELECT event_id, count(*)::INTEGER AS n FROM read_parquet(${join(liveDir(lake), '*', '*.parquet')}) GROUP BY 1`);
    const [ids, counts] = r.columns as [string[], number[]];
    return new Map(ids.map((id, k) => [id, counts[k]!]));
  } finally {
    db.close();
  }
}

/** A blob store whose next put of a key matching `failOn` throws, to stand for a holder that dies there. */
function failingOnce(inner: BlobStore, failOn: RegExp): BlobStore & { failed: boolean } {
  const store = Object.create(inner) as BlobStore & { failed: boolean };
  store.failed = false;
  store.put = async (key, body) => {
    if (!store.failed && failOn.test(key)) {
      store.failed = true;
      throw new Error(`stand-in failure putting ${key}`);
    }
    return inner.put(key, body);
  };
  return store;
}

describe('The live archive in the blob store', () => {
  it('commits each batch there, and a machine with an empty lakehouse resumes after the last commit and gets a verified copy', async () => {
    const dir = tempDir();
    const blobs = new DirectoryBlobStore(join(dir, 'blobs'));
    const lakeA = join(dir, 'a', 'lake');
    const a = Archiver.unopened(lakeA, { shared: new SharedArchive(blobs) });
    assert.equal(await a.resumeAt(0), 0);
    await a.handle(records(0, 99), 0);
    await a.handle(records(100, 249), 100);
    await a.close();

    // Another machine: nothing on its disk, the same blob store.
    const lakeB = join(dir, 'b', 'lake');
    const b = Archiver.unopened(lakeB, { shared: new SharedArchive(blobs) });
    assert.equal(await b.resumeAt(0), 250, 'resumes after the commits, not at its empty disk');
    assert.deepEqual(liveFiles(lakeB), liveFiles(lakeA), 'its lakehouse was brought up to the commits when the writer opened');
    await b.handle(records(250, 299), 250);
    await b.close();

    // A third copy, and the first machine catching up, by sync alone.
    const lakeC = join(dir, 'c', 'lake');
    const synced = await new SharedArchive(blobs).sync(lakeC);
    assert.equal(synced.batches, 3);
    assert.equal(synced.end, 300);
    assert.equal(synced.fetched, 6, 'two event dates per batch');
    assert.equal((await new SharedArchive(blobs).sync(lakeA)).fetched, 2, 'the first machine fetches only the batch it did not write');
    for (const lake of [lakeA, lakeC]) {
      assert.deepEqual(liveFiles(lake), liveFiles(lakeB));
      const ids = await archivedIds(lake);
      assert.equal(ids.size, 300);
      assert.deepEqual(
        [...ids.values()].filter((n) => n !== 1),
        [],
        'each event once',
      );
    }
    for (const f of liveFiles(lakeC)) assert.deepEqual(readFileSync(join(liveDir(lakeC), f)), readFileSync(join(liveDir(lakeB), f)), f);
  });

  it('leaves a batch out when its holder dies between its files and its commit; the next holder writes it again', async () => {
    const dir = tempDir();
    const blobs = new DirectoryBlobStore(join(dir, 'blobs'));
    const dying = failingOnce(blobs, /_commits\/000000000050-/);
    const lake = join(dir, 'lake');
    const a = Archiver.unopened(lake, { shared: new SharedArchive(dying) });
    await a.resumeAt(0);
    await a.handle(records(0, 49), 0);
    await assert.rejects(a.handle(records(50, 99), 50), /stand-in failure/);
    await a.close();
    assert.equal(await new SharedArchive(blobs).end(), 50, 'the files put without a commit are not part of it');
    assert.ok(
      (await blobs.list('lake/archive/events/source=live/date=')).some((k) => k.endsWith('part-000000000050-000000000099.parquet')),
      'its files were put',
    );
    assert.equal(liveFiles(lake).filter((f) => f.includes('000000000050')).length, 0, 'nor in the local lakehouse');

    const b = Archiver.unopened(join(dir, 'b'), { shared: new SharedArchive(blobs) });
    assert.equal(await b.resumeAt(0), 50);
    await b.handle(records(50, 119), 50);
    await b.close();
    const copy = join(dir, 'copy');
    await new SharedArchive(blobs).sync(copy);
    const ids = await archivedIds(copy);
    assert.equal(ids.size, 120);
    assert.deepEqual(
      [...ids.values()].filter((n) => n !== 1),
      [],
    );
  });

  it('adds nothing after the fence refuses: the batch is neither committed nor in the local lakehouse', async () => {
    const dir = tempDir();
    const blobs = new DirectoryBlobStore(join(dir, 'blobs'));
    let held = true;
    const lake = join(dir, 'lake');
    const a = Archiver.unopened(lake, {
      shared: new SharedArchive(blobs),
      beforePublish: async () => {
        if (!held) throw new Error('the lease has passed');
      },
    });
    await a.resumeAt(0);
    await a.handle(records(0, 9), 0);
    held = false;
    await assert.rejects(a.handle(records(10, 19), 10), /lease has passed/);
    await a.close();
    assert.equal(await new SharedArchive(blobs).end(), 10);
    assert.deepEqual((await archivedIds(lake)).size, 10);
  });

  it('refuses a copy whose bytes differ from the commit record, and writes nothing of it', async () => {
    const dir = tempDir();
    const blobs = new DirectoryBlobStore(join(dir, 'blobs'));
    const a = Archiver.unopened(join(dir, 'a'), { shared: new SharedArchive(blobs) });
    await a.resumeAt(0);
    await a.handle(records(0, 9), 0);
    await a.close();
    // Replaced through the store (its own checksum is then right): only the commit record can tell.
    const key = (await blobs.list('lake/archive/events/source=live/date=2025-01-01/'))[0]!;
    const other = join(dir, 'other');
    const w = await LiveArchiveWriter.open(other);
    await w.write(records(2, 9), 0, 9);
    w.close();
    const forged = readdirSync(join(liveDir(other), 'date=2025-01-01'))[0]!;
    await blobs.put(key, readFileSync(join(liveDir(other), 'date=2025-01-01', forged)));
    const copy = join(dir, 'copy');
    await assert.rejects(
      new SharedArchive(blobs).sync(copy),
      (err: unknown) => err instanceof IntegrityError && /does not match its commit record/.test(err.message),
    );
    assert.deepEqual(
      liveFiles(copy).filter((f) => f.startsWith('date=2025-01-01')),
      [],
    );
  });

  it('publishes a lakehouse archived before the blob store was used, then goes on after it', async () => {
    const dir = tempDir();
    const lake = join(dir, 'lake');
    const before = Archiver.unopened(lake);
    await before.resumeAt(0);
    await before.handle(records(0, 29), 0);
    await before.handle(records(30, 59), 30);
    await before.close();
    const blobs = new DirectoryBlobStore(join(dir, 'blobs'));
    const a = Archiver.unopened(lake, { shared: new SharedArchive(blobs) });
    assert.equal(await a.resumeAt(0), 60);
    await a.handle(records(60, 79), 60);
    await a.close();
    const commits = await new SharedArchive(blobs).commits();
    assert.deepEqual(
      commits.map((c) => [c.first, c.last]),
      [
        [0, 29],
        [30, 59],
        [60, 79],
      ],
    );
  });

  it('keeps deployments on one blob store apart by namespace (their OLTP schema), and refuses one that is not a key segment', async () => {
    const dir = tempDir();
    const blobs = new DirectoryBlobStore(join(dir, 'blobs'));
    const a = Archiver.unopened(join(dir, 'a'), { shared: new SharedArchive(blobs, { namespace: 'shop_eu' }) });
    await a.resumeAt(0);
    await a.handle(records(0, 19), 0);
    await a.close();
    assert.equal(await new SharedArchive(blobs, { namespace: 'shop_eu' }).end(), 20);
    assert.equal(await new SharedArchive(blobs, { namespace: 'shop_us' }).end(), 0, 'another deployment starts its own archive');
    assert.equal(await new SharedArchive(blobs).end(), 0);
    assert.ok((await blobs.list('shop_eu/lake/archive/events/source=live/_commits/')).length === 1);
    assert.throws(() => new SharedArchive(blobs, { namespace: '../x' }), /path traversal/);
  });

  it('sets aside local files no commit names, and a rewind removes the commits from the lost offset on', async () => {
    const dir = tempDir();
    const blobs = new DirectoryBlobStore(join(dir, 'blobs'));
    const lake = join(dir, 'lake');
    const a = Archiver.unopened(lake, { shared: new SharedArchive(blobs) });
    await a.resumeAt(0);
    await a.handle(records(0, 39), 0);
    await a.handle(records(40, 79), 40);
    const copy = join(dir, 'copy');
    await new SharedArchive(blobs).sync(copy);
    // The log lost its records from 60 on: the batch 40-79 is set aside in both places.
    assert.equal(await a.rewind(60), 40);
    await a.close();
    assert.deepEqual(
      (await new SharedArchive(blobs).commits()).map((c) => c.last),
      [39],
    );
    assert.ok((await blobs.list('lake/quarantine/live-log-recovery/')).length >= 1, 'the set-aside files are kept in the blob store');
    const synced = await new SharedArchive(blobs).sync(copy);
    assert.equal(synced.setAside.length, 2);
    assert.equal((await archivedIds(copy)).size, 40);
    for (const f of synced.setAside) assert.ok(existsSync(f));
  });
});
