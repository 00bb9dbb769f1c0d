import type { LayersModel, Tensor } from '@tensorflow/tfjs';
import { InputError } from '../errors.js';
import { defaultProgress, type Progress } from '../progress.js';
import { Random } from '../random.js';
import type { Calibration } from './calibration.js';
import { trainingDistribution, type TrainingDistribution } from './distribution.js';
import { logLoss } from './evaluate.js';
import { denseStack, forward } from './forward.js';
import { fitPreprocessing, transform, type ColumnSpec, type Preprocessing, type Row } from './preprocess.js';
import { tensorflow, tf } from './tf.js';

/** The model `trainClassifier` fits: `logistic` (one sigmoid unit) or `mlp` (hidden ReLU layers, then a sigmoid unit). */
export type ModelKind = 'logistic' | 'mlp';

/** How `trainClassifier` trains: the model kind, regularisation, epochs, early stopping, seed and progress. */
export interface TrainOptions {
  /** `logistic` (default): one sigmoid unit; `mlp`: hidden ReLU layers, then a sigmoid unit. */
  model?: ModelKind;
  /** Hidden layer sizes of the MLP; default [32, 16]. */
  hidden?: number[];
  /** L2 penalty on the weights; default 1e-4. */
  l2?: number;
  learningRate?: number;
  batchSize?: number;
  /** Most passes over the data; training usually stops earlier (see patience). */
  maxEpochs?: number;
  /** Share of the rows held out to decide when to stop; default 0.2. */
  validationFraction?: number;
  /** Epochs without a better validation loss before stopping; the best epoch's weights are kept. */
  patience?: number;
  /**
   * Same seed, same rows in the same order, same options: the same weights, bit for bit, in any
   * process (the seed draws the initial weights, the validation split and the batch order; the
   * models have no dropout; tfjs on one backend computes the same in every run).
   */
  seed?: number;
  /** Where epochs are reported; default a live bar in a notebook, nothing elsewhere. */
  progress?: Progress;
}

/** One epoch of training (`Classifier.history`): its training loss and the held-out validation loss that decides when to stop. */
export interface EpochRecord {
  epoch: number;
  loss: number;
  valLoss: number;
}

/** A trained binary classifier: the model with the preprocessing it was trained with. */
export interface Classifier {
  readonly kind: ModelKind;
  /** The tfjs model. `predict` reads a Dense stack's weights once, when the classifier is made: weights set on it later are not seen. */
  readonly model: LayersModel;
  readonly preprocessing: Preprocessing;
  readonly label: string;
  readonly history: EpochRecord[];
  readonly bestEpoch: number;
  /** Each input's distribution in the rows it was trained on (set by `trainClassifier`; `createBundle` keeps it in the bundle). */
  readonly training?: TrainingDistribution;
  /** The post-hoc calibration `predict` applies (set by `calibrated`; `createBundle` keeps it in the bundle). */
  readonly calibration?: Calibration;
  /** The same model before calibration, when it has one. */
  readonly uncalibrated?: Classifier;
  /** Probabilities of the positive class, one per row. */
  predict(rows: readonly Row[]): Float32Array;
  dispose(): void;
}

/**
 * Trains a classifier of `label` (0/1) from `columns` of the rows. The preprocessing is learned from
 * the training part only (the validation rows are held out of it too), and training stops once the
 * validation loss has not improved for `patience` epochs, keeping the best weights.
 *
 * @example
 * ```ts
 * const model = await trainClassifier(data.train, 'churned', columnsFor(data.features), { seed: 1 });
 * const scores = model.predict(data.test);
 * ```
 */
export async function trainClassifier(rows: readonly Row[], label: string, columns: readonly ColumnSpec[], options: TrainOptions = {}): Promise<Classifier> {
  await tensorflow();
  const o = {
    model: 'logistic' as ModelKind,
    hidden: [32, 16],
    l2: 1e-4,
    learningRate: 0.01,
    batchSize: 256,
    maxEpochs: 200,
    validationFraction: 0.2,
    patience: 10,
    seed: 1,
    ...options,
  };
  const labels = labelsOf(rows, label);
  const random = new Random(o.seed);
  const order = random.shuffle(rows.map((_, i) => i));
  const validationSize = Math.round(rows.length * o.validationFraction);
  if (validationSize < 1 || rows.length - validationSize < 2) throw new InputError(`too few rows to train and validate: ${rows.length}`);
  const trainIndex = order.slice(validationSize);
  const validIndex = order.slice(0, validationSize);
  const trainRows = trainIndex.map((i) => rows[i]!);
  const validRows = validIndex.map((i) => rows[i]!);
  const preprocessing = fitPreprocessing(trainRows, columns);
  const width = preprocessing.inputs.length;

  let positives = 0;
  for (const i of trainIndex) positives += labels[i]!;
  const baseRate = Math.min(1 - 1e-6, Math.max(1e-6, positives / trainIndex.length));
  const model = buildModel(o.model, width, o.hidden, o.l2, o.seed, baseRate);
  model.compile({ optimizer: tf.train.adam(o.learningRate), loss: 'binaryCrossentropy' });
  const xTrain = tf.tensor2d(transform(preprocessing, trainRows), [trainRows.length, width]);
  const yTrain = tf.tensor2d(
    Float32Array.from(trainIndex, (i) => labels[i]!),
    [trainRows.length, 1],
  );
  const xValid = tf.tensor2d(transform(preprocessing, validRows), [validRows.length, width]);
  const yValid = Float32Array.from(validIndex, (i) => labels[i]!);

  const history: EpochRecord[] = [];
  let best = { valLoss: Number.POSITIVE_INFINITY, epoch: 0, weights: [] as Tensor[] };
  const task = (o.progress ?? defaultProgress()).task(
    `training ${o.model} on ${trainRows.length.toLocaleString('en-US')} rows x ${width} inputs`,
    o.maxEpochs,
    'epochs',
  );
  try {
    for (let epoch = 1; epoch <= o.maxEpochs; epoch++) {
      // Batches in a seeded order of our own, so that training is reproducible.
      const perm = tf.tensor1d(Int32Array.from(random.shuffle(trainRows.map((_, i) => i))), 'int32');
      const [x, y] = [tf.gather(xTrain, perm), tf.gather(yTrain, perm)];
      const fit = await model.fit(x, y, { epochs: 1, batchSize: o.batchSize, shuffle: false, verbose: 0 });
      tf.dispose([perm, x, y]);
      const valLoss = logLoss(yValid, predictMatrix(model, xValid));
      history.push({ epoch, loss: Number(fit.history.loss![0]), valLoss });
      task.update(epoch);
      if (valLoss < best.valLoss - 1e-6) {
        tf.dispose(best.weights);
        best = { valLoss, epoch, weights: model.getWeights().map((w) => w.clone()) };
      } else if (epoch - best.epoch >= o.patience) break;
    }
  } finally {
    tf.dispose([xTrain, yTrain, xValid]);
  }
  model.setWeights(best.weights);
  tf.dispose(best.weights);
  task.finish(`best epoch ${best.epoch} of ${history.length}, validation log loss ${best.valLoss.toFixed(4)}`);
  // Over every row given (the validation part too): the range the model was fitted and stopped on.
  return { ...classifier(o.model, model, preprocessing, label, history, best.epoch), training: trainingDistribution(rows, columns) };
}

/** Wraps a model and its preprocessing as a Classifier (also used when a bundle is loaded). */
export function classifier(
  kind: ModelKind,
  model: LayersModel,
  preprocessing: Preprocessing,
  label: string,
  history: EpochRecord[] = [],
  bestEpoch = 0,
): Classifier {
  // Scored in plain JS when the model is a stack of Dense layers (what buildModel makes): the same
  // float32 as tfjs, without a tensor per call (forward.ts). The weights are read here, once.
  const stack = denseStack(model);
  return {
    kind,
    model,
    preprocessing,
    label,
    history,
    bestEpoch,
    predict: (rows) => {
      if (stack) return forward(stack, transform(preprocessing, rows), rows.length);
      const x = tf.tensor2d(transform(preprocessing, rows), [rows.length, preprocessing.inputs.length]);
      try {
        return predictMatrix(model, x);
      } finally {
        x.dispose();
      }
    },
    dispose: () => model.dispose(),
  };
}

function predictMatrix(model: LayersModel, x: Tensor): Float32Array {
  const out = model.predict(x) as Tensor;
  try {
    return out.dataSync() as Float32Array;
  } finally {
    out.dispose();
  }
}

function buildModel(kind: ModelKind, width: number, hidden: number[], l2: number, seed: number, baseRate: number): LayersModel {
  // Named, not numbered: tfjs numbers unnamed models and layers per process (sequential_3,
  // dense_Dense7), and the names are in the topology, hence in the bundle's version.
  const model = tf.sequential({ name: kind });
  const regularizer = l2 > 0 ? tf.regularizers.l2({ l2 }) : undefined;
  const layers = kind === 'mlp' ? hidden : [];
  layers.forEach((units, i) => {
    model.add(
      tf.layers.dense({
        units,
        activation: 'relu',
        name: `hidden_${i + 1}`,
        kernelInitializer: tf.initializers.heNormal({ seed: seed + i }),
        kernelRegularizer: regularizer,
        ...(i === 0 ? { inputShape: [width] } : {}),
      }),
    );
  });
  model.add(
    tf.layers.dense({
      units: 1,
      activation: 'sigmoid',
      name: 'output',
      kernelInitializer: tf.initializers.glorotUniform({ seed: seed + layers.length }),
      biasInitializer: tf.initializers.constant({ value: Math.log(baseRate / (1 - baseRate)) }),
      kernelRegularizer: regularizer,
      ...(layers.length === 0 ? { inputShape: [width] } : {}),
    }),
  );
  return model;
}

/** The label column as 0/1, refusing anything else with the row and value. */
export function labelsOf(rows: readonly Row[], label: string): Float32Array {
  if (rows.length === 0) throw new InputError('no rows to train on');
  if (!(label in rows[0]!)) throw new InputError(`the label column ${label} is not in the rows (they have: ${Object.keys(rows[0]!).join(', ')})`);
  return Float32Array.from(rows, (r, i) => {
    const v = r[label];
    const y = v === true ? 1 : v === false ? 0 : typeof v === 'bigint' ? Number(v) : v;
    if (y !== 0 && y !== 1) throw new InputError(`row ${i}: label ${label} is ${JSON.stringify(String(v))}; labels are 0 or 1 (or true/false)`);
    return y;
  });
}
