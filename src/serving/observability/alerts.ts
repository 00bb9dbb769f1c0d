import type { Logger } from './logger.js';
import type { Alert as AnomalyAlert } from './anomaly.js';

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
    : `anomaly: ${alert.series} ${alert.direction} (${alert.observed} events, expected ${Math.round(alert.expected)})`;
}

/**
 * Where alerts go: the log (a warning), a bounded list served by `GET /v1/alerts`, and an optional
 * webhook (a JSON POST, retried a few times, never blocking the pipeline).
 */
export class AlertSink {
  private readonly recent: Alert[] = [];
  private readonly listeners = new Set<(alert: Alert) => void>();

  constructor(
    private readonly logger: Logger,
    private readonly webhook?: string,
    private readonly keep = 1000,
  ) {}

  raise(alert: Alert): void {
    this.recent.push(alert);
    if (this.recent.length > this.keep) this.recent.shift();
    this.logger.warn({ alert }, describe(alert));
    for (const l of this.listeners) l(alert);
    if (this.webhook) void this.post(alert);
  }

  /** Newest first, optionally only those detected at or after `since` (event time). */
  list(since?: number): Alert[] {
    return this.recent.filter((a) => since === undefined || Date.parse(a.detectedAt) >= since).reverse();
  }

  onAlert(listener: (alert: Alert) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async post(alert: Alert): Promise<void> {
    for (let attempt = 1; attempt <= 3; attempt++) {
      try {
        const res = await fetch(this.webhook!, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ alert }),
          signal: AbortSignal.timeout(5000),
        });
        if (res.ok) return;
        throw new Error(`status ${res.status}`);
      } catch (err) {
        if (attempt === 3) this.logger.error({ err, webhook: this.webhook, series: alert.series }, 'alert webhook failed');
        else await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
  }
}
