/**
 * `npm run bench:monitor`: what the metrics consumer's anomaly detection costs when the service
 * catches up on its log, on the default data (the simulated app's defaults, 120 days, and the
 * retail log alongside on one timeline, stamped as `npm start` and bench:serving's deploy scenario
 * stamp them), in batches of 2,000 (the service's batch for this consumer):
 *   - baseline: the same events into the time-series store alone, as the consumer did before it
 *     ran detectors (the Prometheus counters and one store point per series an event belongs to);
 *   - monitor: the Monitor itself, catching up as on a restart (alerts held back until the log's
 *     end), its detectors judging every interval of the 120 days.
 * Figures: CPU ms per 1,000 events (process.cpuUsage, all threads), wall seconds for the whole
 * history, and the longest synchronous stretch: the largest gap between two turns of a
 * setImmediate ticker running beside it, i.e. the longest a request would have waited.
 * Goals: the monitor's catch-up well under the 13 s the whole service took to start before the
 * detectors (under 5 s), and no stretch over 10 ms. Ends with one JSON line.
 *
 * BENCH_DAYS=<n> plays fewer days (a quick look).
 */
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { appSource, mergeSources, retailSource } from '../src/app/replay.js';
import { SimulationConfigSchema } from '../src/app/simulator.js';
import { AlertSink } from '../src/serving/observability/alerts.js';
import { silentLogger } from '../src/serving/observability/logger.js';
import { Metrics } from '../src/serving/observability/metrics.js';
import { resolveMetrics } from '../src/serving/observability/monitor-settings.js';
import { Monitor } from '../src/serving/observability/monitor.js';
import { TimeSeriesStore } from '../src/serving/observability/timeseries.js';
import type { EnrichedEvent } from '../src/workbench/event.js';
import { round } from './support.js';

const DAY_MS = 86_400_000;
const BATCH = 2_000;

/** The default data on the app's calendar, enriched as ingest would (a user's country and device from the first event that names them). */
async function defaultData(days: number): Promise<EnrichedEvent[][]> {
  const app = appSource({});
  const calendar = app.origin!;
  const dims = new Map<string, EnrichedEvent['dims']>();
  const batches: EnrichedEvent[][] = [];
  let batch: EnrichedEvent[] = [];
  for await (const t of mergeSources([retailSource(), app])) {
    if (t.offset >= days * DAY_MS) break;
    const e = t.event;
    const time = new Date(calendar + t.offset).toISOString();
    let d = dims.get(e.user_id);
    if (!d) {
      d = { country: String(e.props.country ?? 'unknown'), device: String(e.props.device ?? 'unknown'), tier: 'free', first_seen: time };
      dims.set(e.user_id, d);
    }
    batch.push({ ...e, time, dims: d, experiments: {}, received_at: time });
    if (batch.length === BATCH) {
      batches.push(batch);
      batch = [];
    }
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

interface Run {
  cpuMs: number;
  wallMs: number;
  longestStretchMs: number;
  /** Stretches over 10 ms, and the longest garbage collection (a pause of the whole thread, whoever allocated) in the run. */
  over10ms: number;
  longestGcMs: number;
}

/**
 * Hands every batch to `handle`, turning the event loop between batches (as the consumer runner
 * does, which reads the next batch from the log), with a setImmediate ticker beside it.
 */
async function measure(batches: EnrichedEvent[][], handle: (events: EnrichedEvent[], first: number) => Promise<void> | void): Promise<Run> {
  let done = false;
  let last = performance.now();
  let longest = 0;
  let over10ms = 0;
  const tick = () => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    if (now - last > 10) over10ms++;
    last = now;
    if (!done) setImmediate(tick);
  };
  let longestGcMs = 0;
  const gc = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) longestGcMs = Math.max(longestGcMs, entry.duration);
  });
  gc.observe({ entryTypes: ['gc'] });
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  setImmediate(tick);
  let first = 0;
  for (const b of batches) {
    await handle(b, first);
    first += b.length;
    await new Promise((r) => setImmediate(r));
  }
  done = true;
  const wallMs = performance.now() - t0;
  const used = process.cpuUsage(cpu);
  await new Promise((r) => setImmediate(r)); // the observer's last entries
  gc.disconnect();
  return { cpuMs: (used.user + used.system) / 1000, wallMs, longestStretchMs: longest, over10ms, longestGcMs };
}

async function main(): Promise<void> {
  const days = Number(process.env.BENCH_DAYS ?? SimulationConfigSchema.parse({}).days);
  const batches = await defaultData(days);
  const events = batches.reduce((n, b) => n + b.length, 0);
  console.log(`the default data: ${events} events over ${days} days, in batches of ${BATCH}`);

  // Baseline: the counters and the store, without detectors.
  const rules = resolveMetrics();
  const baselineMetrics = new Metrics();
  const store = new TimeSeriesStore({ maxSeries: 1_000 });
  const baseline = await measure(batches, (batch) => {
    const counts = new Map<string, { event: string; country: string; device: string; n: number }>();
    for (const e of batch) {
      const key = `${e.event}\u0000${e.dims.country}\u0000${e.dims.device}`;
      const c = counts.get(key);
      if (c) c.n++;
      else counts.set(key, { event: e.event, country: e.dims.country, device: e.dims.device, n: 1 });
      const time = Date.parse(e.time);
      for (const { metric } of rules) {
        if (metric.events && !metric.events.includes(e.event)) continue;
        let value = 1;
        if (metric.prop !== undefined) {
          const v = e.props[metric.prop];
          if (typeof v !== 'number' || !Number.isFinite(v)) continue;
          value = v;
        }
        for (const by of metric.by ?? [[]]) {
          const labels: Record<string, string> = {};
          for (const d of by) labels[d] = baselineMetrics.label(d, d === 'event' ? e.event : e.dims[d]);
          store.add(metric.name, labels, time, value, metric.kind);
        }
      }
    }
    const m = baselineMetrics;
    for (const c of counts.values())
      m.events.inc({ event: m.label('event', c.event), country: m.label('country', c.country), device: m.label('device', c.device) }, c.n);
  });

  // The monitor catching up: the log's end is the whole history, so alerts are held back as on a restart.
  const monitor = new Monitor(new Metrics(), new AlertSink(silentLogger()), async () => events);
  await monitor.resumeAt();
  const run = await measure(batches, (batch, first) => monitor.handle(batch, first));
  const series = monitor.store.series().length;

  const perK = (r: Run) => round((r.cpuMs / events) * 1000, 2);
  const figures = (r: Run) => ({
    cpu_ms_per_1k_events: perK(r),
    seconds: round(r.wallMs / 1000, 2),
    longest_stretch_ms: round(r.longestStretchMs, 1),
    stretches_over_10ms: r.over10ms,
    longest_gc_ms: round(r.longestGcMs, 1),
  });
  for (const [what, r] of [
    ['store alone (baseline)', baseline],
    ['monitor catching up', run],
  ] as const) {
    console.log(
      `${what.padEnd(24)} ${perK(r)} ms CPU per 1,000 events, ${round(r.wallMs / 1000, 2)} s for the history, longest synchronous stretch ${round(r.longestStretchMs, 1)} ms ` +
        `(${r.over10ms} over 10 ms; longest garbage collection ${round(r.longestGcMs, 1)} ms)`,
    );
  }
  const ratio = round(run.cpuMs / baseline.cpuMs, 1);
  console.log(`${series} series; the monitor's CPU / the store's: ${ratio}x`);
  console.log(
    JSON.stringify({
      bench: 'monitor',
      events,
      days,
      series,
      baseline: figures(baseline),
      monitor: figures(run),
      ratio_cpu_monitor_to_baseline: ratio,
      goals: { catch_up_under_5s: run.wallMs < 5_000, longest_stretch_under_10ms: run.longestStretchMs < 10 },
    }),
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
