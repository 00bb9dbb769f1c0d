import type { Logger } from './logger.js';
import type { Labels, SeriesKind } from './timeseries.js';

/** A metric series far from its expected value (series-detector.ts): the first interval of an incident. */
export interface AnomalyAlert {
  series: string;
  labels: Labels;
  /** The kind of metric: `count`, `sum` or `gauge`. */
  metric: SeriesKind;
  direction: 'drop' | 'spike';
  /** One interval far off (`point`), or several in a row off together (`shift`). */
  pattern: 'point' | 'shift';
  /** The interval's value: a count, a sum, or a gauge's mean. */
  observed: number;
  /** The value the baseline expected. */
  expected: number;
  /** How far off, in the series' robust standard deviations (z, or the median z of the last intervals), and the threshold it crossed. */
  score: number;
  threshold: number;
  /** The interval judged, ISO strings. */
  windowStart: string;
  windowEnd: string;
  /** Event time at which the alert was raised. */
  detectedAt: string;
  /** The id of the incident it opened. */
  incident: string;
}

/**
 * One anomaly from its first alert until the series has been ordinary for a while (the detector's
 * `quietIntervals`): the alerts of one episode grouped, updated as it goes on, resolved once.
 */
export interface Incident {
  kind: 'incident';
  /** `<series>@<start>`. */
  id: string;
  series: string;
  labels: Labels;
  metric: SeriesKind;
  direction: 'drop' | 'spike';
  /** Start of the first interval off. */
  start: string;
  /** Event time of the alert that opened it. */
  detectedAt: string;
  /** The interval farthest off so far, its value, the value expected, and z. */
  peak: { at: string; observed: number; expected: number; score: number };
  /** End of the last interval off so far. */
  end: string;
  /** Intervals off so far. */
  intervals: number;
  resolved: boolean;
  /** Event time at which it was resolved: the end of the interval that made the series ordinary long enough. */
  resolvedAt: string | null;
  /** The alert that opened it. */
  alert: AnomalyAlert;
}

/** An automatic experiment decision that operators must hear about (a rollback, a ship). */
export interface DecisionAlert {
  kind: 'decision';
  series: string;
  labels: { experiment: string };
  direction: 'rollback' | 'ship';
  reason: string;
  /** Event time at which it was decided. */
  detectedAt: string;
}

/** The event log was repaired at startup: a damaged tail cut, consumers moved back to its end. */
export interface LogRecoveryAlert {
  kind: 'log_recovery';
  series: 'event_log';
  labels: { log: string };
  /** What was cut and which offsets were lost, in words. */
  reason: string;
  /** The first offset cut or lost: the log's end after the repair. */
  end: number;
  detectedAt: string;
}

/** A consumer could not apply a record: it was set aside in the dead-letter store and the consumer went on. */
export interface DeadLetterAlert {
  kind: 'dead_letter';
  series: string;
  labels: { consumer: string };
  /** The letter (`wb dlq show <id>`) and the record's log offset. */
  id: string;
  offset: number;
  reason: string;
  detectedAt: string;
}

/** A served model's inputs have moved away from its training distribution (see models/drift.ts); raised once per episode. */
export interface FeatureDriftAlert {
  kind: 'feature_drift';
  /** `model/<name>`. */
  series: string;
  labels: { model: string; version: string };
  /** The features past a threshold when it was raised, worst first. */
  features: { feature: string; psi: number; outOfRange: number }[];
  /** Predictions in the window judged. */
  predictions: number;
  reason: string;
  detectedAt: string;
}

export type Alert = AnomalyAlert | DecisionAlert | LogRecoveryAlert | DeadLetterAlert | FeatureDriftAlert;

function describe(alert: Alert): string {
  if ('kind' in alert && alert.kind === 'log_recovery') return `event log recovery: ${alert.reason}`;
  if ('kind' in alert && alert.kind === 'feature_drift') return `feature drift: ${alert.reason}`;
  if ('kind' in alert && alert.kind === 'dead_letter')
    return `dead letter ${alert.id}: ${alert.labels.consumer} set record ${alert.offset} aside: ${alert.reason}`;
  return 'kind' in alert
    ? `experiment ${alert.labels.experiment}: ${alert.direction}: ${alert.reason}`
    : `anomaly: ${alert.series} ${alert.direction} (${round(alert.observed)}, expected ${round(alert.expected)}, z ${alert.score.toFixed(1)})`;
}

const round = (x: number) => Number(x.toPrecision(4));

/**
 * Where alerts go: the log (a warning), a bounded list served by `GET /v1/alerts`, and an optional
 * webhook (a JSON POST, retried a few times, never blocking the pipeline). Anomalies also open
 * incidents, kept beside the alerts: the webhook receives `{ alert, incident }` when one opens and
 * `{ incident }` when it is resolved; updates in between (its peak, its end) are only listed.
 *
 * `notifies` says which alerts this sink sends out (the webhook): with several instances each one
 * raises the alerts computed from the shared log, and only one of them (the holder of a lease) posts.
 */
export class AlertSink {
  private readonly recent: Alert[] = [];
  private readonly incidentsById = new Map<string, Incident>();
  private readonly listeners = new Set<(alert: Alert) => void>();

  constructor(
    private readonly logger: Logger,
    private readonly webhook?: string,
    private readonly keep = 1000,
    private readonly notifies: (alert: Alert) => boolean = () => true,
  ) {}

  /** An alert; an anomaly's opens `incident`. */
  raise(alert: Alert, incident?: Incident): void {
    this.recent.push(alert);
    if (this.recent.length > this.keep) this.recent.shift();
    if (incident) this.keepIncident(incident);
    this.logger.warn({ alert }, describe(alert));
    for (const l of this.listeners) l(alert);
    if (this.webhook && this.notifies(alert)) void this.post(incident ? { alert, incident } : { alert }, alert.series);
  }

  /** An incident goes on: a new peak, a later end. */
  update(incident: Incident): void {
    if (this.incidentsById.has(incident.id)) this.incidentsById.set(incident.id, incident);
  }

  /** An incident is over. */
  resolve(incident: Incident): void {
    if (!this.incidentsById.has(incident.id)) return;
    this.incidentsById.set(incident.id, incident);
    this.logger.info(
      { incident: { ...incident, alert: undefined } },
      `resolved: ${incident.series} ${incident.direction} from ${incident.start} to ${incident.end}`,
    );
    for (const l of this.listeners) l(incident.alert);
    if (this.webhook && this.notifies(incident.alert)) void this.post({ incident }, incident.series);
  }

  /** Newest first, optionally only those detected at or after `since` (event time). */
  list(since?: number): Alert[] {
    return this.recent.filter((a) => since === undefined || Date.parse(a.detectedAt) >= since).reverse();
  }

  /** Incidents, newest first; open ones, and resolved ones detected at or after `since` (event time). */
  incidents(since?: number): Incident[] {
    return [...this.incidentsById.values()].filter((i) => !i.resolved || since === undefined || Date.parse(i.detectedAt) >= since).reverse();
  }

  private keepIncident(incident: Incident): void {
    this.incidentsById.set(incident.id, incident);
    // Bounded like the alerts: the oldest resolved ones go first (a Map iterates in insertion order).
    for (const [id, i] of this.incidentsById) {
      if (this.incidentsById.size <= this.keep) break;
      if (i.resolved || this.incidentsById.size > 2 * this.keep) this.incidentsById.delete(id);
    }
  }

  onAlert(listener: (alert: Alert) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async post(body: { alert?: Alert; incident?: Incident }, series: string): Promise<void> {
    for (let attempt = 1; attempt <= 3; attempt++) {
      try {
        const res = await fetch(this.webhook!, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(5000),
        });
        if (res.ok) return;
        throw new Error(`status ${res.status}`);
      } catch (err) {
        if (attempt === 3) this.logger.error({ err, webhook: this.webhook, series }, 'alert webhook failed');
        else await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
  }
}
