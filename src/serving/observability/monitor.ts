import type { EnrichedEvent } from '../../workbench/event.js';
import type { EventConsumer } from '../pipeline/consumer.js';
import { SLICE_MS, TimeSlices } from '../../workbench/time-slices.js';
import type { AlertSink, AnomalyAlert, Incident } from './alerts.js';
import type { Metrics } from './metrics.js';
import { resolveMetrics, type Dimension, type MonitorSettings, type MonitoredMetric } from './monitor-settings.js';
import { SeriesDetector, type Episode, type InputVerdict, type SeriesAlert, type SeriesSettings } from './series-detector.js';
import { TimeSeriesStore, seriesKey, type Labels, type TimeSeriesStoreOptions } from './timeseries.js';

const EVALUATE_EVERY_MS = 60_000;
/**
 * Intervals one detector judges before the monitor looks at the time (after a quiet spell a series
 * has up to four weeks of them): a few hundred µs of work.
 */
const JUDGE_CHUNK = 64;

/** A metric ready to apply to events. */
interface Rule {
  /** Its place in the rules. */
  index: number;
  metric: MonitoredMetric;
  settings: SeriesSettings;
  events?: ReadonlySet<string>;
  by: readonly (readonly Dimension[])[];
}

/** Raw label values, one level per dimension, down to the series they make. */
interface SeriesNode {
  children: Map<string, SeriesNode>;
  series?: { key: string; labels: Labels };
}

interface Watched {
  key: string;
  name: string;
  labels: Labels;
  kind: SeriesSettings['kind'];
  detector: SeriesDetector;
  /** The incident of the episode in progress. */
  incident?: Incident;
}

/**
 * The metrics consumer: counts every event of the log into the Prometheus counters, derives the
 * monitored metrics from it (monitor-settings.ts: users per event name by country and by device,
 * revenue, response time, or a settings file's) into the time-series store, and feeds one
 * SeriesDetector per series, judged as event time advances (series-detector.ts explains the rule).
 * What the detectors refuse or cannot judge (non-finite values, far-future and late times, gaps)
 * is counted on `/metrics` (`wb_anomaly_points_total{outcome}`, `wb_anomaly_unknown_intervals_total`).
 *
 * An alert opens an incident; it is updated (peak, end) as its episode goes on and resolved when the
 * series has been ordinary for a while: one page per incident, and one message when it is over.
 * State is rebuilt from the log on start (the detectors need weeks of history); alerts and incidents
 * are held back until it has caught up, so a restart does not page again for last week's outage.
 *
 * The work is sliced (`SLICE_MS`): catching up on 120 days of the default data judges about a
 * million intervals, and a batch of a replay can span hours of event time, so `handle` gives the
 * event loop back every few milliseconds (between events, between series, and within a series
 * every `JUDGE_CHUNK` intervals) rather than holding every request for the length of a batch.
 * `npm run bench:monitor` measures the catch-up and the longest stretch.
 */
export class Monitor implements EventConsumer {
  readonly name = 'metrics';
  readonly store: TimeSeriesStore;
  private readonly rules: Rule[];
  private readonly watched = new Map<string, Watched>();
  private catchUpUntil = 0;
  private nextEvaluation = 0;
  /** Users already counted, by interval start and series, for the distinct-user counts' intervals still arriving. */
  private counted = new Map<number, Map<string, Set<string>>>();
  private readonly unknownReported = { total: 0 };
  /** See seriesOf: per rule, per label set, a tree of raw label values. */
  private seriesTrees: SeriesNode[][] = [];
  private seriesNodes = 0;
  /**
   * One budget across batches: the runner may hand over the next batch without the event loop
   * turning in between, and the stretch then runs on from the last batch's.
   */
  private readonly slices = new TimeSlices(SLICE_MS);

  constructor(
    private readonly metrics: Metrics,
    private readonly alerts: AlertSink,
    private readonly logEnd: () => Promise<number>,
    options: { store?: TimeSeriesStoreOptions; anomaly?: MonitorSettings; clock?: () => number } = {},
  ) {
    // A detector holds ~210 KB at 15-minute intervals (4 weeks of values, its residuals in arrival
    // and in sorted order, its alert budget; measured over 200 series): 1,000 series by default,
    // ~210 MB. Points of further series are refused and counted (wb_timeseries_dropped_total).
    this.store = new TimeSeriesStore({ maxSeries: 1_000, ...options.store, clock: options.clock });
    this.clock = options.clock;
    this.rules = resolveMetrics(options.anomaly).map(({ metric, settings }, index) => ({
      index,
      metric,
      settings,
      events: metric.events ? new Set(metric.events) : undefined,
      by: metric.by ?? [[]],
    }));
  }

  private readonly clock?: () => number;

  /** The settings of each monitored metric, resolved. */
  get settings(): { name: string; settings: SeriesSettings }[] {
    return this.rules.map((r) => ({ name: r.metric.name, settings: r.settings }));
  }

  /** The detector of a series (`events{country="GB",event="login"}`), once it has had a value. */
  detector(key: string): SeriesDetector | undefined {
    return this.watched.get(key)?.detector;
  }

  async resumeAt(): Promise<number> {
    this.catchUpUntil = await this.logEnd();
    return 0;
  }

  async handle(events: EnrichedEvent[], first: number): Promise<void> {
    const slices = this.slices;
    const m = this.metrics;
    const raised: { w: Watched; alert: AnomalyAlert }[] = [];
    const ended: { w: Watched; episode: Episode }[] = [];
    const verdicts: Record<InputVerdict, number> = { accepted: 0, merged: 0, late: 0, nonFinite: 0, future: 0 };
    // Counter increments are summed per label set first: labelled inc() is costly at ingest rates.
    const counts = new Map<string, { event: string; country: string; device: string; n: number }>();
    for (const e of events) {
      const { country, device } = e.dims;
      const labelKey = `${e.event}\u0000${country}\u0000${device}`;
      const count = counts.get(labelKey);
      if (count) count.n++;
      else counts.set(labelKey, { event: e.event, country, device, n: 1 });
      const time = Date.parse(e.time);
      // Judge as event time passes, not once per batch: a replay's batch can span hours.
      if (time >= this.nextEvaluation) {
        await this.evaluate(this.store.now, raised, ended, slices);
        this.nextEvaluation = (Math.floor(time / EVALUATE_EVERY_MS) + 1) * EVALUATE_EVERY_MS;
      }
      for (const rule of this.rules) {
        if (rule.events && !rule.events.has(e.event)) continue;
        let value = 1;
        if (rule.metric.prop !== undefined) {
          if (!Object.hasOwn(e.props, rule.metric.prop)) continue;
          const v = e.props[rule.metric.prop];
          // A prop that is there but not a finite number is refused and counted, never read as 0.
          if (typeof v !== 'number' || !Number.isFinite(v)) {
            verdicts.nonFinite++;
            continue;
          }
          if (rule.metric.positive && !(v > 0)) continue;
          value = v;
        }
        for (let i = 0; i < rule.by.length; i++) {
          const { key, labels } = this.seriesOf(rule, i, e);
          if (rule.metric.distinctUsers) {
            const intervalStart = Math.floor(time / rule.settings.stepMs) * rule.settings.stepMs;
            let interval = this.counted.get(intervalStart);
            if (!interval) this.counted.set(intervalStart, (interval = new Map()));
            let users = interval.get(key);
            if (!users) interval.set(key, (users = new Set()));
            if (users.has(e.user_id)) continue;
            users.add(e.user_id);
          }
          if (!this.store.add(rule.metric.name, labels, time, value, rule.metric.kind, key)) continue;
          let w = this.watched.get(key);
          if (!w) {
            w = {
              key,
              name: rule.metric.name,
              labels,
              kind: rule.metric.kind,
              detector: new SeriesDetector(rule.settings, this.clock),
            };
            this.watched.set(key, w);
          }
          verdicts[w.detector.push(time, value)]++;
        }
      }
      const pause = slices.pause();
      if (pause) await pause;
    }
    for (const c of counts.values()) {
      m.events.inc({ event: m.label('event', c.event), country: m.label('country', c.country), device: m.label('device', c.device) }, c.n);
    }
    // Intervals well behind the newest event will not see more of their users.
    const horizon = this.store.now - 2 * 3_600_000 - Math.max(...this.rules.map((r) => r.settings.stepMs));
    for (const start of this.counted.keys()) if (start < horizon) this.counted.delete(start);
    m.countDroppedSeries(this.store.dropped);
    await this.evaluate(this.store.now, raised, ended, slices);
    for (const outcome of Object.keys(verdicts) as InputVerdict[])
      if (verdicts[outcome] > 0) m.anomalyPoints.inc({ outcome: OUTCOME[outcome] }, verdicts[outcome]);
    this.countUnknown();
    if (first + events.length < this.catchUpUntil) {
      for (const w of this.watched.values()) w.incident = undefined;
      return;
    }
    for (const { w, alert } of raised) {
      m.alerts.inc({ kind: alert.direction });
      const episode = w.detector.openEpisode;
      w.incident = episode && episode.alert.intervalStart === Date.parse(alert.windowStart) ? incidentOf(w, episode, alert) : undefined;
      this.alerts.raise(alert, w.incident);
    }
    for (const { w, episode } of ended) {
      if (!w.incident || w.incident.start !== new Date(episode.alert.intervalStart).toISOString()) continue;
      this.alerts.resolve({ ...incidentOf(w, episode, w.incident.alert), resolved: true, resolvedAt: new Date(episode.closedAt!).toISOString() });
      w.incident = undefined;
    }
    for (const w of this.watched.values()) {
      const episode = w.detector.openEpisode;
      if (w.incident && episode) this.alerts.update(incidentOf(w, episode, w.incident.alert));
    }
  }

  /**
   * The series of `rule`'s `i`-th label set that `e` belongs to: its labels (mapped by the metrics'
   * vocabulary, each value's mapping fixed once seen) and its key, remembered by the raw values, so
   * that each event does not sort and escape labels again. Bounded: the raw values come from outside.
   */
  private seriesOf(rule: Rule, i: number, e: EnrichedEvent): { key: string; labels: Labels } {
    const dims = rule.by[i]!;
    if (this.seriesNodes > 100_000) {
      this.seriesTrees = [];
      this.seriesNodes = 0;
    }
    const trees = (this.seriesTrees[rule.index] ??= []);
    // Typed: notebooks compile this file with an older TypeScript, which infers `??=` too narrowly.
    let node: SeriesNode = (trees[i] ??= { children: new Map<string, SeriesNode>() });
    for (const d of dims) {
      const value = d === 'event' ? e.event : e.dims[d];
      let next = node.children.get(value);
      if (!next) {
        node.children.set(value, (next = { children: new Map<string, SeriesNode>() }));
        this.seriesNodes++;
      }
      node = next;
    }
    if (!node.series) {
      const labels: Record<string, string> = {};
      for (const d of dims) labels[d] = this.metrics.label(d, d === 'event' ? e.event : e.dims[d]);
      node.series = { key: seriesKey(rule.metric.name, labels), labels: Object.freeze(labels) };
    }
    return node.series;
  }

  /** Judges every series up to event time `nowMs`, collecting new alerts and closed episodes; pauses when `slices` says. */
  private async evaluate(
    nowMs: number,
    raised: { w: Watched; alert: AnomalyAlert }[],
    ended: { w: Watched; episode: Episode }[],
    slices: TimeSlices,
  ): Promise<void> {
    if (!Number.isFinite(nowMs)) return;
    let detectedAt: string | undefined;
    // Only handle adds series, and it waits for this: the map does not change during a pause.
    for (const w of this.watched.values()) {
      const d = w.detector;
      // Most series have nothing to judge at most evaluations (one a minute, intervals of 15).
      if (d.caughtUp(nowMs)) continue;
      for (;;) {
        const alerts = d.advance(nowMs, JUDGE_CHUNK);
        if (alerts.length > 0) this.collect(w, alerts, (detectedAt ??= new Date(nowMs).toISOString()), raised);
        for (const episode of d.takeEnded()) ended.push({ w, episode });
        if (d.caughtUp(nowMs)) break;
        const pause = slices.pause();
        if (pause) await pause;
      }
      const pause = slices.pause();
      if (pause) await pause;
    }
  }

  private collect(w: Watched, alerts: SeriesAlert[], detectedAt: string, raised: { w: Watched; alert: AnomalyAlert }[]): void {
    for (const a of alerts) {
      raised.push({
        w,
        alert: {
          series: w.key,
          labels: w.labels,
          metric: w.kind,
          direction: a.direction,
          pattern: a.pattern,
          observed: a.observed,
          expected: a.expected,
          score: a.score,
          threshold: a.threshold,
          windowStart: new Date(a.intervalStart).toISOString(),
          windowEnd: new Date(a.intervalEnd).toISOString(),
          detectedAt,
          incident: `${w.key}@${new Date(a.intervalStart).toISOString()}`,
        },
      });
    }
  }

  private countUnknown(): void {
    let total = 0;
    for (const w of this.watched.values()) total += w.detector.counts.unknownIntervals;
    if (total > this.unknownReported.total) this.metrics.anomalyUnknownIntervals.inc(total - this.unknownReported.total);
    this.unknownReported.total = Math.max(total, this.unknownReported.total);
  }
}

const OUTCOME: Record<InputVerdict, string> = { accepted: 'accepted', merged: 'merged', late: 'late', nonFinite: 'non_finite', future: 'future' };

function incidentOf(w: Watched, episode: Episode, alert: AnomalyAlert): Incident {
  return {
    kind: 'incident',
    id: alert.incident,
    series: w.key,
    labels: w.labels,
    metric: w.kind,
    direction: alert.direction,
    start: new Date(episode.alert.intervalStart).toISOString(),
    detectedAt: alert.detectedAt,
    peak: {
      at: new Date(episode.peak.intervalStart).toISOString(),
      observed: episode.peak.observed,
      expected: episode.peak.expected,
      score: episode.peak.score,
    },
    end: new Date(episode.lastAnomalousEnd).toISOString(),
    intervals: episode.intervals,
    resolved: false,
    resolvedAt: null,
    alert,
  };
}
