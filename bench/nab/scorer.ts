/**
 * The Numenta Anomaly Benchmark's scoring rules, written from NAB's published definitions (the
 * NAB paper, arXiv:1510.03336, section "Scoring"; `config/profiles.json`; the behaviour of
 * `nab/sweeper.py` and `nab/runner.py` at numenta/NAB `ea702d75`, whose code is not copied here),
 * and checked against NAB's published per-file scores of the numenta detector (test/bench/nab).
 *
 * Per file, with rows indexed 0..n-1 in file order (NAB scores rows, not wall-clock time):
 * - the first min(floor(0.15 n), 750) rows are probationary and never scored;
 * - a window [left, right] (row indices of its first and last timestamps, first occurrence) is
 *   worth -A_FN when none of its rows is a detection, else the reward of its best (= earliest)
 *   detection: A_TP * sigma(-(right - i + 1) / width) / sigma(-1), width = right - left + 1, with
 *   the scaled sigmoid sigma(y) = 2 / (1 + e^(5y)) - 1 (sigma(y) = -1 for y > 3);
 * - a detection outside every window costs A_FP * sigma(|i - right'| / (width' - 1)), where
 *   [left', right'] is the window before it; with no window before it, -A_FP;
 * - the file's raw score is the sum of both parts; a corpus's raw score is the sum over files.
 * Normalised score: 100 * (S - S_null) / (S_perfect - S_null), with S_null = -A_FN * windows (no
 * detection at all) and S_perfect = A_TP * windows (NAB's runner counts one "TP" per window).
 */

/** A profile's weights (NAB's cost matrix; its tnWeight is never used). */
export interface CostProfile {
  tp: number;
  fp: number;
  fn: number;
}

/** NAB's three application profiles (`config/profiles.json`). */
export const PROFILES = {
  standard: { tp: 1, fp: 0.11, fn: 1 },
  reward_low_FP_rate: { tp: 1, fp: 0.22, fn: 1 },
  reward_low_FN_rate: { tp: 1, fp: 0.11, fn: 2 },
} as const satisfies Record<string, CostProfile>;

export type ProfileName = keyof typeof PROFILES;

/** NAB's scaled sigmoid: 0.987 at the left edge of a window (y = -1), 0 at its right edge, -1 beyond 3 widths. */
export function scaledSigmoid(y: number): number {
  return y > 3 ? -1 : 2 / (1 + Math.exp(5 * y)) - 1;
}

/** Rows at the start of a file that NAB never scores: 15%, at most 750. */
export function probationLength(rows: number): number {
  return Math.min(Math.floor(0.15 * rows), 750);
}

/** One file: its timestamps in file order (duplicates kept) and its windows as [first, last] timestamps, in time order. */
export interface NabFile {
  timestamps: readonly string[];
  windows: readonly (readonly [string, string])[];
}

export interface FileScore {
  score: number;
  /** Row counts outside the probationary period, as NAB reports them. */
  tp: number;
  tn: number;
  fp: number;
  fn: number;
  /** Per window: the row of its first detection (-1 if missed) and what it contributed. */
  windows: { start: string; end: string; firstDetection: number; contribution: number }[];
  /** Sum of the false-positive costs (negative). */
  fpCost: number;
}

export class NabScoringError extends Error {
  override readonly name = 'NabScoringError';
}

/** Scores one file's per-row detections (`detected[i]` for row i) under one profile. */
export function scoreFile(file: NabFile, detected: readonly boolean[], profile: CostProfile): FileScore {
  const n = file.timestamps.length;
  if (detected.length !== n) throw new NabScoringError(`${detected.length} detections for ${n} rows`);
  const probation = probationLength(n);
  const windows = file.windows.map(([start, end]) => {
    const left = file.timestamps.indexOf(start);
    const right = file.timestamps.indexOf(end);
    if (left < 0 || right < left) throw new NabScoringError(`window ${start} .. ${end} is not in the file`);
    return { start, end, left, right, width: right - left + 1 };
  });
  for (let w = 1; w < windows.length; w++) {
    if (windows[w]!.left <= windows[w - 1]!.right) throw new NabScoringError('windows overlap or are out of order');
  }

  const maxTp = scaledSigmoid(-1);
  const out: FileScore = { score: 0, tp: 0, tn: 0, fp: 0, fn: 0, windows: [], fpCost: 0 };
  const best = windows.map(() => ({ row: -1, reward: -profile.fn }));
  let w = 0; // the first window that does not end before row i
  for (let i = probation; i < n; i++) {
    while (w < windows.length && windows[w]!.right < i) w++;
    const win = windows[w];
    const inside = win !== undefined && win.left <= i;
    if (inside) {
      if (detected[i]) {
        out.tp++;
        // The reward falls across the window, so the first detection is the best one (NAB keeps the best).
        if (best[w]!.row < 0) best[w] = { row: i, reward: Math.max(-profile.fn, (profile.tp * scaledSigmoid(-(win.right - i + 1) / win.width)) / maxTp) };
      } else out.fn++;
    } else if (detected[i]) {
      out.fp++;
      const prev = windows[w - 1];
      out.fpCost += prev === undefined ? -profile.fp : profile.fp * scaledSigmoid(Math.abs(i - prev.right) / (prev.width - 1));
    } else out.tn++;
  }
  out.windows = windows.map((win, k) => ({ start: win.start, end: win.end, firstDetection: best[k]!.row, contribution: best[k]!.reward }));
  out.score = out.windows.reduce((s, x) => s + x.contribution, 0) + out.fpCost;
  return out;
}

/** NAB's normalised score of a raw corpus score `raw` over `windows` windows: null detector 0, perfect 100. */
export function normalisedScore(raw: number, windows: number, profile: CostProfile): number {
  const nullScore = -profile.fn * windows;
  const perfect = profile.tp * windows;
  return (100 * (raw - nullScore)) / (perfect - nullScore);
}

/**
 * Per-row detections from an anomaly score and a threshold, NAB's way: a row is a detection when
 * its score is at or above the threshold.
 */
export function detectionsAt(scores: readonly number[], threshold: number): boolean[] {
  return scores.map((s) => s >= threshold);
}
