/**
 * What the metrics consumer watches for anomalies, and how: the metrics it derives from the events
 * (counts, sums like revenue, gauges like response times) and the detector settings of each, from
 * a settings file (`wb serve --anomaly-settings <file>`) and the CLI.
 *
 * Settings are layered, each layer overriding the one before it for the settings it gives:
 * `SERIES_DEFAULTS` (series-detector.ts), then `SERVICE_DEFAULTS` below, then the file's `defaults`,
 * then a metric's own `settings`, then the CLI's (`--anomaly-step`, `--anomaly-time-zone`).
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { InputError } from '../../workbench/errors.js';
import { SeriesOverridesSchema, mergeSettings, type SeriesOverrides, type SeriesSettings } from './series-detector.js';

export const DIMENSIONS = ['event', 'country', 'device', 'tier'] as const;
export type Dimension = (typeof DIMENSIONS)[number];

/** One metric derived from the events; each combination of its label values is one series with its own detector. */
export const MonitoredMetricSchema = z
  .object({
    /** The series name (`events`, `revenue`, ...). */
    name: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'a lower-case name: letters, digits and _'),
    kind: z.enum(['count', 'sum', 'gauge']),
    /** Only events with these names (default: every event). */
    events: z.array(z.string().min(1)).min(1).optional(),
    /** The numeric prop a sum adds up or a gauge averages; an event without it is not part of the metric. */
    prop: z.string().min(1).optional(),
    /** Only positive values of the prop count (revenue: sales, not the refunds the retail log records as negative amounts). */
    positive: z.boolean().optional(),
    /**
     * A count of users rather than events: each user at most once per interval and series. One
     * session fires bursts of events, far noisier than the independent arrivals a count assumes.
     */
    distinctUsers: z.boolean().optional(),
    /** The label sets, one group of series per set (`[]`: the metric's total). Default `[[]]`. */
    by: z
      .array(z.array(z.enum(DIMENSIONS)))
      .min(1)
      .optional(),
    settings: SeriesOverridesSchema.optional(),
  })
  .strict()
  .refine((m) => m.kind === 'count' || m.prop !== undefined, { message: 'a sum or a gauge names the prop it reads', path: ['prop'] })
  .refine((m) => m.kind === 'count' || m.distinctUsers !== true, { message: 'only a count counts distinct users', path: ['distinctUsers'] });
export type MonitoredMetric = z.infer<typeof MonitoredMetricSchema>;

/** A settings file: defaults for every metric and, optionally, the metrics (replacing the built-in ones). */
export const AnomalySettingsSchema = z
  .object({
    defaults: SeriesOverridesSchema.optional(),
    metrics: z.array(MonitoredMetricSchema).min(1).optional(),
  })
  .strict()
  .refine((s) => new Set((s.metrics ?? []).map((m) => m.name)).size === (s.metrics ?? []).length, 'metric names must be distinct');
export type AnomalySettings = z.infer<typeof AnomalySettingsSchema>;

/** The monitor's configuration: a settings file's content and the CLI's overrides. */
export interface MonitorSettings {
  file?: AnomalySettings;
  overrides?: SeriesOverrides;
}

/**
 * The built-in metrics: users per event name by country and by device (counts, either way), revenue
 * (the sum of positive `props.amount`: the retail log's purchases, the simulator's add-on purchases;
 * drops alert) and response time (the mean of `props.latency_ms`; rises alert).
 */
export const DEFAULT_METRICS: readonly MonitoredMetric[] = [
  {
    name: 'events',
    kind: 'count',
    distinctUsers: true,
    by: [
      ['event', 'country'],
      ['event', 'device'],
    ],
  },
  // Sales only, alerting on drops: single wholesale orders and refunds of the retail log made an
  // incident every four days of a 60-day npm start, and neither is an outage.
  { name: 'revenue', kind: 'sum', prop: 'amount', positive: true, settings: { alertOn: 'drop' } },
  { name: 'latency_ms', kind: 'gauge', prop: 'latency_ms', settings: { alertOn: 'spike' } },
];

/**
 * The service's defaults over the detector's: 15-minute intervals (an outage of a series with ~40
 * users an hour pages within the hour; 5-minute ones would hold 4 weeks of 8,064 values per series),
 * and 3 days of history (288 intervals) before a baseline is trusted, so a new series' first
 * mornings are not taken for anomalies.
 */
export const SERVICE_DEFAULTS: SeriesOverrides = { stepMs: 15 * 60_000, minIntervals: 288 };

/** Each metric with its settings resolved through the layers. */
export function resolveMetrics(settings: MonitorSettings = {}): { metric: MonitoredMetric; settings: SeriesSettings }[] {
  const metrics = settings.file?.metrics ?? DEFAULT_METRICS;
  return metrics.map((metric) => {
    const merged = mergeSettings<SeriesOverrides>(SERVICE_DEFAULTS, settings.file?.defaults, metric.settings, settings.overrides);
    // A settings file is parsed, and SERVICE_DEFAULTS gives a step: a parse error here is the CLI's.
    const parsed = SeriesOverridesSchema.safeParse(merged);
    if (!parsed.success) throw new InputError(`anomaly settings of ${metric.name}: ${z.prettifyError(parsed.error)}`);
    return { metric, settings: { ...parsed.data, stepMs: parsed.data.stepMs ?? SERVICE_DEFAULTS.stepMs!, kind: metric.kind } };
  });
}

/** Reads and checks a settings file (JSON). */
export function loadAnomalySettings(path: string): AnomalySettings {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new InputError(`anomaly settings ${path}: ${(err as Error).message}`);
  }
  const parsed = AnomalySettingsSchema.safeParse(json);
  if (!parsed.success) throw new InputError(`anomaly settings ${path}: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}
