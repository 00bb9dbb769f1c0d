import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { simulateIntoOltp } from '../../../src/app/history.js';
import { appFeatures } from '../../../src/workbench/features/catalog.js';
import { OnlineFeatures } from '../../../src/workbench/features/online.js';
import { featureParity } from '../../../src/workbench/features/parity.js';
import { buildLakehouse, buildTrainingSet, Lakehouse, openOltp, sql } from '../../../src/workbench/index.js';
import { tempDir } from '../../helpers/tmp.js';

describe('featureParity on a lakehouse', { timeout: 120_000 }, () => {
  const dir = tempDir('wb-parity-');
  let lake: Lakehouse;
  before(async () => {
    const oltp = await openOltp(undefined, dir);
    await buildLakehouse({ lakeDir: join(dir, 'lake'), app: await simulateIntoOltp({ seed: 3, users: 60, days: 40, start: '2025-03-01' }, oltp), oltp });
    await oltp.close();
    lake = await Lakehouse.open(join(dir, 'lake'));
  });
  after(() => lake?.close());

  it('finds no mismatch between the compilers on the simulated app', async () => {
    const report = await featureParity(lake, appFeatures, { source: 'app', samples: 300, seed: 7 });
    assert.equal(report.samples, 300);
    assert.ok(report.events > 1000, `replayed ${report.events} events`);
    assert.equal(report.mismatches, 0, JSON.stringify(report.features.filter((f) => f.mismatches > 0)));
    for (const f of report.features) assert.equal(f.compared, 300);
  });

  it('reports a feature whose online value drifts, with the size of the difference and an example', async (t) => {
    // Make the online side wrong for one feature: parity must say which, and by how much.
    const read = OnlineFeatures.prototype.read;
    t.mock.method(OnlineFeatures.prototype, 'read', function (this: OnlineFeatures, ...args: Parameters<typeof read>) {
      const r = read.apply(this, args);
      r.values.logins_7d = (r.values.logins_7d as number) + 2;
      return r;
    });
    const report = await featureParity(lake, appFeatures, { source: 'app', samples: 50, seed: 7 });
    const drifted = report.features.find((f) => f.name === 'logins_7d')!;
    assert.equal(drifted.mismatches, 50);
    assert.equal(drifted.largestDifference, 2);
    assert.equal((drifted.example!.online as number) - (drifted.example!.offline as number), 2);
    assert.equal(report.mismatches, 50, 'only that feature');
  });

  it('refuses a spine with missing times or users, naming the first bad row', async () => {
    const spine = sql`(SELECT * FROM (VALUES ('u000001', TIMESTAMP '2025-03-10'), ('u000002', NULL), (NULL, TIMESTAMP '2025-03-11')) AS v(user_id, as_of))`;
    await assert.rejects(
      buildTrainingSet(lake, appFeatures, { spine }),
      /the spine has 1 rows without as_of and 1 without user_id \(of 3; the first is row 2\)/,
    );
    const ok = await buildTrainingSet(lake, appFeatures, { spine: sql`(SELECT 'u000001' AS user_id, TIMESTAMP '2025-03-10' AS as_of)` });
    assert.equal(ok.length, 1);
  });

  it('says when the lakehouse has no events of the source', async () => {
    await assert.rejects(featureParity(lake, appFeatures, { source: 'retail' }), /no events with source "retail"/);
  });
});
