import type { EnrichedEvent } from '../../workbench/event.js';
import type { EventConsumer } from '../pipeline/consumer.js';
import type { AlertSink, AnomalyAlert, Incident } from './alerts.js';
import type { Metrics } from './metrics.js';
import { resolveMetrics, type Dimension, type MonitorSettings, type MonitoredMetric } from './monitor-settings.js';
import { SeriesDetector, type Episode, type InputVerdict, type SeriesSettings } from './series-detector.js';
import { TimeSeriesStore, seriesKey, type Labels, type TimeSeriesStoreOptions } from './timeseries.js';

const EVALUATE_EVERY_MS = 60_000;

/** A metric ready to apply to events. */
interface Rule {
  metric: MonitoredMetric;
  settings: SeriesSettings;
  events?: ReadonlySet<string>;
  by: readonly (readonly Dimension[])[];
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
 */
export class Monitor implements EventConsumer {
  readonly name = 'metrics';
  readonly store: TimeSeriesStore;
  private readonly rules: Rule[];
  private readonly watched = new Map<string, Watched>();
  private catchUpUntil = 0;
  private nextEvaluation = 0;
  /** (series, user) already counted by interval start, for the distinct-user counts' intervals still arriving. */
  private counted = new Map<number, Set<string>>();
  private readonly unknownReported = { total: 0 };

  constructor(
    private readonly metrics: Metrics,
    private readonly alerts: AlertSink,
    private readonly logEnd: () => Promise<number>,
    options: { store?: TimeSeriesStoreOptions; anomaly?: MonitorSettings; clock?: () => number } = {},
  ) {
    // A detector holds ~170 KB at 15-minute intervals (4 weeks of values, its residuals and its alert
    // budget; measured over 200 series): 1,000 series by default, ~170 MB. Points of further series
    // are refused and counted (wb_timeseries_dropped_total).
    this.store = new TimeSeriesStore({ maxSeries: 1_000, ...options.store, clock: options.clock });
    this.clock = options.clock;
    this.rules = resolveMetrics(options.anomaly).map(({ metric, settings }) => ({
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
    const m = this.metrics;
    const raised: { w: Watched; alert: AnomalyAlert }[] = [];
    const ended: { w: Watched; episode: Episode }[] = [];
    const verdicts = new Map<InputVerdict, number>();
    const tally = (v: InputVerdict, n = 1) => verdicts.set(v, (verdicts.get(v) ?? 0) + n);
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
        this.evaluate(this.store.now, raised, ended);
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
            tally('nonFinite');
            continue;
          }
          value = v;
        }
        for (const dims of rule.by) {
          const labels: Record<string, string> = {};
          for (const d of dims) labels[d] = m.label(d, d === 'event' ? e.event : e.dims[d]);
          const key = seriesKey(rule.metric.name, labels);
          if (rule.metric.distinctUsers) {
            const intervalStart = Math.floor(time / rule.settings.stepMs) * rule.settings.stepMs;
            let users = this.counted.get(intervalStart);
            if (!users) this.counted.set(intervalStart, (users = new Set()));
            const userKey = `${key}\u0000${e.user_id}`;
            if (users.has(userKey)) continue;
            users.add(userKey);
          }
          if (!this.store.add(rule.metric.name, labels, time, value, rule.metric.kind)) continue;
          let w = this.watched.get(key);
          if (!w) {
            w = {
              key,
              name: rule.metric.name,
              labels: Object.freeze({ ...labels }),
              kind: rule.metric.kind,
              detector: new SeriesDetector(rule.settings, this.clock),
            };
            this.watched.set(key, w);
          }
          tally(w.detector.push(time, value));
        }
      }
    }
    for (const c of counts.values()) {
      m.events.inc({ event: m.label('event', c.event), country: m.label('country', c.country), device: m.label('device', c.device) }, c.n);
    }
    // Intervals well behind the newest event will not see more of their users.
    const horizon = this.store.now - 2 * 3_600_000 - Math.max(...this.rules.map((r) => r.settings.stepMs));
    for (const start of this.counted.keys()) if (start < horizon) this.counted.delete(start);
    m.countDroppedSeries(this.store.dropped);
    this.evaluate(this.store.now, raised, ended);
    for (const [outcome, n] of verdicts) m.anomalyPoints.inc({ outcome: OUTCOME[outcome] }, n);
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

  /** Judges every series up to event time `nowMs`, collecting new alerts and closed episodes. */
  private evaluate(nowMs: number, raised: { w: Watched; alert: AnomalyAlert }[], ended: { w: Watched; episode: Episode }[]): void {
    if (!Number.isFinite(nowMs)) return;
    const detectedAt = new Date(nowMs).toISOString();
    for (const w of this.watched.values()) {
      for (const a of w.detector.advance(nowMs)) {
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
      for (const episode of w.detector.takeEnded()) ended.push({ w, episode });
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
