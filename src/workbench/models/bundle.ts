import type { io, LayersModel } from '@tensorflow/tfjs';
import { z } from 'zod';
import { IntegrityError, InputError } from '../errors.js';
import { canonicalJson, contentHash, featureSet, type Feature } from '../features/definition.js';
import type { Evaluation } from './evaluate.js';
import type { Preprocessing } from './preprocess.js';
import { classifier, type Classifier, type ModelKind } from './train.js';
import { tensorflow, tf } from './tf.js';

/**
 * A model bundle: everything needed to serve a model, by value, in one JSON document: the tfjs
 * topology and weights, the feature definitions it reads, the preprocessing it learned, its input
 * and output signature, its metrics and its lineage. Its version is the hash of its content, so a
 * bundle is immutable and loading it checks that nothing was changed.
 */
export const BUNDLE_FORMAT = 'plg-workbench/model-bundle@1';

export interface Lineage {
  /** Where it was trained: a notebook path or a job name. */
  source?: string;
  gitCommit?: string;
  /** The data it was trained on: e.g. the lakehouse manifest's build time and checksum. */
  dataSnapshot?: string;
  /** The version it was derived from or meant to replace. */
  parent?: string;
  createdAt: string;
}

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
  /** Hash of everything else; set by `createBundle`, checked by `verifyBundle`. */
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
  version: z.string().regex(/^[0-9a-f]{16}$/),
});

/** Writes a trained classifier and what it needs as a bundle (through a tfjs save handler: no files). */
export async function createBundle(
  name: string,
  trained: Classifier,
  features: readonly Feature[],
  extra: { metrics?: ModelBundle['metrics']; lineage?: Omit<Lineage, 'createdAt'> & { createdAt?: string } } = {},
): Promise<ModelBundle> {
  if (!NAME.test(name)) throw new InputError(`model name ${JSON.stringify(name)}: use lower-case letters, digits and -, starting with a letter`);
  const featureNames = new Set(features.map((f) => f.name));
  for (const step of trained.preprocessing.steps) {
    if (!featureNames.has(step.name)) throw new InputError(`the model reads ${step.name}, which is not one of the bundle's features (${[...featureNames].join(', ')})`);
  }
  let saved: io.ModelArtifacts | undefined;
  await trained.model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  const weights = concatWeights(saved!.weightData);
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
  };
  return { ...body, version: contentHash(body) };
}

/**
 * Checks a bundle read from disk or received over HTTP: its shape, its features, and that its
 * content still hashes to its version. Returns it typed; throws IntegrityError on a changed bundle.
 */
export function verifyBundle(input: unknown, where = 'bundle'): ModelBundle {
  const shape = BundleShape.safeParse(input);
  if (!shape.success) {
    const issue = shape.error.issues[0]!;
    throw new InputError(`${where}: ${issue.path.join('.') || 'bundle'}: ${issue.message}`);
  }
  const { version, ...body } = shape.data as ModelBundle;
  const actual = contentHash(body);
  if (actual !== version) throw new IntegrityError(`${where}: its content hashes to ${actual}, not to its version ${version}: the bundle was changed after it was made; refusing it`);
  featureSet(body.features); // each definition valid, names unique
  const names = new Set(body.features.map((f) => f.name));
  for (const step of body.preprocessing.steps as { name: string }[]) {
    if (!names.has(step.name)) throw new InputError(`${where}: the preprocessing reads ${step.name}, which is not among the bundle's features`);
  }
  return shape.data as ModelBundle;
}

/** The bundle's model, ready to score rows of feature values. */
export async function loadClassifier(bundle: ModelBundle): Promise<Classifier> {
  await tensorflow();
  const bytes = Buffer.from(bundle.model.weights, 'base64');
  const weightData = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const model: LayersModel = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: bundle.model.topology as object, weightSpecs: bundle.model.weightSpecs, weightData }));
  const width = (model.inputs[0]?.shape[1] as number | undefined) ?? -1;
  if (width !== bundle.preprocessing.inputs.length) {
    model.dispose();
    throw new InputError(`bundle ${bundle.version}: the model takes ${width} inputs but the preprocessing makes ${bundle.preprocessing.inputs.length}`);
  }
  return classifier(bundle.kind, model, bundle.preprocessing, bundle.label);
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
