import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Metrics } from '../../../src/serving/observability/metrics.js';

describe('metrics', () => {
  it('caps the distinct values of a label, counting the rest as other', () => {
    const m = new Metrics();
    const values = Array.from({ length: 250 }, (_, i) => m.label('country', `c${i}`));
    assert.equal(new Set(values).size, 201);
    assert.equal(values[199], 'c199');
    assert.equal(values[200], 'other');
    assert.equal(m.label('country', 'c5'), 'c5', 'a value already seen keeps its name');
  });
});
