import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { appSource } from '../../src/app/replay.js';
import type { AppSimulator } from '../../src/app/simulator.js';
import { runReplay } from '../../src/cli/replay.js';
import { EXPERIMENTS_FROM_DAY, prepareDemoExperiments, scaledMetrics } from '../../src/cli/start-experiments.js';
import { openOltp } from '../../src/workbench/oltp/index.js';
import { startTestService } from '../helpers/service.js';
import { until } from '../helpers/wait.js';

/**
 * What `npm start` shows, end to end and on its own: the simulated product runs churn-offer (a true
 * positive effect) and upgrade-nag (a true harm to logins); the platform ships the first and rolls
 * back the second without anyone deciding. The replay runs four simulated days a second. The churn
 * scores the offer targets are the simulator's true 30-day churn probabilities written where the
 * service's precomputed scores go (the OLTP predictions table), standing in for the trained model.
 */
describe('the experiments of npm start', { timeout: 240_000 }, () => {
  it('ships churn-offer and rolls back upgrade-nag on their own', async () => {
    const speed = 4 * 86_400;
    const scale = 1 / speed;
    const t = await startTestService({ metrics: scaledMetrics(scale), decideEveryMs: 250 });
    const oltp = await openOltp(undefined, t.dataDir);
    try {
      const hook = await prepareDemoExperiments(t.service.experiments, oltp, scale, () => undefined);
      assert.ok(hook, 'the experiments are created');
      const beforeDay = async (day: number, sim: AppSimulator) => {
        if (day === EXPERIMENTS_FROM_DAY - 1) {
          const truth = sim.truth().users;
          await oltp.upsertPredictions(truth.map((u) => ({ model: 'app-churn', version: 'truth', user_id: u.user_id, score: u.churn_30d, created_at: new Date().toISOString() })));
        }
        await hook!(day, sim);
      };
      await runReplay({ url: t.service.url, key: t.keys.ingest, sources: [appSource({ users: 2000, days: 95, seed: 42 }, { beforeDay })], speed, concurrency: 2 });
      const status = async (key: string) => (await (await t.call(`/v1/experiments/${key}`, { key: t.keys.read })).json()) as { status: string; winner?: string };
      const shipped = await until('churn-offer to be shipped', async () => ((await status('churn-offer')).status === 'shipped' ? status('churn-offer') : undefined), 30_000);
      assert.equal(shipped.winner, 'offer');
      await until('upgrade-nag to be rolled back', async () => ((await status('upgrade-nag')).status === 'rolled_back' ? true : undefined), 30_000);
      for (const key of ['churn-offer', 'upgrade-nag']) {
        const history = (await (await t.call(`/v1/experiments/${key}/history`, { key: t.keys.read })).json()) as { history: { updated_by: string; change: string }[] };
        assert.equal(history.history.at(-1)!.updated_by, 'wb-decider', `${key} was decided by the platform: ${history.history.at(-1)!.change}`);
        console.log(`${key}: ${history.history.at(-1)!.change.replace(/ \{.*$/, '')}`);
      }
    } finally {
      await oltp.close();
      await t.stop();
    }
  });
});
