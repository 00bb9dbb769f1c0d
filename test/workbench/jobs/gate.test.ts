import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { simulateIntoOltp } from '../../../src/app/history.js';
import { runDag } from '../../../src/workbench/jobs/dag.js';
import { findDag, gateReasons } from '../../../src/workbench/jobs/training.js';
import { buildLakehouse, evaluate, loadClassifier, ModelRegistry, openOltp, uncalibrated } from '../../../src/workbench/index.js';
import { tempDir } from '../../helpers/tmp.js';

describe("the training gate's Brier rule", () => {
  const labels = [0, 0, 0, 1, 0, 0, 1, 0, 0, 0];
  it('passes a model whose Brier score beats the base rate, and refuses one that does not, saying so', () => {
    const good = evaluate(labels, [0.1, 0.1, 0.2, 0.8, 0.1, 0.2, 0.7, 0.1, 0.3, 0.1]);
    assert.deepEqual(gateReasons(good, { minAuc: 0.65, championAuc: null }), []);
    // Ranks perfectly (ROC AUC 1) but every probability is far too high: Brier 0.2005 against the base rate's 0.16.
    const overconfident = evaluate(labels, [0.5, 0.5, 0.5, 0.95, 0.5, 0.5, 0.95, 0.5, 0.5, 0.5]);
    assert.equal(overconfident.rocAuc, 1);
    assert.deepEqual(gateReasons(overconfident, { minAuc: 0.65, championAuc: null }), [
      "Brier score 0.20050 is not better than the base rate's 0.16000 (predicting 0.2000 for every row)",
    ]);
    // The constant itself is not better than itself.
    const constant = evaluate(labels, new Array<number>(10).fill(0.2));
    assert.match(gateReasons(constant, { minAuc: 0, championAuc: null }).join(), /not better than the base rate's 0.16000/);
  });
});

describe('the app-churn training DAG calibrates, gates on Brier, and publishes the calibration', { timeout: 120_000 }, () => {
  const dir = tempDir('wb-gate-app-');
  before(async () => {
    const oltp = await openOltp(undefined, dir);
    await buildLakehouse({ lakeDir: join(dir, 'lake'), app: await simulateIntoOltp({ seed: 7, users: 250, days: 60, start: '2025-03-01' }, oltp), oltp });
    await oltp.close();
  });

  it('reports the calibrated Brier score against the base rate and keeps the calibration in the bundle', async () => {
    const run = await runDag(findDag('app-churn'), { dataDir: dir });
    assert.equal(run.status, 'succeeded', JSON.stringify(run.steps.filter((s) => s.error)));
    const trained = run.steps.find((s) => s.job === 'train')!.outputs!;
    const gate = run.steps.find((s) => s.job === 'evaluate-vs-champion')!.outputs!;
    const published = run.steps.find((s) => s.job === 'publish')!.outputs!;
    assert.equal(gate.passed, true, String(gate.reason));
    assert.ok((gate.challenger_brier as number) < (gate.base_rate_brier as number));
    assert.equal(gate.challenger_brier, trained.brier);
    const bundle = ModelRegistry.open(join(dir, 'registry')).get(published.version as string);
    assert.equal(bundle.calibration?.method, trained.calibration);
    assert.ok(bundle.calibration?.fit && bundle.calibration.fit.rows > 0, 'chosen on validation rows');
    assert.equal(bundle.metrics.brier, trained.brier);
    // The champion as loaded scores through its calibration.
    const loaded = await loadClassifier(bundle);
    try {
      assert.deepEqual(loaded.calibration, bundle.calibration);
      assert.ok(uncalibrated(loaded) !== loaded || bundle.calibration?.method === 'none');
    } finally {
      loaded.dispose();
    }
  });
});
