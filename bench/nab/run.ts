/**
 * Feeds a NAB series through an alerting detector row by row, as a stream, and turns its alerts
 * into NAB's per-row detections.
 *
 * How binary alerts map onto NAB's thresholded scores: NAB's detectors emit a score per row and its
 * optimiser sweeps one threshold per detector over the whole corpus. Our detectors emit alerts, so
 * the score of row i is 1 when an alert was raised right after row i arrived (the detector had seen
 * rows 0..i and nothing later) and 0 otherwise; any threshold in (0, 1] gives the same detections,
 * and the only other choice the sweep has (above 1: no detections) is the null detector, which
 * scores 0. Nothing is tuned on the labels.
 */
import { PROFILES, normalisedScore, scoreFile, type FileScore, type ProfileName } from './scorer.js';
import type { NabSeries } from './data.js';

/** A detector as the bench drives it: one row at a time, in file order; true when the row raised an alert. */
export interface RowDetector {
  push(timeMs: number, value: number): boolean;
}

export interface SeriesResult {
  name: string;
  rows: number;
  alerts: number;
  scores: Record<ProfileName, FileScore>;
}

/** The typical step of a series: the median gap between consecutive distinct timestamps (a property of the unlabelled data). */
export function medianStep(times: readonly number[]): number {
  const gaps: number[] = [];
  for (let i = 1; i < times.length; i++) if (times[i]! > times[i - 1]!) gaps.push(times[i]! - times[i - 1]!);
  gaps.sort((a, b) => a - b);
  return gaps[Math.floor(gaps.length / 2)] ?? 0;
}

export function runSeries(series: NabSeries, detector: RowDetector): SeriesResult {
  const detected = series.times.map((t, i) => detector.push(t, series.values[i]!));
  const scores = Object.fromEntries(Object.entries(PROFILES).map(([name, p]) => [name, scoreFile(series, detected, p)])) as Record<ProfileName, FileScore>;
  return { name: series.name, rows: series.times.length, alerts: detected.filter(Boolean).length, scores };
}

/** Normalised scores per profile over a set of series results (NAB's normalisation restricted to their windows). */
export function corpusScores(results: readonly SeriesResult[]): Record<ProfileName, number> {
  const windows = results.reduce((n, r) => n + r.scores.standard.windows.length, 0);
  const out = {} as Record<ProfileName, number>;
  for (const [name, p] of Object.entries(PROFILES) as [ProfileName, (typeof PROFILES)[ProfileName]][]) {
    out[name] = normalisedScore(
      results.reduce((s, r) => s + r.scores[name].score, 0),
      windows,
      p,
    );
  }
  return out;
}
