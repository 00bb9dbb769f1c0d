/**
 * The service of bench:serving's deploy scenario, in a process of its own, on the default data
 * (the simulated app's defaults and the retail log's first days alongside, as `npm start` plays them).
 *
 *   node --import tsx bench/serving-deploy-server.ts replay <data dir>
 *     starts the service on a simulated clock, replays the data through it as fast as it takes them,
 *     waits until every consumer (the archiver among them) has caught up, stops, and writes where the
 *     simulated clock stood to <data dir>/bench-clock.json;
 *   node --import tsx bench/serving-deploy-server.ts serve <data dir> [--rebuild]
 *     starts the service on that data with the simulated clock running at 1x from there, and prints
 *     `service on <url>`. --rebuild: new features are computed from the whole log (the old path).
 *     SIGUSR2 prints `loop-delay {"max_ms","p99_ms","gc"}`, the event loop's delays since the previous
 *     SIGUSR2 (perf_hooks.monitorEventLoopDelay, 1 ms resolution) and the main thread's GC pauses
 *     (`gc`: {ms, max_ms, count, pauses}, each pause as [start, ms] with its start in ms since the
 *     epoch, `performance.timeOrigin` based, so the bench can line them up with its requests), and
 *     starts counting again.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { appSource, retailSource } from '../src/app/replay.js';
import { SimulationConfigSchema } from '../src/app/simulator.js';
import { runReplay } from '../src/cli/replay.js';
import { createLogger } from '../src/serving/observability/logger.js';
import { startService } from '../src/serving/service.js';
import { SimulatedClock } from '../src/workbench/clock.js';

const [mode, dataDir] = process.argv.slice(2);
const rebuild = process.argv.includes('--rebuild');
const clockFile = (dir: string) => join(dir, 'bench-clock.json');

async function replay(dir: string): Promise<void> {
  const app = appSource({});
  const clock = new SimulatedClock(app.origin!);
  const logger = createLogger(dir, { quiet: true });
  const service = await startService({ clock, dataDir: dir, port: 0, host: '127.0.0.1', logger });
  const key = process.env.BENCH_INGEST_KEY!;
  const summary = await runReplay({
    url: service.url,
    key,
    sources: [retailSource(), app],
    days: SimulationConfigSchema.parse({}).days,
    simulated: { clock, calendar: app.origin! },
    speed: Number.POSITIVE_INFINITY,
    batch: 2000,
    concurrency: 2,
  });
  // Every consumer, the archiver among them, has the whole log before the service stops.
  const runners = () => [...service.runners, ...service.features.runners];
  for (let waited = 0; waited < 120_000; waited += 100) {
    const end = await service.log.next();
    if (runners().every((r) => r.offset >= end)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const end = await service.log.next();
  writeFileSync(clockFile(dir), JSON.stringify({ now: clock.now(), events: end }));
  console.log(`replayed ${summary.accepted} events (${end} in the log) in ${(summary.elapsedMs / 1000).toFixed(1)} s`);
  await service.stop();
  logger.flush();
}

async function serve(dir: string): Promise<void> {
  const { now } = JSON.parse(readFileSync(clockFile(dir), 'utf8')) as { now: number };
  const clock = new SimulatedClock(now);
  clock.run(1);
  const logger = createLogger(dir, { quiet: true });
  const service = await startService({ clock, dataDir: dir, port: 0, host: '127.0.0.1', logger, featureBootstrap: !rebuild });
  // Ready once every consumer has read what the log held on start (they resume from snapshots and commits).
  const end = await service.log.next();
  while (![...service.runners, ...service.features.runners].every((r) => r.offset >= end)) await new Promise((r) => setTimeout(r, 50));
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  // The main thread's GC pauses (V8 reports each with its duration), summed and the longest.
  const fresh = () => ({ ms: 0, max_ms: 0, count: 0, pauses: [] as [number, number][] });
  let gc = fresh();
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gc.ms += e.duration;
      gc.max_ms = Math.max(gc.max_ms, e.duration);
      gc.count++;
      // The steady load's thousands are not needed: the bench lines up the deploy's with its requests.
      if (gc.pauses.length < 10_000) gc.pauses.push([performance.timeOrigin + e.startTime, e.duration]);
    }
  }).observe({ entryTypes: ['gc'] });
  process.on('SIGUSR2', () => {
    console.log(`loop-delay ${JSON.stringify({ max_ms: delay.max / 1e6, p99_ms: delay.percentile(99) / 1e6, gc })}`);
    delay.reset();
    gc = fresh();
  });
  console.log(`service on ${service.url}`);
  process.once('SIGTERM', () => {
    void service.stop().then(() => {
      logger.flush();
      process.exit(0);
    });
  });
}

(mode === 'replay' ? replay(dataDir!) : serve(dataDir!)).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
