import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SimulatedClock } from '../../src/workbench/clock.js';
import { featureSet } from '../../src/workbench/features/definition.js';
import { Lakehouse } from '../../src/workbench/lakehouse.js';
import { createBundle } from '../../src/workbench/models/bundle.js';
import { columnsFor } from '../../src/workbench/models/preprocess.js';
import { publish } from '../../src/workbench/models/publish.js';
import { trainClassifier } from '../../src/workbench/models/train.js';
import { sql } from '../../src/workbench/sql.js';
import { event, startTestService } from '../helpers/service.js';
import { sleep, until } from '../helpers/wait.js';

const DAY = 86_400_000;
const features = featureSet([{ name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 }]);

/**
 * One clock (`npm start`): a service on a simulated clock takes events of the simulated time, reads
 * features, predicts and assigns at the simulated now, and refuses the machine's time as the future.
 * The clock stands still here, so every time the service gives must be exactly it.
 */
describe('a service on a simulated clock', { timeout: 120_000 }, () => {
  it('lives in simulated time: ingest, feature windows, predictions and assignments', async () => {
    const now = Date.parse('2025-03-01T12:00:00Z');
    const clock = new SimulatedClock(now);
    const t = await startTestService({ clock });
    try {
      const rows = Array.from({ length: 200 }, (_, i) => ({ logins_7d: i % 5, y: i % 4 === 0 ? 1 : 0 }));
      const model = await trainClassifier(rows, 'y', columnsFor(features), { seed: 1, maxEpochs: 2 });
      await publish(await createBundle('clocked', model, features), { url: t.service.url, key: t.keys.admin, alias: 'champion' });

      const iso = (ms: number) => new Date(ms).toISOString();
      const res = await t.post('/v1/events', [
        event('c1', { user_id: 'ann', event: 'login', time: iso(now - 1 * DAY) }),
        event('c2', { user_id: 'ann', event: 'login', time: iso(now - 3 * DAY) }),
        event('c3', { user_id: 'ann', event: 'login', time: iso(now - 8 * DAY) }), // outside the 7-day window at the simulated now
        event('c4', { user_id: 'ann', event: 'login', time: iso(Date.now()) }), // the machine's now is years ahead
      ]);
      const answer = (await res.json()) as { accepted: number; rejected: { event_id: string; reason: string }[] };
      assert.equal(answer.accepted, 3, JSON.stringify(answer));
      assert.deepEqual(
        answer.rejected.map((r) => r.event_id),
        ['c4'],
      );
      assert.match(answer.rejected[0]!.reason, /in the future/);

      const read = await until(
        'the online store to have ann',
        async () => {
          const body = (await (await t.call('/v1/features/ann', { key: t.keys.read })).json()) as { at: string; values: { logins_7d?: number } };
          return body.values.logins_7d === 2 ? body : undefined;
        },
        30_000,
      );
      assert.equal(read.at, iso(now), 'features are read at the simulated now');

      const scored = await t.call('/v1/predict', {
        method: 'POST',
        key: t.keys.read,
        body: JSON.stringify({ model: 'clocked', user_id: 'ann' }),
        headers: { 'content-type': 'application/json' },
      });
      assert.equal(scored.status, 200, await scored.clone().text());
      assert.equal(((await scored.json()) as { features: { logins_7d: number } }).features.logins_7d, 2);

      await t.post(
        '/v1/experiments',
        {
          key: 'clocked-exp',
          hypothesis: 'h',
          arms: [
            { key: 'control', weight: 0.5 },
            { key: 'b', weight: 0.5 },
          ],
          objective: 'logins',
          mde: 0.1,
          status: 'running',
        },
        t.keys.admin,
      );
      assert.equal((await t.post('/v1/assignments', { user_id: 'ann', experiment: 'clocked-exp' })).status, 200);

      // The archive holds the prediction and the exposure at the simulated now.
      const logged = await until(
        'the prediction and the exposure to be archived',
        async () => {
          await sleep(200);
          const lake = await Lakehouse.open(join(t.dataDir, 'lake')).catch(() => undefined);
          if (!lake) return undefined;
          try {
            const found = await lake.query<{ event: string; time: Date }>(
              sql`SELECT event, time FROM events WHERE source = 'live' AND event IN ('prediction', 'experiment_exposure') ORDER BY event`,
            );
            return found.length === 2 ? found : undefined;
          } catch {
            return undefined; // nothing archived yet
          } finally {
            lake.close();
          }
        },
        60_000,
      );
      for (const row of logged) assert.equal(row.time.getTime(), now, `${row.event} at the simulated now`);

      // The dashboard's stream says which clock it is on, and its time.
      const controller = new AbortController();
      const stream = await t.call('/v1/stream', { key: t.keys.read, signal: controller.signal });
      const reader = stream.body!.getReader();
      let text = '';
      while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
      controller.abort();
      const snapshot = JSON.parse(/^data: (.*)$/m.exec(text)![1]!) as { now: string; clock: string };
      assert.deepEqual({ now: snapshot.now, clock: snapshot.clock }, { now: iso(now), clock: 'simulated' });
    } finally {
      await t.stop();
    }
  });
});
