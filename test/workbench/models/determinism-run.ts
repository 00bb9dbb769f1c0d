/**
 * One training run for determinism.test.ts, in a process of its own: builds the retail and app
 * training sets on the lakehouse given, trains both models with small settings, writes each bundle to
 * the output folder and prints one JSON line with, per model, the training set's hash, the weights'
 * hash and the version. Two processes given the same lakehouse must print the same line.
 *
 *   node --import tsx test/workbench/models/determinism-run.ts <lake dir> <output dir>
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lakehouse, type Row } from '../../../src/workbench/lakehouse.js';
import { bundleJson, createBundle, type ModelBundle } from '../../../src/workbench/models/bundle.js';
import { lineageOf } from '../../../src/workbench/models/lineage.js';
import { appChurnData, trainAppChurn } from '../../../src/workbench/pipelines/app-churn.js';
import { retailPropensityData, trainRetailPropensity } from '../../../src/workbench/pipelines/retail-propensity.js';
import { silentProgress } from '../../../src/workbench/progress.js';

export interface RunSummary {
  /** sha256 of the training and test rows as JSON (every double printed to the last bit). */
  rows: string;
  rowCount: number;
  /** sha256 of the bundle's float32 weights. */
  weights: string;
  version: string;
  createdAt: string;
}

const sha = (text: string) => createHash('sha256').update(text).digest('hex');
const rowsHash = (rows: readonly Row[]) => sha(JSON.stringify(rows, (_key, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)));

function summary(bundle: ModelBundle, rows: readonly Row[]): RunSummary {
  return { rows: rowsHash(rows), rowCount: rows.length, weights: sha(bundle.model.weights), version: bundle.version, createdAt: bundle.lineage.createdAt };
}

async function main(): Promise<void> {
  const [lakeDir, outDir] = process.argv.slice(2);
  if (!lakeDir || !outDir) throw new Error('usage: determinism-run.ts <lake dir> <output dir>');
  // Several DuckDB threads even on one core, so anything that depends on their order would show.
  const lake = await Lakehouse.open(lakeDir, { threads: 4 });
  const progress = silentProgress;
  const lineage = lineageOf('test/workbench/models/determinism-run.ts', lake);
  const out: Record<string, RunSummary> = {};
  try {
    const retail = await retailPropensityData(lake, { stepDays: 28, progress });
    const r = await trainRetailPropensity(retail, { maxEpochs: 6, progress });
    const rb = await createBundle('purchase-propensity', r.model, retail.features, {
      metrics: { rocAuc: r.evaluation.rocAuc, logLoss: r.evaluation.logLoss, trainRows: retail.train.length },
      lineage,
    });
    r.model.dispose();
    writeFileSync(join(outDir, 'purchase-propensity.json'), bundleJson(rb));
    out.retail = summary(rb, [...retail.train, ...retail.test]);

    const app = await appChurnData(lake, { progress });
    // An MLP: He-normal and Glorot initialisers, several layers.
    const a = await trainAppChurn(app, { model: 'mlp', hidden: [8, 4], maxEpochs: 6, progress });
    const ab = await createBundle('app-churn', a.model, app.features, {
      metrics: { rocAuc: a.evaluation.rocAuc, logLoss: a.evaluation.logLoss, trainRows: app.train.length },
      lineage,
    });
    a.model.dispose();
    writeFileSync(join(outDir, 'app-churn.json'), bundleJson(ab));
    out.app = summary(ab, [...app.train, ...app.test]);
  } finally {
    lake.close();
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
