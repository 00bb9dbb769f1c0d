import assert from 'node:assert/strict';
import { cpSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { LiveArchiveWriter } from '../../src/workbench/lakehouse/live.js';
import { Lakehouse, buildLakehouse, sql } from '../../src/workbench/index.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * The event archive after `npm start` holds the built sources and the service's live one; notebooks
 * tell them apart with `lake.sources()` (notebook 01 once took the live source for a built one).
 */
describe('Lakehouse sources', () => {
  it('tells built sources (with their manifest entry) from the live archive and from unlisted ones', async () => {
    const dir = tempDir();
    const root = join(dir, 'lake');
    const login = { event_id: 'e1', time: '2025-01-01T10:00:00Z', user_id: 'u1', event: 'login', props: { device: 'ios' } };
    await buildLakehouse({
      lakeDir: root,
      now: new Date('2025-02-01T00:00:00Z'),
      app: {
        fingerprint: 'fixture',
        describe: 'fixture',
        load: () => ({ events: [login, { ...login, event_id: 'e2' }] as never, truthUsers: [], truthMeta: {} }),
      },
    });

    let lake = await Lakehouse.open(root);
    assert.deepEqual(
      lake.sources().map((s) => [s.name, s.kind]),
      [['app', 'built']],
    );
    lake.close();

    // The service's archiver appends the live source, which no build accounted for.
    const writer = await LiveArchiveWriter.open(root);
    const record = { ...login, event_id: 'live-1', time: '2025-01-20T08:00:00.000Z', dims: {}, experiments: {}, received_at: '2025-01-20T08:00:01.000Z' };
    await writer.write([Buffer.from(JSON.stringify(record))], 0, 0);
    writer.close();
    // A source directory outside the manifest, named to tempt a plain-object lookup.
    cpSync(join(root, 'archive', 'events', 'source=app'), join(root, 'archive', 'events', 'source=__proto__'), { recursive: true });
    mkdirSync(join(root, 'archive', 'events', 'not-a-source'));

    lake = await Lakehouse.open(root);
    try {
      const sources = lake.sources();
      assert.deepEqual(
        sources.map((s) => [s.name, s.kind]),
        [
          ['__proto__', 'unlisted'],
          ['app', 'built'],
          ['live', 'live'],
        ],
      );
      const app = sources.find((s) => s.name === 'app');
      assert.ok(app?.kind === 'built');
      assert.equal(app.build.accepted, 2);
      // Every source the events view reads is one of them.
      const counts = await lake.query(sql`SELECT source, count(*) AS n FROM events GROUP BY 1 ORDER BY 1`);
      assert.deepEqual(counts, [
        { source: '__proto__', n: 2 },
        { source: 'app', n: 2 },
        { source: 'live', n: 1 },
      ]);
    } finally {
      lake.close();
    }
  });
});
