/**
 * What a notebook imports: the whole workbench, plus the two things a notebook needs from outside
 * it to be self-contained (a service in the process, and an experiment run on the simulated
 * product). They live here, not in src/workbench, because the workbench imports neither the service
 * nor the app (DESIGN.md, dependency direction): like the CLI, this module sits above all three.
 *
 * In a notebook: `import { openLakehouse, startEmbeddedService, show } from './src/notebook';`
 */
import { runSimulatedExperiment as runOnSimulator, type SimulatedExperiment } from './app/experiment-run.js';
import { startEmbeddedService as startInProcess } from './serving/embedded.js';

export * from './workbench/index.js';

/**
 * Starts the service in this process on a fresh data dir and a free port, with an admin and a read
 * key: for a notebook that needs a service when none is running. Stop it with `stop()`.
 *
 * @example
 * ```ts
 * const embedded = await startEmbeddedService('.wb/notebook-05');
 * const client = new ExperimentClient(embedded.url, embedded.keys.admin);
 * console.log(await client.metrics());
 * await embedded.stop();
 * ```
 */
export const startEmbeddedService: typeof startInProcess = (dataDir, config) => startInProcess(dataDir, config);

/**
 * Runs an experiment on the simulated product through a service: the simulator's last `days` days
 * are sent day by day, the experiment starts on `fromDay`, and the arms' true `effects` apply to
 * the users the platform exposes. Returns the number of events sent.
 *
 * @example
 * ```ts
 * const { events } = await runSimulatedExperiment({
 *   url: embedded.url,
 *   key: embedded.keys.admin,
 *   users: 1500,
 *   days: 28,
 *   fromDay: 14,
 *   experiment: {
 *     key: 'churn-offer',
 *     hypothesis: 'An offer keeps users',
 *     arms: [{ key: 'control', weight: 0.5 }, { key: 'offer', weight: 0.5 }],
 *     exposureEvent: 'login',
 *     objective: 'logins',
 *     mde: 0.05,
 *   },
 *   effects: { offer: { churnLogOdds: -2, loginLogOdds: 0.7 } },
 * });
 * ```
 */
export const runSimulatedExperiment = (experiment: SimulatedExperiment): Promise<{ events: number }> => runOnSimulator(experiment);
