import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DirectoryBlobStore } from '../../../src/serving/cluster/blob-store/directory.js';
import { AGGREGATES_SNAPSHOT, EXPERIMENTS_SNAPSHOT, featuresSnapshot, SharedSnapshots, snapshotOffset } from '../../../src/serving/cluster/shared-snapshots.js';
import { ExperimentTracker } from '../../../src/serving/experiments/tracker.js';
import { MemoryOnlineStore } from '../../../src/serving/features/memory-store.js';
import { labelVocabulary } from '../../../src/serving/observability/label-vocabulary.js';
import { DEFAULT_AGGREGATES, LiveAggregates } from '../../../src/serving/pipeline/aggregates.js';
import type { EnrichedEvent } from '../../../src/workbench/event.js';
import type { UserState } from '../../../src/workbench/features/online.js';
import { metricCatalog } from '../../../src/workbench/experiments/metrics.js';
import { writeFileAtomic } from '../../../src/workbench/files.js';
import { mrrExperiment } from '../../helpers/experiments.js';
import { tempDir } from '../../helpers/tmp.js';

const START = Date.UTC(2026, 10, 29, 10);

/** Logins, upgrades and exposures of a few users over a few minutes, in event order. */
function events(from: number, to: number): EnrichedEvent[] {
  const out: EnrichedEvent[] = [];
  for (let i = from; i < to; i++) {
    const user = `u${i % 6}`;
    const arm = i % 12 < 6 ? 'a' : 'b';
    const time = new Date(START + i * 7_000).toISOString();
    const name = i < 6 ? 'experiment_exposure' : i % 3 === 0 ? 'upgrade' : 'login';
    out.push({
      event_id: `e${i}`,
      time,
      user_id: user,
      event: name,
      props: name === 'experiment_exposure' ? { experiment: 'exp', arm } : name === 'upgrade' ? { mrr: i } : {},
      dims: { country: i % 2 ? 'GB' : 'FR', device: 'ios', tier: 'free', first_seen: '2026-11-01T00:00:00.000Z' },
      experiments: { exp: arm },
      received_at: time,
    });
  }
  return out;
}

const aggregates = (dir: string) =>
  new LiveAggregates({ ...DEFAULT_AGGREGATES, snapshotPath: join(dir, AGGREGATES_SNAPSHOT), known: labelVocabulary(), snapshotEveryMs: 60_000 });
const tracker = (dir: string, warn?: (m: string) => void) =>
  new ExperimentTracker((k) => (k === 'exp' ? mrrExperiment : undefined), metricCatalog(), {
    snapshotPath: join(dir, EXPERIMENTS_SNAPSHOT),
    snapshotEveryMs: 60_000,
    ...(warn ? { warn } : {}),
  });
const SET = '0123456789abcdef';

/** An instance dir whose aggregates, experiment statistics and feature store stand at offset 40. */
async function instanceAt40(dir: string) {
  const a = aggregates(dir);
  const t = tracker(dir);
  assert.equal(await a.resumeAt(0), 0);
  assert.equal(await t.resumeAt(), 0);
  await a.handle(events(0, 40), 0);
  await t.handle(events(0, 40), 0);
  await a.close();
  await t.close();
  const store = MemoryOnlineStore.open(join(dir, featuresSnapshot(SET)));
  await store.reset(SET);
  await store.write(new Map<string, UserState>([['u1', [[]]]]), 40);
  await store.flush();
  return { a, t };
}

describe('read-model snapshots shared through the blob store', () => {
  it('seed an empty instance dir with the published snapshots: its consumers resume at their offset and end where the original does', async () => {
    const blobs = new DirectoryBlobStore(tempDir());
    const dirA = tempDir();
    const { a, t } = await instanceAt40(dirA);
    const published = await new SharedSnapshots(blobs, dirA, { features: true }).publish();
    assert.deepEqual(published.copied, [AGGREGATES_SNAPSHOT, EXPERIMENTS_SNAPSHOT, featuresSnapshot(SET)]);

    const dirB = tempDir();
    const logged: unknown[] = [];
    const logger = { info: (o: unknown) => void logged.push(o), warn: (o: unknown) => assert.fail(`warned: ${JSON.stringify(o)}`) };
    const seeding = await new SharedSnapshots(blobs, dirB, { features: true, logger: logger as never }).seed([
      AGGREGATES_SNAPSHOT,
      EXPERIMENTS_SNAPSHOT,
      featuresSnapshot(SET),
      featuresSnapshot('fedcba9876543210'),
    ]);
    assert.deepEqual(
      seeding.seeded.map((s) => [s.name, s.offset]),
      [
        [AGGREGATES_SNAPSHOT, 40],
        [EXPERIMENTS_SNAPSHOT, 40],
        [featuresSnapshot(SET), 40],
      ],
    );
    assert.deepEqual(seeding.absent, [featuresSnapshot('fedcba9876543210')]);
    assert.equal(logged.length, 1);
    // Each file as it was on disk.
    for (const name of [AGGREGATES_SNAPSHOT, EXPERIMENTS_SNAPSHOT, featuresSnapshot(SET)])
      assert.deepEqual(readFileSync(join(dirB, name)), readFileSync(join(dirA, name)));

    const b = aggregates(dirB);
    const tb = tracker(dirB);
    assert.equal(await b.resumeAt(0), 40);
    assert.equal(await tb.resumeAt(), 40);
    assert.deepEqual(await MemoryOnlineStore.open(join(dirB, featuresSnapshot(SET))).position(), { setVersion: SET, offset: 40 });
    await a.handle(events(40, 90), 40);
    await b.handle(events(40, 90), 40);
    await t.handle(events(40, 90), 40);
    await tb.handle(events(40, 90), 40);
    assert.ok(a.query('1m').length > 0);
    assert.deepEqual(b.query('1m'), a.query('1m'));
    assert.deepEqual(b.query('1h'), a.query('1h'));
    assert.equal(b.position, 90);
    assert.deepEqual(tb.stats('exp'), t.stats('exp'));
  });

  it('leave an instance dir its own snapshots', async () => {
    const blobs = new DirectoryBlobStore(tempDir());
    const dirA = tempDir();
    await instanceAt40(dirA);
    await new SharedSnapshots(blobs, dirA, { features: false }).publish();
    const dirB = tempDir();
    const own = aggregates(dirB);
    await own.resumeAt(0);
    await own.handle(events(0, 10), 0);
    await own.close();
    const before = readFileSync(join(dirB, AGGREGATES_SNAPSHOT));
    const seeding = await new SharedSnapshots(blobs, dirB, { features: false }).seed([AGGREGATES_SNAPSHOT, EXPERIMENTS_SNAPSHOT]);
    assert.deepEqual(
      seeding.seeded.map((s) => s.name),
      [EXPERIMENTS_SNAPSHOT],
    );
    assert.deepEqual(readFileSync(join(dirB, AGGREGATES_SNAPSHOT)), before);
    assert.equal(await aggregates(dirB).resumeAt(0), 10);
  });

  it('refuse a blob changed behind the store, and a snapshot that fails its own check: the consumer replays', async () => {
    const root = tempDir();
    const blobs = new DirectoryBlobStore(root);
    const dirA = tempDir();
    await instanceAt40(dirA);
    await new SharedSnapshots(blobs, dirA, { features: true }).publish();
    // The aggregates' bytes replaced through the filesystem (same length, the store's header kept).
    const file = join(root, 'snapshots', 'consumers', 'aggregates.json');
    const raw = readFileSync(file);
    const at = raw.indexOf('"offset":40');
    raw.write('"offset":90', at, 'latin1');
    writeFileSync(file, raw);
    // The experiment statistics put through the store, but not as the tracker wrote them (its checksum fails).
    const text = readFileSync(join(dirA, EXPERIMENTS_SNAPSHOT), 'utf8').replace('"offset":40', '"offset":90');
    await blobs.put(`snapshots/${EXPERIMENTS_SNAPSHOT}`, Buffer.from(text));
    // The feature store's: not JSON of a snapshot at all.
    await blobs.put(`snapshots/${featuresSnapshot(SET)}`, Buffer.from('{"setVersion"'));

    const dirB = tempDir();
    const warned: string[] = [];
    const logger = { info: () => assert.fail('nothing is seeded'), warn: (_o: unknown, m: string) => void warned.push(m) };
    const seeding = await new SharedSnapshots(blobs, dirB, { features: true, logger: logger as never }).seed([
      AGGREGATES_SNAPSHOT,
      EXPERIMENTS_SNAPSHOT,
      featuresSnapshot(SET),
    ]);
    assert.deepEqual(seeding.seeded, []);
    assert.deepEqual(
      seeding.failed.map((f) => f.name),
      [AGGREGATES_SNAPSHOT, EXPERIMENTS_SNAPSHOT, featuresSnapshot(SET)],
    );
    assert.match(seeding.failed[0]!.error, /SHA-256/);
    assert.match(seeding.failed[1]!.error, /checksum/);
    assert.equal(warned.length, 3);
    assert.deepEqual(readdirSync(dirB), []);
    assert.equal(await aggregates(dirB).resumeAt(0), 0);
    assert.equal(await tracker(dirB).resumeAt(), 0);
  });

  it('check a snapshot the way its consumer reads it', () => {
    assert.throws(() => snapshotOffset(AGGREGATES_SNAPSHOT, Buffer.from('{"offset":')), /not JSON/);
    assert.throws(() => snapshotOffset(AGGREGATES_SNAPSHOT, Buffer.from('{"offset":1}')), /not an aggregates snapshot/);
    assert.throws(() => snapshotOffset(AGGREGATES_SNAPSHOT, Buffer.from('{"offset":-1,"newest":0,"windows":{"1m":[],"1h":[]}}')), /no offset/);
    assert.equal(snapshotOffset(AGGREGATES_SNAPSHOT, Buffer.from('{"offset":7,"newest":0,"windows":{"1m":[],"1h":[]}}')), 7);
  });

  it('publish only the files that changed since the last copy, and remove a feature set no longer kept', async () => {
    const blobs = new DirectoryBlobStore(tempDir());
    const dir = tempDir();
    const { a } = await instanceAt40(dir);
    const shared = new SharedSnapshots(blobs, dir, { features: true });
    assert.equal((await shared.publish()).copied.length, 3);
    assert.deepEqual(await shared.publish(), { copied: [], removed: [] });
    await a.handle(events(40, 50), 40);
    await a.close();
    writeFileAtomic(join(dir, 'features', 'online-fedcba9876543210.snapshot.corrupt-1'), 'x');
    const store = MemoryOnlineStore.open(join(dir, featuresSnapshot(SET)));
    await store.drop();
    assert.ok(!existsSync(join(dir, featuresSnapshot(SET))));
    assert.deepEqual(await shared.publish(), { copied: [AGGREGATES_SNAPSHOT], removed: [featuresSnapshot(SET)] });
    assert.deepEqual(await blobs.list('snapshots/'), [`snapshots/${AGGREGATES_SNAPSHOT}`, `snapshots/${EXPERIMENTS_SNAPSHOT}`]);
    assert.equal(snapshotOffset(AGGREGATES_SNAPSHOT, (await blobs.get(`snapshots/${AGGREGATES_SNAPSHOT}`))!), 50);
    await shared.close();
  });
});
