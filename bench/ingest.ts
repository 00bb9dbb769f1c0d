/**
 * Ingest benchmark (npm run bench:ingest). Over HTTP on loopback, batches of 500 events, durable:
 *   - events/s acknowledged by `wb serve` (file event log), and the ratio to an endpoint that only
 *     parses the same batches (bench/parse-only-server.ts), measured in the same run
 *     (goals: at least 50% of it, and at least 50,000 events/s);
 *   - acknowledgement latency p50/p99;
 *   - event-to-dashboard delay (send to the first server-sent snapshot that covers the batch) and
 *     event-to-archive delay (send to the Parquet file that holds it), p50/p99 (goals: p99 under
 *     1 s and under 10 s);
 *   - the same load on the NATS JetStream event log, when a server is reachable on 127.0.0.1:4222.
 * The server runs in a child process, the load generator here. Ends with one JSON line.
 */
import { quantile, round, startServer, stopServer } from './support.js';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyStore } from '../src/serving/auth/keys.js';

const BATCH = 500;
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 4);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);

interface Run {
  eventsPerSecond: number;
  /** Server CPU time (user + system, all threads) per acknowledged event, in µs. */
  serverCpuMicrosPerEvent: number;
  ackP50: number;
  ackP99: number;
  dashboardP50?: number;
  dashboardP99?: number;
  archiveP50?: number;
  archiveP99?: number;
}

/** Pre-serialised batches with unique ids, so the load generator spends its time sending. */
function makeBodies(count: number, tag: string): string[] {
  const now = Date.now();
  const countries = ['GB', 'US', 'DE', 'FR', 'NL', 'IN'];
  const devices = ['web', 'ios', 'android'];
  const events = ['login', 'feature_used', 'page_view', 'purchase'];
  return Array.from({ length: count }, (_, b) =>
    JSON.stringify(
      Array.from({ length: BATCH }, (_, i) => {
        const n = b * BATCH + i;
        return {
          event_id: `${tag}-${n}`,
          time: new Date(now - 1000 + (n % 1000)).toISOString(),
          user_id: `u${n % 5000}`,
          event: events[n % events.length],
          props: { country: countries[n % 6], device: devices[n % 3], feature: 'reports', amount: (n % 50) + 0.5 },
        };
      }),
    ),
  );
}

/** CPU seconds a process has used (Linux /proc; NaN elsewhere). */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return Number.NaN;
  }
}

async function load(url: string, key: string, bodies: string[], serverPid: number, onAck?: (sentAt: number, next: number) => void): Promise<Run> {
  const cpuBefore = cpuSeconds(serverPid);
  const latencies: number[] = [];
  let index = 0;
  let acked = 0;
  const started = performance.now();
  const deadline = started + SECONDS * 1000;
  const worker = async () => {
    while (performance.now() < deadline && index < bodies.length) {
      const body = bodies[index++]!;
      const t0 = performance.now();
      const sentAt = Date.now();
      const res = await fetch(`${url}/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body });
      const json = (await res.json()) as { accepted: number; offsets?: { next: number } };
      if (res.status !== 200) throw new Error(`status ${res.status}: ${JSON.stringify(json)}`);
      latencies.push(performance.now() - t0);
      acked += BATCH;
      if (json.offsets && onAck) onAck(sentAt, json.offsets.next);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = (performance.now() - started) / 1000;
  const serverCpuMicrosPerEvent = ((cpuSeconds(serverPid) - cpuBefore) * 1e6) / acked;
  return { eventsPerSecond: acked / seconds, serverCpuMicrosPerEvent, ackP50: quantile(latencies, 0.5), ackP99: quantile(latencies, 0.99) };
}

/** Follows the dashboard stream: for each acknowledged batch, the delay until a snapshot covers it. */
function followDashboard(url: string, key: string, pending: { sentAt: number; next: number }[], delays: number[]): AbortController {
  const ctl = new AbortController();
  void (async () => {
    const res = await fetch(`${url}/v1/stream`, { headers: { authorization: `Bearer ${key}` }, signal: ctl.signal });
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        const parts = buffer.split('\n\n');
        buffer = parts.pop()!;
        for (const part of parts) {
          const data = part.split('\n').find((l) => l.startsWith('data: '));
          if (!data) continue;
          const position = (JSON.parse(data.slice(6)) as { position: number }).position;
          const now = Date.now();
          while (pending.length > 0 && pending[0]!.next <= position) delays.push(now - pending.shift()!.sentAt);
        }
      }
    } catch {
      /* aborted */
    }
  })();
  return ctl;
}

/** Watches the live archive: for each acknowledged batch, the delay until a file holds its last offset. */
function watchArchive(dir: string, pending: { sentAt: number; next: number }[], delays: number[]): () => void {
  const timer = setInterval(() => {
    if (!existsSync(dir)) return;
    let archived = 0;
    for (const date of readdirSync(dir))
      for (const f of readdirSync(join(dir, date))) archived = Math.max(archived, Number(/-(\d+)\.parquet$/.exec(f)?.[1] ?? -1) + 1);
    const now = Date.now();
    while (pending.length > 0 && pending[0]!.next <= archived) delays.push(now - pending.shift()!.sentAt);
  }, 50);
  return () => clearInterval(timer);
}

async function benchService(eventLog: string, bodies: string[]): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'wb-bench-ingest-'));
  const key = KeyStore.open(join(dir, 'keys.json')).create('bench', ['ingest', 'read']).key;
  const { child, url } = await startServer(['bin/wb.cjs', '--data-dir', dir, 'serve', '--port', '0', '--quiet', '--event-log', eventLog]);
  try {
    const dashPending: { sentAt: number; next: number }[] = [];
    const archPending: { sentAt: number; next: number }[] = [];
    const dashDelays: number[] = [];
    const archDelays: number[] = [];
    const dash = followDashboard(url, key, dashPending, dashDelays);
    const stopWatch = watchArchive(join(dir, 'lake', 'archive', 'events', 'source=live'), archPending, archDelays);
    await new Promise((r) => setTimeout(r, 500));
    const run = await load(url, key, bodies, child.pid!, (sentAt, next) => {
      dashPending.push({ sentAt, next });
      archPending.push({ sentAt, next });
    });
    const deadline = Date.now() + 30_000;
    while ((dashPending.length > 0 || archPending.length > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    dash.abort();
    stopWatch();
    return {
      ...run,
      dashboardP50: quantile(dashDelays, 0.5),
      dashboardP99: quantile(dashDelays, 0.99),
      archiveP50: quantile(archDelays, 0.5),
      archiveP99: quantile(archDelays, 0.99),
    };
  } finally {
    await stopServer(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Deletes the benchmark's JetStream stream and offsets bucket: the server is shared. */
async function dropStream(stream: string): Promise<void> {
  const { connect } = await import('nats');
  const nc = await connect({ servers: 'nats://127.0.0.1:4222' });
  const jsm = await nc.jetstreamManager();
  for (const name of [stream, `KV_${stream}_offsets`]) await jsm.streams.delete(name).catch(() => undefined);
  await nc.close();
}

const reachable = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

async function main(): Promise<void> {
  const maxBatches = Math.ceil((SECONDS * 150_000) / BATCH);
  console.log(`${CONCURRENCY} clients, batches of ${BATCH}, ${SECONDS} s per run`);
  const { child, url } = await startServer(['--import', 'tsx', 'bench/parse-only-server.ts']);
  let baseline: Run;
  try {
    baseline = await load(url, 'none', makeBodies(maxBatches, 'base'), child.pid!);
  } finally {
    await stopServer(child);
  }
  console.log(
    `parse-only endpoint: ${Math.round(baseline.eventsPerSecond).toLocaleString('en-US')} events/s, server CPU ${round(baseline.serverCpuMicrosPerEvent)} µs/event`,
  );
  const file = await benchService('file', makeBodies(maxBatches, 'file'));
  console.log(
    `wb serve, file log: ${Math.round(file.eventsPerSecond).toLocaleString('en-US')} events/s, server CPU ${round(file.serverCpuMicrosPerEvent)} µs/event, ack p50 ${round(file.ackP50)} ms p99 ${round(file.ackP99)} ms, to dashboard p99 ${file.dashboardP99} ms, to archive p99 ${file.archiveP99} ms`,
  );
  let jetstream: Run | undefined;
  let jetstreamError: string | undefined;
  if (await reachable(4222)) {
    const stream = `WB_BENCH_${process.pid}`;
    try {
      jetstream = await benchService(`nats://127.0.0.1:4222?stream=${stream}`, makeBodies(maxBatches, 'js'));
      console.log(
        `wb serve, JetStream log: ${Math.round(jetstream.eventsPerSecond).toLocaleString('en-US')} events/s, ack p50 ${round(jetstream.ackP50)} ms p99 ${round(jetstream.ackP99)} ms`,
      );
    } catch (err) {
      jetstreamError = (err as Error).message.slice(0, 300);
      console.log(`wb serve, JetStream log: FAILED: ${jetstreamError}`);
    } finally {
      await dropStream(stream);
    }
  } else console.log('JetStream: no server on 127.0.0.1:4222, skipped');
  const figures = {
    bench: 'ingest',
    batch: BATCH,
    clients: CONCURRENCY,
    parse_only_events_per_second: Math.round(baseline.eventsPerSecond),
    file_events_per_second: Math.round(file.eventsPerSecond),
    file_to_parse_only_ratio: Math.round((file.eventsPerSecond / baseline.eventsPerSecond) * 1000) / 1000,
    parse_only_server_cpu_us_per_event: round(baseline.serverCpuMicrosPerEvent),
    file_server_cpu_us_per_event: round(file.serverCpuMicrosPerEvent),
    file_ack_p50_ms: round(file.ackP50),
    file_ack_p99_ms: round(file.ackP99),
    event_to_dashboard_p50_ms: file.dashboardP50,
    event_to_dashboard_p99_ms: file.dashboardP99,
    event_to_archive_p50_ms: file.archiveP50,
    event_to_archive_p99_ms: file.archiveP99,
    jetstream_events_per_second: jetstream ? Math.round(jetstream.eventsPerSecond) : null,
    jetstream_to_file_ratio: jetstream ? Math.round((jetstream.eventsPerSecond / file.eventsPerSecond) * 1000) / 1000 : null,
    jetstream_ack_p99_ms: jetstream ? round(jetstream.ackP99) : null,
    jetstream_error: jetstreamError ?? null,
    goals_met: {
      ratio_at_least_half: file.eventsPerSecond >= 0.5 * baseline.eventsPerSecond,
      at_least_50k_per_second: file.eventsPerSecond >= 50_000,
      dashboard_p99_under_1s: (file.dashboardP99 ?? Infinity) < 1000,
      archive_p99_under_10s: (file.archiveP99 ?? Infinity) < 10_000,
    },
  };
  console.log(JSON.stringify(figures));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
