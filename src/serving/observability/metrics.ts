import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { labelVocabulary, type VocabularyLabel } from './label-vocabulary.js';

/**
 * Prometheus metrics of the service. Labels are low-cardinality by construction: a metric can only
 * be declared with label names from `LabelName` (a user id is not one, so it cannot become a label);
 * the values of `event`, `country`, `device` and `tier`, which clients choose, must be known to the
 * project (label-vocabulary.ts) or are counted under `other`; and each label keeps at most
 * `MAX_VALUES` distinct values, later ones counted under `other`.
 */
export type LabelName =
  'event' | 'country' | 'device' | 'tier' | 'method' | 'route' | 'status' | 'consumer' | 'kind' | 'model' | 'version' | 'feature' | 'outcome';

const MAX_VALUES = 200;

export class Metrics {
  readonly registry = new Registry();
  private readonly seen = new Map<LabelName, Set<string>>();
  private readonly vocabulary: ReadonlyMap<VocabularyLabel, ReadonlySet<string>>;
  private droppedSeriesReported = 0;

  readonly events = new Counter({
    name: 'wb_events_total',
    help: 'Events in the log, by name, country and device of the user',
    labelNames: ['event', 'country', 'device'] satisfies LabelName[],
    registers: [this.registry],
  });
  readonly ingestBatchSize = new Histogram({
    name: 'wb_ingest_batch_events',
    help: 'Events per ingest request',
    buckets: [1, 10, 50, 100, 500, 1000, 5000, 10000],
    registers: [this.registry],
  });
  readonly ingestSeconds = new Histogram({
    name: 'wb_ingest_seconds',
    help: 'Time from request to durable acknowledgement of an ingest batch',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly rejected = new Counter({ name: 'wb_ingest_rejected_total', help: 'Events rejected at ingest', registers: [this.registry] });
  readonly duplicates = new Counter({ name: 'wb_ingest_duplicates_total', help: 'Retried events dropped at ingest', registers: [this.registry] });
  readonly http = new Counter({
    name: 'wb_http_requests_total',
    help: 'HTTP requests by method, route and status',
    labelNames: ['method', 'route', 'status'] satisfies LabelName[],
    registers: [this.registry],
  });
  readonly consumerLag = new Gauge({
    name: 'wb_consumer_lag_events',
    help: 'Events in the log that a consumer has not handled yet',
    labelNames: ['consumer'] satisfies LabelName[],
    registers: [this.registry],
  });
  readonly predictions = new Counter({
    name: 'wb_predictions_total',
    help: 'Predictions served, by model name',
    labelNames: ['model'] satisfies LabelName[],
    registers: [this.registry],
  });
  // Model and feature names come from published bundles (an admin's); versions are those the drift
  // monitor keeps (a few), their series removed when it drops one (models/drift.ts).
  readonly featurePsi = new Gauge({
    name: 'wb_model_feature_psi',
    help: "Population stability index of a served feature's recent values against the model version's training distribution",
    labelNames: ['model', 'version', 'feature'] satisfies LabelName[],
    registers: [this.registry],
  });
  readonly featureOutOfRange = new Gauge({
    name: 'wb_model_feature_out_of_range_ratio',
    help: "Share of a served feature's recent values outside the model version's training range",
    labelNames: ['model', 'version', 'feature'] satisfies LabelName[],
    registers: [this.registry],
  });
  readonly driftWindow = new Gauge({
    name: 'wb_model_drift_window_predictions',
    help: 'Recent predictions of a model version the drift gauges are computed over',
    labelNames: ['model', 'version'] satisfies LabelName[],
    registers: [this.registry],
  });
  readonly alerts = new Counter({
    name: 'wb_alerts_total',
    help: 'Anomaly alerts raised',
    labelNames: ['kind'] satisfies LabelName[],
    registers: [this.registry],
  });
  // The anomaly detectors' inputs, so that nothing is absorbed silently (monitor.ts); `outcome` takes
  // the detector's five verdicts only.
  readonly anomalyPoints = new Counter({
    name: 'wb_anomaly_points_total',
    help: 'Points of the monitored metrics by outcome: accepted (first of its interval), merged (into an interval that had one), refused as late (interval already judged), non_finite (NaN, an infinity, a prop that is not a number) or future (stamped far ahead of the clock)',
    labelNames: ['outcome'] satisfies LabelName[],
    registers: [this.registry],
  });
  readonly anomalyUnknownIntervals = new Counter({
    name: 'wb_anomaly_unknown_intervals_total',
    help: 'Intervals of a monitored series without a value that could not be taken as zero (a gauge measured nothing, a DST change skipped them): unknown, never judged',
    registers: [this.registry],
  });
  readonly deadLetters = new Counter({
    name: 'wb_dead_letters_total',
    help: 'Records a consumer could not apply, set aside in the dead-letter store',
    labelNames: ['consumer'] satisfies LabelName[],
    registers: [this.registry],
  });
  readonly openDeadLetters = new Gauge({
    name: 'wb_dead_letters_open',
    help: 'Dead letters not yet retried successfully',
    labelNames: ['consumer'] satisfies LabelName[],
    registers: [this.registry],
  });
  readonly logRecoveries = new Counter({
    name: 'wb_log_recoveries_total',
    help: 'Repairs of the event log at startup: a damaged tail cut, or consumers moved back to its end',
    registers: [this.registry],
  });
  readonly droppedCohortEvents = new Counter({
    name: 'wb_aggregates_cohort_dropped_total',
    help: 'Events the live aggregates counted per event name only, their cohort cells over the cell budget',
    registers: [this.registry],
  });
  readonly exposuresRelogged = new Counter({
    name: 'wb_experiment_exposures_relogged_total',
    help: "Experiment exposures the decider's holder logged for an instance that stopped between assigning a user and logging the exposure",
    registers: [this.registry],
  });
  readonly droppedSeries = new Counter({
    name: 'wb_timeseries_dropped_total',
    help: 'Points refused by the time-series store because of its series cap',
    registers: [this.registry],
  });

  /** `eventNames`: the event names the service is configured to accept (IngestOptions.eventNames), which take label slots too. */
  constructor(options: { eventNames?: Iterable<string> } = {}) {
    this.vocabulary = labelVocabulary(options.eventNames);
    collectDefaultMetrics({ register: this.registry, prefix: 'wb_process_' });
    // prom-client names these gauges like counters, which `promtool check metrics` refuses; the same
    // numbers remain by type in wb_process_nodejs_active_{handles,requests,resources}.
    for (const name of ['handles', 'requests', 'resources']) this.registry.removeSingleMetric(`wb_process_nodejs_active_${name}_total`);
  }

  /** The time-series store's running count of refused points (it only grows while the process lives), as the counter. */
  countDroppedSeries(total: number): void {
    if (total > this.droppedSeriesReported) this.droppedSeries.inc(total - this.droppedSeriesReported);
    this.droppedSeriesReported = Math.max(this.droppedSeriesReported, total);
  }

  /** A label value; `other` when it is not in the label's vocabulary, or once the label already has MAX_VALUES distinct values. */
  label(name: LabelName, value: string): string {
    const known = this.vocabulary.get(name as VocabularyLabel);
    if (known && !known.has(value)) return 'other';
    let values = this.seen.get(name);
    if (!values) this.seen.set(name, (values = new Set()));
    if (values.has(value)) return value;
    if (values.size >= MAX_VALUES) return 'other';
    values.add(value);
    return value;
  }
}
