import type { EnrichedEvent } from '../../workbench/event.js';
import type { EventConsumer } from '../pipeline/consumer.js';
import type { AlertSink } from './alerts.js';
import { AnomalyDetector, type Alert, type AnomalyOptions } from './anomaly.js';

const EVALUATE_EVERY_MS = 60_000;
import type { Metrics } from './metrics.js';
import { TimeSeriesStore, type TimeSeriesStoreOptions } from './timeseries.js';

/**
 * The metrics consumer: counts every event of the log into the Prometheus counters and into the
 * time-series store (by name and country, and by name and device, by event time), and runs the
 * anomaly detector as event time advances. The store counts each user at most once per event name
 * and hour: one session fires several `feature_used` events, and such bursts are far noisier than
 * the independent arrivals the detector's Poisson floor assumes (on a clean six-week replay of the
 * simulator, raw counts raised dozens of false spikes; users per hour raise none). Its state is rebuilt from the log on start (the
 * detector needs weeks of history); alerts are held back until it has caught up, so a restart does
 * not page again for last week's outage.
 */
export class Monitor implements EventConsumer {
  readonly name = 'metrics';
  readonly store: TimeSeriesStore;
  readonly detector: AnomalyDetector;
  private catchUpUntil = 0;
  private nextEvaluation = 0;
  /** (hour, user, event) already counted, for the hours still arriving. */
  private counted = new Map<number, Set<string>>();

  constructor(
    private readonly metrics: Metrics,
    private readonly alerts: AlertSink,
    private readonly logEnd: () => Promise<number>,
    options: { store?: TimeSeriesStoreOptions; anomaly?: AnomalyOptions } = {},
  ) {
    this.store = new TimeSeriesStore(options.store);
    this.detector = new AnomalyDetector(this.store, options.anomaly);
  }

  async resumeAt(): Promise<number> {
    this.catchUpUntil = await this.logEnd();
    return 0;
  }

  async handle(events: EnrichedEvent[], first: number): Promise<void> {
    const m = this.metrics;
    const alerts: Alert[] = [];
    // Counter increments are summed per label set first: labelled inc() is costly at ingest rates.
    const counts = new Map<string, { event: string; country: string; device: string; n: number }>();
    for (const e of events) {
      const { country, device } = e.dims;
      const labels = `${e.event}\u0000${country}\u0000${device}`;
      const count = counts.get(labels);
      if (count) count.n++;
      else counts.set(labels, { event: e.event, country, device, n: 1 });
      const time = Date.parse(e.time);
      // Judge as event time passes, not once per batch: a replay's batch can span hours.
      if (time >= this.nextEvaluation) {
        alerts.push(...this.detector.evaluate(this.store.now));
        this.nextEvaluation = (Math.floor(time / EVALUATE_EVERY_MS) + 1) * EVALUATE_EVERY_MS;
      }
      const hour = Math.floor(time / 3_600_000);
      let users = this.counted.get(hour);
      if (!users) this.counted.set(hour, (users = new Set()));
      const key = `${e.user_id}\u0000${e.event}`;
      if (users.has(key)) continue;
      users.add(key);
      const event = m.label('event', e.event);
      this.store.add('events', { event, country: m.label('country', country) }, time);
      this.store.add('events', { event, device: m.label('device', device) }, time);
    }
    for (const c of counts.values()) {
      m.events.inc({ event: m.label('event', c.event), country: m.label('country', c.country), device: m.label('device', c.device) }, c.n);
    }
    // Hours well behind the newest event will not see more of their events.
    const horizon = Math.floor(this.store.now / 3_600_000) - 2;
    for (const hour of this.counted.keys()) if (hour < horizon) this.counted.delete(hour);
    m.countDroppedSeries(this.store.dropped);
    alerts.push(...this.detector.evaluate(this.store.now));
    if (first + events.length < this.catchUpUntil) return;
    for (const alert of alerts) {
      m.alerts.inc({ kind: alert.direction });
      this.alerts.raise(alert);
    }
  }
}
