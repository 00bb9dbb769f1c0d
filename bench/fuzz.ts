/**
 * Fuzz benchmark (npm run bench:fuzz): the fuzz suite's generators (test/helpers/hostile.ts) for
 * longer, against `wb serve` in a child process over HTTP, so that a crash is a crash and the RSS
 * is the server's own. Prints requests sent, 2xx/4xx/5xx, stuck consumers (lag not back to 0 within
 * STUCK_SECONDS of the burst), crashes, the server's RSS before, at its peak and after idling, its
 * CPU per request, and the same figures for a baseline run of well-formed requests (the same
 * number, the same mix of routes) on a fresh server. Goal: 0 5xx, 0 stuck, 0 crashes.
 *
 * BENCH_SECONDS (default 60) or FUZZ_RUNS (a number of requests) bound the hostile burst;
 * BENCH_CONCURRENCY (default 4) clients; IDLE_SECONDS (default 10) before RSS after;
 * FUZZ_SEED replays; BENCH_HEAPSNAPSHOT=1 writes a heap snapshot of the server after idling
 * (--heapsnapshot-signal) into the data dir and keeps the dir. Ends with one JSON line.
 */
import fc from 'fast-check';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { KeyStore } from '../src/serving/auth/keys.js';
import { openDeadLetterStore } from '../src/serving/pipeline/dead-letters.js';
import { FileEventLog } from '../src/serving/pipeline/file-log.js';
import { featureSet } from '../src/workbench/features/definition.js';
import { createBundle, type ModelBundle } from '../src/workbench/models/bundle.js';
import { columnsFor } from '../src/workbench/models/preprocess.js';
import { trainClassifier } from '../src/workbench/models/train.js';
import {
  auditLog,
  freshIds,
  hostileRequest,
  routesOf,
  send,
  Tally,
  wellFormedRequest,
  type ApiRoute,
  type HostileRequest,
  type Keys,
  type LogAudit,
  type RenderContext,
} from '../test/helpers/hostile.js';
import { round, startServer, stopServer } from './support.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 60);
const MAX_REQUESTS = process.env.FUZZ_RUNS ? Number(process.env.FUZZ_RUNS) : Infinity;
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 4);
const IDLE_SECONDS = Number(process.env.IDLE_SECONDS ?? 10);
const STUCK_SECONDS = Number(process.env.STUCK_SECONDS ?? 30);
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31);
const HEAPSNAPSHOT = process.env.BENCH_HEAPSNAPSHOT === '1';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mb = (kb: number) => Math.round(kb / 1024);

/** Resident memory of a process in kB (Linux /proc), or NaN. */
function rssKb(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? Number.NaN);
  } catch {
    return Number.NaN;
  }
}
/** CPU seconds a process has used (user + system, all threads), or NaN. */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

interface RunFigures {
  requests: number;
  tally: Tally;
  seconds: number;
  crashed: boolean;
  stuck: { name: string; lag: number }[];
  rssBeforeKb: number;
  rssPeakKb: number;
  rssAfterKb: number;
  cpuMicrosPerRequest: number;
  audit?: LogAudit;
  serverErrors: Map<string, number>;
  logNext?: number;
  /** Records the consumers set aside: id and error. */
  deadLetters: string[];
}

async function trainedBundle(): Promise<ModelBundle> {
  const features = featureSet([{ name: 'fz_logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 }]);
  const rows = Array.from({ length: 60 }, (_, i) => ({ fz_logins_7d: i % 7, bought: i % 3 === 0 ? 1 : 0 }));
  const trained = await trainClassifier(rows, 'bought', columnsFor(features), { seed: 1, maxEpochs: 3 });
  const bundle = await createBundle('fz-model', trained, features, { lineage: { source: 'bench:fuzz' } });
  trained.dispose();
  return bundle;
}

/** The errors the server logged, by message: why requests failed and consumers retried. */
function serverErrors(dir: string): Map<string, number> {
  const counts = new Map<string, number>();
  const logs = join(dir, 'logs');
  if (!existsSync(logs)) return counts;
  for (const f of readdirSync(logs)) {
    for (const line of readFileSync(join(logs, f), 'utf8').split('\n')) {
      if (!line.includes('"level":50') && !line.includes('"level":60')) continue;
      try {
        const r = JSON.parse(line) as { msg?: string; err?: { message?: string }; consumer?: string; path?: string };
        const key = `${r.msg}${r.consumer ? ` [${r.consumer}]` : ''}: ${(r.err?.message ?? '').split('\n')[0]!.slice(0, 160)}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      } catch {
        /* a torn last line */
      }
    }
  }
  return counts;
}

async function run(
  label: string,
  generator: (routes: ApiRoute[]) => fc.Arbitrary<HostileRequest>,
  budget: { seconds: number; requests: number },
  bundle: ModelBundle,
): Promise<RunFigures> {
  const dir = mkdtempSync(join(tmpdir(), `wb-bench-fuzz-${label}-`));
  const store = KeyStore.open(join(dir, 'keys.json'));
  const make = (scope: string) => store.create(`fuzz-${scope}`, [scope]).key;
  const revoked = store.create('fuzz-revoked', ['admin']);
  store.revoke(revoked.info.id);
  const keys: Keys = { admin: make('admin'), ingest: make('ingest'), read: make('read'), revoked: revoked.key };
  const nodeArgs = HEAPSNAPSHOT ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${dir}`] : [];
  const { child, url } = await startServer([...nodeArgs, 'bin/wb.cjs', '--data-dir', dir, 'serve', '--port', '0', '--quiet']);
  let crashed = false;
  child.once('exit', (code, signal) => {
    if (!stopping) {
      crashed = true;
      console.log(`  ${label}: the server exited (${code ?? signal})`);
    }
  });
  let stopping = false;
  const pid = child.pid!;
  const ctx: RenderContext = { now: Date.now, fresh: freshIds(`${label}${process.pid}`), bundle, versions: [] };
  try {
    const headers = { authorization: `Bearer ${keys.admin}`, 'content-type': 'application/json' };
    const routes = routesOf((await (await fetch(`${url}/v1/openapi.json`)).json()) as Parameters<typeof routesOf>[0]);
    const published = await fetch(`${url}/v1/models`, { method: 'POST', headers, body: JSON.stringify({ bundle, alias: 'champion' }) });
    if (published.status === 200) ctx.versions.push(bundle.version);
    await fetch(`${url}/v1/experiments`, {
      method: 'POST',
      headers,
      body: JSON.stringify({
        key: 'fz-exp',
        hypothesis: 'h',
        arms: [
          { key: 'control', weight: 0.5 },
          { key: 'treatment', weight: 0.5 },
        ],
        exposureEvent: 'login',
        objective: 'logins',
        mde: 0.05,
        minRunDays: 0,
        status: 'running',
      }),
    });
    await sleep(2000);
    const rssBeforeKb = rssKb(pid);
    let rssPeakKb = rssBeforeKb;
    const sampler = setInterval(() => (rssPeakKb = Math.max(rssPeakKb, rssKb(pid) || 0)), 250);

    const tally = new Tally();
    const arbitrary = generator(routes);
    let chunk = 0;
    let queue: HostileRequest[] = [];
    const next = () => {
      if (queue.length === 0) queue = fc.sample(arbitrary, { numRuns: 500, seed: SEED + chunk++ });
      return queue.pop()!;
    };
    const cpuBefore = cpuSeconds(pid);
    const started = performance.now();
    const deadline = started + budget.seconds * 1000;
    let issued = 0;
    let lastPrint = started;
    const worker = async () => {
      while (!crashed && performance.now() < deadline && issued < budget.requests) {
        issued++;
        const r = next();
        tally.add(r, await send(url, r, keys, ctx));
        if (performance.now() - lastPrint > 10_000) {
          lastPrint = performance.now();
          console.log(`  ${label}: ${tally.sent} requests, RSS ${mb(rssKb(pid))} MB`);
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const seconds = (performance.now() - started) / 1000;
    const cpuMicrosPerRequest = ((cpuSeconds(pid) - cpuBefore) * 1e6) / tally.sent;

    // Stuck consumers: lag not back to 0 within STUCK_SECONDS.
    let stuck: { name: string; lag: number }[] = [];
    let logNext: number | undefined;
    if (!crashed) {
      const until = Date.now() + STUCK_SECONDS * 1000;
      for (;;) {
        const log = (await (await fetch(`${url}/v1/log`, { headers: { authorization: `Bearer ${keys.read}` } })).json()) as {
          next: number;
          consumers: { name: string; lag: number }[];
        };
        logNext = log.next;
        stuck = log.consumers.filter((c) => c.lag !== 0).map((c) => ({ name: c.name, lag: c.lag }));
        if (stuck.length === 0 || Date.now() > until) break;
        await sleep(500);
      }
    }
    await sleep(IDLE_SECONDS * 1000);
    clearInterval(sampler);
    const rssAfterKb = crashed ? Number.NaN : rssKb(pid);
    if (HEAPSNAPSHOT && !crashed) {
      child.kill('SIGUSR2');
      await sleep(20_000);
      console.log(`  ${label}: heap snapshot in ${dir}`);
    }
    stopping = true;
    await stopServer(child);
    let audit: LogAudit | undefined;
    try {
      const log = await FileEventLog.open(join(dir, 'log'));
      audit = await auditLog(log, tally.eventIds);
      await log.close();
    } catch (err) {
      console.log(`  ${label}: cannot audit the log: ${(err as Error).message}`);
    }
    // A dead letter is a record ingest took that a consumer cannot apply: a hole in the edge's checks.
    const letters = await openDeadLetterStore(dir, undefined, { warn: (m) => console.log(`  ${label}: ${m}`) });
    const deadLetters = (await letters.list()).map((l) => `${l.id}: ${l.error.message.slice(0, 160)}`);
    await letters.close();
    return {
      requests: tally.sent,
      tally,
      seconds,
      crashed,
      stuck,
      rssBeforeKb,
      rssPeakKb,
      rssAfterKb,
      cpuMicrosPerRequest,
      audit,
      serverErrors: serverErrors(dir),
      logNext,
      deadLetters,
    };
  } finally {
    stopping = true;
    await stopServer(child as ChildProcess);
    if (!HEAPSNAPSHOT) rmSync(dir, { recursive: true, force: true });
  }
}

function print(label: string, f: RunFigures): void {
  const t = f.tally;
  console.log(
    `${label}: ${t.sent.toLocaleString('en-US')} requests in ${round(f.seconds)} s (${Math.round(t.sent / f.seconds)}/s): 2xx ${t.count('2xx')}, 4xx ${t.count('4xx')}, 5xx ${t.count('5xx')}, ` +
      `no answer ${t.count('no answer')}, resets (expected) ${t.count('reset (expected)')}; ${t.accepted.toLocaleString('en-US')} events accepted`,
  );
  console.log(
    `  server RSS ${mb(f.rssBeforeKb)} MB before, ${mb(f.rssPeakKb)} MB peak, ${mb(f.rssAfterKb)} MB after ${IDLE_SECONDS} s idle; CPU ${round(f.cpuMicrosPerRequest)} µs/request`,
  );
  console.log(
    `  crashed: ${f.crashed ? 'yes' : 'no'}; stuck consumers: ${f.stuck.length === 0 ? 'none' : f.stuck.map((s) => `${s.name} (lag ${s.lag})`).join(', ')}; dead letters: ${f.deadLetters.length}`,
  );
  for (const letter of f.deadLetters.slice(0, 5)) console.log(`  dead letter ${letter}`);
  if (f.audit) {
    const a = f.audit;
    console.log(
      `  log: ${a.records} records, ${a.clientRecords} from clients (answered accepted: ${t.accepted}), own ${[...a.ownRecords].map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}; ` +
        `repeated ids ${a.repeatedIds.length}, reserved names from clients ${a.reservedFromClients}, unreadable ${a.unreadable}, unaccounted ${a.strangers.length}`,
    );
  }
  for (const [key, v] of [...t.failures].sort((a, b) => b[1].count - a[1].count).slice(0, 12))
    console.log(`  FAIL x${v.count} ${key}\n      e.g. ${v.example.slice(0, 300)}`);
  for (const [msg, n] of [...f.serverErrors].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.log(`  server log x${n}: ${msg}`);
}

async function main(): Promise<void> {
  console.log(`seed ${SEED}; ${CONCURRENCY} clients; hostile burst ${Number.isFinite(MAX_REQUESTS) ? `${MAX_REQUESTS} requests` : `${SECONDS} s`}`);
  const bundle = await trainedBundle();
  const hostile = await run(
    'hostile',
    (routes) => hostileRequest(routes),
    { seconds: Number.isFinite(MAX_REQUESTS) ? Infinity : SECONDS, requests: MAX_REQUESTS },
    bundle,
  );
  print('hostile', hostile);
  // The baseline: as many well-formed requests, on a fresh server, measured the same way.
  const baseline = await run('baseline', (routes) => wellFormedRequest(routes), { seconds: Infinity, requests: hostile.requests }, bundle);
  print('well-formed baseline', baseline);
  const growth = (f: RunFigures) => f.rssAfterKb - f.rssBeforeKb;
  const figures = {
    bench: 'fuzz',
    seed: SEED,
    clients: CONCURRENCY,
    requests: hostile.requests,
    requests_per_second: Math.round(hostile.requests / hostile.seconds),
    status_2xx: hostile.tally.count('2xx'),
    status_4xx: hostile.tally.count('4xx'),
    status_5xx: hostile.tally.count('5xx'),
    no_answer: hostile.tally.count('no answer'),
    contract_failures: [...hostile.tally.failures.values()].reduce((s, v) => s + v.count, 0),
    events_accepted: hostile.tally.accepted,
    stuck_consumers: hostile.stuck.length,
    dead_letters: hostile.deadLetters.length,
    crashes: hostile.crashed ? 1 : 0,
    log_consistent: hostile.audit
      ? hostile.audit.clientRecords === hostile.tally.accepted && hostile.audit.repeatedIds.length === 0 && hostile.audit.strangers.length === 0
      : null,
    rss_before_mb: mb(hostile.rssBeforeKb),
    rss_peak_mb: mb(hostile.rssPeakKb),
    rss_after_mb: mb(hostile.rssAfterKb),
    server_cpu_us_per_request: round(hostile.cpuMicrosPerRequest),
    baseline_rss_before_mb: mb(baseline.rssBeforeKb),
    baseline_rss_peak_mb: mb(baseline.rssPeakKb),
    baseline_rss_after_mb: mb(baseline.rssAfterKb),
    baseline_server_cpu_us_per_request: round(baseline.cpuMicrosPerRequest),
    rss_growth_ratio_to_baseline: round(growth(hostile) / Math.max(1024, growth(baseline)), 2),
    cpu_ratio_to_baseline: round(hostile.cpuMicrosPerRequest / baseline.cpuMicrosPerRequest, 2),
    goals_met: {
      no_5xx: hostile.tally.count('5xx') === 0,
      none_stuck: hostile.stuck.length === 0,
      no_crash: !hostile.crashed,
      no_dead_letter: hostile.deadLetters.length === 0,
    },
  };
  console.log('goal: 0 5xx, 0 stuck, 0 crashes, 0 dead letters');
  console.log(JSON.stringify(figures));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
