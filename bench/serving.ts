/**
 * Serving benchmark (npm run bench:serving), against `wb serve` in a child process on loopback:
 *   - POST /v1/predict at a fixed 1,000 requests/s (open loop: latency counts from when each
 *     request was due or sent, whichever is later, so a stall is not hidden), p50 and p99, and the ratio to a no-op route
 *     (GET /healthz) at the same rate in the same run (goal: p99 under 2 ms);
 *   - time to deploy: a new version published as champion while that load runs, until the first
 *     prediction from it, and the requests that failed meanwhile (goal: under 1 s, none);
 *   - a deploy with a new feature on the default data (the simulated app's defaults and the retail
 *     log's first 120 days alongside, replayed through a service on a simulated clock, as `npm
 *     start` plays them; two models served): a model reading a feature the service does not serve
 *     yet is published while the app model is predicted at the same fixed rate, until the new model's
 *     first prediction (goal: under 2 s), with the app model's p50 and p99 in that window (goal: p99
 *     under 5 ms, over the requests of BENCH_DEPLOY_RUNS deploys pooled, default 3), and the server's CPU per prediction. The new feature starts from the lakehouse
 *     archive (in a worker thread); the baseline, in the same run on a copy of the same data, computes it from the
 *     whole log (`featureBootstrap: false`). BENCH_DEPLOY=0 leaves this part out. Beside it, what the
 *     machine does to any process's tail (`machine`): the kernel's memory-access sampling, and a
 *     process sleeping 1 ms at a time holding nothing and holding the service's size (stall-probe.ts).
 * Ends with one JSON line.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { quantile, round, startServer, stopServer } from './support.js';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { join } from 'node:path';
import { KeyStore } from '../src/serving/auth/keys.js';
import { registryDir } from '../src/workbench/config.js';
import { appFeatures, retailFeatures } from '../src/workbench/features/catalog.js';
import { featureSet, type Feature } from '../src/workbench/features/definition.js';
import { ModelRegistry } from '../src/workbench/models/registry.js';
import { createBundle, type ModelBundle } from '../src/workbench/models/bundle.js';
import { columnsFor } from '../src/workbench/models/preprocess.js';
import { publish } from '../src/workbench/models/publish.js';
import { trainClassifier } from '../src/workbench/models/train.js';

const RATE = Number(process.env.BENCH_RATE ?? 1000);
/**
 * The rate of the deploy with a new feature: on the default data a prediction costs the service
 * about 0.8 ms of CPU (its events go through every consumer: 24 features, the archive, the
 * aggregates), so 1,000/s keeps a core busy on its own and the latencies measure queueing, deploy
 * or not; at this rate the steady state has room, and what the deploy adds shows.
 */
const DEPLOY_RATE = Number(process.env.BENCH_DEPLOY_RATE ?? 250);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const USERS = 1000;

interface LoadResult {
  latencies: number[];
  /** When each answered request was due or sent, whichever is later (performance.now()), in the order of `latencies`. */
  from: number[];
  /** Handler time the service reports (Server-Timing), in ms. */
  server: number[];
  failures: number;
  /** The first few failures: status and body, or the error. */
  failed: string[];
  /** (time answered, model version) of each prediction. */
  versions: { at: number; version: string }[];
}

interface Answer {
  status: number;
  body: unknown;
  serverMs?: number;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/**
 * A request on a kept-alive connection (lighter than fetch, so the load generator adds less noise).
 * A kept-alive connection the service closed as idle just as this request went out is reset; the
 * request is then sent again on a new one, as Node's documentation advises (`request.reusedSocket`),
 * and its latency still counts from the first send.
 */
function call(url: string, method: string, headers: Record<string, string>, body?: string, retried = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const timing = /dur=([\d.]+)/.exec(String(res.headers['server-timing'] ?? ''));
        resolve({
          status: res.statusCode ?? 0,
          body: JSON.parse(Buffer.concat(chunks).toString() || 'null'),
          serverMs: timing ? Number(timing[1]) : undefined,
        });
      });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (!retried && req.reusedSocket && err.code === 'ECONNRESET') call(url, method, headers, body, true).then(resolve, reject);
      else reject(err);
    });
    req.end(body);
  });
}

/**
 * Sends `request` at a fixed rate for `seconds`, never before its due time. Each latency counts
 * from when the request was due or actually sent, whichever is later: from the due time, a stall of
 * the sender is not hidden; from the send, a request sent late is not charged with the sender's delay.
 */
async function openLoop(
  seconds: number,
  request: () => Promise<Answer>,
  onAnswer?: (body: unknown, at: number) => void,
  /** Stops sending early once it returns true. */
  until?: () => boolean,
  rate = RATE,
): Promise<LoadResult> {
  const result: LoadResult = { latencies: [], from: [], server: [], failures: 0, failed: [], versions: [] };
  const total = Math.round(seconds * rate);
  const started = performance.now();
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < total && !until?.(); i++) {
    const due = started + (i * 1000) / rate;
    // Never before it is due (a request sent early and answered before its due time would count
    // negative time); a timer waits at least a millisecond, so a request may go a little late, and
    // the following ones catch up with the schedule.
    for (let wait = due - performance.now(); wait > 0; wait = due - performance.now()) await new Promise((r) => setTimeout(r, wait));
    const from = Math.max(due, performance.now());
    inflight.push(
      request()
        .then((res) => {
          const now = performance.now();
          if (res.status !== 200) {
            result.failures++;
            if (result.failed.length < 5) result.failed.push(`${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
          } else {
            result.latencies.push(now - from);
            result.from.push(from);
            if (res.serverMs !== undefined) result.server.push(res.serverMs);
            onAnswer?.(res.body, now);
          }
        })
        .catch((err: unknown) => {
          result.failures++;
          if (result.failed.length < 5) result.failed.push(String(err));
        }),
    );
  }
  await Promise.all(inflight);
  return result;
}

async function main(): Promise<void> {
  // BENCH_PART=deploy: only the deploy with a new feature.
  if (process.env.BENCH_PART === 'deploy') {
    console.log(JSON.stringify({ bench: 'serving', deploy_new_feature: await deployWithNewFeature() }));
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'wb-bench-serving-'));
  const store = KeyStore.open(join(dir, 'keys.json'));
  const admin = store.create('bench-admin', ['admin']).key;
  const read = store.create('bench-read', ['read', 'ingest']).key;
  const { child, url } = await startServer(['bin/wb.cjs', '--data-dir', dir, 'serve', '--port', '0', '--quiet']);
  try {
    // A model on four features, and a week of events for 1,000 users.
    const features = featureSet([
      { name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 },
      { name: 'spend_30d', source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: '30d', default: 0 },
      { name: 'since_last_login', source: { event: 'login' }, aggregation: 'time_since_last', window: 'lifetime', default: -1 },
      { name: 'last_items', source: { event: 'purchase' }, aggregation: 'last_n', prop: 'item', n: 10, window: 'lifetime', default: [] },
    ]);
    const rows = Array.from({ length: 2000 }, (_, i) => ({
      logins_7d: i % 9,
      spend_30d: (i * 7) % 300,
      since_last_login: (i * 3600) % 86400,
      last_items: [`i${i % 5}`, `i${i % 3}`],
      y: i % 4 === 0 ? 1 : 0,
    }));
    const [m1, m2] = [
      await trainClassifier(rows, 'y', columnsFor(features), { seed: 1, maxEpochs: 5 }),
      await trainClassifier(rows, 'y', columnsFor(features), { model: 'mlp', hidden: [16], seed: 2, maxEpochs: 5 }),
    ];
    const [v1, v2] = [await createBundle('bench-model', m1, features), await createBundle('bench-model', m2, features)];
    await publish(v1, { url, key: admin, alias: 'champion' });
    const now = Date.now();
    for (let b = 0; b < 10; b++) {
      const batch = Array.from({ length: 1000 }, (_, i) => {
        const n = b * 1000 + i;
        return {
          event_id: `e${n}`,
          time: new Date(now - 3_600_000 + n).toISOString(),
          user_id: `u${n % USERS}`,
          event: n % 3 === 0 ? 'purchase' : 'login',
          props: { amount: n % 50, item: `i${n % 40}` },
        };
      });
      await fetch(`${url}/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${read}`, 'content-type': 'application/json' },
        body: JSON.stringify(batch),
      });
    }
    await new Promise((r) => setTimeout(r, 1000));

    let n = 0;
    const predict = () =>
      call(
        `${url}/v1/predict`,
        'POST',
        { authorization: `Bearer ${read}`, 'content-type': 'application/json' },
        JSON.stringify({ model: 'bench-model', user_id: `u${n++ % USERS}` }),
      );
    const noop = () => call(`${url}/healthz`, 'GET', {});
    await openLoop(2, predict); // warm up
    const base = await openLoop(SECONDS, noop);
    const served = await openLoop(SECONDS, predict);
    console.log(`no-op route at ${RATE}/s: p50 ${round(quantile(base.latencies, 0.5), 2)} ms, p99 ${round(quantile(base.latencies, 0.99), 2)} ms`);
    console.log(
      `/v1/predict at ${RATE}/s: p50 ${round(quantile(served.latencies, 0.5), 2)} ms, p99 ${round(quantile(served.latencies, 0.99), 2)} ms, ${served.failures} failed; in the handler (Server-Timing): p50 ${round(quantile(served.server, 0.5), 3)} ms, p99 ${round(quantile(served.server, 0.99), 3)} ms`,
    );

    // Deploy under load: publish v2 a second into a 4-second run.
    let firstNew = Number.NaN;
    let publishedAt = 0;
    const load = openLoop(4, predict, (body, at) => {
      if ((body as { model: { version: string } }).model.version === v2.version && Number.isNaN(firstNew)) firstNew = at;
    });
    await new Promise((r) => setTimeout(r, 1000));
    publishedAt = performance.now();
    await publish(v2, { url, key: admin, alias: 'champion' });
    const deploy = await load;
    const deployMs = firstNew - publishedAt;
    console.log(
      `deploy under load: first prediction from the new version ${round(deployMs, 0)} ms after publishing started; ${deploy.failures} requests failed`,
    );
    m1.dispose();
    m2.dispose();
    const withFeature = process.env.BENCH_DEPLOY === '0' ? undefined : await deployWithNewFeature();
    const figures = {
      bench: 'serving',
      rate_per_second: RATE,
      seconds: SECONDS,
      predict_p50_ms: round(quantile(served.latencies, 0.5), 2),
      predict_p99_ms: round(quantile(served.latencies, 0.99), 2),
      noop_p50_ms: round(quantile(base.latencies, 0.5), 2),
      noop_p99_ms: round(quantile(base.latencies, 0.99), 2),
      predict_to_noop_p99_ratio: round(quantile(served.latencies, 0.99) / quantile(base.latencies, 0.99), 2),
      predict_handler_p50_ms: round(quantile(served.server, 0.5), 3),
      predict_handler_p99_ms: round(quantile(served.server, 0.99), 3),
      predict_failures: served.failures,
      deploy_ms: round(deployMs, 0),
      deploy_failed_requests: deploy.failures,
      ...(withFeature ? { deploy_new_feature: withFeature } : {}),
      goals_met: {
        predict_p99_under_2ms: quantile(served.latencies, 0.99) < 2,
        deploy_under_1s: deployMs < 1000,
        no_failed_requests: deploy.failures === 0 && served.failures === 0,
        ...(withFeature
          ? {
              new_feature_deploy_under_2s: withFeature.from_archive.publish_to_first_prediction_s < 2,
              predict_p99_during_new_feature_deploy_under_5ms: withFeature.from_archive.deploy_predict_p99_ms < 5,
            }
          : {}),
      },
    };
    console.log(JSON.stringify(figures));
  } finally {
    await stopServer(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

const DEPLOY_SERVER = join(__dirname, 'serving-deploy-server.ts');
const PUBLISHER = join(__dirname, 'serving-publisher.ts');
const STALL_PROBE = join(__dirname, 'stall-probe.ts');
const STEADY_SECONDS = 10;
/**
 * Deploys from the archive per run, each on a fresh copy of the replayed data with a service of its
 * own. One deploy's p99 is over a hundred-odd requests, so it is their second largest: one
 * scheduling hiccup of the machine decides it. The goal is judged on the deploys' requests pooled.
 */
const DEPLOY_RUNS = Math.max(1, Number(process.env.BENCH_DEPLOY_RUNS ?? 3));
const NOOP_SECONDS = 5;
/** This process's event-loop delays (the load generator's), 1 ms resolution. */
const generatorDelay = monitorEventLoopDelay({ resolution: 1 });
generatorDelay.enable();
/** A feature the served models do not read: publishing a model on it makes the service compute it. */
const NEW_FEATURE = {
  name: 'feature_seconds_7d',
  description: 'seconds spent in features in the last 7 days',
  source: { event: 'feature_used' },
  aggregation: 'sum',
  prop: 'duration_s',
  window: '7d',
  default: 0,
} as const;

interface DeployFigures {
  publish_to_first_prediction_s: number;
  /** The app model's latencies for requests due (or sent) from the publish to the new model's first prediction. */
  deploy_predict_p50_ms: number;
  deploy_predict_p99_ms: number;
  deploy_predict_max_ms: number;
  deploy_requests: number;
  deploy_failed_requests: number;
  /** The server's CPU (all threads) from the publish to the first prediction, over what the same load costs without a deploy. */
  deploy_extra_server_cpu_s: number;
  steady_predict_p50_ms: number;
  steady_predict_p99_ms: number;
  /**
   * The steady load cut into windows as long as the deploy, each window's p99: the median and the
   * worst. The deploy's p99 is over a hundred-odd requests, so it is near their maximum; this is what
   * the same statistic gives without a deploy, in the same run.
   */
  steady_window_p99_ms: WindowP99s;
  steady_server_cpu_ms_per_prediction: number;
  /**
   * A no-op route (GET /healthz) at the same rate on the same service, right after the steady load:
   * the floor of this machine (the load generator, the loopback, the service's own background work,
   * two shared cores). A deploy p99 under a floor above 5 ms cannot be seen here.
   */
  noop_p99_ms: number;
  noop_window_p99_ms: WindowP99s;
  /** The deploy's p99 over the median p99 of steady windows as long as it: 1 when a deploy costs serving nothing. */
  deploy_to_steady_window_p99_ratio: number | null;
  /**
   * The load generator's own event loop held at most (this process), in the steady load and during
   * the deploy (where it also sends the bundle): a latency above it may be the generator's, not the service's.
   */
  generator_loop_delay_max_ms: { steady: number; deploy: number };
  goals_met: {
    first_prediction_under_2s: boolean;
    deploy_p99_under_5ms: boolean;
    /** The deploy's p99 no worse than the worst steady window's: the deploy is within the service's own variation. */
    deploy_p99_within_steady_windows: boolean;
  };
  /**
   * The longest the service's event loop was held (perf_hooks.monitorEventLoopDelay, 1 ms
   * resolution) from the publish to the first prediction, and in the steady load: what a request
   * arriving then waited before the service could even read it.
   */
  deploy_loop_delay_max_ms: number;
  steady_loop_delay_max_ms: number;
  /**
   * The main thread's garbage-collection pauses (PerformanceObserver 'gc'): in all and the longest,
   * per second of the steady load and over the deploy. A deploy's new states surviving young-generation
   * collections show here.
   */
  steady_gc_ms_per_s: number;
  steady_gc_max_ms: number;
  deploy_gc_ms: number;
  deploy_gc_max_ms: number;
  /**
   * The deploy's requests slower than the 5 ms goal, and how many of them a GC pause of the service
   * overlapped (from when each was sent or due to its answer): what of the deploy's tail is the
   * collector's, and what is work or a wait for a core.
   */
  deploy_slow_requests: { over_5ms: number; during_gc_pause: number };
  /**
   * How long the service's main thread was runnable but waited for a core (/proc schedstat), per
   * second of the steady load and over the deploy: on 2 cores shared with the load generator, the
   * part of the latencies no code on the event loop causes.
   */
  steady_core_wait_ms_per_s: number;
  deploy_core_wait_ms: number;
  /** The machine's 1-minute load average when the steady load began and when the deploy ended: the latencies depend on it (2 cores, shared). */
  load_average: [number, number];
  /** The service's resident memory after the steady load (/proc VmRSS): what the machine's memory sampling has to walk. */
  service_rss_mb: number;
}

/** A small model on these features (the scores do not matter here, only that it serves them). */
async function bundleOn(name: string, features: readonly Feature[]): Promise<ModelBundle> {
  const rows = Array.from({ length: 400 }, (_, i) => {
    const row: Record<string, number | string[] | number> = { y: i % 4 === 0 ? 1 : 0 };
    for (const f of features) row[f.name] = Array.isArray(f.default) ? [`v${i % 5}`] : (i * 7) % 31;
    return row;
  });
  const model = await trainClassifier(rows as never, 'y', columnsFor(features), { seed: 1, maxEpochs: 3 });
  try {
    return await createBundle(name, model, features);
  } finally {
    model.dispose();
  }
}

/** Each window's p99: their median and the worst; null when the load holds no whole window (a deploy longer than it). */
type WindowP99s = { windows: number; median: number | null; max: number | null };

/** The p99 of each consecutive window of `ms` of a load (by when its requests were due or sent): their median and maximum. */
function windowP99s(load: LoadResult, ms: number): WindowP99s {
  const start = Math.min(...load.from);
  const windows: number[][] = [];
  load.latencies.forEach((latency, i) => (windows[Math.floor((load.from[i]! - start) / ms)] ??= []).push(latency));
  // The last window is cut short by the end of the load: left out, as are gaps (none at a fixed rate).
  const p99s = windows
    .slice(0, -1)
    .filter((w) => w && w.length > 0)
    .map((w) => quantile(w, 0.99));
  if (p99s.length === 0) return { windows: 0, median: null, max: null };
  return { windows: p99s.length, median: round(quantile(p99s, 0.5), 2), max: round(Math.max(...p99s), 2) };
}

/** A process's resident memory in MB (/proc VmRSS; 0 where there is none). */
function residentMb(pid: number): number {
  try {
    return Math.round(Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024);
  } catch {
    return 0;
  }
}

/**
 * What the machine does to any process's tail, whatever the process: the kernel's memory-access
 * sampling (DAMON) where it runs, and the stall probe (bench/stall-probe.ts) holding nothing and
 * holding as much memory as the service. On a machine whose `kdamond` wakes every half second, a
 * process of the service's size wakes late by up to tens of ms a few times in ten seconds, and an
 * empty one does not: a floor under the deploy's p99 that comes with the service's size, not with
 * what its code does at the time.
 */
interface MachineFloor {
  /** Each DAMON monitor: on or off, what it samples (`paddr`: all physical memory), how often. Empty: none. */
  damon: { state: string; operations: string; sample_ms: number }[];
  probe_empty: StallProbe;
  probe_service_size: StallProbe;
}
interface StallProbe {
  held_mb: number;
  wakeups: number;
  late_p99_ms: number;
  late_p999_ms: number;
  late_max_ms: number;
  late_over_5ms: number;
}

const PROBE_SECONDS = 5;

async function machineFloor(serviceMb: number): Promise<MachineFloor> {
  const root = '/sys/kernel/mm/damon/admin/kdamonds';
  const read = (path: string) => {
    try {
      return readFileSync(path, 'utf8').trim();
    } catch {
      return '';
    }
  };
  const damon = (existsSync(root) ? readdirSync(root).filter((d) => /^\d+$/.test(d)) : []).map((d) => ({
    state: read(join(root, d, 'state')),
    operations: read(join(root, d, 'contexts', '0', 'operations')),
    sample_ms: Number(read(join(root, d, 'contexts', '0', 'monitoring_attrs', 'intervals', 'sample_us'))) / 1000,
  }));
  const probe = (mb: number) =>
    new Promise<StallProbe>((resolve, reject) => {
      execFile(process.execPath, ['--import', 'tsx', STALL_PROBE, String(mb), String(PROBE_SECONDS)], (err, stdout) =>
        err ? reject(err) : resolve(JSON.parse(stdout.trim().split('\n').pop()!) as StallProbe),
      );
    });
  return { damon, probe_empty: await probe(0), probe_service_size: await probe(serviceMb) };
}

/** How long a process's main thread has waited for a core while runnable, in ms (/proc schedstat; 0 where there is none). */
function coreWaitMs(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;
  } catch {
    return 0;
  }
}

/** CPU time of a process and its children (user + system, all threads) in seconds, from /proc. */
const clockTicks = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString()) || 100;
  } catch {
    return 100;
  }
})();
function cpuSeconds(pid: number): number {
  const stat = (p: number | string) =>
    readFileSync(`/proc/${p}/stat`, 'utf8')
      .replace(/^.*\) /, '')
      .split(' ');
  // Its own threads, its children that have ended (cutime, cstime), and those running now (the
  // archive bootstrap's worker process): the service's CPU whichever process it spent it in.
  const own = stat(pid);
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  for (const child of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const fields = stat(child);
      if (Number(fields[1]) === pid) ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // Ended meanwhile: counted in cutime from now on.
    }
  }
  return ticks / clockTicks;
}

function runChild(args: string[], env: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, ...env } });
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${args.join(' ')} exited with ${code}`))));
  });
}

/**
 * The default data replayed once into a service (two models served: the app's and the retail
 * log's catalog features), then the same deploy on two copies of it: from the archive, and from
 * the whole log.
 */
/** The deploys from the archive pooled: the slowest first prediction, and the app model's latencies during every deploy together. */
interface PooledDeploys {
  runs: number;
  publish_to_first_prediction_s: number;
  deploy_predict_p50_ms: number;
  deploy_predict_p99_ms: number;
  deploy_predict_max_ms: number;
  deploy_requests: number;
  /** Each deploy's own p99 (over its hundred-odd requests). */
  deploy_predict_p99_ms_each: number[];
  /** The deploys' requests over 5 ms, and those a GC pause overlapped (see DeployFigures). */
  deploy_slow_requests: { over_5ms: number; during_gc_pause: number };
  /** The steady loads before the deploys, pooled: the same statistic without a deploy. */
  steady_predict_p99_ms: number;
  deploy_to_steady_p99_ratio: number;
  goals_met: { first_prediction_under_2s: boolean; deploy_p99_under_5ms: boolean };
}

function pooled(runs: readonly DeployRun[]): PooledDeploys {
  const deploy = runs.flatMap((r) => r.latencies.deploy);
  const steady = runs.flatMap((r) => r.latencies.steady);
  const first = Math.max(...runs.map((r) => r.publish_to_first_prediction_s));
  const p99 = quantile(deploy, 0.99);
  return {
    runs: runs.length,
    publish_to_first_prediction_s: first,
    deploy_predict_p50_ms: round(quantile(deploy, 0.5), 2),
    deploy_predict_p99_ms: round(p99, 2),
    deploy_predict_max_ms: round(
      deploy.reduce((a, b) => Math.max(a, b), 0),
      1,
    ),
    deploy_requests: deploy.length,
    deploy_predict_p99_ms_each: runs.map((r) => r.deploy_predict_p99_ms),
    deploy_slow_requests: {
      over_5ms: runs.reduce((n, r) => n + r.deploy_slow_requests.over_5ms, 0),
      during_gc_pause: runs.reduce((n, r) => n + r.deploy_slow_requests.during_gc_pause, 0),
    },
    steady_predict_p99_ms: round(quantile(steady, 0.99), 2),
    deploy_to_steady_p99_ratio: round(p99 / quantile(steady, 0.99), 2),
    goals_met: { first_prediction_under_2s: first < 2, deploy_p99_under_5ms: p99 < 5 },
  };
}

const figuresOnly = ({ latencies: _latencies, ...figures }: DeployRun): DeployFigures => figures;

async function deployWithNewFeature(): Promise<{
  events: number;
  rate_per_second: number;
  from_archive: PooledDeploys;
  from_archive_runs: DeployFigures[];
  from_log: DeployFigures | null;
  machine: MachineFloor;
}> {
  const dir = mkdtempSync(join(tmpdir(), 'wb-bench-deploy-'));
  const baseline = `${dir}-log`;
  // BENCH_DEPLOY_DATA=<dir>: a data dir this bench replayed before (kept with BENCH_KEEP=1), copied instead of replaying again.
  const reuse = process.env.BENCH_DEPLOY_DATA;
  const copies = Array.from({ length: DEPLOY_RUNS - 1 }, (_, i) => `${dir}-${i + 2}`);
  try {
    if (reuse) cpSync(reuse, dir, { recursive: true });
    const keys = KeyStore.open(join(dir, 'keys.json'));
    const admin = keys.create('bench-admin', ['admin']).key;
    const client = keys.create('bench-client', ['read', 'ingest']).key;
    const next = await bundleOn('app-next', featureSet([...appFeatures, NEW_FEATURE]));
    if (!reuse) {
      const registry = ModelRegistry.open(registryDir(dir));
      for (const [name, features] of [
        ['app', appFeatures],
        ['retail', retailFeatures],
      ] as const) {
        const bundle = await bundleOn(name, features);
        registry.put(bundle);
        registry.setAlias(name, 'champion', bundle.version);
      }
      console.log('\ndeploy with a new feature: replaying the default data into a service...');
      await runChild(['--import', 'tsx', DEPLOY_SERVER, 'replay', dir], { BENCH_INGEST_KEY: client });
    }
    const { events } = JSON.parse(readFileSync(join(dir, 'bench-clock.json'), 'utf8')) as { events: number };
    cpSync(dir, baseline, { recursive: true });
    // Each deploy on a copy of the data as replayed (a deploy changes the served features).
    for (const copy of copies) cpSync(dir, copy, { recursive: true });
    const fromArchiveRuns: DeployRun[] = [];
    for (const data of [dir, ...copies]) {
      fromArchiveRuns.push(await deployRun(data, false, admin, client, next));
      if (data !== dir) rmSync(data, { recursive: true, force: true });
    }
    const fromArchive = pooled(fromArchiveRuns);
    // BENCH_BASELINE=0 leaves the baseline out (its deploy takes a minute or more).
    const fromLog = process.env.BENCH_BASELINE === '0' ? undefined : await deployRun(baseline, true, admin, client, next);
    const runs = [
      ...fromArchiveRuns.map((f, i) => [`from the archive (deploy ${i + 1} of ${DEPLOY_RUNS})`, f] as const),
      ...(fromLog ? [['from the whole log (baseline)', fromLog] as const] : []),
    ];
    for (const [what, f] of runs) {
      console.log(
        `new feature ${what}, the app model predicted at ${DEPLOY_RATE}/s: first prediction of the new model ${f.publish_to_first_prediction_s} s after publishing started; ` +
          `the app model meanwhile: p50 ${f.deploy_predict_p50_ms} ms, p99 ${f.deploy_predict_p99_ms} ms, max ${f.deploy_predict_max_ms} ms over ${f.deploy_requests} requests, ${f.deploy_failed_requests} failed; ` +
          `server CPU ${f.deploy_extra_server_cpu_s} s over the load's (steady: p99 ${f.steady_predict_p99_ms} ms; in windows as long as the deploy, p99 median ${f.steady_window_p99_ms.median ?? 'n/a'} ms, worst ${f.steady_window_p99_ms.max ?? 'n/a'} ms; ${f.steady_server_cpu_ms_per_prediction} ms CPU per prediction); ` +
          `deploy p99 / steady windows' median ${f.deploy_to_steady_window_p99_ratio ?? 'n/a (the deploy is longer than the steady load)'}; this machine's floor, a no-op route at the same rate on the same service: p99 ${f.noop_p99_ms} ms (windows: median ${f.noop_window_p99_ms.median ?? 'n/a'} ms); ` +
          `the load generator's own loop held at most ${f.generator_loop_delay_max_ms.steady} ms steady, ${f.generator_loop_delay_max_ms.deploy} ms during the deploy; ` +
          `goals: first prediction under 2 s ${f.goals_met.first_prediction_under_2s}, deploy p99 under 5 ms ${f.goals_met.deploy_p99_under_5ms}, deploy p99 within the steady windows' ${f.goals_met.deploy_p99_within_steady_windows}; ` +
          `event loop held at most ${f.deploy_loop_delay_max_ms} ms during the deploy (steady: ${f.steady_loop_delay_max_ms} ms); ` +
          `GC paused it ${f.deploy_gc_ms} ms in all, at most ${f.deploy_gc_max_ms} ms at once, during the deploy (steady: ${f.steady_gc_ms_per_s} ms a second, at most ${f.steady_gc_max_ms} ms); ` +
          `${f.deploy_slow_requests.over_5ms} of the deploy's requests over 5 ms, ${f.deploy_slow_requests.during_gc_pause} of them during a GC pause; ` +
          `the main thread waited for a core ${f.deploy_core_wait_ms} ms during the deploy (steady: ${f.steady_core_wait_ms_per_s} ms a second); ` +
          `load average ${f.load_average.join(' -> ')}`,
      );
    }
    const machine = await machineFloor(Math.max(...fromArchiveRuns.map((r) => r.service_rss_mb)));
    const on = machine.damon.filter((m) => m.state === 'on');
    const probed = (p: StallProbe) => `${p.late_over_5ms} wake-ups over 5 ms late in ${PROBE_SECONDS} s (p99.9 ${p.late_p999_ms} ms, max ${p.late_max_ms} ms)`;
    console.log(
      `this machine, whatever the process: the kernel's memory-access sampling (DAMON) ${on.length > 0 ? on.map((m) => `on (${m.operations}, every ${m.sample_ms} ms)`).join(', ') : 'off or absent'}; ` +
        `a process sleeping 1 ms at a time: holding nothing, ${probed(machine.probe_empty)}; holding ${machine.probe_service_size.held_mb} MB (the service's size), ${probed(machine.probe_service_size)}`,
    );
    const f = fromArchive;
    console.log(
      `the ${f.runs} deploys from the archive pooled: first prediction at most ${f.publish_to_first_prediction_s} s; the app model meanwhile: p50 ${f.deploy_predict_p50_ms} ms, ` +
        `p99 ${f.deploy_predict_p99_ms} ms (each deploy's: ${f.deploy_predict_p99_ms_each.join(', ')} ms), max ${f.deploy_predict_max_ms} ms over ${f.deploy_requests} requests, ` +
        `${f.deploy_slow_requests.over_5ms} over 5 ms (${f.deploy_slow_requests.during_gc_pause} during a GC pause); ` +
        `the steady loads pooled: p99 ${f.steady_predict_p99_ms} ms (ratio ${f.deploy_to_steady_p99_ratio}); ` +
        `goals: first prediction under 2 s ${f.goals_met.first_prediction_under_2s}, deploy p99 under 5 ms ${f.goals_met.deploy_p99_under_5ms}`,
    );
    return {
      events,
      rate_per_second: DEPLOY_RATE,
      from_archive: fromArchive,
      from_archive_runs: fromArchiveRuns.map(figuresOnly),
      from_log: fromLog ? figuresOnly(fromLog) : null,
      machine,
    };
  } finally {
    if (process.env.BENCH_KEEP === '1') console.log(`kept ${dir} and ${baseline}`);
    else {
      rmSync(dir, { recursive: true, force: true });
      rmSync(baseline, { recursive: true, force: true });
    }
    for (const copy of copies) rmSync(copy, { recursive: true, force: true });
  }
}

/**
 * Requests over 5 ms, and those a GC pause overlapped: `requests` as [sent or due, latency] and
 * `pauses` as [start, duration], all in ms since the epoch (each process's performance.timeOrigin
 * plus its clock: the two processes' clocks agree to well under a millisecond).
 */
function slowRequests(requests: [number, number][], pauses: [number, number][]): { over_5ms: number; during_gc_pause: number } {
  const slow = requests.filter(([, ms]) => ms > 5);
  const overlapped = slow.filter(([from, ms]) => pauses.some(([start, d]) => start < from + ms && start + d > from));
  return { over_5ms: slow.length, during_gc_pause: overlapped.length };
}

/** What the service logged about the new features coming online (the `new features are served` line, and any fallback). */
function servedLines(dataDir: string): string[] {
  const logs = join(dataDir, 'logs');
  return readdirSync(logs)
    .flatMap((f) => readFileSync(join(logs, f), 'utf8').split('\n'))
    .filter((l) => l.includes('new features are served') || l.includes('cannot start from the lakehouse archive'))
    .map((l) => {
      const { time: _time, level: _level, service: _service, ...rest } = JSON.parse(l) as Record<string, unknown>;
      return JSON.stringify(rest);
    });
}

/**
 * The publisher (bench/serving-publisher.ts) started and ready: `publish()` has it publish `bundle`
 * as champion and resolves with the service's answer.
 */
async function startPublisher(
  dataDir: string,
  bundle: ModelBundle,
  url: string,
  admin: string,
): Promise<{ child: ChildProcess; publish: () => Promise<unknown> }> {
  const file = join(dataDir, 'bench-next-bundle.json');
  writeFileSync(file, JSON.stringify(bundle));
  const child = spawn(process.execPath, ['--import', 'tsx', PUBLISHER, file, url], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, WB_ADMIN_KEY: admin },
  });
  let out = '';
  const line = (prefix: string) =>
    new Promise<string>((resolve, reject) => {
      const onData = (d: Buffer) => {
        out += d.toString();
        // A whole line only: the answer may arrive in more than one chunk.
        const m = new RegExp(`^${prefix}(.*)\n`, 'm').exec(out);
        if (m) {
          child.stdout!.off('data', onData);
          resolve(m[1]!);
        }
      };
      child.stdout!.on('data', onData);
      child.once('exit', (code) => reject(new Error(`the publisher exited (${code}): ${out}`)));
    });
  await line('ready');
  return {
    child,
    publish: () => {
      const answer = line('published ');
      child.stdin!.write('go\n');
      return answer.then((json) => JSON.parse(json) as unknown);
    },
  };
}

/** One deploy's figures, and its raw latencies (for pooling): the deploy window's and the steady load's. */
type DeployRun = DeployFigures & { latencies: { deploy: number[]; steady: number[] } };

async function deployRun(dataDir: string, rebuild: boolean, admin: string, client: string, next: ModelBundle): Promise<DeployRun> {
  const { child, url } = await startServer(['--import', 'tsx', DEPLOY_SERVER, 'serve', dataDir, ...(rebuild ? ['--rebuild'] : [])]);
  const pid = child.pid!;
  let publisher: Awaited<ReturnType<typeof startPublisher>> | undefined;
  // The service's event-loop delays since the previous call (it prints them on SIGUSR2).
  type Delay = { max_ms: number; gc: { ms: number; max_ms: number; pauses: [number, number][] } };
  const delays: ((d: Delay) => void)[] = [];
  let printed = '';
  child.stdout!.on('data', (d: Buffer) => {
    printed += d.toString();
    for (let m = /loop-delay (\{.*\})\n/.exec(printed); m; m = /loop-delay (\{.*\})\n/.exec(printed)) {
      printed = printed.slice(m.index + m[0].length);
      delays.shift()?.(JSON.parse(m[1]!) as Delay);
    }
  });
  const loopDelay = () =>
    new Promise<Delay>((resolve) => {
      delays.push(resolve);
      child.kill('SIGUSR2');
    });
  try {
    publisher = await startPublisher(dataDir, next, url, admin);
    let n = 0;
    const headers = { authorization: `Bearer ${client}`, 'content-type': 'application/json' };
    const predict = (model: string) => () =>
      call(`${url}/v1/predict`, 'POST', headers, JSON.stringify({ model, user_id: `u${String((n++ % 2000) + 1).padStart(6, '0')}` }));
    await openLoop(2, predict('app'), undefined, undefined, DEPLOY_RATE); // warm up
    generatorDelay.reset();
    const loadBefore = loadavg()[0]!;
    let cpu = cpuSeconds(pid);
    let waited = coreWaitMs(pid);
    await loopDelay();
    const steady = await openLoop(STEADY_SECONDS, predict('app'), undefined, undefined, DEPLOY_RATE);
    const steadyCpu = cpuSeconds(pid) - cpu;
    const steadyWait = coreWaitMs(pid) - waited;
    const steadyDelay = await loopDelay();
    const rssMb = residentMb(pid);
    const generatorSteady = generatorDelay.max / 1e6;
    if (steady.failures > 0) throw new Error(`${steady.failures} predictions failed before the deploy: ${steady.failed.join('; ')}`);
    const noop = await openLoop(NOOP_SECONDS, () => call(`${url}/healthz`, 'GET', {}), undefined, undefined, DEPLOY_RATE);
    if (noop.failures > 0) throw new Error(`${noop.failures} no-op requests failed: ${noop.failed.join('; ')}`);

    let done = false;
    const load = openLoop(300, predict('app'), undefined, () => done, DEPLOY_RATE);
    await new Promise((r) => setTimeout(r, 1000));
    cpu = cpuSeconds(pid);
    await loopDelay();
    waited = coreWaitMs(pid);
    generatorDelay.reset();
    const publishedAt = performance.now();
    const published = publisher.publish();
    let firstAt = Number.NaN;
    const probe = predict('app-next');
    // Every 20 ms: the probe is the bench's instrument, and its requests (404 until the new model
    // serves) load the service the deploy is measured on; 20 ms is 1% of the 2 s goal.
    while (Number.isNaN(firstAt) && performance.now() - publishedAt < 300_000) {
      if ((await probe()).status === 200) firstAt = performance.now();
      else await new Promise((r) => setTimeout(r, 20));
    }
    const deployCpu = cpuSeconds(pid) - cpu;
    const deployWait = coreWaitMs(pid) - waited;
    const deployDelay = await loopDelay();
    const generatorDeploy = generatorDelay.max / 1e6;
    await published;
    await new Promise((r) => setTimeout(r, 500));
    done = true;
    const during = await load;
    if (during.failures > 0) console.log(`  failed during the deploy (${rebuild ? 'from the log' : 'from the archive'}): ${during.failed.join('; ')}`);
    const inWindow = (i: number) => during.from[i]! >= publishedAt && during.from[i]! <= firstAt;
    const window = during.latencies.filter((_, i) => inWindow(i));
    const windowFrom = during.from.filter((_, i) => inWindow(i));
    const seconds = (firstAt - publishedAt) / 1000;
    const deployP99 = quantile(window, 0.99);
    const steadyWindows = windowP99s(steady, firstAt - publishedAt);
    return {
      publish_to_first_prediction_s: round(seconds, 2),
      deploy_predict_p50_ms: round(quantile(window, 0.5), 2),
      deploy_predict_p99_ms: round(deployP99, 2),
      deploy_predict_max_ms: round(
        window.reduce((a, b) => Math.max(a, b), 0),
        1,
      ),
      deploy_requests: window.length,
      deploy_failed_requests: during.failures,
      deploy_extra_server_cpu_s: round(deployCpu - (steadyCpu / STEADY_SECONDS) * seconds, 2),
      steady_predict_p50_ms: round(quantile(steady.latencies, 0.5), 2),
      steady_predict_p99_ms: round(quantile(steady.latencies, 0.99), 2),
      steady_window_p99_ms: steadyWindows,
      steady_server_cpu_ms_per_prediction: round((steadyCpu * 1000) / steady.latencies.length, 3),
      noop_p99_ms: round(quantile(noop.latencies, 0.99), 2),
      noop_window_p99_ms: windowP99s(noop, firstAt - publishedAt),
      deploy_to_steady_window_p99_ratio: steadyWindows.median === null ? null : round(deployP99 / steadyWindows.median, 2),
      generator_loop_delay_max_ms: { steady: round(generatorSteady, 1), deploy: round(generatorDeploy, 1) },
      goals_met: {
        first_prediction_under_2s: seconds < 2,
        deploy_p99_under_5ms: deployP99 < 5,
        deploy_p99_within_steady_windows: steadyWindows.max !== null && deployP99 <= steadyWindows.max,
      },
      deploy_loop_delay_max_ms: round(deployDelay.max_ms, 1),
      steady_loop_delay_max_ms: round(steadyDelay.max_ms, 1),
      steady_gc_ms_per_s: round(steadyDelay.gc.ms / STEADY_SECONDS, 1),
      steady_gc_max_ms: round(steadyDelay.gc.max_ms, 1),
      deploy_gc_ms: round(deployDelay.gc.ms, 1),
      deploy_gc_max_ms: round(deployDelay.gc.max_ms, 1),
      deploy_slow_requests: slowRequests(
        window.map((ms, i) => [performance.timeOrigin + windowFrom[i]!, ms]),
        deployDelay.gc.pauses,
      ),
      steady_core_wait_ms_per_s: round(steadyWait / STEADY_SECONDS, 1),
      deploy_core_wait_ms: round(deployWait, 1),
      load_average: [round(loadBefore, 2), round(loadavg()[0]!, 2)],
      service_rss_mb: rssMb,
      latencies: { deploy: window, steady: steady.latencies },
    };
  } finally {
    publisher?.child.kill();
    await stopServer(child);
    for (const line of servedLines(dataDir)) console.log(`  service (${rebuild ? 'from the log' : 'from the archive'}): ${line}`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
