import type { Command } from 'commander';
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { AppSimulator, SimulationConfigSchema, streamSimulation } from '../app/simulator.js';
import { InputError } from '../workbench/errors.js';
import { consoleProgress } from '../workbench/progress.js';
import { intOption } from './main.js';

interface SimulateFlags {
  users: number;
  days: number;
  seed: number;
  start: string;
  out?: string;
  live?: boolean;
  speed: string;
  clock: 'simulated' | 'wall';
}

/** `wb app simulate`: the simulated product's events as NDJSON, as a batch or as a paced live stream. */
export function registerApp(program: Command): void {
  const app = program.command('app').description('the simulated SaaS product (stage 1)');
  const sim = SimulationConfigSchema.parse({});
  app
    .command('simulate')
    .description('write the simulated events as NDJSON (event_id, time, user_id, event, props)')
    .option('--users <n>', 'number of users', intOption('--users', 1), sim.users)
    .option('--days <n>', 'days of history', intOption('--days', 1), sim.days)
    .option('--seed <n>', 'random seed', intOption('--seed', 0), sim.seed)
    .option('--start <date>', 'first day (YYYY-MM-DD)', sim.start)
    .option('--out <file>', 'write to a file instead of standard output')
    .option('--live', 'stream in real time instead of writing the whole history at once')
    .option('--speed <x>', 'with --live: simulated seconds per real second (86400 = a day per second)', '86400')
    .option('--clock <clock>', 'with --live: stamp events with simulated time or wall-clock time (simulated|wall)', 'simulated')
    .action(async (flags: SimulateFlags) => {
      const parsed = SimulationConfigSchema.safeParse({ users: flags.users, days: flags.days, seed: flags.seed, start: flags.start });
      if (!parsed.success) throw new InputError(`--${String(parsed.error.issues[0]!.path[0])}: ${parsed.error.issues[0]!.message}`);
      const speed = Number(flags.speed);
      if (!(speed > 0)) throw new InputError(`--speed must be a positive number, got ${JSON.stringify(flags.speed)}`);
      if (flags.clock !== 'simulated' && flags.clock !== 'wall') throw new InputError(`--clock must be simulated or wall, got ${JSON.stringify(flags.clock)}`);
      const out = flags.out ? createWriteStream(flags.out) : process.stdout;
      const write = async (line: string) => {
        if (!out.write(line)) await once(out, 'drain');
      };
      let n = 0;
      if (flags.live) {
        const controller = new AbortController();
        process.once('SIGINT', () => controller.abort());
        try {
          for await (const e of streamSimulation(parsed.data, { speed, clock: flags.clock, signal: controller.signal })) {
            await write(`${JSON.stringify(e)}\n`);
            n++;
          }
        } catch (err) {
          if (!controller.signal.aborted) throw err;
        }
      } else {
        const task = consoleProgress().task('simulating', parsed.data.days, 'rows');
        let days = 0;
        for (const day of new AppSimulator(parsed.data).days()) {
          for (const e of day.events) await write(`${JSON.stringify(e)}\n`);
          n += day.events.length;
          task.update(++days);
        }
        task.finish(`${days} days`);
      }
      if (flags.out) {
        out.end();
        await once(out, 'finish');
      }
      console.error(`${n.toLocaleString('en-US')} events written${flags.out ? ` to ${flags.out}` : ''}`);
    });
}
