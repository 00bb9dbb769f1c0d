import { Option, type Command } from 'commander';
import { join, relative } from 'node:path';
import { appSource, retailSource } from '../app/replay.js';
import { SimulationConfigSchema } from '../app/simulator.js';
import { KeyStore } from '../serving/auth/keys.js';
import { createLogger } from '../serving/observability/logger.js';
import { startService } from '../serving/service.js';
import { consoleProgress, dataDir, findDag, oltpUrl, runDag } from '../workbench/index.js';
import { addBuildOptions, printBuildReport, runBuild, type LakeBuildFlags } from './lake.js';
import { intOption } from './main.js';
import { runReplay } from './replay.js';
import { prepareDemoExperiments, scaledMetrics } from './start-experiments.js';
import { openOltp } from '../workbench/oltp/index.js';
import { SimulatedClock } from '../workbench/clock.js';
import { APP_CHURN_WARM_UP_MS } from '../workbench/pipelines/app-churn.js';

const START_KEY_NAME = 'wb start (local)';
/** The simulator's telemetry at its defaults (120 ms responses, a purchase after half the logins and feature uses). */
const APP_TELEMETRY = SimulationConfigSchema.shape.telemetry.unwrap().parse({});

/**
 * `npm start`: the main job on embedded defaults. Builds the lakehouse, starts the service, replays
 * the retail log and the simulated app through it, and prints the dashboard's address; runs until
 * Ctrl-C. `--no-serve` stops after the build.
 */
export function registerStart(program: Command): void {
  addBuildOptions(
    program
      .command('start')
      .description('build the lakehouse, start the service and replay the data through it (no servers to install); Ctrl-C stops')
      .option('--no-serve', 'only build the lakehouse (and train)')
      .option('--no-train', 'do not run the training jobs before starting the service')
      .option('--port <n>', 'port of the service (env WB_PORT)', intOption('--port', 0), Number(process.env.WB_PORT ?? 8080))
      .option('--speed <x>', 'replay speed in simulated seconds per second (86400: a day a second)', '86400')
      .addOption(
        new Option(
          '--clock <clock>',
          "the service's time: simulated (the replay's: features, experiments and the dashboard in the history's time) or wall (the machine's; events restamped as they are sent)",
        )
          .choices(['simulated', 'wall'])
          .default('simulated'),
      ),
  ).action(async (flags: LakeBuildFlags & { serve: boolean; train: boolean; port: number; speed: string; clock: 'simulated' | 'wall' }) => {
    const data = dataDir(program.opts().dataDir);
    const report = await runBuild(flags, program.opts().dataDir);
    printBuildReport(report);
    if (flags.train) {
      // The training jobs, as `wb jobs run` would: each publishes to the registry past its gate.
      for (const name of ['app-churn', 'retail-propensity']) {
        const run = await runDag(findDag(name), {
          dataDir: data,
          progress: consoleProgress(),
          trigger: 'wb start',
          params: flags.oltp ? { oltp: flags.oltp } : {},
        });
        const trained = run.steps.find((s) => s.job === 'train')?.outputs;
        const published = run.steps.find((s) => s.job === 'publish')?.outputs;
        console.log(
          `${name}: ${run.status}${trained ? `, test ROC AUC ${Number(trained.roc_auc).toFixed(3)}` : ''}` +
            `${published ? (published.published ? (published.unchanged ? `, ${published.message}` : `, published ${published.version} as ${published.alias}`) : `, not published (${published.reason})`) : ''}`,
        );
      }
    }
    const lake = relative(process.cwd(), report.lake) || '.';
    if (!flags.serve) {
      console.log(
        `\nNext:\n  npx wb lake info                 what is in ${lake}, and its views\n  jupyter notebook notebooks/      open the notebooks (kernel "TypeScript (plg-workbench)")\n  npm start                        also start the service and its live dashboard`,
      );
      return;
    }

    // One local key for this run (ingest for the replay, read for the dashboard); the previous run's is revoked.
    const keys = KeyStore.open(join(data, 'keys.json'));
    for (const k of keys.list()) if (k.name === START_KEY_NAME && !k.revoked_at) keys.revoke(k.id);
    const { key } = keys.create(START_KEY_NAME, ['ingest', 'read']);
    const logger = createLogger(data, { quiet: true });
    // Every login of the app is scored with the churn model and the score written to OLTP (precompute).
    const speed = flags.speed === 'max' ? Number.POSITIVE_INFINITY : Number(flags.speed);
    const appDays = SimulationConfigSchema.parse({ days: flags.days }).days;
    // With the app's telemetry (response times on logins, add-on purchases), so the monitor watches
    // revenue and latency too. Drawn from streams of their own: the users behave as in the
    // lakehouse's history (built without it), and the churn model's features count no purchases.
    const app = appSource(
      { seed: flags.seed, users: flags.users, days: flags.days, start: flags.start, telemetry: APP_TELEMETRY },
      { beforeDay: (day, sim) => beforeDay?.(day, sim) ?? Promise.resolve() },
    );
    // One clock: the service lives in the history's time, which starts standing at the app's first
    // day and is driven by the replay. On the wall clock, experiment durations are simulated days
    // scaled to the replay (a day lasts 1/speed of one) and events are restamped as they are sent.
    const clock = flags.clock === 'simulated' ? new SimulatedClock(app.origin!) : undefined;
    const scale = clock ? 1 : Number.isFinite(speed) && speed > 0 ? 1 / speed : 1 / 86_400;
    const service = await startService({
      clock,
      dataDir: data,
      port: flags.port,
      host: '127.0.0.1',
      oltpUrl: oltpUrl(flags.oltp),
      logger,
      // From the day the churn model's training moments start: the replay plays the history it was
      // trained on from its first day, when every window is still short.
      precompute: [{ event: 'login', model: 'app-churn', from: app.origin! + APP_CHURN_WARM_UP_MS }],
      metrics: clock ? undefined : scaledMetrics(scale),
    });
    const oltp = await openOltp(oltpUrl(flags.oltp), data);
    const beforeDay = await prepareDemoExperiments(service.experiments, oltp, scale, (line) => console.log(line));
    console.log(`
The service is running (logs: ${relative(process.cwd(), join(data, 'logs')) || '.'}/, or \`npx wb logs\`).
  dashboard:  ${service.url}/dashboard#key=${key}
  API:        ${service.url}/v1/openapi.json  (key for this run: ${key})
  lakehouse:  ${lake}  (npx wb lake info; live events appear in the live_events view)
  notebooks:  jupyter notebook notebooks/   or   npx wb nb run notebooks/01-lakehouse-tour.ipynb
  models:     npx wb models list; logins are scored with app-churn into the OLTP predictions table
  experiments: ${service.url}/experiments/churn-offer#key=${key}  and  upgrade-nag (npx wb experiments list)
  predict:    curl -s ${service.url}/v1/predict -H "Authorization: Bearer ${key}" -H 'content-type: application/json' -d '{"model":"app-churn","user_id":"u000001"}'
Replaying the simulated app's ${appDays} days, and the retail log's first ${appDays} alongside, through the service; Ctrl-C stops.
${clock ? `The service runs on the replay's simulated clock, from ${new Date(clock.now()).toISOString().slice(0, 10)} at ${fmtSpeed(speed)} (--clock wall: the machine's).` : "The service runs on the machine's clock; events are restamped as they are sent."}
`);
    const stop = new AbortController();
    process.once('SIGINT', () => stop.abort());
    process.once('SIGTERM', () => stop.abort());
    await runReplay({
      url: service.url,
      key,
      sources: [retailSource(), app],
      // The history ends with the app's (its users are the ones the service scores and experiments
      // on): past it the app's users would all look idle for months, far from what the model learnt.
      days: appDays,
      ...(clock ? { simulated: { clock, calendar: app.origin! } } : {}),
      speed,
      concurrency: 1,
      progress: consoleProgress(),
      signal: stop.signal,
    }).catch((err: unknown) => console.error(`replay stopped: ${(err as Error).message}`));
    // Past the end of the history, simulated time goes on at the machine's pace.
    clock?.run(1);
    if (!stop.signal.aborted) {
      console.log(`\nThe replay is done; the service keeps running: ${service.url}/dashboard#key=${key} (Ctrl-C stops).`);
      await new Promise((resolve) => stop.signal.addEventListener('abort', resolve));
    }
    console.log('stopping the service...');
    await oltp.close();
    await service.stop();
    logger.flush();
  });
}

function fmtSpeed(speed: number): string {
  if (!Number.isFinite(speed)) return 'full speed';
  return speed >= 86_400 ? `${(speed / 86_400).toLocaleString('en-US')} simulated day(s) a second` : `${speed.toLocaleString('en-US')}x`;
}
