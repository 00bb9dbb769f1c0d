import { own } from '../../workbench/dict.js';
import type { FeatureValue } from '../../workbench/features/definition.js';
import { binIndex, outsideRange, proportions, PSI_EPSILON, summaryOf, type FeatureDistribution } from '../../workbench/models/distribution.js';
import type { ModelBundle } from '../../workbench/models/bundle.js';
import type { AlertSink, FeatureDriftAlert } from '../observability/alerts.js';
import type { Metrics } from '../observability/metrics.js';

/** How the drift monitor judges (every field has a default). */
export interface DriftOptions {
  /** Predictions per model version the live distribution is kept over (a sliding window); default 1000. */
  window?: number;
  /** Predictions in the window before anything is judged; default 200. */
  minPredictions?: number;
  /** PSI past which a feature drifts; default 0.25, the usual "major shift". */
  psi?: number;
  /** Share of values outside the training range past which a feature drifts; default 0.05. */
  outOfRange?: number;
  /** A version without a prediction for this long (wall clock, ms) is dropped with its series; default an hour. */
  idleMs?: number;
  /** Versions followed at once; the least recently used one is dropped past it. Default 16. */
  maxVersions?: number;
}

/** A served value outside the range of the training values, as `/v1/predict` reports it. */
export interface OutOfRange {
  feature: string;
  value: number;
  min: number;
  max: number;
}

/** One feature of a served model version: its live distribution against the training one. */
export interface FeatureDrift {
  feature: string;
  of: FeatureDistribution['of'];
  /** NaN until the window holds a value. */
  psi: number;
  /** Share of the window's values outside [min, max]. */
  outOfRange: number;
  /** Values in the window (missing ones are not counted). */
  values: number;
  min: number;
  max: number;
  edges: number[];
  /** Share of training and of live values per bin. */
  expected: number[];
  actual: number[];
  drifting: boolean;
}

/** A served model version's drift: every summarised feature, and whether an episode is open. */
export interface VersionDrift {
  model: string;
  version: string;
  /** Predictions in the window, and since the version was first seen. */
  predictions: number;
  observed: number;
  /** Whether the window holds enough predictions to be judged. */
  judged: boolean;
  /** An alert was raised and the drift has not ended since. */
  alerting: boolean;
  features: FeatureDrift[];
}

const MISSING = 0xff;
const OUTSIDE = 0x80;

/**
 * The live distribution of each served feature per model version, against the training
 * distribution its bundle carries (`training`, see workbench/models/distribution.ts).
 *
 * Every prediction (`/v1/predict`, and precomputed scores too: they are served to the app as much
 * as an answer is) puts the values the model read into a sliding window of the version's last
 * `window` predictions: per feature, one byte per prediction, its training bin and whether it lay
 * outside the training range, with running counts per bin, so memory is window x features bytes per
 * version and a prediction costs a few array updates. PSI and the out-of-range share are computed
 * from the counts. Once the window holds `minPredictions`, a version with a feature past either
 * threshold opens an episode: one `feature_drift` alert naming the features, none again until every
 * feature is back under 80% of both thresholds (so a PSI wavering at the threshold does not alert
 * on every prediction). Versions are kept apart because each has its own training distribution;
 * a bundle without one (made before it was recorded) is not followed. Request-time `values` count
 * like stored ones: they are what the model scored. Each instance of the service judges the
 * predictions it serves (the windows are in its memory); behind a proxy each sees a sample of the
 * same traffic, and a restart starts the windows empty.
 *
 * /metrics exposes `wb_model_feature_psi`, `wb_model_feature_out_of_range_ratio` and
 * `wb_model_drift_window_predictions` per model, version and feature, refreshed at each scrape.
 */
export class DriftMonitor {
  private readonly versions = new Map<string, Monitored>();
  private readonly o: Required<DriftOptions>;
  /** Orders versions by last use (the wall clock can give two the same millisecond). */
  private tick = 0;

  constructor(
    private readonly sinks: { alerts?: AlertSink; metrics?: Metrics; now?: () => number } = {},
    options: DriftOptions = {},
  ) {
    this.o = { window: 1000, minPredictions: 200, psi: 0.25, outOfRange: 0.05, idleMs: 3_600_000, maxVersions: 16, ...options };
    if (!(this.o.minPredictions >= 1) || !(this.o.window >= this.o.minPredictions))
      throw new RangeError(`drift: minPredictions (${this.o.minPredictions}) must be at least 1 and no more than the window (${this.o.window})`);
  }

  /**
   * Counts one prediction's feature values; returns the numeric ones outside the training range
   * (undefined when the bundle has no training distribution, so nothing can be said).
   */
  observe(bundle: ModelBundle, values: Readonly<Record<string, FeatureValue>>): OutOfRange[] | undefined {
    const m = this.monitored(bundle);
    if (!m) return undefined;
    const outside = m.add(values);
    this.judge(m);
    return outside;
  }

  /** Counts a batch of predictions (the precompute's), judging once at the end. */
  observeMany(bundle: ModelBundle, rows: readonly Readonly<Record<string, FeatureValue>>[]): void {
    const m = this.monitored(bundle);
    if (!m || rows.length === 0) return;
    for (const row of rows) m.add(row);
    this.judge(m);
  }

  /** The drift of every version followed, or of one model's. */
  report(model?: string): VersionDrift[] {
    const out: VersionDrift[] = [];
    for (const m of this.versions.values()) if (model === undefined || m.model === model) out.push(m.describe(this.o));
    return out;
  }

  /** Sets the gauges from the current windows and drops versions idle too long (before each scrape). */
  refreshMetrics(): void {
    const cutoff = Date.now() - this.o.idleMs;
    for (const [version, m] of this.versions) if (m.lastSeen < cutoff) this.drop(version);
    const metrics = this.sinks.metrics;
    if (!metrics) return;
    for (const m of this.versions.values()) {
      const d = m.describe(this.o);
      metrics.driftWindow.set(m.labels, d.predictions);
      d.features.forEach((f, i) => {
        // An empty window has no PSI: no sample rather than a NaN one.
        if (f.values === 0) return;
        metrics.featurePsi.set(m.featureLabels[i]!, f.psi);
        metrics.featureOutOfRange.set(m.featureLabels[i]!, f.outOfRange);
      });
    }
  }

  private monitored(bundle: ModelBundle): Monitored | undefined {
    let m = this.versions.get(bundle.version);
    if (!m) {
      const features = bundle.training?.features;
      if (!features || features.length === 0) return undefined;
      if (this.versions.size >= this.o.maxVersions) {
        const oldest = [...this.versions.values()].reduce((a, b) => (b.lastUsed < a.lastUsed ? b : a));
        this.drop(oldest.version);
      }
      const label = (name: 'model' | 'feature', value: string) => this.sinks.metrics?.label(name, value) ?? value;
      m = new Monitored(bundle.name, bundle.version, features, this.o.window, label);
      this.versions.set(bundle.version, m);
    }
    m.lastSeen = Date.now();
    m.lastUsed = ++this.tick;
    return m;
  }

  private judge(m: Monitored): void {
    if (m.size < this.o.minPredictions) return;
    const drifting: FeatureDriftAlert['features'] = [];
    let calm = true;
    m.dists.forEach((d, i) => {
      const { psi: p, outOfRange } = m.measure(i);
      if (!(p > this.o.psi * 0.8) && !(outOfRange > this.o.outOfRange * 0.8)) return;
      calm = false;
      if (p > this.o.psi || outOfRange > this.o.outOfRange) drifting.push({ feature: d.feature, psi: p, outOfRange });
    });
    if (m.alerting) {
      if (calm) m.alerting = false;
      return;
    }
    if (drifting.length === 0) return;
    m.alerting = true;
    drifting.sort((a, b) => b.psi - a.psi || b.outOfRange - a.outOfRange);
    const shown = drifting.map((f) => `${f.feature} (PSI ${f.psi.toFixed(2)}, ${(100 * f.outOfRange).toFixed(1)}% outside the training range)`);
    this.sinks.metrics?.alerts.inc({ kind: 'feature_drift' });
    this.sinks.alerts?.raise({
      kind: 'feature_drift',
      series: `model/${m.model}`,
      labels: { model: m.model, version: m.version },
      features: drifting,
      predictions: m.size,
      reason:
        `model ${m.model} version ${m.version}: over its last ${m.size} predictions, ${shown.join(', ')}; ` +
        `its scores may not hold for these users (thresholds: PSI ${this.o.psi}, ${100 * this.o.outOfRange}% outside)`,
      detectedAt: new Date((this.sinks.now ?? Date.now)()).toISOString(),
    });
  }

  private drop(version: string): void {
    const m = this.versions.get(version);
    if (!m) return;
    this.versions.delete(version);
    const metrics = this.sinks.metrics;
    if (!metrics) return;
    metrics.driftWindow.remove(m.labels);
    for (const labels of m.featureLabels) {
      metrics.featurePsi.remove(labels);
      metrics.featureOutOfRange.remove(labels);
    }
  }
}

/** One version's window: per feature a ring of codes (bin, OUTSIDE flag, or MISSING) and running counts. */
class Monitored {
  readonly codes: Uint8Array[];
  readonly counts: Int32Array[];
  readonly outside: Int32Array;
  readonly present: Int32Array;
  readonly expected: number[][];
  /** Per feature, whether its training distribution has a value in any bin (PSI is NaN without). */
  readonly trained: boolean[];
  readonly labels: { model: string; version: string };
  readonly featureLabels: { model: string; version: string; feature: string }[];
  size = 0;
  observed = 0;
  private head = 0;
  lastSeen = Date.now();
  lastUsed = 0;
  alerting = false;

  constructor(
    readonly model: string,
    readonly version: string,
    readonly dists: readonly FeatureDistribution[],
    private readonly capacity: number,
    label: (name: 'model' | 'feature', value: string) => string,
  ) {
    this.codes = dists.map(() => new Uint8Array(capacity));
    this.counts = dists.map((d) => new Int32Array(d.counts.length));
    this.outside = new Int32Array(dists.length);
    this.present = new Int32Array(dists.length);
    this.expected = dists.map((d) => proportions(d.counts));
    this.trained = dists.map((d) => d.counts.some((c) => c > 0));
    this.labels = { model: label('model', model), version };
    this.featureLabels = dists.map((d) => ({ ...this.labels, feature: label('feature', d.feature) }));
  }

  add(values: Readonly<Record<string, FeatureValue>>): OutOfRange[] {
    const full = this.size === this.capacity;
    const out: OutOfRange[] = [];
    this.dists.forEach((d, i) => {
      const ring = this.codes[i]!;
      if (full) this.forget(i, ring[this.head]!);
      const v = summaryOf(own(values, d.feature), d.of);
      let code = MISSING;
      if (typeof v === 'number') {
        const outside = outsideRange(d, v);
        code = binIndex(d.edges, v) | (outside ? OUTSIDE : 0);
        this.counts[i]![code & ~OUTSIDE]!++;
        this.present[i]!++;
        if (outside) {
          this.outside[i]!++;
          // A list's length is summarised, not served: only numeric values are reported per prediction.
          if (d.of === 'value') out.push({ feature: d.feature, value: v, min: d.min, max: d.max });
        }
      }
      ring[this.head] = code;
    });
    this.head = (this.head + 1) % this.capacity;
    if (!full) this.size++;
    this.observed++;
    return out;
  }

  private forget(i: number, code: number): void {
    if (code === MISSING) return;
    this.counts[i]![code & ~OUTSIDE]!--;
    this.present[i]!--;
    if (code & OUTSIDE) this.outside[i]!--;
  }

  /**
   * PSI as `psi()` in distribution.ts computes it (the same shares, terms and order, so the same
   * number), without its arrays: every prediction judges every feature of its model.
   */
  measure(i: number): { psi: number; outOfRange: number } {
    const present = this.present[i]!;
    const outOfRange = present > 0 ? this.outside[i]! / present : 0;
    const counts = this.counts[i]!;
    let total = 0;
    for (let b = 0; b < counts.length; b++) total += counts[b]!;
    if (!this.trained[i] || total === 0) return { psi: Number.NaN, outOfRange };
    const e = this.expected[i]!;
    let sum = 0;
    for (let b = 0; b < e.length; b++) {
      const ei = Math.max(e[b]!, PSI_EPSILON);
      const ai = Math.max(counts[b]! / total, PSI_EPSILON);
      sum += (ai - ei) * Math.log(ai / ei);
    }
    return { psi: sum, outOfRange };
  }

  describe(o: Required<DriftOptions>): VersionDrift {
    const judged = this.size >= o.minPredictions;
    return {
      model: this.model,
      version: this.version,
      predictions: this.size,
      observed: this.observed,
      judged,
      alerting: this.alerting,
      features: this.dists.map((d, i) => {
        const { psi: p, outOfRange } = this.measure(i);
        return {
          feature: d.feature,
          of: d.of,
          psi: p,
          outOfRange,
          values: this.present[i]!,
          min: d.min,
          max: d.max,
          edges: d.edges,
          expected: this.expected[i]!,
          actual: proportions(Array.from(this.counts[i]!)),
          drifting: judged && (p > o.psi || outOfRange > o.outOfRange),
        };
      }),
    };
  }
}

/** What the dashboard shows of a version's drift: its worst feature and the ones drifting. */
export interface DriftSummary {
  version: string;
  predictions: number;
  judged: boolean;
  alerting: boolean;
  /** The feature with the highest PSI (or out-of-range share), when the window holds values. */
  worst?: { feature: string; psi: number; outOfRange: number };
  drifting: { feature: string; psi: number; outOfRange: number }[];
}

/** A model's versions' drift, as the dashboard's models panel shows it. */
export function driftSummary(report: readonly VersionDrift[]): DriftSummary[] {
  return report.map((v) => {
    const measured = v.features.filter((f) => f.values > 0);
    const pick = ({ feature, psi: p, outOfRange }: FeatureDrift) => ({ feature, psi: p, outOfRange });
    const worst = measured.reduce<FeatureDrift | undefined>(
      (a, f) => (!a || f.psi > a.psi || (f.psi === a.psi && f.outOfRange > a.outOfRange) ? f : a),
      undefined,
    );
    return {
      version: v.version,
      predictions: v.predictions,
      judged: v.judged,
      alerting: v.alerting,
      ...(worst ? { worst: pick(worst) } : {}),
      drifting: v.features.filter((f) => f.drifting).map(pick),
    };
  });
}
