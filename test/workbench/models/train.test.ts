import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { rocAuc } from '../../../src/workbench/models/evaluate.js';
import { columnsFor, fitPreprocessing, transform } from '../../../src/workbench/models/preprocess.js';
import { trainClassifier } from '../../../src/workbench/models/train.js';
import { Random } from '../../../src/workbench/random.js';

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

/** Rows from a known logistic model: the truth the trained model is checked against. */
function logisticRows(n: number, seed: number) {
  const r = new Random(seed);
  return Array.from({ length: n }, () => {
    const a = r.normal(10, 3);
    const b = r.normal(0, 1);
    const plan = r.next() < 0.3 ? 'pro' : 'free';
    const p = sigmoid(0.6 * (a - 10) - 1.2 * b + (plan === 'pro' ? 1 : 0) - 0.5);
    return { a, b, noise: r.normal(0, 1), plan, p, y: r.bernoulli(p) ? 1 : 0 };
  });
}

describe('preprocessing', () => {
  it('learns means, deviations and categories from the rows it is given, and maps unseen values to (other)', () => {
    const p = fitPreprocessing(
      [
        { x: 1, c: 'GB', items: ['a', 'b'] },
        { x: 3, c: 'GB', items: ['a'] },
        { x: null, c: 'FR', items: [] },
      ],
      [
        { name: 'x', kind: 'numeric' },
        { name: 'c', kind: 'categorical' },
        { name: 'items', kind: 'multi_hot', maxCategories: 1 },
      ],
    );
    assert.deepEqual(p.steps[0], { name: 'x', kind: 'numeric', mean: 2, std: Math.SQRT2 });
    assert.deepEqual(p.inputs, ['x', 'c=GB', 'c=FR', 'c=(other)', 'items:a', 'items:(other)']);
    const m = transform(p, [
      { x: 2 + Math.SQRT2, c: 'DE', items: ['a', 'z', 'y'] },
      { x: null, c: 'GB', items: null },
    ]);
    assert.deepEqual(
      [...m].map((v) => Math.round(v * 1000) / 1000),
      [1, 0, 0, 1, 1, 0.667, 0, 1, 0, 0, 0, 0],
    );
  });

  it('maps features to columns: numbers standardised, last_n lists multi-hot', () => {
    const cols = columnsFor(
      featureSet([
        { name: 'n', source: { event: 'x' }, aggregation: 'count', window: '7d', default: 0 },
        { name: 'last', source: { event: 'x' }, aggregation: 'last_n', prop: 'p', n: 3, window: 'lifetime', default: [] },
      ]),
    );
    assert.deepEqual(
      cols.map((c) => c.kind),
      ['numeric', 'multi_hot'],
    );
  });

  it('says which row and column is not a number', () => {
    assert.throws(() => fitPreprocessing([{ x: 1 }, { x: 'seven' }], [{ name: 'x', kind: 'numeric' }]), /row 1, column x: "seven" is not a number/);
    assert.throws(() => fitPreprocessing([{ x: 1 }], [{ name: 'z', kind: 'numeric' }]), /column z is not in the training rows/);
  });
});

describe('trainClassifier', { timeout: 120_000 }, () => {
  const train = logisticRows(4000, 1);
  const test = logisticRows(4000, 2);
  const columns = [
    { name: 'a', kind: 'numeric' as const },
    { name: 'b', kind: 'numeric' as const },
    { name: 'noise', kind: 'numeric' as const },
    { name: 'plan', kind: 'categorical' as const },
  ];

  it("recovers a known logistic model: test AUC within 0.01 of the true probabilities' AUC, weights in the right proportions", async () => {
    const model = await trainClassifier(train, 'y', columns, { seed: 3 });
    try {
      const labels = test.map((r) => r.y);
      const trueAuc = rocAuc(
        labels,
        test.map((r) => r.p),
      );
      const auc = rocAuc(labels, model.predict(test));
      assert.ok(Math.abs(auc - trueAuc) < 0.01, `model ${auc.toFixed(4)} vs truth ${trueAuc.toFixed(4)}`);
      // Weights on standardised inputs: a's true coefficient per raw unit is 0.6 with sd 3 -> 1.8; b's -1.2.
      const [kernel] = model.model.getWeights();
      const w = kernel!.dataSync();
      const idx = (name: string) => model.preprocessing.inputs.indexOf(name);
      assert.ok(Math.abs(w[idx('a')]! / w[idx('b')]! - 1.8 / -1.2) < 0.25, `a/b weight ratio ${w[idx('a')]! / w[idx('b')]!}`);
      assert.ok(Math.abs(w[idx('noise')]!) < 0.15, `noise weight ${w[idx('noise')]}`);
      assert.ok(model.history.length < 200 && model.bestEpoch <= model.history.length, 'stopped early on the validation loss');
    } finally {
      model.dispose();
    }
  });

  it('is reproducible with a seed, and another seed gives another model', async () => {
    const rows = train.slice(0, 1000);
    const [m1, m2, m3] = [
      await trainClassifier(rows, 'y', columns, { seed: 5, maxEpochs: 5 }),
      await trainClassifier(rows, 'y', columns, { seed: 5, maxEpochs: 5 }),
      await trainClassifier(rows, 'y', columns, { seed: 6, maxEpochs: 5 }),
    ];
    try {
      assert.deepEqual([...m1.predict(test.slice(0, 50))], [...m2.predict(test.slice(0, 50))]);
      assert.notDeepEqual([...m1.predict(test.slice(0, 50))], [...m3.predict(test.slice(0, 50))]);
    } finally {
      [m1, m2, m3].forEach((m) => m.dispose());
    }
  });

  it('an MLP learns an interaction a logistic regression cannot (XOR of two signs)', async () => {
    const r = new Random(7);
    const xor = Array.from({ length: 3000 }, () => {
      const u = r.normal(0, 1);
      const v = r.normal(0, 1);
      return { u, v, y: r.bernoulli(u * v > 0 ? 0.9 : 0.1) ? 1 : 0 };
    });
    const cols = [
      { name: 'u', kind: 'numeric' as const },
      { name: 'v', kind: 'numeric' as const },
    ];
    const [train2, test2] = [xor.slice(0, 2000), xor.slice(2000)];
    const logistic = await trainClassifier(train2, 'y', cols, { seed: 1 });
    const mlp = await trainClassifier(train2, 'y', cols, { model: 'mlp', hidden: [16, 8], seed: 1 });
    try {
      const labels = test2.map((x) => x.y);
      const aucLogistic = rocAuc(labels, logistic.predict(test2));
      const aucMlp = rocAuc(labels, mlp.predict(test2));
      assert.ok(aucLogistic < 0.6, `logistic ${aucLogistic}`);
      assert.ok(aucMlp > 0.8, `mlp ${aucMlp}`);
    } finally {
      logistic.dispose();
      mlp.dispose();
    }
  });

  it('says what is wrong with the label', async () => {
    await assert.rejects(
      trainClassifier(
        [
          { a: 1, y: 2 },
          { a: 2, y: 0 },
          { a: 3, y: 1 },
        ],
        'y',
        [{ name: 'a', kind: 'numeric' }],
      ),
      /row 0: label y is "2"; labels are 0 or 1/,
    );
    await assert.rejects(trainClassifier([{ a: 1 }], 'churn', [{ name: 'a', kind: 'numeric' }]), /the label column churn is not in the rows/);
  });
});
