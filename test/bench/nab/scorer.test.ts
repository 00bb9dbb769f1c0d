import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NAB_SERIES, loadNabSeries, loadPublishedDetections } from '../../../bench/nab/data.js';
import { NabScoringError, PROFILES, normalisedScore, probationLength, scaledSigmoid, scoreFile, type NabFile } from '../../../bench/nab/scorer.js';

const close = (actual: number, expected: number, tol: number, what = '') => assert.ok(Math.abs(actual - expected) <= tol, `${what} ${actual} vs ${expected}`);

describe('NAB scoring rules', () => {
  it("has NAB's scaled sigmoid (values stated in NAB's sweeper docstring and paper)", () => {
    close(scaledSigmoid(-1), 0.98661, 5e-6, 'left edge');
    close(scaledSigmoid(-0.5), 0.84828, 5e-6, 'half way');
    assert.equal(scaledSigmoid(0), 0, 'right edge');
    close(scaledSigmoid(1), -0.98661, 5e-6, 'one width past');
    assert.equal(scaledSigmoid(3.01), -1, 'beyond 3 widths');
  });

  it('skips 15% of the rows, at most 750', () => {
    assert.equal(probationLength(10_320), 750);
    assert.equal(probationLength(4_032), 604);
    assert.equal(probationLength(1_882), 282);
  });

  // 40 rows: probation 6; one window on rows 10..19 (width 10).
  const times = Array.from({ length: 40 }, (_, i) => `t${String(i).padStart(2, '0')}`);
  const file: NabFile = { timestamps: times, windows: [['t10', 't19']] };
  const at = (...rows: number[]) => times.map((_, i) => rows.includes(i));

  it('rewards the earliest detection in a window and charges false positives by their distance past the window', () => {
    const p = PROFILES.standard;
    assert.equal(scoreFile(file, at(), p).score, -1, 'a missed window costs A_FN');
    assert.equal(scoreFile(file, at(10), p).score, 1, 'at the left edge: the full A_TP');
    // Row 15: y = -(19 - 15 + 1) / 10 = -0.5, reward sigma(-0.5) / sigma(-1); a later detection adds nothing.
    close(scoreFile(file, at(15, 17), p).score, scaledSigmoid(-0.5) / scaledSigmoid(-1), 1e-12);
    assert.equal(scoreFile(file, at(8), p).score, -1 - 0.11, 'a false positive before any window costs A_FP');
    // Row 24: 5 rows past the right edge, y = 5 / (10 - 1).
    close(scoreFile(file, at(10, 24), p).score, 1 + 0.11 * scaledSigmoid(5 / 9), 1e-12);
    assert.equal(scoreFile(file, at(2, 3), p).score, -1, 'probationary rows are not scored');
    const r = scoreFile(file, at(8, 12, 13), p);
    assert.deepEqual([r.tp, r.tn, r.fp, r.fn], [2, 23, 1, 8]);
    assert.throws(() => scoreFile({ timestamps: times, windows: [['t10', 'x']] }, at(), p), NabScoringError);
  });

  it('normalises so that the null detector scores 0 and the perfect one 100, under every profile', () => {
    for (const p of Object.values(PROFILES)) {
      assert.equal(normalisedScore(scoreFile(file, at(), p).score, 1, p), 0);
      assert.equal(normalisedScore(scoreFile(file, at(10), p).score, 1, p), 100);
    }
    assert.equal(normalisedScore(-2, 1, PROFILES.reward_low_FN_rate), 0, 'low FN: a miss costs 2');
  });
});

describe("NAB scorer against NAB's published per-file scores (data/nab/published_detections.json)", () => {
  const published = loadPublishedDetections();
  for (const detector of ['numenta', 'ARTime']) {
    it(`reproduces the ${detector} detector's raw standard score and row counts on each realKnownCause file, and its subset score`, () => {
      let total = 0;
      let windows = 0;
      for (const name of NAB_SERIES) {
        const s = loadNabSeries(name);
        const pub = published[detector]![name]!;
        const hits = new Set(pub.detections);
        const r = scoreFile(
          s,
          s.timestamps.map((t) => hits.has(t)),
          PROFILES.standard,
        );
        close(r.score, pub.score, 1e-9, `${detector} ${name}`);
        assert.deepEqual([r.tp, r.tn, r.fp, r.fn], pub.tp_tn_fp_fn, `${detector} ${name} counts`);
        total += r.score;
        windows += s.windows.length;
      }
      assert.equal(windows, 19);
      // The subset normalisation of SOURCE.md: HTM 55.5, ARTime 63.9.
      close(normalisedScore(total, windows, PROFILES.standard), detector === 'numenta' ? 55.5 : 63.9, 0.05, detector);
    });
  }
});
