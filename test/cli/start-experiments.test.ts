import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { appSource } from '../../src/app/replay.js';
import type { AppSimulator } from '../../src/app/simulator.js';
import { runReplay } from '../../src/cli/replay.js';
import { EXPERIMENTS_FROM_DAY, prepareDemoExperiments, scaledMetrics } from '../../src/cli/start-experiments.js';
import { SimulatedClock } from '../../src/workbench/clock.js';
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
describe('the experiments of npm start', { timeout: 480_000 }, () => {
  // npm start runs the service on the replay's simulated clock (experiments in true days); --clock
  // wall keeps the machine's clock, with every duration scaled to the replay.
  for (const mode of ['simulated', 'wall'] as const) {
    it(`ships churn-offer and rolls back upgrade-nag on their own (${mode} clock)`, async () => {
      const speed = 4 * 86_400;
      const app = { users: 2000, days: 95, seed: 42 };
      const calendar = Date.parse('2025-01-01T00:00:00Z');
      const clock = mode === 'simulated' ? new SimulatedClock(calendar) : undefined;
      const scale = clock ? 1 : 1 / speed;
      const t = await startTestService(clock ? { clock, decideEveryMs: 250 } : { metrics: scaledMetrics(scale), decideEveryMs: 250 });
      const oltp = await openOltp(undefined, t.dataDir);
      try {
        const hook = await prepareDemoExperiments(t.service.experiments, oltp, scale, () => undefined);
        assert.ok(hook, 'the experiments are created');
        const beforeDay = async (day: number, sim: AppSimulator) => {
          if (day === EXPERIMENTS_FROM_DAY - 1) {
            const truth = sim.truth().users;
            await oltp.upsertPredictions(
              truth.map((u) => ({ model: 'app-churn', version: 'truth', user_id: u.user_id, score: u.churn_30d, created_at: new Date().toISOString() })),
            );
          }
          await hook!(day, sim);
        };
        await runReplay({
          url: t.service.url,
          key: t.keys.ingest,
          sources: [appSource({ ...app, start: '2025-01-01' }, { beforeDay })],
          speed,
          concurrency: 2,
          ...(clock ? { simulated: { clock, calendar } } : {}),
        });
        const status = async (key: string) =>
          (await (await t.call(`/v1/experiments/${key}`, { key: t.keys.read })).json()) as { status: string; winner?: string };
        const shipped = await until(
          'churn-offer to be shipped',
          async () => ((await status('churn-offer')).status === 'shipped' ? status('churn-offer') : undefined),
          30_000,
        );
        assert.equal(shipped.winner, 'offer');
        await until('upgrade-nag to be rolled back', async () => ((await status('upgrade-nag')).status === 'rolled_back' ? true : undefined), 30_000);
        for (const key of ['churn-offer', 'upgrade-nag']) {
          const history = (await (await t.call(`/v1/experiments/${key}/history`, { key: t.keys.read })).json()) as {
            history: { updated_by: string; change: string }[];
          };
          assert.equal(history.history.at(-1)!.updated_by, 'wb-decider', `${key} was decided by the platform: ${history.history.at(-1)!.change}`);
          console.log(`${mode}: ${key}: ${history.history.at(-1)!.change.replace(/ \{.*$/, '')}`);
        }
        if (clock) {
          // On the simulated clock the run is measured in the history's days: the decision came
          // after the 14-day minimum and within the 45 days the replay had left, not in seconds.
          const { results: report } = (await (await t.call('/v1/experiments/churn-offer/results', { key: t.keys.read })).json()) as {
            results: { firstExposure?: string; asOf?: string };
          };
          const days = (Date.parse(report.asOf!) - Date.parse(report.firstExposure!)) / 86_400_000;
          assert.ok(days >= 14 && days <= app.days - EXPERIMENTS_FROM_DAY + 1, `churn-offer ran ${days} simulated days`);
          const history = (await (await t.call('/v1/experiments/churn-offer/history', { key: t.keys.read })).json()) as { history: { change: string }[] };
          assert.match(history.history.at(-1)!.change, /1\d\.\d days run \(minimum 14\.0 days\)/);
          // The hook starts the experiments when the app reaches day 50, while the last batches of
          // day 49 are still on their way (the replay reads a few batches ahead): those may expose.
          const first = Date.parse(report.firstExposure!);
          assert.ok(
            first >= calendar + (EXPERIMENTS_FROM_DAY - 1) * 86_400_000,
            `first exposure ${report.firstExposure} is on simulated day ${EXPERIMENTS_FROM_DAY - 1} or later`,
          );
          assert.ok(
            first < calendar + (EXPERIMENTS_FROM_DAY + 1) * 86_400_000,
            `first exposure ${report.firstExposure} is by simulated day ${EXPERIMENTS_FROM_DAY}`,
          );
        }
      } finally {
        await oltp.close();
        await t.stop();
      }
    });
  }
});
