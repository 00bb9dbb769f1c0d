/**
 * `npm run bench:jetstream-idle`: what an idle service instance's consumers cost on the JetStream
 * event log (issue 15). Six runner loops (a service instance runs about six ConsumerRunners) on one
 * JetStreamEventLog, each doing what ConsumerRunner.readBatch does when there is nothing to read:
 * wait up to 250 ms for the next offset, then read from it. Two ways, one after the other in this
 * process, each on a fresh stream:
 *   - baseline: the wait as it was before issue 15, rebuilt here on the log's own client: each wait
 *     gets an ordered headers-only consumer (a stream info), fetches one message from it and deletes
 *     it, and each read at the end asks the server for the stream's last sequence;
 *   - watcher: the log's `waitFor` and `read` as they are.
 * Figures: process CPU (process.cpuUsage: user + system, all threads) per second over
 * BENCH_SECONDS (default 10) of idle, after a 2 s settle and a full garbage collection; then the wake latency: another connection
 * appends one record every 200 ms (BENCH_WAKES, default 15, times), and the time from its append to
 * the moment the last of the six loops has read the record (p50 and max). Ends with one JSON line.
 * Needs NATS with JetStream at 127.0.0.1:4222 (BENCH_NATS).
 */
import { connect, type JetStreamClient, type JetStreamManager } from 'nats';
import { JetStreamEventLog } from '../src/serving/pipeline/jetstream-log.js';
import { quantile, round } from './support.js';

const servers = process.env.BENCH_NATS ?? 'nats://127.0.0.1:4222';
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const WAKES = Number(process.env.BENCH_WAKES ?? 15);
const RUNNERS = 6;
const WAIT_MS = 250;

interface Ops {
  waitFor(offset: number, ms: number): Promise<void>;
  read(from: number, max: number): Promise<number>;
}

/** The wait and the read at the end as they were before issue 15 (see the file's comment). */
function baselineOps(log: JetStreamEventLog): Ops {
  const js = log['js'] as JetStreamClient;
  const jsm = log['jsm'] as JetStreamManager;
  const stream = log.stream;
  let tail = 0;
  return {
    async waitFor(offset, ms) {
      if (offset < tail) return;
      const consumer = await js.consumers.get(stream, { opt_start_seq: offset + 1, headers_only: true });
      try {
        const msgs = await consumer.fetch({ max_messages: 1, expires: Math.max(1000, ms) });
        const timer = setTimeout(() => msgs.stop(), ms);
        for await (const m of msgs) tail = Math.max(tail, m.seq);
        clearTimeout(timer);
      } finally {
        await consumer.delete().catch(() => undefined);
      }
    },
    async read(from, max) {
      if (from >= tail) tail = Math.max(tail, (await jsm.streams.info(stream)).state.last_seq);
      const count = Math.min(max, tail - from);
      if (count <= 0) return 0;
      return (await log.read(from, count)).length;
    },
  };
}

function watcherOps(log: JetStreamEventLog): Ops {
  return { waitFor: (offset, ms) => log.waitFor(offset, ms), read: async (from, max) => (await log.read(from, max)).length };
}

interface Figures {
  cpu_ms_per_s: number;
  wake_p50_ms: number;
  wake_max_ms: number;
  reads_per_s: number;
}

async function measure(name: string, makeOps: (log: JetStreamEventLog) => Ops): Promise<Figures> {
  const stream = `WB_BENCH_IDLE_${name}_${process.pid}_${Date.now()}`;
  const log = await JetStreamEventLog.open({ servers, stream });
  const writer = await JetStreamEventLog.open({ servers, stream });
  const ops = makeOps(log);
  let stopping = false;
  let reads = 0;
  /** When each loop passed each offset. */
  const seen: number[][] = Array.from({ length: RUNNERS }, () => []);
  const loop = async (r: number) => {
    let position = 0;
    while (!stopping) {
      // ConsumerRunner's wait: the log's, raced with a timer of its own.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([ops.waitFor(position, WAIT_MS), new Promise<void>((ok) => (timer = setTimeout(ok, WAIT_MS + 10)))]);
      clearTimeout(timer);
      const n = await ops.read(position, 100);
      reads++;
      for (let i = 0; i < n; i++) seen[r]![position + i] = performance.now();
      position += n;
    }
  };
  const loops = Array.from({ length: RUNNERS }, (_, r) => loop(r));
  try {
    await sleep(2000);
    // A full collection first (the npm script passes --expose-gc): V8 otherwise tends to make one
    // when the allocation rate falls, i.e. in the idle window after the baseline's (20-40 ms of CPU).
    (globalThis as { gc?: () => void }).gc?.();
    const cpu0 = process.cpuUsage();
    const reads0 = reads;
    const t0 = performance.now();
    await sleep(SECONDS * 1000);
    const cpu = process.cpuUsage(cpu0);
    const wall = (performance.now() - t0) / 1000;
    const readsPerS = (reads - reads0) / wall;

    const latencies: number[] = [];
    for (let i = 0; i < WAKES; i++) {
      const at = performance.now();
      const { first } = await writer.append([`wake ${i}`]);
      const deadline = performance.now() + 5000;
      while (seen.some((s) => s[first] === undefined) && performance.now() < deadline) await sleep(1);
      if (seen.some((s) => s[first] === undefined)) throw new Error(`${name}: a loop did not read record ${first} within 5 s`);
      latencies.push(Math.max(...seen.map((s) => s[first]!)) - at);
      await sleep(200);
    }
    return {
      cpu_ms_per_s: round((cpu.user + cpu.system) / 1000 / wall, 1),
      wake_p50_ms: round(quantile(latencies, 0.5), 1),
      wake_max_ms: round(Math.max(...latencies), 1),
      reads_per_s: round(readsPerS, 1),
    };
  } finally {
    stopping = true;
    await Promise.all(loops);
    await Promise.all([log.close(), writer.close()]);
    const nc = await connect({ servers });
    const jsm = await nc.jetstreamManager();
    for (const s of [stream, `KV_${stream}_offsets`]) await jsm.streams.delete(s).catch(() => undefined);
    await nc.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const baseline = await measure('BASE', baselineOps);
  const watcher = await measure('WATCH', watcherOps);
  for (const [what, f] of [
    ['baseline (a consumer per wait)', baseline],
    ['watcher', watcher],
  ] as const) {
    console.log(
      `${what.padEnd(31)} idle ${f.cpu_ms_per_s} ms CPU/s (${RUNNERS} loops, ${f.reads_per_s} reads/s); wake after another connection's append p50 ${f.wake_p50_ms} ms, max ${f.wake_max_ms} ms`,
    );
  }
  const ratio = round(watcher.cpu_ms_per_s / baseline.cpu_ms_per_s, 2);
  console.log(`idle CPU, watcher / baseline: x${ratio}`);
  console.log(JSON.stringify({ bench: 'jetstream-idle', runners: RUNNERS, seconds: SECONDS, baseline, watcher, idle_cpu_ratio: ratio }));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
