/**
 * Serving benchmark (npm run bench:serving), against `wb serve` in a child process on loopback:
 *   - POST /v1/predict at a fixed 1,000 requests/s (open loop: latency counts from when each
 *     request was due or sent, whichever is later, so a stall is not hidden), p50 and p99, and the ratio to a no-op route
 *     (GET /healthz) at the same rate in the same run (goal: p99 under 2 ms);
 *   - time to deploy: a new version published as champion while that load runs, until the first
 *     prediction from it, and the requests that failed meanwhile (goal: under 1 s, none).
 * Ends with one JSON line.
 */
import http from 'node:http';
import { quantile, round, startServer, stopServer } from './support.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyStore } from '../src/serving/auth/keys.js';
import { featureSet } from '../src/workbench/features/definition.js';
import { createBundle } from '../src/workbench/models/bundle.js';
import { columnsFor } from '../src/workbench/models/preprocess.js';
import { publish } from '../src/workbench/models/publish.js';
import { trainClassifier } from '../src/workbench/models/train.js';

const RATE = Number(process.env.BENCH_RATE ?? 1000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const USERS = 1000;

interface LoadResult {
  latencies: number[];
  /** Handler time the service reports (Server-Timing), in ms. */
  server: number[];
  failures: number;
  /** (time answered, model version) of each prediction. */
  versions: { at: number; version: string }[];
}

interface Answer {
  status: number;
  body: unknown;
  serverMs?: number;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** A request on a kept-alive connection (lighter than fetch, so the load generator adds less noise). */
function call(url: string, method: string, headers: Record<string, string>, body?: string): Promise<Answer> {
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
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Sends `request` at a fixed rate for `seconds`. Each latency counts from when the request was due
 * or actually sent, whichever is later: from the due time, a stall of the sender is not hidden; from
 * the send, a request the timer let go a little early is not credited with negative time.
 */
async function openLoop(seconds: number, request: () => Promise<Answer>, onAnswer?: (body: unknown, at: number) => void): Promise<LoadResult> {
  const result: LoadResult = { latencies: [], server: [], failures: 0, versions: [] };
  const total = Math.round(seconds * RATE);
  const started = performance.now();
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const from = Math.max(due, performance.now());
    inflight.push(
      request()
        .then((res) => {
          const now = performance.now();
          if (res.status !== 200) result.failures++;
          else {
            result.latencies.push(now - from);
            if (res.serverMs !== undefined) result.server.push(res.serverMs);
            onAnswer?.(res.body, now);
          }
        })
        .catch(() => void result.failures++),
    );
  }
  await Promise.all(inflight);
  return result;
}

async function main(): Promise<void> {
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
      goals_met: {
        predict_p99_under_2ms: quantile(served.latencies, 0.99) < 2,
        deploy_under_1s: deployMs < 1000,
        no_failed_requests: deploy.failures === 0 && served.failures === 0,
      },
    };
    console.log(JSON.stringify(figures));
  } finally {
    await stopServer(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
