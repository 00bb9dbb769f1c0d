import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DirectoryBlobStore } from '../../../src/serving/cluster/blob-store/directory.js';
import { AGGREGATES_SNAPSHOT, EXPERIMENTS_SNAPSHOT, featuresSnapshot, SharedSnapshots, snapshotOffset } from '../../../src/serving/cluster/shared-snapshots.js';
import { serviceCluster, type ClusterInstance } from '../../helpers/cluster.js';
import { until } from '../../helpers/wait.js';

/**
 * A new instance of a cluster (one PostgreSQL schema, one JetStream stream, one shared data dir and
 * so one blob store) starts its read models from the snapshots the holder of `wb:monitor` published.
 */
const harness = serviceCluster('snapshots');

async function sendEvents(to: ClusterInstance, from: number, count: number): Promise<void> {
  const time = new Date(Date.now() - 30_000).toISOString();
  const events = Array.from({ length: count }, (_, i) => ({
    event_id: `ev-${from + i}`,
    time,
    user_id: `u${(from + i) % 37}`,
    event: 'page_view',
    props: { country: 'GB', device: 'ios' },
  }));
  for (let k = 0; k < events.length; k += 50) {
    const res = await to.post('/v1/events', events.slice(k, k + 50));
    assert.equal(res.status, 200, await res.text());
  }
}

describe('read-model snapshots shared by the instances of a cluster', { timeout: 120_000 }, () => {
  it('start a new instance at the offset of the published aggregates, not 0', async () => {
    const shared = harness.cluster();
    const a = await harness.instance('a', shared);
    assert.equal(a.service.singletons.get('wb:monitor')?.held, true);
    assert.ok(a.service.snapshots, 'a cluster instance shares its snapshots');
    await sendEvents(a, 0, 200);
    const end = await a.service.log.next();
    await until('a has counted every event', async () => (a.service.aggregates.position >= end ? true : undefined));
    // The aggregates write their snapshot on close (as on a stop) and every 10 s: written now, then published.
    await a.service.aggregates.close();
    const published = await a.service.snapshots.publish();
    assert.ok(published.copied.includes(AGGREGATES_SNAPSHOT), JSON.stringify(published));
    const blob = await a.service.snapshots.blobs.get(`${harness.schema}/snapshots/${AGGREGATES_SNAPSHOT}`);
    assert.equal(snapshotOffset(AGGREGATES_SNAPSHOT, blob!), end);

    const b = await harness.instance('b', shared);
    const seeded = b.lines.find((l) => l.msg === 'read-model snapshots seeded from the blob store') as
      { seeded: { name: string; offset: number }[] } | undefined;
    assert.ok(seeded, `b logged what it seeded: ${JSON.stringify(b.lines.map((l) => l.msg))}`);
    assert.deepEqual(
      seeded.seeded.find((s) => s.name === AGGREGATES_SNAPSHOT),
      { name: AGGREGATES_SNAPSHOT, offset: end, bytes: blob!.byteLength },
    );
    assert.ok(existsSync(join(b.service.instanceDir, AGGREGATES_SNAPSHOT)));
    // Both count what comes next the same way, b from where a's snapshot stood.
    await sendEvents(b, 200, 100);
    const next = await b.service.log.next();
    await until('both have counted every event', async () =>
      a.service.aggregates.position >= next && b.service.aggregates.position >= next ? true : undefined,
    );
    assert.deepEqual(b.service.aggregates.query('1m'), a.service.aggregates.query('1m'));
  });

  it('seed the feature store of the set the new instance serves, and the experiment statistics', async () => {
    const shared = harness.cluster();
    const a = await harness.instance('a', shared);
    await sendEvents(a, 0, 120);
    const end = await a.service.log.next();
    // Stopped, a has written every snapshot; they are published as its timer would have.
    await a.stop();
    const version = a.service.features.version;
    const blobs = new DirectoryBlobStore(join(shared.dataDir, 'blobs'));
    const published = await new SharedSnapshots(blobs, a.service.instanceDir, { features: true, namespace: harness.schema }).publish();
    assert.deepEqual(published.copied, [AGGREGATES_SNAPSHOT, EXPERIMENTS_SNAPSHOT, featuresSnapshot(version)]);

    const b = await harness.instance('b', shared);
    const seeded = b.lines.filter((l) => l.msg === 'read-model snapshots seeded from the blob store') as unknown as {
      seeded: { name: string; offset: number }[];
    }[];
    assert.deepEqual(
      seeded.flatMap((l) => l.seeded.map((s) => [s.name, s.offset])),
      [
        [AGGREGATES_SNAPSHOT, end],
        [EXPERIMENTS_SNAPSHOT, end],
        [featuresSnapshot(version), end],
      ],
    );
    assert.equal(b.service.features.version, version);
    assert.ok(b.service.features.runners[0]!.offset >= end);
    assert.deepEqual(await b.service.features.store.position(), { setVersion: version, offset: end });
  });
});
