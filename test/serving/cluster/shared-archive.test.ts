import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DirectoryBlobStore } from '../../../src/serving/cluster/blob-store/directory.js';
import type { BlobStore } from '../../../src/serving/cluster/blob-store/store.js';
import { SharedArchive, type SetAsideCommit } from '../../../src/serving/cluster/shared-archive.js';
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

const COMMITS = 'lake/archive/events/source=live/_commits/';
const SET_ASIDE = 'lake/quarantine/live-malformed-commits/';
const commitKey = (first: number, last: number) => `${COMMITS}${String(first).padStart(12, '0')}-${String(last).padStart(12, '0')}.json`;

/** Archives the given batches ([first, last] each) into `blobs` from a lakehouse of its own, as a holder would. */
async function archiveBatches(blobs: BlobStore, lake: string, batches: [number, number][]): Promise<void> {
  const a = Archiver.unopened(lake, { shared: new SharedArchive(blobs) });
  await a.resumeAt(0);
  for (const [first, last] of batches) await a.handle(records(first, last), first);
  await a.close();
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

  it('sets a commit record that is not JSON aside (its bytes kept, a warning naming it), starts, and archives again from the valid commits', async () => {
    const dir = tempDir();
    const blobs = new DirectoryBlobStore(join(dir, 'blobs'));
    await archiveBatches(blobs, join(dir, 'a'), [
      [0, 49],
      [50, 99],
    ]);
    // Put through the store, so its own checksum is right: only the record's content is wrong.
    const garbage = Buffer.from([0x00, 0xff, 0x7b, 0x22, 0x66, 0x69, 0x72, 0x73, 0x74, 0x22, 0x3a, 0x0a, 0xde, 0xad]);
    await blobs.put(commitKey(50, 99), garbage);

    // Another machine (nothing on its disk) takes over the archiver: its start used to fail on this record, forever.
    const warnings: string[] = [];
    const set: SetAsideCommit[] = [];
    const lakeB = join(dir, 'b');
    const b = Archiver.unopened(lakeB, {
      shared: new SharedArchive(blobs, { warn: (m) => warnings.push(m), onSetAside: (r) => set.push(r) }),
    });
    assert.equal(await b.resumeAt(0), 50, 'resumes after the last valid commit');
    const aside = await blobs.list(SET_ASIDE);
    assert.equal(aside.length, 1);
    assert.ok(aside[0]!.endsWith('/000000000050-000000000099.json'), aside[0]);
    assert.deepEqual(Buffer.from((await blobs.get(aside[0]!))!), garbage, 'the original bytes are kept');
    assert.equal(await blobs.get(commitKey(50, 99)), undefined, 'removed from the commits');
    assert.deepEqual(
      set.map((r) => [r.key, r.quarantinedAs]),
      [[commitKey(50, 99), aside[0]]],
      'reported for counting',
    );
    assert.match(set[0]!.reason, /not JSON/);
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.ok(warnings[0]!.includes(commitKey(50, 99)) && warnings[0]!.includes(aside[0]!), warnings[0]);
    assert.deepEqual(
      liveFiles(lakeB).filter((f) => f.includes('000000000050')),
      [],
      'none of the files it named is taken in',
    );

    await b.handle(records(50, 119), 50);
    await b.close();
    assert.deepEqual(
      (await new SharedArchive(blobs).commits()).map((c) => [c.first, c.last]),
      [
        [0, 49],
        [50, 119],
      ],
    );
    const copy = join(dir, 'copy');
    await new SharedArchive(blobs).sync(copy);
    const ids = await archivedIds(copy);
    assert.equal(ids.size, 120);
    assert.deepEqual(
      [...ids.values()].filter((n) => n !== 1),
      [],
      'each event once',
    );
  });

  it('skips JSON records with offsets that do not fit (no file of theirs used), then the holder sets them aside and goes on', async () => {
    const dir = tempDir();
    const blobs = new DirectoryBlobStore(join(dir, 'blobs'));
    await archiveBatches(blobs, join(dir, 'a'), [
      [0, 29],
      [30, 59],
      [60, 89],
    ]);
    // A record whose offsets differ from its name's, and one whose offsets run backwards.
    const moved = { ...JSON.parse(Buffer.from((await blobs.get(commitKey(30, 59)))!).toString('utf8')), first: 31 };
    const shifted = Buffer.from(JSON.stringify(moved));
    const backwards = Buffer.from(JSON.stringify({ first: 95, last: 90, files: [] }));
    await blobs.put(commitKey(30, 59), shifted);
    await blobs.put(commitKey(95, 90), backwards);

    // An instance that does not hold the archiver (its 30 s sync, or `wb lake sync`): skipped and reported once, left where they are.
    const warnings: string[] = [];
    const reader = new SharedArchive(blobs, { warn: (m) => warnings.push(m) });
    const copy = join(dir, 'copy');
    for (let k = 0; k < 2; k++) {
      const synced = await reader.sync(copy);
      assert.equal(synced.batches, 2);
      assert.equal(synced.end, 90);
    }
    assert.equal(warnings.length, 2, warnings.join('\n'));
    assert.ok(warnings.some((w) => w.includes(commitKey(30, 59)) && /skipped/.test(w)));
    assert.ok(warnings.some((w) => w.includes(commitKey(95, 90)) && /backwards/.test(w)));
    assert.deepEqual(
      liveFiles(copy).filter((f) => f.includes('000000000030')),
      [],
      'none of its files is taken in',
    );
    assert.deepEqual(await blobs.list(SET_ASIDE), []);

    // The holder's start sets them aside.
    warnings.length = 0;
    const b = Archiver.unopened(join(dir, 'b'), { shared: new SharedArchive(blobs, { warn: (m) => warnings.push(m) }) });
    assert.equal(await b.resumeAt(0), 90);
    const aside = await blobs.list(SET_ASIDE);
    assert.equal(aside.length, 2);
    assert.deepEqual(Buffer.from((await blobs.get(aside.find((k) => k.endsWith('/000000000030-000000000059.json'))!))!), shifted);
    assert.deepEqual(Buffer.from((await blobs.get(aside.find((k) => k.endsWith('/000000000095-000000000090.json'))!))!), backwards);
    assert.deepEqual(await blobs.list(COMMITS), [commitKey(0, 29), commitKey(60, 89)]);
    assert.equal(warnings.length, 2, warnings.join('\n'));
    for (const key of aside) assert.ok(warnings.some((w) => w.includes(key) && /set aside/.test(w)));

    await b.handle(records(90, 99), 90);
    await b.close();
    const synced = await new SharedArchive(blobs).sync(copy);
    assert.equal(synced.end, 100);
    const ids = await archivedIds(copy);
    assert.equal(ids.size, 70, 'offsets 0-29 and 60-99: the set-aside record named none that is used');
    assert.ok(!ids.has('e-30') && ids.has('e-99'));
  });

  it('does not remove a malformed record that was replaced after it was read', async () => {
    const dir = tempDir();
    const blobs = new DirectoryBlobStore(join(dir, 'blobs'));
    await archiveBatches(blobs, join(dir, 'a'), [[0, 9]]);
    const valid = (await blobs.get(commitKey(0, 9)))!;
    await blobs.put(commitKey(0, 9), Buffer.from('{"first":'));
    const archive = new SharedArchive(blobs, { warn: () => {} });
    // The fence stands for the time between reading the record and removing it.
    const set = await archive.setAsideMalformed(() => blobs.put(commitKey(0, 9), valid));
    assert.deepEqual(set, []);
    assert.equal((await blobs.list(SET_ASIDE)).length, 1, 'the bytes read are kept');
    assert.deepEqual(
      (await archive.commits()).map((c) => [c.first, c.last]),
      [[0, 9]],
    );
  });
});
