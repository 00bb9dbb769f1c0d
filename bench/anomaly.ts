/**
 * `npm run bench:anomaly`: the anomaly detectors, fed through their real code row by row, on the
 * seven NAB realKnownCause series (data/nab), scored by NAB's rules (bench/nab/scorer.ts, checked
 * against NAB's published per-file scores) under its three profiles, beside Numenta's HTM.
 *
 * - baseline: the service's count detector before issue 16 (bench/nab/count-detector.ts:
 *   AnomalyDetector over the TimeSeriesStore, hourly sums, hour-of-week baseline), early window =
 *   max(15 min, the data's step);
 * - series: SeriesDetector with its defaults, one configuration for all seven series; the only
 *   per-series inputs are properties of the unlabelled data: the kind of metric (nyc_taxi sums
 *   passengers per interval; the others are gauges: temperatures, CPU, latency, key timings) and the
 *   step (the median gap between timestamps). NAB's timestamps are local time without a zone, so
 *   both read them as UTC.
 * Alerts map to NAB detections as bench/nab/run.ts explains (row i is a detection when an alert was
 * raised right after it arrived). HTM: NAB's published standard-profile score on these files
 * (55.5); its low-FP and low-FN figures here rescore its standard-threshold detections under those
 * profiles (NAB optimises one threshold per profile, which publishes no per-file detections).
 */
import { AnomalyDetector } from './nab/count-detector.js';
import { SeriesDetector } from '../src/serving/observability/series-detector.js';
import { MINUTE_MS, TimeSeriesStore } from '../src/serving/observability/timeseries.js';
import { NAB_SERIES, loadNabSeries, loadPublishedDetections, type NabSeries } from './nab/data.js';
import { corpusScores, medianStep, runSeries, type RowDetector, type SeriesResult } from './nab/run.js';
import { round } from './support.js';

const series = NAB_SERIES.map((name) => loadNabSeries(name));
const published = loadPublishedDetections();

const detectors: Record<string, (s: NabSeries) => RowDetector> = {
  baseline: (s) => {
    const step = medianStep(s.times);
    const store = new TimeSeriesStore();
    const d = new AnomalyDetector(store, { earlyMinutes: Math.max(15, step / MINUTE_MS) });
    return {
      push(t, v) {
        store.add('nab', {}, t, v);
        return d.evaluate(t + step).length > 0;
      },
    };
  },
  series: (s) => {
    const step = medianStep(s.times);
    const d = new SeriesDetector({ kind: s.name === 'nyc_taxi' ? 'sum' : 'gauge', stepMs: step });
    return {
      push(t, v) {
        d.push(t, v);
        return d.advance(t + step).length > 0;
      },
    };
  },
  htm: (s) => {
    const hits = new Set(published.numenta![s.name]!.detections);
    let i = 0;
    return { push: () => hits.has(s.timestamps[i++]!) };
  },
};

const results: Record<string, SeriesResult[]> = {};
const seconds: Record<string, number> = {};
for (const [name, make] of Object.entries(detectors)) {
  const t0 = performance.now();
  results[name] = series.map((s) => runSeries(s, make(s)));
  seconds[name] = (performance.now() - t0) / 1000;
}

console.log('NAB realKnownCause, raw standard score per file (windows hit / windows, alerts):');
console.log(
  `${'series'.padEnd(38)} ${Object.keys(detectors)
    .map((d) => d.padStart(20))
    .join('')}`,
);
series.forEach((s, i) => {
  const cells = Object.keys(detectors).map((d) => {
    const r = results[d]![i]!;
    const w = r.scores.standard.windows;
    return `${r.scores.standard.score.toFixed(2)} (${w.filter((x) => x.firstDetection >= 0).length}/${w.length}, ${r.alerts})`.padStart(20);
  });
  console.log(`${s.name.padEnd(38)} ${cells.join('')}`);
});
const figures: Record<string, Record<string, number>> = {};
for (const d of Object.keys(detectors)) {
  const all = corpusScores(results[d]!);
  const noTaxi = corpusScores(results[d]!.filter((r) => r.name !== 'nyc_taxi'));
  figures[d] = {
    standard: round(all.standard),
    low_fp: round(all.reward_low_FP_rate),
    low_fn: round(all.reward_low_FN_rate),
    standard_without_taxi: round(noTaxi.standard),
    alerts: results[d]!.reduce((n, r) => n + r.alerts, 0),
    seconds: round(seconds[d]!, 2),
  };
}
console.log('\nnormalised (null 0, perfect 100):');
for (const [d, f] of Object.entries(figures)) {
  console.log(
    `${d.padEnd(10)} standard ${f.standard}  low FP ${f.low_fp}  low FN ${f.low_fn}  standard without nyc_taxi ${f.standard_without_taxi}  (${f.alerts} alerts, ${f.seconds} s)`,
  );
}
const ratio = round(figures.series!.standard! / figures.baseline!.standard!, 2);
console.log(`series / baseline (standard): ${ratio}x; series - HTM: ${round(figures.series!.standard! - figures.htm!.standard!)} points`);
console.log(JSON.stringify({ bench: 'anomaly', ...figures, ratio_standard_series_to_baseline: ratio, htm_published_standard: 55.5 }));
