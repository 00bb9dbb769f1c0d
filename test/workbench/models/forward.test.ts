import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LayersModel, Tensor } from '@tensorflow/tfjs';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { createBundle, loadClassifier } from '../../../src/workbench/models/bundle.js';
import { denseStack, forward } from '../../../src/workbench/models/forward.js';
import { columnsFor, transform } from '../../../src/workbench/models/preprocess.js';
import { Random } from '../../../src/workbench/random.js';
import { tensorflow, tf } from '../../../src/workbench/models/tf.js';
import { trainClassifier } from '../../../src/workbench/models/train.js';

/** tfjs's own scores of a matrix of inputs. */
function tfjsScores(model: LayersModel, x: Float32Array, rows: number, width: number): Float32Array {
  return tf.tidy(() => (model.predict(tf.tensor2d(x, [rows, width])) as Tensor).dataSync() as Float32Array);
}

/** A stack of relu Dense layers and a sigmoid unit, with random weights and biases (not the zero biases tfjs starts with). */
function randomModel(width: number, hidden: number[], seed: number, spread = 0.5): LayersModel {
  const model = tf.sequential();
  hidden.forEach((units, i) =>
    model.add(
      tf.layers.dense({
        units,
        activation: 'relu',
        kernelInitializer: tf.initializers.randomNormal({ stddev: spread, seed: seed + i }),
        biasInitializer: tf.initializers.randomNormal({ stddev: 0.3, seed: seed + 100 + i }),
        ...(i === 0 ? { inputShape: [width] } : {}),
      }),
    ),
  );
  model.add(
    tf.layers.dense({
      units: 1,
      activation: 'sigmoid',
      kernelInitializer: tf.initializers.randomNormal({ stddev: spread, seed: seed + 50 }),
      biasInitializer: tf.initializers.randomNormal({ stddev: 1, seed: seed + 51 }),
      ...(hidden.length === 0 ? { inputShape: [width] } : {}),
    }),
  );
  return model;
}

function randomInputs(rows: number, width: number, seed: number, scale = 3): Float32Array {
  const random = new Random(seed);
  return Float32Array.from({ length: rows * width }, () => (random.next() - 0.5) * 2 * scale);
}

/** Positions where two score arrays differ at all (bit for bit; NaN equal to NaN). */
function differences(a: Float32Array, b: Float32Array): number[] {
  assert.equal(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) out.push(i);
  return out;
}

describe('the plain-JS forward pass', { timeout: 120_000 }, () => {
  it('gives the float32 scores tfjs (wasm) gives, bit for bit, for logistic and relu stacks of any width, one row or many', async () => {
    await tensorflow();
    assert.equal(tf.getBackend(), 'wasm', 'the scores are compared with the backend the workbench trains and serves on');
    let compared = 0;
    for (const [s, hidden] of [[], [32, 16], [16], [64, 32, 8]].entries()) {
      for (const width of [1, 3, 10, 37, 130]) {
        const model = randomModel(width, hidden, 10 * s + width);
        try {
          const stack = denseStack(model);
          assert.ok(stack, `a stack of ${hidden.length} relu layers and a sigmoid is a dense stack`);
          const rows = 500;
          // Wide inputs too: logits far out on both sides reach the sigmoid's tails (0 and 1 exactly, and denormal cut-offs).
          const x = randomInputs(rows, width, s * 1000 + width, width === 1 ? 60 : 3);
          const ours = forward(stack, x, rows);
          assert.deepEqual(differences(ours, tfjsScores(model, x, rows, width)), [], `hidden ${JSON.stringify(hidden)}, width ${width}: every score equal`);
          // One row at a time, as the service scores (tfjs's kernels are the same for a batch of one).
          for (let r = 0; r < 20; r++) {
            const row = x.slice(r * width, (r + 1) * width);
            assert.ok(Object.is(forward(stack, row, 1)[0], tfjsScores(model, row, 1, width)[0]), `row ${r}, width ${width}`);
          }
          compared += rows + 20;
        } finally {
          model.dispose();
        }
      }
    }
    assert.equal(compared, 4 * 5 * 520);
  });

  it("is what a trained classifier's and a loaded bundle's predict use, equal to tfjs on the same rows", async () => {
    const features = featureSet([
      { name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 },
      { name: 'spend_30d', source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: '30d', default: 0 },
      { name: 'last_items', source: { event: 'purchase' }, aggregation: 'last_n', prop: 'item', n: 5, window: 'lifetime', default: [] },
    ]);
    const random = new Random(4);
    const rows = Array.from({ length: 600 }, (_, i) => ({
      logins_7d: Math.floor(random.next() * 12),
      spend_30d: Math.round(random.next() * 500),
      last_items: [`i${i % 7}`, `i${i % 3}`],
      y: random.next() < 0.3 ? 1 : 0,
    }));
    for (const options of [
      { seed: 1, maxEpochs: 4 },
      { model: 'mlp' as const, hidden: [16, 8], seed: 2, maxEpochs: 4 },
    ]) {
      const trained = await trainClassifier(rows, 'y', columnsFor(features), options);
      const loaded = await loadClassifier(await createBundle('forward-test', trained, features));
      try {
        assert.ok(denseStack(trained.model), `${options.model ?? 'logistic'}: served in plain JS`);
        const x = transform(trained.preprocessing, rows);
        const expected = tfjsScores(trained.model, x, rows.length, trained.preprocessing.inputs.length);
        assert.deepEqual(differences(trained.predict(rows), expected), [], `${options.model ?? 'logistic'}: the trained classifier scores as tfjs`);
        // A bundle's model, rebuilt from its bytes, scores the same rows the same (the service's scores are the notebook's).
        assert.deepEqual(differences(loaded.predict(rows), expected), [], `${options.model ?? 'logistic'}: the loaded bundle scores as tfjs`);
        // Independently of tfjs: a logistic model is sigmoid(w·x + b), here in float64, equal to within float32's rounding.
        if (!options.model) {
          const [kernel, bias] = trained.model.getWeights().map((w) => w.dataSync());
          const width = trained.preprocessing.inputs.length;
          for (let r = 0; r < 50; r++) {
            let z = bias![0]!;
            for (let i = 0; i < width; i++) z += x[r * width + i]! * kernel![i]!;
            assert.ok(Math.abs(trained.predict([rows[r]!])[0]! - 1 / (1 + Math.exp(-z))) < 1e-6, `row ${r}`);
          }
        }
      } finally {
        trained.dispose();
        loaded.dispose();
      }
    }
  });

  it('is not made for any other model (tfjs scores those), and refuses inputs of the wrong width', async () => {
    await tensorflow();
    const tanh = tf.sequential();
    tanh.add(tf.layers.dense({ units: 4, activation: 'tanh', inputShape: [3] }));
    tanh.add(tf.layers.dense({ units: 1, activation: 'sigmoid' }));
    const twoOutputs = tf.sequential();
    twoOutputs.add(tf.layers.dense({ units: 2, activation: 'sigmoid', inputShape: [3] }));
    const dropout = tf.sequential();
    dropout.add(tf.layers.dense({ units: 4, activation: 'relu', inputShape: [3] }));
    dropout.add(tf.layers.dropout({ rate: 0.5 }));
    dropout.add(tf.layers.dense({ units: 1, activation: 'sigmoid' }));
    try {
      for (const [what, model] of [
        ['a tanh layer', tanh],
        ['two outputs', twoOutputs],
        ['a dropout layer', dropout],
      ] as const)
        assert.equal(denseStack(model), undefined, what);
    } finally {
      for (const m of [tanh, twoOutputs, dropout]) m.dispose();
    }
    const stack = denseStack(randomModel(3, [], 1))!;
    assert.throws(() => forward(stack, new Float32Array(5), 2), RangeError, 'rows of the wrong width are refused, not read past');
  });
});
