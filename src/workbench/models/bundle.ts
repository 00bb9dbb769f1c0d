import type { io, LayersModel } from '@tensorflow/tfjs';
import { z } from 'zod';
import { dict } from '../dict.js';
import { IntegrityError, InputError, NonFiniteBundleError, UnloadableBundleError, WorkbenchError } from '../errors.js';
import { canonicalJson, contentHash, featureSet, type Feature } from '../features/definition.js';
import { calibrated, CalibrationSchema, type Calibration } from './calibration.js';
import { TrainingDistributionSchema, trainingDistributionProblem, type TrainingDistribution } from './distribution.js';
import type { Evaluation } from './evaluate.js';
import type { Preprocessing } from './preprocess.js';
import { classifier, type Classifier, type ModelKind } from './train.js';
import { tensorflow, tf } from './tf.js';

/**
 * A model bundle: everything needed to serve a model, by value, in one JSON document: the tfjs
 * topology and weights, the feature definitions it reads, the preprocessing it learned, its input
 * and output signature, its metrics and its lineage. Its version is the hash of its content, so a
 * bundle is immutable and loading it checks that nothing was changed. The hash leaves out one field,
 * `lineage.createdAt` (see `bundleVersion`): the same data, definitions and seed make the same version.
 */
export const BUNDLE_FORMAT = 'plg-workbench/model-bundle@1';

/** Where a model came from: the notebook or job, the git commit, the data snapshot and the parent version. */
export interface Lineage {
  /** Where it was trained: a notebook path or a job name. */
  source?: string;
  gitCommit?: string;
  /** The data it was trained on: e.g. the lakehouse manifest's build time and checksum. */
  dataSnapshot?: string;
  /** The version it was derived from or meant to replace. */
  parent?: string;
  /**
   * When the bundle was made (ISO 8601): metadata, outside the version's hash, so training the same
   * model again makes the same version; the registry keeps the first copy's. Not checked by
   * `verifyBundle`: editing it changes no score and no provenance, only the date shown.
   */
  createdAt: string;
}

/** A trained model with everything it needs to serve: weights, preprocessing, features, metrics and lineage, versioned by its hash. */
export interface ModelBundle {
  format: typeof BUNDLE_FORMAT;
  /** The model's name, e.g. `purchase-propensity`: aliases are per name. */
  name: string;
  kind: ModelKind;
  /** What the score is the probability of. */
  label: string;
  features: Feature[];
  preprocessing: Preprocessing;
  signature: { inputs: string[]; output: string };
  model: { topology: unknown; weightSpecs: io.WeightsManifestEntry[]; weights: string };
  metrics: Record<string, number | Evaluation | unknown>;
  lineage: Lineage;
  /** Each input's training distribution (range, quantile bins): what the service compares served values with. Absent in older bundles. */
  training?: TrainingDistribution;
  /** The post-hoc calibration every score goes through (`calibrated`): absent when the model has none. */
  calibration?: Calibration;
  /** Hash of everything else but `lineage.createdAt` (`bundleVersion`); set by `createBundle`, checked by `verifyBundle`. */
  version: string;
}

const NAME = /^[a-z][a-z0-9-]{0,63}$/;

const BundleShape = z.object({
  format: z.literal(BUNDLE_FORMAT),
  name: z.string().regex(NAME, 'model names are lower-case letters, digits and -'),
  kind: z.enum(['logistic', 'mlp']),
  label: z.string().min(1),
  features: z.array(z.unknown()).min(1),
  preprocessing: z.object({ steps: z.array(z.unknown()), inputs: z.array(z.string()) }),
  signature: z.object({ inputs: z.array(z.string()), output: z.string() }),
  model: z.object({ topology: z.unknown(), weightSpecs: z.array(z.unknown()), weights: z.string() }),
  metrics: z.record(z.string(), z.unknown()),
  lineage: z.object({ createdAt: z.string() }).passthrough(),
  training: TrainingDistributionSchema.optional(),
  calibration: CalibrationSchema.optional(),
  version: z.string().regex(/^[0-9a-f]{16}$/),
});

/**
 * Writes a trained classifier and what it needs as a bundle (through a tfjs save handler: no files).
 *
 * @example
 * ```ts
 * const bundle = await createBundle('app-churn', model, APP_CHURN_FEATURES, { lineage: lineageOf('notebooks/04-app-churn.ipynb', lake) });
 * ```
 */
export async function createBundle(
  name: string,
  trained: Classifier,
  features: readonly Feature[],
  extra: {
    metrics?: ModelBundle['metrics'];
    lineage?: Omit<Lineage, 'createdAt'> & { createdAt?: string };
    /** Default: the classifier's own (`trainClassifier` computes it from its rows). */
    training?: TrainingDistribution;
  } = {},
): Promise<ModelBundle> {
  if (!NAME.test(name)) throw new InputError(`model name ${JSON.stringify(name)}: use lower-case letters, digits and -, starting with a letter`);
  const featureNames = new Set(features.map((f) => f.name));
  for (const step of trained.preprocessing.steps) {
    if (!featureNames.has(step.name))
      throw new InputError(`the model reads ${step.name}, which is not one of the bundle's features (${[...featureNames].join(', ')})`);
  }
  let saved: io.ModelArtifacts | undefined;
  await trained.model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  const weights = concatWeights(saved!.weightData);
  const training = extra.training ?? trained.training;
  const body: Omit<ModelBundle, 'version'> = {
    format: BUNDLE_FORMAT,
    name,
    kind: trained.kind,
    label: trained.label,
    features: featureSet(features),
    preprocessing: trained.preprocessing,
    signature: { inputs: trained.preprocessing.inputs, output: `probability that ${trained.label} = 1` },
    model: { topology: saved!.modelTopology, weightSpecs: saved!.weightSpecs ?? [], weights: Buffer.from(weights).toString('base64') },
    metrics: JSON.parse(JSON.stringify(extra.metrics ?? {})) as ModelBundle['metrics'],
    lineage: { ...extra.lineage, createdAt: extra.lineage?.createdAt ?? new Date().toISOString() },
    // Absent rather than undefined when unknown: the hash of a bundle without it is what it always was.
    ...(training ? { training } : {}),
    ...(trained.calibration ? { calibration: trained.calibration } : {}),
  };
  // The checks the service makes on upload, made here: a notebook hears of NaN weights (a diverged
  // training) or a model that does not load before it saves or publishes anything.
  return checkBundle({ ...body, version: bundleVersion(body) }, `bundle of ${name}`);
}

/**
 * Checks a bundle read from disk or received over HTTP: its shape, its features, and that its
 * content still hashes to its version. Returns a frozen copy, typed (a checked bundle cannot change
 * unnoticed; copy it to change it; the input is left as it was); throws IntegrityError on a changed bundle.
 *
 * @example
 * ```ts
 * import { readFileSync } from 'node:fs';
 * const bundle = verifyBundle(JSON.parse(readFileSync('bundle.json', 'utf8')), 'bundle.json');
 * ```
 */
export function verifyBundle(input: unknown, where = 'bundle'): ModelBundle {
  const steps = verification(input, where);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/**
 * `verifyBundle` for a server answering requests: the same checks, with a turn of the event loop
 * between its steps (the shape, the hash, the features and model), so that checking a bundle never
 * holds requests for all of them at once.
 *
 * @example
 * ```ts
 * const bundle = await verifyBundleAsync(JSON.parse(body), 'the uploaded bundle');
 * ```
 */
export async function verifyBundleAsync(input: unknown, where = 'bundle'): Promise<ModelBundle> {
  const steps = verification(input, where);
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/**
 * Bundles that passed every check, frozen: none can have changed since, so checking one again
 * (a service stores and points an alias at the bundle it has just checked) costs nothing.
 */
const verified = new WeakSet<object>();

/**
 * verifyBundle's checks, a step at a time (a yield between steps, and one first: a server's request
 * has just parsed the bundle). The input must not change while it is checked.
 */
function* verification(input: unknown, where: string): Generator<void, ModelBundle> {
  if (typeof input === 'object' && input !== null && verified.has(input)) return input as ModelBundle;
  yield;
  // Hashing recurses into the document: a hostile depth would overflow the stack before any check.
  const deep = deeperThan(input, MAX_DEPTH);
  if (deep) throw new InputError(`${where}: ${deep} is nested deeper than ${MAX_DEPTH} levels; a model bundle is not`);
  yield;
  const shape = BundleShape.safeParse(input);
  if (!shape.success) {
    const issue = shape.error.issues[0]!;
    throw new InputError(`${where}: ${issue.path.join('.') || 'bundle'}: ${issue.message}`);
  }
  yield;
  const { version, ...body } = shape.data as ModelBundle;
  const actual = bundleVersion(body);
  // Bundles made before createdAt left the hash hashed it too: still accepted, so older registries load.
  if (actual !== version && contentHash(body) !== version)
    throw new IntegrityError(`${where}: its content hashes to ${actual}, not to its version ${version}: the bundle was changed after it was made; refusing it`);
  yield;
  featureSet(body.features); // each definition valid, names unique
  const names = new Set(body.features.map((f) => f.name));
  for (const step of body.preprocessing.steps as { name: string }[]) {
    if (!names.has(step.name)) throw new InputError(`${where}: the preprocessing reads ${step.name}, which is not among the bundle's features`);
  }
  const training = body.training && trainingDistributionProblem(body.training, names);
  if (training) throw new InputError(`${where}: ${training}`);
  modelArtifacts(body.model, where);
  // A copy is frozen, not the input: parts of it may be the caller's own objects (a trained model's
  // preprocessing, say), which checking must leave as they were.
  const bundle = deepFreeze(structuredClone(shape.data)) as ModelBundle;
  verified.add(bundle);
  return bundle;
}

/** Freezes a JSON-like document and everything in it (a bundle holds no typed arrays: its weights are base64 text). */
function deepFreeze<T>(value: T): T {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const node = stack.pop();
    // No cycles to guard against: the depth check before this refuses them.
    if (!node || typeof node !== 'object') continue;
    Object.freeze(node);
    for (const child of Object.values(node)) stack.push(child);
  }
  return value;
}

/**
 * A bundle's version: the hash of everything that decides what it does and where it came from
 * (topology, weights, preprocessing, features, label, kind, metrics, calibration, training
 * distribution, and the lineage's source, git commit, data snapshot and parent), but not of
 * `lineage.createdAt`, a wall-clock time: the same data, definitions and seed make the same version
 * whenever they are trained, and publishing it again changes nothing. Keep timings out of `metrics`,
 * or every run would make a new version.
 *
 * @example
 * ```ts
 * const { version, ...body } = bundle;
 * console.log(bundleVersion(body) === version); // true for a bundle nobody changed
 * ```
 */
export function bundleVersion(body: Omit<ModelBundle, 'version'>): string {
  const lineage: Partial<Lineage> = { ...body.lineage };
  delete lineage.createdAt;
  return contentHash({ ...body, lineage });
}

/**
 * Verifies a bundle (`verifyBundle`) and builds its model once, as the service does before it takes
 * one: a topology tfjs cannot read, weights that do not fit it, or a non-finite score of the
 * features' default values is refused here with the reason. Returns the bundle, typed.
 */
export async function checkBundle(input: unknown, where = 'bundle'): Promise<ModelBundle> {
  const bundle = verifyBundle(input, where);
  (await loadClassifier(bundle, where)).dispose();
  return bundle;
}

/**
 * The bundle's model, ready to score rows of feature values. Built in steps so that a bundle that
 * cannot serve says why (UnloadableBundleError, NonFiniteBundleError, both 400s): the topology
 * alone, then each weight matched by name and shape against it, then a score of the features'
 * default values, which must be a finite number.
 *
 * @example
 * ```ts
 * const registry = ModelRegistry.open(registryDir());
 * const champion = registry.resolve('app-churn', 'champion'); // undefined when the alias points nowhere
 * if (champion) console.log((await loadClassifier(registry.get(champion))).predict(rows));
 * ```
 */
export async function loadClassifier(bundle: ModelBundle, where = `bundle ${bundle.version}`): Promise<Classifier> {
  await tensorflow();
  const { specs, data } = modelArtifacts(bundle.model, where);
  let model: LayersModel;
  try {
    model = await tf.models.modelFromJSON({ modelTopology: bundle.model.topology } as Parameters<typeof tf.models.modelFromJSON>[0]);
  } catch (err) {
    throw new UnloadableBundleError(`${where}: tfjs cannot build a model from model.topology: ${firstLine(err)}`);
  }
  // Building the layers and loading the weights are a millisecond or more each: a server loading a
  // model answers what is waiting in between.
  await new Promise((resolve) => setImmediate(resolve));
  try {
    matchWeights(model, specs, where);
    const decoded = tf.io.decodeWeights(data, specs);
    try {
      model.loadWeights(decoded);
    } finally {
      tf.dispose(Object.values(decoded));
    }
    const width = (model.inputs[0]?.shape[1] as number | undefined) ?? -1;
    if (width !== bundle.preprocessing.inputs.length)
      throw new UnloadableBundleError(`${where}: the model takes ${width} inputs but the preprocessing makes ${bundle.preprocessing.inputs.length}`);
    const own = classifier(bundle.kind, model, bundle.preprocessing, bundle.label);
    // Served scores are the calibrated ones: the service and the gate see what the notebook evaluated.
    const loaded = bundle.calibration ? calibrated(own, bundle.calibration) : own;
    const defaults = dict(bundle.features.map((f) => [f.name, Array.isArray(f.default) ? [...f.default] : f.default] as const));
    const score = loaded.predict([defaults])[0];
    if (score === undefined || !Number.isFinite(score)) {
      const shown = bundle.features.map((f) => `${f.name}=${JSON.stringify(f.default)}`).join(', ');
      throw new NonFiniteBundleError(`${where}: the model scores the features' default values (${shown}) as ${score}; a served score must be a finite number`);
    }
    return loaded;
  } catch (err) {
    model.dispose();
    if (err instanceof UnloadableBundleError || err instanceof NonFiniteBundleError) throw err;
    const reason = err instanceof WorkbenchError ? err.message : firstLine(err);
    throw new UnloadableBundleError(`${where}: its model does not load: ${reason}`);
  }
}

const MAX_DEPTH = 64;
/** Elements of a single weight past which a bundle is refused unread (the 50 MB upload holds far fewer). */
const MAX_WEIGHT_VALUES = 64 * 1024 * 1024;
/** Layer sizes in a topology: tfjs allocates what they say before any weight is compared. */
const SIZE_KEYS = new Set(['units', 'filters', 'input_dim', 'output_dim', 'inputDim', 'outputDim']);
const SHAPE_KEYS = new Set(['batch_input_shape', 'batchInputShape', 'input_shape', 'inputShape', 'batch_shape', 'batchShape']);

const WeightSpec = z.object({
  name: z.string().min(1, 'a weight needs a name'),
  shape: z.array(z.number().int().nonnegative()).max(8),
  dtype: z.literal('float32', { message: 'bundles carry float32 weights' }),
  group: z.string().optional(),
  quantization: z.undefined({ message: 'quantized weights are not supported' }).optional(),
});

/**
 * What a bundle's model must be before tfjs sees it, checked without building anything: a topology
 * object whose layer sizes fit the weights the bundle carries (tfjs allocates a layer's weights
 * before it compares them: `units: 1e9` would take the process's memory), float32 weight specs, the
 * weight bytes exactly as long as the specs say, and every weight a finite number.
 */
function modelArtifacts(model: ModelBundle['model'], where: string): { specs: io.WeightsManifestEntry[]; data: ArrayBuffer } {
  const topology = model.topology;
  if (!isRecord(topology) || typeof topology.class_name !== 'string' || !isRecord(topology.config)) {
    throw new UnloadableBundleError(`${where}: model.topology is ${describe(topology)}, not a tfjs model topology (an object with class_name and config)`);
  }
  const specs: io.WeightsManifestEntry[] = [];
  const names = new Set<string>();
  let values = 0;
  model.weightSpecs.forEach((input, i) => {
    const spec = WeightSpec.safeParse(input);
    const name = isRecord(input) && typeof input.name === 'string' ? ` (${input.name})` : '';
    if (!spec.success) {
      const issue = spec.error.issues[0]!;
      throw new UnloadableBundleError(`${where}: model.weightSpecs[${i}]${name}: ${issue.path.join('.') || 'spec'}: ${issue.message}`);
    }
    if (names.has(spec.data.name)) throw new UnloadableBundleError(`${where}: model.weightSpecs[${i}]: the weight ${spec.data.name} appears twice`);
    names.add(spec.data.name);
    const size = spec.data.shape.reduce((a, b) => a * b, 1);
    if (size > MAX_WEIGHT_VALUES)
      throw new UnloadableBundleError(`${where}: model.weightSpecs[${i}]${name}: shape [${spec.data.shape.join(',')}] is over ${MAX_WEIGHT_VALUES} values`);
    values += size;
    specs.push({ name: spec.data.name, shape: spec.data.shape, dtype: 'float32' });
  });
  const bytes = Buffer.from(model.weights, 'base64');
  if (bytes.toString('base64') !== model.weights) throw new UnloadableBundleError(`${where}: model.weights is not base64 text`);
  if (bytes.length !== values * 4) {
    throw new UnloadableBundleError(
      `${where}: model.weights holds ${bytes.length} bytes, but model.weightSpecs describe ${values} float32 values (${values * 4} bytes)`,
    );
  }
  const oversized = oversizedLayer(topology, Math.max(values, 1));
  if (oversized) throw new UnloadableBundleError(`${where}: model.topology: ${oversized}, more than the ${values} weight values the bundle carries`);
  const data = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const floats = new Float32Array(data);
  let offset = 0;
  for (const spec of specs) {
    const size = spec.shape.reduce((a, b) => a * b, 1);
    for (let j = 0; j < size; j++) {
      const v = floats[offset + j]!;
      if (Number.isFinite(v)) continue;
      let others = 0;
      for (let k = offset + j + 1; k < floats.length; k++) if (!Number.isFinite(floats[k]!)) others++;
      throw new NonFiniteBundleError(
        `${where}: the weight ${spec.name} holds ${v} at [${indexIn(spec.shape, j).join(',')}]${others > 0 ? ` (and ${others} more non-finite values after it)` : ''}; every weight must be a finite number (a training that diverged?)`,
      );
    }
    offset += size;
  }
  return { specs, data };
}

/** Each weight of the built model matched to the bundle's, by name and shape, with the difference named. */
function matchWeights(model: LayersModel, specs: readonly io.WeightsManifestEntry[], where: string): void {
  const expected = new Map(model.weights.map((w) => [w.originalName, w.shape]));
  for (const spec of specs) {
    const shape = expected.get(spec.name);
    if (!shape)
      throw new UnloadableBundleError(
        `${where}: the weight ${spec.name} is not a weight of the model in model.topology (it has: ${[...expected.keys()].join(', ')})`,
      );
    if (shape.length !== spec.shape.length || shape.some((d, i) => d !== spec.shape[i])) {
      throw new UnloadableBundleError(
        `${where}: the weight ${spec.name} has shape [${spec.shape.join(',')}] in model.weightSpecs, but the topology makes it [${shape.join(',')}]`,
      );
    }
  }
  const given = new Set(specs.map((s) => s.name));
  const absent = [...expected.keys()].filter((n) => !given.has(n));
  if (absent.length > 0) throw new UnloadableBundleError(`${where}: the model in model.topology has weights the bundle does not carry: ${absent.join(', ')}`);
}

/**
 * A layer whose declared size could not fit `values` weights, described; or undefined. Any size
 * field over the count is one; in a sequential stack of Dense layers (what `trainClassifier`
 * makes) so is a kernel of inputs x units over it.
 */
function oversizedLayer(topology: Record<string, unknown>, values: number): string | undefined {
  const stack: { node: unknown; at: string }[] = [{ node: topology, at: 'topology' }];
  while (stack.length > 0) {
    const { node, at } = stack.pop()!;
    if (!node || typeof node !== 'object') continue;
    for (const [key, value] of Object.entries(node)) {
      if (SIZE_KEYS.has(key) && typeof value === 'number' && value > values) return `${at}.${key} is ${value}`;
      if (SHAPE_KEYS.has(key) && Array.isArray(value) && value.some((d) => typeof d === 'number' && d > values))
        return `${at}.${key} is ${JSON.stringify(value)}`;
      if (value && typeof value === 'object') stack.push({ node: value, at: `${at}.${key}` });
    }
  }
  const layers = isRecord(topology.config) ? topology.config.layers : undefined;
  if (topology.class_name !== 'Sequential' || !Array.isArray(layers)) return undefined;
  let width: number | undefined;
  for (const [i, layer] of layers.entries()) {
    const config = isRecord(layer) && isRecord(layer.config) ? layer.config : undefined;
    const shape = config?.batch_input_shape ?? config?.batchInputShape;
    if (Array.isArray(shape) && typeof shape.at(-1) === 'number') width = shape.at(-1) as number;
    if (!isRecord(layer) || layer.class_name !== 'Dense' || typeof config?.units !== 'number' || width === undefined) return undefined;
    if (width * config.units > values) return `layer ${i} (Dense) takes ${width} inputs to ${config.units} units, a kernel of ${width * config.units} values`;
    width = config.units;
  }
  return undefined;
}

/** The path of the first value nested deeper than `limit`, or undefined (iterative: any depth is safe to ask about). */
function deeperThan(input: unknown, limit: number): string | undefined {
  const stack: { node: unknown; depth: number; at: string }[] = [{ node: input, depth: 0, at: 'bundle' }];
  while (stack.length > 0) {
    const { node, depth, at } = stack.pop()!;
    if (!node || typeof node !== 'object') continue;
    if (depth >= limit) return at;
    for (const [key, value] of Object.entries(node)) if (value && typeof value === 'object') stack.push({ node: value, depth: depth + 1, at: `${at}.${key}` });
  }
  return undefined;
}

function indexIn(shape: readonly number[], flat: number): number[] {
  const index = shape.map(() => 0);
  for (let d = shape.length - 1; d >= 0; d--) {
    index[d] = flat % shape[d]!;
    flat = Math.floor(flat / shape[d]!);
  }
  return index;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object without a string class_name and an object config';
  const text = JSON.stringify(value) ?? String(value);
  return `${typeof value === 'string' ? 'the string' : `the ${typeof value}`} ${text.length > 40 ? `${text.slice(0, 40)}...` : text}`;
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
}

/** The bundle as canonical JSON (what is stored and sent). */
export function bundleJson(bundle: ModelBundle): string {
  return canonicalJson(bundle);
}

function concatWeights(data: io.WeightData | undefined): Uint8Array {
  if (!data) return new Uint8Array();
  const parts = Array.isArray(data) ? data : [data];
  return Buffer.concat(parts.map((p) => new Uint8Array(p)));
}
