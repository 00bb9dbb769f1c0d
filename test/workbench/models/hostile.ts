import { bundleVersion, type ModelBundle } from '../../../src/workbench/models/bundle.js';

/**
 * Hostile variants of a good bundle, each re-hashed so that it passes the integrity check: what a
 * careless notebook or an attacker holding an admin key could send. Shared by the workbench and the
 * service tests.
 */
export function rehashed(bundle: ModelBundle, change: (copy: HostileBundle) => void): ModelBundle {
  const copy = JSON.parse(JSON.stringify(bundle)) as HostileBundle;
  change(copy);
  const { version: _old, ...body } = copy;
  return { ...body, version: bundleVersion(body as unknown as Omit<ModelBundle, 'version'>) } as unknown as ModelBundle;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests write any shape into these, wrong ones included: that is the point
type HostileBundle = Omit<ModelBundle, 'model'> & { model: { topology: any; weightSpecs: any[]; weights: string } };

/** The bundle's weights with `at` (a float index) set to `value`. */
export function withWeight(bundle: ModelBundle, at: number, value: number): ModelBundle {
  return rehashed(bundle, (b) => {
    const bytes = Buffer.from(b.model.weights, 'base64');
    bytes.writeFloatLE(value, at * 4);
    b.model.weights = bytes.toString('base64');
  });
}

/** The bundle's weights as numbers. */
export function weightsOf(bundle: ModelBundle): number[] {
  const bytes = Buffer.from(bundle.model.weights, 'base64');
  return Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(i * 4));
}

export interface Hostile {
  what: string;
  /** The bundle, or its JSON text when no object can be stringified to it. */
  bundle?: ModelBundle;
  json?: string;
  code: string;
  message: RegExp;
}

/** One of each kind of bundle the service must refuse, with what its refusal must say. */
export function hostileBundles(good: ModelBundle): Hostile[] {
  const firstKernel = good.model.weightSpecs[0]!;
  return [
    {
      what: 'a weight of the wrong shape',
      bundle: rehashed(good, (b) => (b.model.weightSpecs[0].shape = [...firstKernel.shape].reverse())),
      code: 'bundle_unloadable',
      message: new RegExp(
        `the weight ${firstKernel.name} has shape \\[${[...firstKernel.shape].reverse().join(',')}\\] in model.weightSpecs, but the topology makes it \\[${firstKernel.shape.join(',')}\\]`,
      ),
    },
    {
      what: 'weights of the wrong length',
      bundle: rehashed(good, (b) => (b.model.weights = b.model.weights.slice(0, 8))),
      code: 'bundle_unloadable',
      message: /model\.weights holds 6 bytes, but model\.weightSpecs describe \d+ float32 values/,
    },
    {
      what: 'a NaN weight',
      bundle: withWeight(good, 1, Number.NaN),
      code: 'bundle_non_finite',
      message: new RegExp(`the weight ${firstKernel.name} holds NaN at \\[${(firstKernel.shape[1] ?? 1) > 1 ? '0,1' : '1,0'}\\]`),
    },
    { what: 'an infinite weight', bundle: withWeight(good, 0, Number.NEGATIVE_INFINITY), code: 'bundle_non_finite', message: /holds -Infinity at \[0,0\]/ },
    {
      what: 'an unknown layer class',
      bundle: rehashed(good, (b) => (b.model.topology.config.layers.at(-1).class_name = 'NoSuchLayer')),
      code: 'bundle_unloadable',
      message: /tfjs cannot build a model from model\.topology: Unknown layer: NoSuchLayer/,
    },
    {
      what: 'a topology that is a string',
      bundle: rehashed(good, (b) => (b.model.topology = 'Sequential')),
      code: 'bundle_unloadable',
      message: /model\.topology is the string "Sequential", not a tfjs model topology/,
    },
    {
      what: 'a topology that is null',
      bundle: rehashed(good, (b) => (b.model.topology = null)),
      code: 'bundle_unloadable',
      message: /model\.topology is null, not a tfjs model topology/,
    },
    {
      what: 'a layer of a hundred million units (memory)',
      bundle: rehashed(good, (b) => (b.model.topology.config.layers[0].config.units = 100_000_000)),
      code: 'bundle_unloadable',
      message: /units is 100000000, more than the \d+ weight values the bundle carries/,
    },
    {
      what: 'a topology nested 10,000 levels deep',
      // JSON.stringify cannot write it (nor can a recursive hasher hash it): the text is made by hand.
      json: JSON.stringify(rehashed(good, (b) => (b.model.topology.config.extra = 'DEEP'))).replace(
        '"DEEP"',
        `${'{"a":'.repeat(10_000)}{}${'}'.repeat(10_000)}`,
      ),
      code: 'bad_input',
      message: /bundle\.model\.topology\.config\.extra(\.a)+ is nested deeper than 64 levels/,
    },
  ];
}
