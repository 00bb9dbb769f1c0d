import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  averagePrecision,
  brierScore,
  calibrationTable,
  evaluate,
  liftByDecile,
  logLoss,
  rocAuc,
  rocCurve,
  stratifiedFolds,
} from '../../../src/workbench/models/evaluate.js';
import { Random } from '../../../src/workbench/random.js';

const near = (a: number, b: number, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

/** Random labels and scores with many ties, for the second-method checks. */
function sample(n: number, seed: number): { labels: number[]; scores: number[] } {
  const r = new Random(seed);
  const labels = Array.from({ length: n }, () => (r.bernoulli(0.3) ? 1 : 0));
  const scores = labels.map((y) => Math.round((r.normal(y * 0.8, 1) + 4) * 4) / 4); // quarter steps: ties
  return { labels, scores };
}

describe('evaluation against published values', () => {
  // The examples in scikit-learn's documentation of roc_auc_score, average_precision_score,
  // log_loss and brier_score_loss, with the values it prints.
  it('roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.75', () => near(rocAuc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 0.75));
  it('average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.8333...', () =>
    near(averagePrecision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 0.8333333333333333));
  it('log_loss(spam, ham, ham, spam; .9, .1, .2, .65) = 0.21616...', () => near(logLoss([1, 0, 0, 1], [0.9, 0.1, 0.2, 0.65]), 0.21616187468057912));
  it('brier_score_loss([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3]) = 0.0375', () => near(brierScore([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3]), 0.0375));
});

describe('evaluation against a second method', () => {
  it('ROC AUC equals the share of (positive, negative) pairs ordered right, ties half', () => {
    const { labels, scores } = sample(600, 1);
    let wins = 0;
    let pairs = 0;
    for (let i = 0; i < labels.length; i++) {
      if (labels[i] !== 1) continue;
      for (let j = 0; j < labels.length; j++) {
        if (labels[j] !== 0) continue;
        pairs++;
        wins += scores[i]! > scores[j]! ? 1 : scores[i] === scores[j] ? 0.5 : 0;
      }
    }
    near(rocAuc(labels, scores), wins / pairs);
  });

  it('average precision equals the precision-recall step sum counted at every threshold directly', () => {
    const { labels, scores } = sample(400, 2);
    const thresholds = [...new Set(scores)].sort((a, b) => b - a);
    const positives = labels.filter((y) => y === 1).length;
    let ap = 0;
    let lastRecall = 0;
    for (const t of thresholds) {
      const picked = labels.filter((_, i) => scores[i]! >= t);
      const tp = picked.filter((y) => y === 1).length;
      ap += (tp / positives - lastRecall) * (tp / picked.length);
      lastRecall = tp / positives;
    }
    near(averagePrecision(labels, scores), ap);
  });

  it('the ROC curve runs from (0, 0) to (1, 1), and its trapezoid area is the ROC AUC', () => {
    const { labels, scores } = sample(500, 6);
    const curve = rocCurve(labels, scores);
    assert.deepEqual([curve[0]!.fpr, curve[0]!.tpr, curve.at(-1)!.fpr, curve.at(-1)!.tpr], [0, 0, 1, 1]);
    let area = 0;
    for (let i = 1; i < curve.length; i++) area += ((curve[i]!.fpr - curve[i - 1]!.fpr) * (curve[i]!.tpr + curve[i - 1]!.tpr)) / 2;
    near(area, rocAuc(labels, scores), 1e-12);
  });

  it('lift deciles: equal sizes, capture reaching 1, mean lift 1; a perfect score puts every positive first', () => {
    const { labels, scores } = sample(1000, 3);
    const lift = liftByDecile(labels, scores);
    assert.deepEqual(
      lift.map((r) => r.n),
      Array(10).fill(100),
    );
    near(lift.at(-1)!.cumulativeCapture, 1);
    near(lift.reduce((s, r) => s + r.lift, 0) / 10, 1, 1e-9);
    const perfect = liftByDecile(
      labels,
      labels.map((y) => y),
    );
    const share = labels.filter((y) => y === 1).length / labels.length;
    assert.ok(perfect[0]!.rate === 1 && perfect[0]!.lift > 1 / share - 1e-9);
  });

  it('calibration: a calibrated predictor (labels drawn from its probabilities) matches its observed rates', () => {
    const r = new Random(4);
    const probabilities = Array.from({ length: 20_000 }, () => r.next());
    const labels = probabilities.map((p) => (r.bernoulli(p) ? 1 : 0));
    const table = calibrationTable(labels, probabilities);
    assert.equal(table.length, 10);
    for (const bin of table) assert.ok(Math.abs(bin.observedRate - bin.meanPredicted) < 4 * Math.sqrt(0.25 / bin.n), JSON.stringify(bin));
    assert.equal(
      table.reduce((n, b) => n + b.n, 0),
      20_000,
    );
  });

  it('evaluate() gathers them, and refuses bad input with the row', () => {
    const e = evaluate([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3]);
    assert.deepEqual([e.n, e.positives, e.rocAuc], [4, 2, 1]);
    assert.throws(() => evaluate([0, 2], [0.1, 0.2]), /label 1 is 2: labels are 0 or 1/);
    assert.throws(() => evaluate([0, 1], [0.1, Number.NaN]), /score 1 is NaN/);
    assert.throws(() => evaluate([0, 1], [0.1]), /2 labels but 1 scores/);
  });
});

describe('stratifiedFolds', () => {
  it('gives every fold the same class balance, up to one row, and the same folds for the same seed', () => {
    const { labels } = sample(1003, 5);
    const folds = stratifiedFolds(labels, 5, 9);
    for (const cls of [0, 1]) {
      const sizes = [0, 1, 2, 3, 4].map((k) => labels.filter((y, i) => y === cls && folds[i] === k).length);
      assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `class ${cls}: ${sizes}`);
    }
    assert.deepEqual(stratifiedFolds(labels, 5, 9), folds);
    assert.notDeepEqual(stratifiedFolds(labels, 5, 10), folds);
  });
});
