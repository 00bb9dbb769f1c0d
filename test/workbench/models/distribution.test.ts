import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { InputError, IntegrityError } from '../../../src/workbench/errors.js';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { createBundle, verifyBundle, type ModelBundle } from '../../../src/workbench/models/bundle.js';
import { binIndex, outsideRange, psi, trainingDistribution, type FeatureDistribution } from '../../../src/workbench/models/distribution.js';
import { columnsFor } from '../../../src/workbench/models/preprocess.js';
import { trainClassifier, type Classifier } from '../../../src/workbench/models/train.js';
import { rehashed } from './hostile.js';

// Two training columns anyone can rebuild: 1,000 whole numbers 0..27 in runs (few distinct values,
// unequal bins) and 1,000 distinct reals in [0, 50) (ten equal bins).
const N = 1000;
const whole = Array.from({ length: N }, (_, i) => Math.floor(((i * 7919) % 1000) / 37));
const real = Array.from({ length: N }, (_, i) => (((i * 7919) % 1009) / 1009) * 50);
const rows = whole.map((x, i) => ({ x, y: real[i]! }));

/** The same, computed elsewhere (numpy 2.4, scipy 1.17): np.quantile(v, k/10, method='inverted_cdf'), repeats and the maximum dropped; np.digitize(v, edges, right=True). */
const NUMPY = {
  x: { min: 0, max: 27, mean: 13.014, edges: [2, 5, 8, 10, 13, 16, 18, 21, 24], counts: [111, 111, 111, 74, 111, 111, 74, 111, 111, 75] },
  y: {
    min: 0,
    max: 49.950445986124876,
    mean: 25.008820614469776,
    edges: [
      4.955401387512389, 9.960356788899901, 14.965312190287413, 20.01982160555005, 25.02477700693756, 29.98017839444995, 34.98513379583746, 39.990089197224975,
      44.945490584737364,
    ],
    counts: [100, 100, 100, 100, 100, 100, 100, 100, 100, 100],
  },
};

/** Live counts over a distribution's bins, counted here by scanning the edges (not binIndex's search). */
function liveCounts(d: FeatureDistribution, values: readonly number[]): number[] {
  const counts = new Array<number>(d.edges.length + 1).fill(0);
  for (const v of values) {
    let bin = d.edges.length;
    for (let i = 0; i < d.edges.length; i++) {
      if (v <= d.edges[i]!) {
        bin = i;
        break;
      }
    }
    counts[bin]!++;
  }
  return counts;
}

/** PSI as the Jeffreys divergence KL(a||e) + KL(e||a), for bins that are not empty on either side. */
function jeffreys(expected: readonly number[], actual: readonly number[]): number {
  const e = expected.map((c) => c / expected.reduce((s, v) => s + v, 0));
  const a = actual.map((c) => c / actual.reduce((s, v) => s + v, 0));
  let kl = 0;
  for (let i = 0; i < e.length; i++) kl += a[i]! * Math.log(a[i]! / e[i]!) + e[i]! * Math.log(e[i]! / a[i]!);
  return kl;
}

describe('training distributions', () => {
  const training = trainingDistribution(rows, [
    { name: 'x', kind: 'numeric' },
    { name: 'y', kind: 'numeric' },
  ]);
  const x = training.features.find((f) => f.feature === 'x')!;
  const y = training.features.find((f) => f.feature === 'y')!;

  it("cuts each feature at its training deciles, as numpy's inverted-cdf quantiles do", () => {
    assert.equal(training.rows, N);
    for (const [d, want] of [
      [x, NUMPY.x],
      [y, NUMPY.y],
    ] as const) {
      assert.equal(d.min, want.min);
      assert.equal(d.max, want.max);
      assert.ok(Math.abs(d.mean - want.mean) < 1e-9, `${d.feature} mean ${d.mean}`);
      assert.equal(d.edges.length, want.edges.length);
      d.edges.forEach((e, i) => assert.ok(Math.abs(e - want.edges[i]!) < 1e-12, `${d.feature} edge ${i}: ${e} vs ${want.edges[i]}`));
      assert.deepEqual(d.counts, want.counts);
      assert.deepEqual(d.counts, liveCounts(d, d.feature === 'x' ? whole : real), 'binIndex agrees with a plain scan');
      assert.equal(d.of, 'value');
      assert.equal(d.missing, 0);
    }
  });

  it('gives a feature with few distinct values a bin per value, and a constant one a single bin', () => {
    const flags = Array.from({ length: 200 }, (_, i) => ({ pro: i % 20 < 3 ? 1 : 0, version: 7, rare: i === 0 ? 5 : 0 }));
    const t = trainingDistribution(flags, [
      { name: 'pro', kind: 'numeric' },
      { name: 'version', kind: 'numeric' },
      { name: 'rare', kind: 'numeric' },
    ]);
    const [pro, version, rare] = t.features;
    assert.deepEqual([pro!.edges, pro!.counts, pro!.min, pro!.max], [[0], [170, 30], 0, 1]);
    assert.deepEqual([version!.edges, version!.counts, version!.min, version!.max], [[], [200], 7, 7]);
    // 199 zeros and one 5: every decile is 0, so one cut at 0 and the 5 alone above it.
    assert.deepEqual([rare!.edges, rare!.counts], [[0], [199, 1]]);
    // A constant feature cannot drift by PSI (one bin); its range says when it changes.
    assert.equal(psi(version!.counts, [50]), 0);
    assert.ok(outsideRange(version!, 8) && outsideRange(version!, 6) && !outsideRange(version!, 7));
  });

  it('summarises list features by their length, leaves missing values out and refuses values of the wrong kind', () => {
    const t = trainingDistribution(
      [
        { items: ['a', 'b'], n: 1 },
        { items: [], n: null },
        { items: ['a', 'b', 'c', 'd'], n: 3 },
        { items: null, n: 2 },
      ],
      columnsFor(
        featureSet([
          { name: 'items', source: { event: 'purchase' }, aggregation: 'last_n', prop: 'stock_code', n: 5, window: '30d', default: [] },
          { name: 'n', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 },
        ]),
      ),
    );
    const [items, n] = t.features;
    assert.deepEqual(
      { ...items, edges: undefined, counts: undefined },
      { feature: 'items', of: 'length', count: 3, missing: 1, min: 0, max: 4, mean: 2, edges: undefined, counts: undefined },
    );
    assert.deepEqual([n!.count, n!.missing, n!.min, n!.max], [3, 1, 1, 3]);
    assert.throws(
      () => trainingDistribution([{ n: 'many' }], [{ name: 'n', kind: 'numeric' }]),
      (e: unknown) => e instanceof InputError && /row 0, column n: "many" is not a number/.test(e.message),
    );
    assert.throws(() => trainingDistribution([{ n: Number.NaN }], [{ name: 'n', kind: 'numeric' }]), InputError);
    assert.deepEqual(trainingDistribution([{ n: null }], [{ name: 'n', kind: 'numeric' }]).features, [], 'a feature without a value is left out');
  });

  it('puts a value equal to an edge in the bin below it (bins closed on the right)', () => {
    assert.deepEqual(
      [-1, 0, 0.5, 1, 1.5, 2, 9].map((v) => binIndex([0, 1, 2], v)),
      [0, 0, 1, 1, 2, 2, 3],
    );
    assert.equal(binIndex([], 42), 0);
  });
});

describe('PSI', () => {
  it('matches a hand computation of a published example (three income bands: 40/30/30% then 35/25/40%)', () => {
    // (0.35-0.40) ln(0.35/0.40) + (0.25-0.30) ln(0.25/0.30) + (0.40-0.30) ln(0.40/0.30)
    //  = 0.006677 + 0.009116 + 0.028768 = 0.044561: under 0.1, a minor change.
    const hand = -0.05 * Math.log(0.35 / 0.4) + -0.05 * Math.log(0.25 / 0.3) + 0.1 * Math.log(0.4 / 0.3);
    assert.ok(Math.abs(hand - 0.04456085471610198) < 1e-15, 'the hand sum is numpy and scipy.stats.entropy(a,e)+entropy(e,a)');
    assert.ok(Math.abs(psi([0.4, 0.3, 0.3], [0.35, 0.25, 0.4]) - hand) < 1e-15);
    assert.ok(Math.abs(psi([40, 30, 30], [35, 25, 40]) - hand) < 1e-15, 'counts are shares once normalised');
    assert.equal(psi([1, 2, 3], [1, 2, 3]), 0);
  });

  it('floors an empty bin at 1e-4 instead of taking the log of 0', () => {
    // a = (1, 1e-4), e = (0.5, 0.5): 0.5 ln 2 + (1e-4 - 0.5) ln(1e-4 / 0.5), with Python: 4.60431846666895
    assert.ok(Math.abs(psi([50, 50], [100, 0]) - 4.60431846666895) < 1e-12);
    assert.ok(Number.isFinite(psi([100, 0], [50, 50])));
    assert.ok(Number.isNaN(psi([1, 1], [0, 0])), 'no live values: no PSI');
    assert.throws(() => psi([1, 2], [1, 2, 3]), InputError);
  });

  it('is the Jeffreys divergence KL(a||e) + KL(e||a), and matches numpy on the training bins above', () => {
    const t = trainingDistribution(rows, [
      { name: 'x', kind: 'numeric' },
      { name: 'y', kind: 'numeric' },
    ]);
    const [x, y] = t.features;
    // numpy: the first 300 values scaled by 1.5 and moved by 2 (a shift), and every third value (the same population).
    const cases = [
      {
        d: x!,
        live: whole.slice(0, 300).map((v) => v * 1.5 + 2),
        counts: [12, 22, 22, 11, 22, 22, 10, 23, 22, 134],
        psi: 0.8850599369421788,
        oor: 0.37666666666666665,
      },
      { d: x!, live: whole.filter((_, i) => i % 3 === 0), counts: [38, 35, 39, 24, 37, 38, 24, 39, 35, 25], psi: 0.0015626117623040228, oor: 0 },
      {
        d: y!,
        live: real.slice(0, 300).map((v) => v * 1.5 + 2),
        counts: [13, 19, 20, 20, 20, 19, 21, 19, 20, 129],
        psi: 0.643736032535988,
        oor: 0.36333333333333334,
      },
      { d: y!, live: real.filter((_, i) => i % 3 === 0), counts: [33, 33, 32, 33, 32, 34, 32, 36, 34, 35], psi: 0.0014534098873943513, oor: 0 },
    ];
    for (const c of cases) {
      const counts = liveCounts(c.d, c.live);
      assert.deepEqual(counts, c.counts);
      const value = psi(c.d.counts, counts);
      assert.ok(Math.abs(value - c.psi) < 1e-12, `${c.d.feature}: ${value} vs numpy ${c.psi}`);
      assert.ok(Math.abs(value - jeffreys(c.d.counts, counts)) < 1e-12, 'no empty bin: exactly the symmetric KL');
      assert.ok(Math.abs(c.live.filter((v) => outsideRange(c.d, v)).length / c.live.length - c.oor) < 1e-12);
    }
    assert.ok(cases[0]!.psi > 0.25 && cases[1]!.psi < 0.1, 'the shift is major, the resample stable');
  });
});

describe('the training distribution in a bundle', { timeout: 60_000 }, () => {
  const features = featureSet([
    { name: 'x', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 },
    { name: 'y', source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: '30d', default: 0 },
  ]);
  const labelled = rows.map((r, i) => ({ ...r, label: r.x + r.y / 5 + (i % 7) > 20 ? 1 : 0 }));
  let model: Classifier;
  let bundle: ModelBundle;
  before(async () => {
    model = await trainClassifier(labelled, 'label', columnsFor(features), { maxEpochs: 3 });
    bundle = await createBundle('dist-test', model, features, { lineage: { createdAt: '2025-01-01T00:00:00.000Z' } });
  });
  after(() => model?.dispose());

  it('is computed by trainClassifier over every row it was given, and kept by createBundle', () => {
    assert.deepEqual(model.training, trainingDistribution(labelled, columnsFor(features)));
    assert.deepEqual(bundle.training, model.training);
    assert.deepEqual(
      bundle.training!.features.map((f) => [f.feature, f.edges.length, f.count]),
      [
        ['x', 9, N],
        ['y', 9, N],
      ],
    );
    assert.deepEqual(verifyBundle(JSON.parse(JSON.stringify(bundle))).training, bundle.training);
  });

  it('is covered by the version: a changed distribution is refused, and without one the bundle hashes as before', async () => {
    const changed = JSON.parse(JSON.stringify(bundle)) as ModelBundle;
    changed.training!.features[0]!.max = 1e9;
    assert.throws(() => verifyBundle(changed), IntegrityError);
    const without = await createBundle('dist-test', { ...model, training: undefined }, features, { lineage: { createdAt: '2025-01-01T00:00:00.000Z' } });
    assert.equal(without.training, undefined);
    assert.ok(!('training' in without));
    assert.notEqual(without.version, bundle.version);
    const { training: _t, ...stripped } = bundle;
    assert.equal(rehashed(stripped as ModelBundle, () => undefined).version, without.version);
  });

  it('is checked by verifyBundle: shape, bins that add up, and only features the bundle reads', () => {
    const cases: [string, (t: NonNullable<ModelBundle['training']>) => void, RegExp][] = [
      ['a count that does not add up', (t) => (t.features[0]!.count += 1), /do not add up to count/],
      ['edges out of order', (t) => t.features[0]!.edges.reverse(), /strictly ascending/],
      ['a bin too many', (t) => t.features[0]!.counts.push(0), /make 10 bins, not 11/],
      ['an infinite maximum', (t) => (t.features[0]!.max = Number.POSITIVE_INFINITY), /training/],
      ['an extra field', (t) => Object.assign(t.features[0]!, { note: 'hi' }), /training\.features\.0/],
      ['an unknown feature', (t) => (t.features[1]!.feature = 'constructor'), /"constructor" is not one of the bundle's features/],
      ['a feature twice', (t) => (t.features[1]!.feature = 'x'), /"x" appears twice/],
      ['more values than rows', (t) => (t.rows = 10), /counts more values than the 10 training rows/],
    ];
    for (const [what, change, message] of cases) {
      const bad = rehashed(bundle, (b) => change(b.training!));
      assert.throws(
        () => verifyBundle(bad),
        (e: unknown) => e instanceof InputError && message.test(e.message),
        what,
      );
    }
  });
});
