import { fingerprintOf, type AppHistory, type Event, type OltpStore } from '../workbench/index.js';
import { AppSimulator, FEATURES, type SimulationConfig } from './simulator.js';

/** Bumped when the simulator's behaviour changes, so that lakehouses built by older code are rebuilt. */
export const SIMULATOR_VERSION = 1;

/**
 * Runs the simulation, writes its users to the OLTP database (the app's own table), and returns its
 * events and ground truth for the lakehouse build.
 */
export async function simulateIntoOltp(config: SimulationConfig, oltp: OltpStore): Promise<AppHistory> {
  const sim = new AppSimulator(config);
  const events: Event[] = [];
  for (const day of sim.days()) for (const e of day.events) events.push(e);
  await oltp.upsertUsers(sim.currentUsers());
  const truth = sim.truth();
  const truthUsers = truth.users.map((u) => ({
    user_id: u.user_id,
    engagement: u.engagement,
    churn_hazard: u.churn_hazard,
    churn_30d: u.churn_30d,
    ...Object.fromEntries(FEATURES.map((f) => [`usage_${f}`, u.usage[f]])),
    upgraded_at: u.upgraded_at,
    churned_at: u.churned_at,
  }));
  return {
    fingerprint: fingerprintOf({ version: SIMULATOR_VERSION, config }),
    describe: `simulator (seed ${config.seed}, ${config.users} users, ${config.days} days from ${config.start})`,
    load: () => ({ events, truthUsers, truthMeta: { config: truth.config, features: truth.features, effects: truth.effects } }),
  };
}
