import { ExperimentClient } from '../workbench/experiments/client.js';
import { ExperimentSchema, type ExperimentInput } from '../workbench/experiments/definition.js';
import type { Progress } from '../workbench/progress.js';
import { AppSimulator, type TreatmentEffect } from './simulator.js';

const DAY_MS = 86_400_000;

export interface SimulatedExperiment {
  /** The service, and a key with the admin scope (it creates the experiment and sends events). */
  url: string;
  key: string;
  experiment: ExperimentInput;
  /** The true effect of each arm on its exposed users. */
  effects: Record<string, TreatmentEffect>;
  users: number;
  /** Days of history, ending yesterday (at most 28: ingest takes events up to 30 days old). */
  days: number;
  /** The day the experiment starts running. */
  fromDay: number;
  seed?: number;
  progress?: Progress;
}

/**
 * Runs an experiment on the simulated product through a service, on real timestamps: the
 * simulator's last `days` days are sent to the service day by day; on `fromDay` the experiment is
 * created running, and from then on the simulator applies the arms' true effects to the users the
 * platform exposes (the same definition, the same hash). Returns the number of events sent.
 */
export async function runSimulatedExperiment(o: SimulatedExperiment): Promise<{ events: number }> {
  if (o.days > 28) throw new RangeError(`days must be at most 28 (the service takes events up to 30 days old), not ${o.days}`);
  const start = new Date(Date.now() - (o.days + 1) * DAY_MS).toISOString().slice(0, 10);
  const sim = new AppSimulator({ users: o.users, days: o.days, seed: o.seed ?? 42, start, signup_days: Math.max(1, Math.floor(o.fromDay * 0.7)) });
  const client = new ExperimentClient(o.url, o.key);
  const task = o.progress?.task('sending the simulated product', o.days, 'days');
  let events = 0;
  for (;;) {
    if (sim.day === o.fromDay) {
      await client.create({ ...o.experiment, status: 'running' });
      sim.runTreatments([{ experiment: ExperimentSchema.parse({ ...o.experiment, status: 'running' }), fromDay: o.fromDay, effects: o.effects }]);
    }
    const next = sim.days().next();
    if (next.done) break;
    const batch = next.value.events;
    for (let i = 0; i < batch.length; i += 5_000) {
      const res = await fetch(`${o.url}/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${o.key}`, 'content-type': 'application/json' },
        body: JSON.stringify(batch.slice(i, i + 5_000)),
      });
      const body = (await res.json()) as { accepted?: number; rejected?: { reason: string }[]; error?: { message: string } };
      if (!res.ok) throw new Error(`the service refused a batch: ${res.status} ${body.error?.message ?? ''}`);
      if (body.rejected?.length) throw new Error(`the service rejected ${body.rejected.length} events, e.g. ${body.rejected[0]!.reason}`);
      events += body.accepted ?? 0;
    }
    task?.update(sim.day);
  }
  task?.finish(`${events.toLocaleString('en-US')} events`);
  return { events };
}
