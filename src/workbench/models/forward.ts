import type { LayersModel } from '@tensorflow/tfjs';

/** The activations a served Dense layer may have (what `trainClassifier` builds: relu hidden layers, a sigmoid output). */
type Activation = 'linear' | 'relu' | 'sigmoid';

/** One Dense layer's weights, read out of tfjs: kernel `inputs x units`, row-major, and the bias (or none). */
interface DenseLayer {
  readonly inputs: number;
  readonly units: number;
  readonly kernel: Float32Array;
  readonly bias: Float32Array | undefined;
  readonly activation: Activation;
}

/**
 * A sequential stack of Dense layers evaluated in plain JavaScript, in float32 as tfjs computes it.
 * Made by `denseStack` from a tfjs model; `forward` scores rows with it.
 */
export interface DenseStack {
  /** Inputs of the first layer. */
  readonly width: number;
  readonly layers: readonly DenseLayer[];
}

const ACTIVATIONS = new Set<string>(['linear', 'relu', 'sigmoid']);

/**
 * The model's layers as a plain-JS stack, or undefined when the model is anything but a Sequential
 * of Dense layers with linear, relu or sigmoid activations ending in one unit (tfjs then scores it).
 * The weights are copied out once: a model whose weights change afterwards needs a new stack.
 *
 * Why: tfjs scores one row through tensors, a kernel call per op and their bookkeeping, about a
 * millisecond of CPU and its garbage on the service's predict path; the same arithmetic in float32
 * over a few dozen weights takes microseconds.
 */
export function denseStack(model: LayersModel): DenseStack | undefined {
  if (model.getClassName() !== 'Sequential' || model.inputs.length !== 1 || model.outputs.length !== 1) return undefined;
  const layers: DenseLayer[] = [];
  let width: number | undefined;
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'Dense') return undefined;
    const config = layer.getConfig();
    const activation = typeof config.activation === 'string' ? config.activation : 'linear';
    if (!ACTIVATIONS.has(activation)) return undefined;
    const weights = layer.getWeights();
    const [kernel, bias] = weights;
    if (!kernel || kernel.rank !== 2 || weights.length > 2 || (bias && bias.rank !== 1)) return undefined;
    const [inputs, units] = kernel.shape as [number, number];
    if ((width !== undefined && inputs !== width) || (bias && bias.shape[0] !== units)) return undefined;
    layers.push({
      inputs,
      units,
      kernel: Float32Array.from(kernel.dataSync()),
      bias: bias ? Float32Array.from(bias.dataSync()) : undefined,
      activation: activation as Activation,
    });
    width = units;
  }
  if (layers.length === 0 || width !== 1) return undefined;
  return { width: layers[0]!.inputs, layers };
}

/**
 * Scores `rows` rows of `stack.width` inputs (row-major, as `transform` makes them): one score per
 * row, in float32. Each product and each sum is rounded to float32 (`Math.fround`) in the order
 * tfjs's WebAssembly kernels take them (the inputs in order; the bias first, or last before a
 * sigmoid: see below) and the sigmoid is
 * its kernel's (`sigmoid`), so the scores are the ones tfjs gives on the wasm backend, bit for bit on
 * the models `trainClassifier` builds (test/workbench/models/forward.test.ts compares them).
 */
export function forward(stack: DenseStack, x: Float32Array, rows: number): Float32Array {
  let input = x;
  let width = stack.width;
  if (input.length !== rows * width) throw new RangeError(`forward: ${input.length} values are not ${rows} rows of ${width} inputs`);
  for (const layer of stack.layers) {
    const { units, kernel, bias, activation } = layer;
    // tfjs fuses the bias and a relu or linear activation into the matrix product (the bias is the
    // sum's first term); before a sigmoid it multiplies, then adds the bias to the sum.
    const fused = activation !== 'sigmoid';
    const out = new Float32Array(rows * units);
    for (let r = 0; r < rows; r++) {
      const at = r * width;
      for (let j = 0; j < units; j++) {
        let acc = fused && bias ? bias[j]! : 0;
        for (let i = 0; i < width; i++) acc = f(acc + f(input[at + i]! * kernel[i * units + j]!));
        if (!fused && bias) acc = f(acc + bias[j]!);
        out[r * units + j] = activation === 'relu' ? (acc > 0 ? acc : 0) : activation === 'sigmoid' ? sigmoid(acc) : acc;
      }
    }
    input = out;
    width = units;
  }
  return input;
}

const f = Math.fround;
/** A float32 constant written as C's hexadecimal float (`-0x1.715476p0f` is hex('-1.715476', 0)). */
function hex(mantissa: string, exponent: number): number {
  const negative = mantissa.startsWith('-');
  const [whole, fraction] = mantissa.replace('-', '').split('.') as [string, string];
  return f((negative ? -1 : 1) * (parseInt(whole, 16) + parseInt(fraction, 16) / 16 ** fraction.length) * 2 ** exponent);
}
const MAGIC_BIAS = hex('1.8000FE', 23);
const MINUS_LOG2E = hex('-1.715476', 0);
const LN2_HI = hex('1.62E400', -1);
const LN2_LO = hex('1.7F7D1C', -20);
const C5 = hex('-1.0F9F9C', -7);
const C4 = hex('1.573A1A', -5);
const C3 = hex('-1.555A80', -3);
const C2 = hex('1.FFFDC6', -2);
const C1 = hex('-1.FFFFF6', -1);
/** The largest z for which exp(-z) is a normal float32. */
const DENORM_CUTOFF = hex('1.5D589E', 6);
const bits = new Float32Array(1);
const word = new Uint32Array(bits.buffer);

/**
 * The logistic function as tfjs's WebAssembly backend computes it (XNNPACK's float32 `rr2_p5_div`
 * kernel: exp(-|x|) by range reduction and a degree-5 polynomial, one division, then 1 - f for
 * x > 0), each operation rounded to float32 as WebAssembly SIMD does (it has no fused multiply-add):
 * the same float32 as tfjs for every input, not just a close one.
 */
function sigmoid(x: number): number {
  const z = Math.abs(x);
  let n = f(f(z * MINUS_LOG2E) + MAGIC_BIAS);
  // 2^n: the integer in n's low bits (biased by 127 through the magic number) moved into the exponent.
  bits[0] = n;
  word[0] = word[0]! << 23;
  const s = bits[0];
  n = f(n - MAGIC_BIAS);
  let t = f(f(n * LN2_HI) + z);
  t = f(f(n * LN2_LO) + t);
  let p = f(f(t * C5) + C4);
  p = f(f(t * p) + C3);
  p = f(f(t * p) + C2);
  p = f(f(t * p) + C1);
  t = f(t * s);
  const e = f(f(t * p) + s);
  let y = f(e / f(e + 1));
  if (z > DENORM_CUTOFF) y = 0;
  return x > 0 ? f(1 - y) : y;
}
