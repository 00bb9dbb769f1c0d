/**
 * Cluster benchmark (npm run bench:cluster): the same load through HAProxy in front of
 * `wb cluster up --instances n`, for n = 1, 2 and 3 (BENCH_INSTANCES), each on a fresh PostgreSQL
 * schema and a fresh JetStream stream:
 *   - event batches (BENCH_BATCH events, default 100, unique ids) from BENCH_SENDERS closed-loop
 *     senders (default 4): events/s acknowledged;
 *   - /v1/predict at a fixed BENCH_RATE (default 50/s, open loop: latency counts from when each
 *     request was due or sent, whichever is later, as bench/serving.ts does): p50, p99;
 *   - server CPU (utime + stime from /proc/<pid>/stat of every instance and of haproxy, all
 *     threads) over the measured window, per 1,000 events: combined, the predictions and the idle
 *     cost included. Two short windows before it measure those apart: the cluster idle (health
 *     checks, lease renewals, refreshes, consumers waiting on the stream), then predictions alone
 *     at the same rate (CPU per prediction, the idle cost included). nats-server's and PostgreSQL's CPU apart;
 *   - errors (non-200 answers and failed requests), and whether the stream holds exactly the
 *     events acknowledged (none lost, none twice).
 * The machine's 2 cores are shared with the load generator, so more instances cannot be faster:
 * the ratios against 1 instance, measured in the same run, show what coordination costs.
 * BENCH_SECONDS (default 12) is the load window; BENCH_WARMUP (3) its warm-up; BENCH_IDLE_SECONDS
 * (3) and BENCH_PREDICT_SECONDS (4) the two windows before it. Needs PostgreSQL
 * (WB_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test), NATS JetStream on
 * 127.0.0.1:4222 (BENCH_NATS) and haproxy; without them it says so loudly and measures nothing.
 * Ends with one JSON line.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { connect } from 'nats';
import pg from 'pg';
import { PostgresKeyStore } from '../src/serving/auth/keys.js';
import { createBundle, type ModelBundle } from '../src/workbench/models/bundle.js';
import { featureSet } from '../src/workbench/features/definition.js';
import { columnsFor } from '../src/workbench/models/preprocess.js';
import { publish } from '../src/workbench/models/publish.js';
import { trainClassifier } from '../src/workbench/models/train.js';
import { silentProgress } from '../src/workbench/progress.js';
import { quantile, round } from './support.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 12);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 3);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 3);
const PREDICT_SECONDS = Number(process.env.BENCH_PREDICT_SECONDS ?? 4);
const RATE = Number(process.env.BENCH_RATE ?? 50);
const BATCH = Number(process.env.BENCH_BATCH ?? 100);
const SENDERS = Number(process.env.BENCH_SENDERS ?? 4);
const INSTANCES = (process.env.BENCH_INSTANCES ?? '1,2,3').split(',').map(Number);
const PG_URL = process.env.WB_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const NATS = process.env.BENCH_NATS ?? 'nats://127.0.0.1:4222';
const USERS = 1000;
const MODEL = 'bench-cluster';
const WB = join(__dirname, '..', 'bin', 'wb.cjs');

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Answer {
  status: number;
  body: string;
}

// One agent per cluster (made in measure()): kept-alive connections to one proxy are not reused for the next.
let agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** A request on a kept-alive connection (lighter than fetch, so the load generator adds less noise). */
function call(url: string, headers: Record<string, string>, body: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error('no answer in 30 s')));
    req.end(body);
  });
}

/** CPU time of a process (user + system, all threads) in ms, from /proc; NaN once it is gone. */
const clockTicks = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString()) || 100;
  } catch {
    return 100;
  }
})();
function cpuMs(pid: number): number {
  try {
    // The command name (in parentheses) may hold spaces: count fields after its closing parenthesis.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
      .replace(/^.*\) /s, '')
      .split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks;
  } catch {
    return Number.NaN;
  }
}
const cpuOf = (pids: readonly number[]): number => pids.reduce((sum, p) => sum + cpuMs(p), 0);

/** CPU (ms) of each process of the engines on this machine (nats-server, PostgreSQL's server and backends), by pid. */
function engineCpu(): Map<number, number> {
  const cpu = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      if (comm === 'nats-server' || comm === 'postgres') cpu.set(Number(entry), cpuMs(Number(entry)));
    } catch {
      // gone meanwhile
    }
  }
  return cpu;
}
/** The engines' CPU since `before`: a backend that started meanwhile counts whole, one that ended meanwhile is lost. */
function engineCpuSince(before: Map<number, number>): number {
  let sum = 0;
  for (const [pid, ms] of engineCpu()) if (Number.isFinite(ms)) sum += ms - (before.get(pid) ?? 0);
  return sum;
}

interface Failures {
  count: number;
  /** The first few: status and body, or the error. */
  first: string[];
}
const fail = (f: Failures, what: string) => {
  f.count++;
  if (f.first.length < 5) f.first.push(what.replace(/\s+/g, ' ').slice(0, 200));
};

/** Predictions at a fixed rate for `seconds`, never before their due time (see bench/serving.ts). */
async function predictLoop(seconds: number, request: () => Promise<Answer>): Promise<{ latencies: number[]; failures: Failures }> {
  const latencies: number[] = [];
  const failures: Failures = { count: 0, first: [] };
  const total = Math.round(seconds * RATE);
  const started = performance.now();
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / RATE;
    for (let wait = due - performance.now(); wait > 0; wait = due - performance.now()) await sleep(wait);
    const from = Math.max(due, performance.now());
    inflight.push(
      request().then(
        (res) => {
          if (res.status === 200) latencies.push(performance.now() - from);
          else fail(failures, `${res.status} ${res.body}`);
        },
        (err: unknown) => fail(failures, String(err)),
      ),
    );
  }
  await Promise.all(inflight);
  return { latencies, failures };
}

/** Closed-loop senders of event batches until `seconds` have passed; a batch answered after that still counts. */
async function sendEvents(seconds: number, post: (body: string) => Promise<Answer>, nextBatch: () => string): Promise<{ acked: number; failures: Failures }> {
  const failures: Failures = { count: 0, first: [] };
  let acked = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: SENDERS }, async () => {
      while (performance.now() < end) {
        const res = await post(nextBatch()).catch((err: unknown) => ({ status: 0, body: String(err) }));
        if (res.status !== 200) {
          fail(failures, `${res.status} ${res.body}`);
          // A proxy with no instance in the rotation answers 503 at once: a pause, not a spin.
          await sleep(100);
          continue;
        }
        const { accepted, duplicates, rejected } = JSON.parse(res.body) as { accepted: number; duplicates: number; rejected: unknown[] };
        acked += accepted + duplicates;
        if (duplicates > 0 || rejected.length > 0) fail(failures, `batch: ${duplicates} duplicates, ${rejected.length} rejected: ${res.body}`);
      }
    }),
  );
  return { acked, failures };
}

interface Figures {
  instances: number;
  events_per_s: number;
  events_acked: number;
  /**
   * Every instance's and haproxy's CPU over the load window, per 1,000 events acknowledged: combined,
   * the predictions at RATE and the idle cost included (subtracting the two, measured apart, from a
   * 12 s window on a shared machine gave noise, negative at times).
   */
  server_cpu_ms_per_1000_events: number;
  /** CPU per prediction from a window of predictions alone at RATE: combined, the idle cost included. */
  server_cpu_ms_per_prediction: number;
  /** The cluster idle: health checks, lease renewals, refreshes, consumers waiting. */
  idle_cpu_ms_per_s: number;
  /** Of the load window's CPU, haproxy's share. */
  haproxy_cpu_share: number;
  predict_p50_ms: number;
  predict_p99_ms: number;
  predictions: number;
  /** Predictions alone at the same rate (before the events): what the events' load adds to the tail. */
  predict_alone_p50_ms: number;
  predict_alone_p99_ms: number;
  event_errors: number;
  /** Times the proxy's health check took an instance out of the rotation (HAProxy's `is DOWN` lines), over the whole run. */
  proxy_down_events: number;
  predict_errors: number;
  /** The bench's events in the stream, and how many distinct, against those acknowledged over the whole run (seed and warm-up included): all three equal when none is lost or doubled. */
  stream_events: number;
  stream_distinct_events: number;
  acked_total: number;
  /** The stream's other records by event name (the predictions' log: one `prediction` record per answer). */
  stream_other_records: Record<string, number>;
  load_generator_cpu_ms: number;
  /**
   * nats-server's and PostgreSQL's CPU over the load window, per 1,000 events: not in the server
   * figures; it counts whatever else uses these servers meanwhile (other tests on a shared machine).
   */
  engines_cpu_ms_per_1000_events: number;
  start_s: number;
  stop_s: number;
  load_average: [number, number];
}

/**
 * Reads the whole stream: each acknowledged event must be there once (the instances dedupe by
 * event_id, and an acknowledgement follows a durable append), whichever instance took it.
 */
async function auditStream(stream: string, prefix: string): Promise<{ ours: number; distinct: number; others: Record<string, number> }> {
  const nc = await connect({ servers: NATS });
  try {
    const js = nc.jetstream();
    const last = (await (await nc.jetstreamManager()).streams.info(stream)).state.last_seq;
    const ids = new Set<string>();
    const others = new Map<string, number>();
    let ours = 0;
    if (last > 0) {
      // An ordered consumer delivers in sequence order and re-creates itself on a gap.
      const consumer = await js.consumers.get(stream);
      const messages = await consumer.consume();
      for await (const m of messages) {
        for (const record of [m.json<unknown>()].flat() as { event_id?: string; event?: string }[]) {
          if (typeof record.event_id === 'string' && record.event_id.startsWith(prefix)) {
            ours++;
            ids.add(record.event_id);
          } else others.set(String(record.event), (others.get(String(record.event)) ?? 0) + 1);
        }
        if (m.seq >= last) break;
      }
      await consumer.delete().catch(() => undefined);
    }
    return { ours, distinct: ids.size, others: Object.fromEntries(others) };
  } finally {
    await nc.close();
  }
}

/** Whether a TCP server answers at `url`'s host and port. */
function reachable(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port) });
    socket.setTimeout(1500);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

function haproxyInstalled(): boolean {
  if (process.env.WB_HAPROXY) return true;
  for (const dir of [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/sbin', '/usr/local/sbin']) {
    try {
      accessSync(join(dir, 'haproxy'), constants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}

const portFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });

/**
 * A proxy port with the next `n` free too (the instances take them). Below Linux's ephemeral range
 * (32768 and up), where other processes' `listen(0)` and outgoing connections take ports: a port
 * free when checked was taken there before an instance listened (and `wb serve` on a taken port
 * does not exit, so the start waited for its ready timeout).
 */
async function freePorts(n: number): Promise<number> {
  for (let tries = 0; tries < 100; tries++) {
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    let free = true;
    for (let i = 0; i <= n && free; i++) free = await portFree(port + i);
    if (free) return port;
  }
  throw new Error('no free run of ports found between 20000 and 30000');
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** A small model on two features the events feed (the scores do not matter, only that it serves). */
async function makeBundle(): Promise<ModelBundle> {
  const features = featureSet([
    { name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 },
    { name: 'spend_30d', source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: '30d', default: 0 },
  ]);
  const rows = Array.from({ length: 400 }, (_, i) => ({ logins_7d: i % 9, spend_30d: (i * 7) % 300, y: i % 4 === 0 ? 1 : 0 }));
  const model = await trainClassifier(rows, 'y', columnsFor(features), { seed: 1, maxEpochs: 3 });
  try {
    return await createBundle(MODEL, model, features);
  } finally {
    model.dispose();
  }
}

/** Everything one cluster needs torn down, filled in as it is made. */
interface Resources {
  schema: string;
  stream: string;
  dataDir: string;
  supervisor?: ChildProcess;
  pids: number[];
}

async function teardown(r: Resources): Promise<number> {
  const started = performance.now();
  const sup = r.supervisor;
  if (sup && sup.exitCode === null && sup.signalCode === null) {
    const exited = new Promise((resolve) => sup.once('exit', resolve));
    sup.kill('SIGTERM');
    // The instances drain (up to 10 s), then the proxy stops; past a minute, SIGKILL.
    await Promise.race([exited, sleep(60_000)]);
  }
  const leftovers = [...(sup?.pid ? [sup.pid] : []), ...r.pids].filter(alive);
  if (leftovers.length > 0) {
    console.error(`  killing leftovers (SIGKILL): pids ${leftovers.join(', ')}`);
    for (const pid of leftovers) process.kill(pid, 'SIGKILL');
  }
  const stopS = (performance.now() - started) / 1000;
  const nc = await connect({ servers: NATS });
  try {
    // The event log, its dead letters (<stream>_DLQ) and its offsets (KV_<stream>_offsets).
    const jsm = await nc.jetstreamManager();
    for await (const name of jsm.streams.names()) if (name.includes(r.stream)) await jsm.streams.delete(name).catch(() => undefined);
  } finally {
    await nc.close();
  }
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${r.schema}" CASCADE`);
  } finally {
    await client.end();
  }
  rmSync(r.dataDir, { recursive: true, force: true });
  return stopS;
}

/** Starts `wb cluster up --instances n`, resolving with the proxy URL once it prints `cluster up:`. */
async function startCluster(n: number, r: Resources, oltp: string): Promise<{ proxy: string; output: () => string }> {
  const port = await freePorts(n);
  const child = spawn(
    process.execPath,
    [
      WB,
      '--data-dir',
      r.dataDir,
      'cluster',
      'up',
      '--instances',
      String(n),
      '--port',
      String(port),
      '--oltp',
      oltp,
      '--event-log',
      `${NATS}?stream=${r.stream}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  r.supervisor = child;
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const deadline = Date.now() + 180_000;
  // `cluster up:` is followed by a line per instance; they may arrive in separate chunks.
  const up = new RegExp(`^cluster up: [^]*^ {2}wb${n} pid \\d+`, 'm');
  while (!up.test(output)) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`wb cluster up exited (${child.exitCode ?? child.signalCode}):\n${output}`);
    if (Date.now() > deadline) throw new Error(`wb cluster up was not up in 180 s:\n${output}`);
    await sleep(100);
  }
  const proxy = `http://127.0.0.1:${port}`;
  const haproxyPid = Number(/haproxy pid (\d+)/.exec(output)?.[1]);
  const instancePids = Array.from({ length: n }, (_, i) => Number(new RegExp(`^ {2}wb${i + 1} pid (\\d+)`, 'm').exec(output)?.[1]));
  r.pids.push(haproxyPid, ...instancePids);
  if (!r.pids.every((p) => Number.isInteger(p) && p > 0 && alive(p))) throw new Error(`could not read the cluster's pids:\n${output}`);
  return { proxy, output: () => output };
}

async function measure(n: number, bundle: ModelBundle): Promise<Figures> {
  const tag = `${process.pid}_${Date.now()}_${n}`;
  const r: Resources = {
    schema: `wb_bench_cluster_${tag}`,
    stream: `WB_BENCH_CLUSTER_${tag}`,
    dataDir: mkdtempSync(join(tmpdir(), `wb-bench-cluster-${n}-`)),
    pids: [],
  };
  // The schema rides on the URL as its search_path, as each process of a deployment is given it.
  const oltp = `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${r.schema}`)}`;
  let stopS = Number.NaN;
  agent.destroy();
  agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  try {
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`CREATE SCHEMA "${r.schema}"`);
    await admin.end();
    // Made before the cluster starts, in the shared OLTP: every instance reads it on start.
    const keys = await PostgresKeyStore.open(oltp);
    const key = (await keys.create('bench-cluster', ['admin'])).key;
    await keys.close();

    const startedAt = performance.now();
    const { proxy, output } = await startCluster(n, r, oltp);
    const startS = (performance.now() - startedAt) / 1000;
    const instancePids = r.pids.slice(1);
    const haproxyPid = r.pids[0]!;
    console.log(`${n} instance${n > 1 ? 's' : ''} up in ${round(startS, 1)} s (${proxy}, pids ${instancePids.join(', ')}, haproxy ${haproxyPid})`);

    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    let seq = 0;
    const now = Date.now();
    const nextBatch = () =>
      JSON.stringify(
        Array.from({ length: BATCH }, () => {
          const k = seq++;
          return {
            event_id: `${tag}-${k}`,
            time: new Date(now - 60_000 + (k % 60_000)).toISOString(),
            user_id: `u${k % USERS}`,
            event: k % 3 === 0 ? 'purchase' : 'login',
            props: { amount: (k % 50) + 0.5, country: 'GB' },
          };
        }),
      );
    const post = (body: string) => call(`${proxy}/v1/events`, headers, body);
    let ackedTotal = 0;
    // Every user has events before the first prediction (an unknown user is a 404), in every instance's online store.
    for (let b = 0; b < USERS / BATCH; b++) {
      const body = nextBatch();
      // Retried as it is (safe: by event_id) while a busy machine has the proxy's health check fail.
      let res = await post(body);
      for (let tries = 1; res.status !== 200 && tries < 10; tries++) {
        await sleep(500);
        res = await post(body);
      }
      if (res.status !== 200) throw new Error(`seeding events failed: ${res.status} ${res.body}`);
      const { accepted, duplicates } = JSON.parse(res.body) as { accepted: number; duplicates: number };
      // A duplicate is an earlier try's event, stored then.
      ackedTotal += accepted + duplicates;
    }
    await publish(bundle, { url: proxy, key, alias: 'champion', progress: silentProgress });
    let p = 0;
    const predict = () => call(`${proxy}/v1/predict`, headers, JSON.stringify({ model: MODEL, user_id: `u${p++ % USERS}` }));
    // Every instance serves the model once the alias move has reached it: round robin, so 3n answers in a row visit each.
    for (let ok = 0, deadline = Date.now() + 60_000; ok < 3 * n;) {
      const res = await predict();
      if (res.status === 200) ok++;
      else if (Date.now() > deadline)
        throw new Error(`the model is not served through the proxy 60 s after publishing (${res.status} ${res.body}):\n${output()}`);
      else {
        ok = 0;
        await sleep(50);
      }
    }

    // The cluster idle (once what the start and the publish set off has settled), then predictions alone at the load's rate.
    await sleep(3000);
    let cpu = cpuOf(r.pids);
    await sleep(IDLE_SECONDS * 1000);
    const idlePerS = (cpuOf(r.pids) - cpu) / IDLE_SECONDS;
    cpu = cpuOf(r.pids);
    const alone = await predictLoop(PREDICT_SECONDS, predict);
    // Per prediction with the idle cost in: subtracting the idle window's rate gave noise (negative
    // at times), what the start and the publish set off still settling at a different pace.
    const perPrediction = (cpuOf(r.pids) - cpu) / alone.latencies.length;

    // Warm-up, then the measured window: events and predictions together.
    const warm = await Promise.all([sendEvents(WARMUP, post, nextBatch), predictLoop(WARMUP, predict)]);
    ackedTotal += warm[0].acked;
    const load0 = loadavg()[0]!;
    cpu = cpuOf(r.pids);
    const haproxy0 = cpuMs(haproxyPid);
    const gen0 = process.cpuUsage();
    const engines0 = engineCpu();
    const t = performance.now();
    const [events, predictions] = await Promise.all([sendEvents(SECONDS, post, nextBatch), predictLoop(SECONDS, predict)]);
    const windowS = (performance.now() - t) / 1000;
    const windowCpu = cpuOf(r.pids) - cpu;
    const haproxyCpu = cpuMs(haproxyPid) - haproxy0;
    const gen = process.cpuUsage(gen0);
    const enginesCpu = engineCpuSince(engines0);
    ackedTotal += events.acked;
    const load1 = loadavg()[0]!;
    if (Number.isNaN(windowCpu)) throw new Error(`a process of the cluster exited during the load:\n${output()}`);

    const audit = await auditStream(r.stream, `${tag}-`);

    for (const [what, f] of [
      ['event batches', events.failures],
      ['predictions', predictions.failures],
      ['predictions alone', alone.failures],
      ['warm-up batches', warm[0].failures],
    ] as const)
      if (f.count > 0) console.log(`  ${f.count} ${what} failed: ${f.first.join('; ')}`);

    // Counted before the teardown, whose stops the proxy also reports as DOWN.
    const downs = (output().match(/ is DOWN/g) ?? []).length;
    stopS = await teardown(r);
    return {
      instances: n,
      events_per_s: Math.round(events.acked / windowS),
      events_acked: events.acked,
      server_cpu_ms_per_1000_events: round((windowCpu * 1000) / events.acked, 1),
      server_cpu_ms_per_prediction: round(perPrediction, 2),
      idle_cpu_ms_per_s: round(idlePerS, 1),
      haproxy_cpu_share: round(haproxyCpu / windowCpu, 3),
      predict_p50_ms: round(quantile(predictions.latencies, 0.5), 2),
      predict_p99_ms: round(quantile(predictions.latencies, 0.99), 2),
      predictions: predictions.latencies.length,
      predict_alone_p50_ms: round(quantile(alone.latencies, 0.5), 2),
      predict_alone_p99_ms: round(quantile(alone.latencies, 0.99), 2),
      event_errors: events.failures.count,
      proxy_down_events: downs,
      predict_errors: predictions.failures.count,
      stream_events: audit.ours,
      stream_distinct_events: audit.distinct,
      acked_total: ackedTotal,
      stream_other_records: audit.others,
      load_generator_cpu_ms: Math.round((gen.user + gen.system) / 1000),
      engines_cpu_ms_per_1000_events: round((enginesCpu * 1000) / events.acked, 1),
      start_s: round(startS, 1),
      stop_s: round(stopS, 1),
      load_average: [round(load0, 2), round(load1, 2)],
    };
  } finally {
    if (Number.isNaN(stopS)) await teardown(r).catch((err: unknown) => console.error(`teardown of the ${n}-instance cluster failed: ${String(err)}`));
  }
}

async function main(): Promise<void> {
  const missing: string[] = [];
  if (!(await reachable(PG_URL))) missing.push(`PostgreSQL is not reachable at ${PG_URL} (WB_TEST_POSTGRES_URL)`);
  if (!(await reachable(NATS))) missing.push(`NATS JetStream is not reachable at ${NATS} (BENCH_NATS)`);
  if (!haproxyInstalled()) missing.push('haproxy is not installed (apt-get install haproxy, or WB_HAPROXY)');
  if (missing.length > 0) {
    console.error(`\n*** SKIPPING bench:cluster: ${missing.join('; ')}. ***\n`);
    console.log(JSON.stringify({ bench: 'cluster', skipped: missing }));
    return;
  }
  console.log(
    `load through haproxy: ${SENDERS} senders of ${BATCH}-event batches (closed loop) and /v1/predict at ${RATE}/s, ${WARMUP} s warm-up then ${SECONDS} s measured; ` +
      `before it ${IDLE_SECONDS} s idle and ${PREDICT_SECONDS} s of predictions alone`,
  );
  const bundle = await makeBundle();
  const runs: Figures[] = [];
  for (const n of INSTANCES) {
    const f = await measure(n, bundle);
    runs.push(f);
    console.log(
      `  ${f.events_per_s} events/s (${f.event_errors} batch errors); server CPU ${f.server_cpu_ms_per_1000_events} ms per 1,000 events ` +
        `(combined: the predictions and the idle cost included; haproxy ${round(f.haproxy_cpu_share * 100, 1)}%), ` +
        `${f.server_cpu_ms_per_prediction} ms per prediction (predictions alone, the idle cost included), idle ${f.idle_cpu_ms_per_s} ms/s; engines (nats-server, PostgreSQL) ${f.engines_cpu_ms_per_1000_events} ms per 1,000 events; predict p50 ${f.predict_p50_ms} ms, p99 ${f.predict_p99_ms} ms ` +
        `(${f.predict_errors} errors; alone p50 ${f.predict_alone_p50_ms} ms, p99 ${f.predict_alone_p99_ms} ms); proxy took an instance out ${f.proxy_down_events} times; stream ${f.stream_events} events (${f.stream_distinct_events} distinct) for ${f.acked_total} acknowledged, other records ${JSON.stringify(f.stream_other_records)}; stopped in ${f.stop_s} s; load average ${f.load_average.join(' -> ')}`,
    );
  }
  const base = runs.find((f) => f.instances === 1);
  const ratios = base
    ? runs
        .filter((f) => f !== base)
        .map((f) => ({
          instances: f.instances,
          events_per_s_ratio: round(f.events_per_s / base.events_per_s, 2),
          cpu_per_event_ratio: round(f.server_cpu_ms_per_1000_events / base.server_cpu_ms_per_1000_events, 2),
          cpu_per_prediction_ratio: round(f.server_cpu_ms_per_prediction / base.server_cpu_ms_per_prediction, 2),
          idle_cpu_ratio: round(f.idle_cpu_ms_per_s / base.idle_cpu_ms_per_s, 2),
          predict_p99_ratio: round(f.predict_p99_ms / base.predict_p99_ms, 2),
        }))
    : [];
  for (const x of ratios)
    console.log(
      `${x.instances} instances against 1: events/s x${x.events_per_s_ratio}, CPU per event x${x.cpu_per_event_ratio}, ` +
        `CPU per prediction x${x.cpu_per_prediction_ratio}, idle CPU x${x.idle_cpu_ratio}, predict p99 x${x.predict_p99_ratio}`,
    );
  console.log(
    JSON.stringify({
      bench: 'cluster',
      seconds: SECONDS,
      warmup_seconds: WARMUP,
      rate_per_second: RATE,
      batch: BATCH,
      senders: SENDERS,
      runs,
      ratios,
      consistent: runs.every((f) => f.stream_events === f.acked_total && f.stream_distinct_events === f.acked_total),
    }),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
