import type { AppSimulator } from '../app/simulator.js';
import type { ExperimentPlatform } from '../serving/experiments/platform.js';
import { ExperimentSchema, type ExperimentInput, type Metric } from '../workbench/experiments/definition.js';
import { METRICS } from '../workbench/experiments/metrics.js';
import type { OltpStore } from '../workbench/oltp/store.js';

/**
 * The two experiments `npm start` runs on the simulated product, whose true effects the simulator
 * knows:
 * - churn-offer: users the published churn model scores among the riskiest 40% get an offer that
 *   keeps them (fewer churn, more logins); the platform should find it better and ship it;
 * - upgrade-nag: a nagging upgrade prompt that drives users away; the platform should roll it back
 *   on its guard-rail (logins) on its own.
 * The replay compresses time (86,400x plays a day a second), so every duration (metric windows,
 * pre-exposure periods, minimum run times) is given in simulated days and scaled to the replay.
 */
export const EXPERIMENTS_FROM_DAY = 50;
const RISKIEST_SHARE = 0.4;

export function demoExperiments(scale: number): ExperimentInput[] {
  const common = { exposureEvent: 'login', minRunDays: 14 * scale, decisions: { ship: 'auto' as const, rollback: 'auto' as const } };
  return [
    {
      key: 'churn-offer',
      hypothesis: 'An offer to the users the churn model scores riskiest keeps them: more logins in the 14 days after exposure',
      arms: [
        { key: 'control', weight: 0.5 },
        { key: 'offer', weight: 0.5 },
      ],
      objective: 'logins',
      guardrails: [{ metric: 'cancellation', bad: 'increase', tolerance: 0.5 }],
      mde: 0.05,
      ...common,
    },
    {
      key: 'upgrade-nag',
      hypothesis: 'A stronger upgrade prompt makes more users upgrade',
      arms: [
        { key: 'control', weight: 0.5 },
        { key: 'nag', weight: 0.5 },
      ],
      objective: 'upgrade',
      guardrails: [{ metric: 'logins', bad: 'decrease', tolerance: 0.02 }],
      mde: 0.1,
      ...common,
    },
  ];
}

/** The metric catalog on the replay's clock. */
export function scaledMetrics(scale: number): Metric[] {
  return METRICS.map((m) => ({ ...m, windowDays: m.windowDays * scale, preExposureDays: m.preExposureDays * scale }));
}

/**
 * Creates the experiments (drafts) unless an earlier run did, and returns the replay's day hook:
 * on the start day it starts them in the service and in the simulator (with the true effects), and
 * every day it passes the app the churn scores the service precomputed into OLTP, and ends the
 * effects of an experiment the platform rolled back (its users are back in control).
 */
export async function prepareDemoExperiments(
  platform: ExperimentPlatform,
  oltp: OltpStore,
  scale: number,
  say: (line: string) => void,
): Promise<((day: number, sim: AppSimulator) => Promise<void>) | undefined> {
  const inputs = demoExperiments(scale);
  const existing = inputs.filter((e) => platform.experiments.list().some((s) => s.experiment.key === e.key));
  if (existing.length > 0) {
    say(
      `experiments: ${existing.map((e) => e.key).join(', ')} exist from an earlier run (the replay's events are already in the log); see them with npx wb experiments list`,
    );
    return undefined;
  }
  for (const e of inputs) await platform.experiments.create(e, 'wb start');
  return async (day, sim) => {
    if (day < EXPERIMENTS_FROM_DAY) return;
    const scores = new Map<string, number>();
    for await (const batch of oltp.scan('predictions')) for (const p of batch) if (p.model === 'app-churn') scores.set(p.user_id, p.score);
    sim.setScores(scores);
    if (day === EXPERIMENTS_FROM_DAY) {
      const sorted = [...scores.values()].sort((a, b) => a - b);
      const threshold = sorted.length > 0 ? sorted[Math.floor(sorted.length * (1 - RISKIEST_SHARE))]! : Number.POSITIVE_INFINITY;
      for (const e of inputs) {
        const s = platform.experiments.get(e.key);
        await platform.experiments.setStatus(e.key, 'running', s.version, 'wb start', `simulated day ${day}`);
      }
      const [offer, nag] = inputs.map((e) => ExperimentSchema.parse({ ...e, status: 'running' }));
      sim.runTreatments([
        { experiment: offer!, fromDay: day, effects: { offer: { churnLogOdds: -3, loginLogOdds: 1, minScore: threshold } } },
        { experiment: nag!, fromDay: day, effects: { nag: { churnLogOdds: 1.5, loginLogOdds: -0.3, upgradeLogOdds: 0.2 } } },
      ]);
      say(`experiments churn-offer and upgrade-nag started on simulated day ${day} (offer to churn scores >= ${threshold.toFixed(3)})`);
    }
    for (const s of platform.experiments.list()) if (s.experiment.status === 'rolled_back') sim.endTreatment(s.experiment.key);
  };
}
