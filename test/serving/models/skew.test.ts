import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { skewReport } from '../../../src/workbench/features/skew.js';
import { Lakehouse } from '../../../src/workbench/lakehouse.js';
import { createBundle } from '../../../src/workbench/models/bundle.js';
import { columnsFor } from '../../../src/workbench/models/preprocess.js';
import { publish } from '../../../src/workbench/models/publish.js';
import { ModelRegistry } from '../../../src/workbench/models/registry.js';
import { trainClassifier } from '../../../src/workbench/models/train.js';
import { sql } from '../../../src/workbench/sql.js';
import { event, startTestService } from '../../helpers/service.js';
import { sleep } from '../../helpers/wait.js';

const features = featureSet([
  { name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 },
  { name: 'spend_30d', source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: '30d', default: 0 },
  // Features of time itself: they differ by the gap between the read and the prediction event's
  // time unless the event carries the read's time (it once flagged a healthy service).
  { name: 'since_last_login', source: { event: 'login' }, aggregation: 'time_since_last', window: 'lifetime', default: -1 },
  { name: 'user_age', source: { event: '*' }, aggregation: 'first_seen_age', window: 'lifetime', default: -1 },
]);

describe('the training/serving skew report', { timeout: 90_000 }, () => {
  it('finds no skew when the store was up to date, and flags a late event the store could not have known', async () => {
    const t = await startTestService();
    const rows = Array.from({ length: 300 }, (_, i) => ({
      logins_7d: i % 7,
      spend_30d: (i * 13) % 100,
      since_last_login: i * 60,
      user_age: i * 600,
      y: i % 3 === 0 ? 1 : 0,
    }));
    const model = await trainClassifier(rows, 'y', columnsFor(features), { seed: 1, maxEpochs: 3 });
    try {
      await publish(await createBundle('skewed', model, features), { url: t.service.url, key: t.keys.admin, alias: 'champion' });
      const now = Date.now();
      await t.post('/v1/events', [
        event('k1', { user_id: 'gina', event: 'login', time: new Date(now - 60_000).toISOString() }),
        event('k2', { user_id: 'gina', event: 'purchase', time: new Date(now - 50_000).toISOString(), props: { amount: 12 } }),
        event('k3', { user_id: 'hal', event: 'login', time: new Date(now - 40_000).toISOString() }),
      ]);
      // One prediction per user, once the store has the user's login: every logged prediction counts in
      // the report, so polling /v1/predict on a loaded machine would log real skew (consumer lag).
      const predict = async (user: string) => {
        for (let i = 0; i < 200; i++) {
          const res = await t.call(`/v1/features/${user}`, { key: t.keys.read });
          const body = (await res.json()) as { values?: Record<string, unknown> };
          if (res.status === 200 && body.values?.logins_7d === 1) {
            const scored = await t.call('/v1/predict', {
              method: 'POST',
              key: t.keys.read,
              body: JSON.stringify({ model: 'skewed', user_id: user }),
              headers: { 'content-type': 'application/json' },
            });
            assert.equal(scored.status, 200, await scored.text());
            return;
          }
          await sleep(50);
        }
        throw new Error(`the online store never had ${user}'s login`);
      };
      await predict('gina');
      await predict('hal');
      // A purchase that happened before hal's prediction but reaches the service after it.
      await sleep(20);
      await t.post('/v1/events', [event('k4', { user_id: 'hal', event: 'purchase', time: new Date(now - 30_000).toISOString(), props: { amount: 99 } })]);
      await sleep(200);
      const lake = join(t.dataDir, 'lake');
      let report;
      for (let i = 0; i < 100; i++) {
        await sleep(200);
        const lh = await Lakehouse.open(lake).catch(() => undefined);
        if (!lh) continue;
        try {
          const [r] = await lh.query<{ n: number; late: number }>(
            sql`SELECT count(*) FILTER (WHERE event = 'prediction') AS n, count(*) FILTER (WHERE event_id = 'k4') AS late FROM events WHERE source = 'live'`,
          );
          if (r!.n < 2 || r!.late < 1) continue;
          report = await skewReport(lh, ModelRegistry.open(join(t.dataDir, 'registry')), { model: 'skewed' });
          break;
        } catch {
          continue; // not archived yet
        } finally {
          lh.close();
        }
      }
      assert.ok(report, 'the predictions were archived');
      const spend = report.features.find((f) => f.name === 'spend_30d')!;
      const logins = report.features.find((f) => f.name === 'logins_7d')!;
      assert.equal(logins.mismatches, 0, JSON.stringify(logins));
      const ofTime = report.features.filter((x) => x.name === 'since_last_login' || x.name === 'user_age');
      assert.equal(ofTime.length, 2);
      for (const f of ofTime) assert.equal(f.mismatches, 0, `${f.name} is compared at the instant it was read: ${JSON.stringify(f)}`);
      assert.ok(spend.mismatches >= 1, JSON.stringify(spend));
      assert.equal(spend.example!.user_id, 'hal');
      assert.deepEqual([spend.example!.online, spend.example!.offline], [0, 99]);
      assert.equal(spend.largestDifference, 99);
    } finally {
      model.dispose();
      await t.stop();
    }
  });
});
