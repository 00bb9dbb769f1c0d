import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bucketRanges, chooseArm, equalWeights, fnv1a32, hashBucket } from '../../../src/workbench/experiments/hash.js';

// From GrowthBook's published SDK test suite, packages/sdk-js/test/cases.json (specVersion 0.5.4):
// "hash": [seed, value, version, expected].
// prettier-ignore
const HASH_CASES: [string, string, number, number | null][] = [
  ['', 'a', 1, 0.22],
  ['', 'b', 1, 0.077],
  ['b', 'a', 1, 0.946],
  ['ef', 'd', 1, 0.652],
  ['asdf', '8952klfjas09ujk', 1, 0.549],
  ['', '123', 1, 0.011],
  ['', '___)((*":&', 1, 0.563],
  ['seed', 'a', 2, 0.0505],
  ['seed', 'b', 2, 0.2696],
  ['foo', 'ab', 2, 0.2575],
  ['foo', 'def', 2, 0.2019],
  ['89123klj', '8952klfjas09ujkasdf', 2, 0.124],
  ['90850943850283058242805', '123', 2, 0.7516],
  ['()**(%$##$%#$#', '___)((*":&', 2, 0.0128],
  ['abc', 'def', 99, null],
];

// "getBucketRange": [name, [arms, coverage, weights], expected ranges].
// prettier-ignore
const RANGE_CASES: [string, [number, number, number[] | null], [number, number][]][] = [
  ['normal 50/50', [2, 1, null], [[0, 0.5], [0.5, 1]]],
  ['reduced coverage', [2, 0.5, null], [[0, 0.25], [0.5, 0.75]]],
  ['zero coverage', [2, 0, null], [[0, 0], [0.5, 0.5]]],
  ['4 variations', [4, 1, null], [[0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1]]],
  ['uneven weights', [2, 1, [0.4, 0.6]], [[0, 0.4], [0.4, 1]]],
  ['uneven weights, 3 variations', [3, 1, [0.2, 0.3, 0.5]], [[0, 0.2], [0.2, 0.5], [0.5, 1]]],
  ['uneven weights, reduced coverage, 3 variations', [3, 0.2, [0.2, 0.3, 0.5]], [[0, 0.04], [0.2, 0.26], [0.5, 0.6]]],
  ['negative coverage', [2, -0.2, null], [[0, 0], [0.5, 0.5]]],
  ['coverage above 1', [2, 1.5, null], [[0, 0.5], [0.5, 1]]],
  ['weights sum below 1', [2, 1, [0.4, 0.1]], [[0, 0.5], [0.5, 1]]],
  ['weights sum above 1', [2, 1, [0.7, 0.6]], [[0, 0.5], [0.5, 1]]],
  ['weights.length not equal to num variations', [4, 1, [0.4, 0.4, 0.2]], [[0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1]]],
  ['weights sum almost equals 1', [2, 1, [0.4, 0.5999]], [[0, 0.4], [0.4, 0.9999]]],
];

// From the same suite's "feature" cases: the bucket GrowthBook reports for a hash attribute and seed.
// prettier-ignore
const BUCKET_CASES: [string, string, number, number][] = [
  ['feature', '123', 1, 0.863], // "empty experiment rule - c"
  ['feature', '456', 1, 0.178], // "empty experiment rule - a"
  ['feature', 'fds', 1, 0.514], // "empty experiment rule - b"
  ['feature', '123', 2, 0.5231], // "creates experiments properly"
  ['experiment', '1', 2, 0.4413], // "Support passthrough variations"
  ['holdout', '1', 2, 0.8043], // "Support holdout groups"
];

const near = (a: number, b: number) => Math.abs(a - b) < 1e-9;

describe("GrowthBook's hashing, on its published cases", () => {
  for (const [seed, value, version, expected] of HASH_CASES) {
    it(`hash(${JSON.stringify(seed)}, ${JSON.stringify(value)}, v${version}) = ${expected}`, () => {
      const got = hashBucket(seed, value, version);
      if (expected === null) assert.equal(got, undefined);
      else assert.ok(near(got!, expected), `${got}`);
    });
  }

  for (const [name, [arms, coverage, weights], expected] of RANGE_CASES) {
    it(`bucket ranges: ${name}`, () => {
      const got = bucketRanges(arms, coverage, weights ?? undefined);
      assert.equal(got.length, expected.length);
      got.forEach(([s, e], i) => assert.ok(near(s, expected[i]![0]) && near(e, expected[i]![1]), `${name}: ${JSON.stringify(got)}`));
    });
  }

  for (const [seed, value, version, expected] of BUCKET_CASES) {
    it(`the bucket of ${value} in ${seed} (v${version}) is ${expected}`, () => assert.ok(near(hashBucket(seed, value, version)!, expected)));
  }

  it('chooses the arm whose range holds the bucket, and none outside coverage', () => {
    const even = bucketRanges(2);
    assert.deepEqual(
      [0.2, 0.4, 0.6, 0.8, 0].map((b) => chooseArm(b, even)),
      [0, 0, 1, 1, 0],
    );
    assert.deepEqual(
      ['123', '456', 'fds'].map((id) => chooseArm(hashBucket('feature', id, 1)!, bucketRanges(3))),
      [2, 0, 1],
    );
    assert.equal(chooseArm(0.3, bucketRanges(2, 0.5)), -1);
    assert.deepEqual(equalWeights(0), []);
  });

  it('FNV-1a over UTF-16 code units (the offset basis for the empty text)', () => {
    assert.equal(fnv1a32(''), 0x811c9dc5);
    assert.equal(fnv1a32('a'), 0xe40c292c); // the FNV-1a 32 test vector for "a"
  });

  it('keeps every assigned user in their arm when coverage grows', () => {
    const users = Array.from({ length: 5000 }, (_, i) => `user-${i}`);
    const arm = (coverage: number) => users.map((u) => chooseArm(hashBucket('exp-seed', u, 2)!, bucketRanges(2, coverage, [0.5, 0.5])));
    const small = arm(0.2);
    const large = arm(0.8);
    let kept = 0;
    small.forEach((a, i) => {
      if (a === -1) return;
      assert.equal(large[i], a, `user ${i} moved from arm ${a}`);
      kept++;
    });
    assert.ok(kept > 800 && kept < 1200, `about 20% were in (${kept})`);
  });
});
