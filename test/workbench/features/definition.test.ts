import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalJson, contentHash } from '../../../src/workbench/features/definition.js';

/**
 * The canonical form as first written, element by element: every stored version (bundles, feature
 * sets) is a hash of it, so a faster canonicalJson must write exactly the same text.
 */
function reference(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(reference).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${reference(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

const plain = fc.oneof(fc.double(), fc.integer(), fc.string({ unit: 'binary' }), fc.boolean(), fc.constant(null), fc.constant(-0));
const anything = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, plain, fc.constant(undefined), tie('list'), tie('object')),
  list: fc.array(tie('value'), { maxLength: 6 }),
  object: fc.dictionary(fc.string(), tie('value'), { maxKeys: 5 }),
})).value;

describe('canonicalJson', () => {
  it('writes what the element-by-element form writes, for lists of plain values and for anything else', () => {
    fc.assert(fc.property(fc.array(plain, { maxLength: 50 }), (list) => assert.equal(canonicalJson(list), reference(list))));
    fc.assert(fc.property(anything, (value) => assert.equal(canonicalJson(value), reference(value))));
    // Values JSON has no text for: NaN and the infinities are null, undefined in a list is left empty (as before).
    assert.equal(canonicalJson([1, Number.NaN, Number.POSITIVE_INFINITY, -0]), '[1,null,null,0]');
    assert.equal(canonicalJson([1, undefined, { a: undefined, b: [2] }]), reference([1, undefined, { a: undefined, b: [2] }]));
  });

  it('hashes a model-sized list of weights as SHA-256 of its JSON text', () => {
    const weights = Array.from({ length: 20_000 }, (_, i) => Math.sin(i) * 1e-3);
    const text = `[${weights.map((w) => JSON.stringify(w)).join(',')}]`;
    assert.equal(contentHash(weights), createHash('sha256').update(text).digest('hex').slice(0, 16));
  });
});
