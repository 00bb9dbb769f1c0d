import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { simulateIntoOltp } from '../../../src/app/history.js';
import { runDag } from '../../../src/workbench/jobs/dag.js';
import { findDag } from '../../../src/workbench/jobs/training.js';
import { buildLakehouse, Lakehouse, ModelRegistry, openOltp } from '../../../src/workbench/index.js';
import { cardMarkdown, loadModelCard } from '../../../src/workbench/models/card.js';
import { dataSnapshot } from '../../../src/workbench/models/lineage.js';
import { openTracking } from '../../../src/workbench/runs/index.js';
import type { MetricIntervals, PairedComparison } from '../../../src/workbench/models/bootstrap.js';
import { tempDir } from '../../helpers/tmp.js';

describe('training jobs record their runs', { timeout: 240_000 }, () => {
  const dir = tempDir('wb-runs-job-');
  before(async () => {
    const oltp = await openOltp(undefined, dir);
    // The lake of test/workbench/jobs/dag.test.ts: big enough for the model to pass the gate.
    await buildLakehouse({ lakeDir: join(dir, 'lake'), app: await simulateIntoOltp({ seed: 7, users: 250, days: 60, start: '2025-03-01' }, oltp), oltp });
    await oltp.close();
  });

  it('records parameters (never the key), data snapshot, metrics with intervals, the gate, the champion on the same rows and the model', async () => {
    const first = await runDag(findDag('app-churn'), { dataDir: dir, params: { key: 'wb_secret_admin_key', note: 'postgres://me:hunter2@db.example/x' } });
    assert.equal(first.status, 'succeeded', JSON.stringify(first.steps.filter((s) => s.error)));
    const second = await runDag(findDag('app-churn'), { dataDir: dir });
    assert.equal(second.status, 'succeeded', JSON.stringify(second.steps.filter((s) => s.error)));
    const firstVersion = first.steps.find((s) => s.job === 'publish')!.outputs!.version as string;
    const gateOutputs = second.steps.find((s) => s.job === 'evaluate-vs-champion')!.outputs!;
    const trainOutputs = second.steps.find((s) => s.job === 'train')!.outputs!;

    const store = await openTracking(undefined, dir);
    try {
      const runs = await store.listRuns({ name: 'app-churn' });
      assert.equal(runs.length, 2);
      const [latest, earliest] = runs;
      for (const r of runs) {
        assert.equal(r.status, 'finished');
        assert.equal(r.source, 'job:app-churn');
        assert.match(r.gitCommit ?? '', /^[0-9a-f]{40}(\+dirty)?$/);
      }
      const lake = await Lakehouse.open(join(dir, 'lake'));
      assert.equal(latest!.dataSnapshot, dataSnapshot(lake));
      lake.close();

      assert.equal(earliest!.params.key, undefined, 'the admin key is never recorded');
      assert.equal(earliest!.params.note, 'postgres://me:***@db.example/x', 'a password in a URL is masked');
      assert.equal(earliest!.params.minAuc, 0.65);
      assert.equal(latest!.params.dag, 'app-churn');
      assert.equal(latest!.params.model_kind, 'logistic');

      // The run's metrics are the job's own numbers.
      assert.equal(latest!.metrics.roc_auc, trainOutputs.roc_auc);
      assert.equal(latest!.metrics.best_epoch, trainOutputs.best_epoch);
      assert.ok(latest!.metrics.train_rows! > 0 && latest!.metrics.test_rows! > 0);
      assert.ok(latest!.metrics.roc_auc_lower! < latest!.metrics.roc_auc! && latest!.metrics.roc_auc! < latest!.metrics.roc_auc_upper!);

      // The intervals are in the bundle, the same as in the run.
      const secondVersion = second.steps.find((s) => s.job === 'publish')!.outputs!.version as string;
      const registry = ModelRegistry.open(join(dir, 'registry'));
      const bundle = registry.get(secondVersion);
      const intervals = bundle.metrics.intervals as MetricIntervals;
      assert.deepEqual({ ...(latest!.artifacts.find((a) => a.name === 'intervals')!.value as unknown as MetricIntervals).rocAuc }, { ...intervals.rocAuc });
      assert.equal(intervals.rocAuc.estimate, bundle.metrics.rocAuc);
      assert.equal(intervals.n, bundle.metrics.testRows);

      // The gate and the champion: the first run had none, the second compared with the first's model.
      const gate = (r: typeof latest) => r!.artifacts.find((a) => a.name === 'gate')!.value as unknown as { passed: boolean; championVersion: string | null };
      assert.equal(gate(earliest).championVersion, null);
      assert.equal(gate(latest).championVersion, firstVersion);
      assert.equal(
        earliest!.artifacts.find((a) => a.name === 'champion'),
        undefined,
      );
      const champion = latest!.artifacts.find((a) => a.name === 'champion')!.value as unknown as { version: string; comparison: PairedComparison };
      assert.equal(champion.version, firstVersion);
      // Recomputed by the recorder, the champion's ROC AUC on the same rows is the gate's own.
      assert.ok(Math.abs(champion.comparison.champion.rocAuc.estimate - (gateOutputs.champion_roc_auc as number)) < 1e-12);
      assert.ok(Math.abs(champion.comparison.challenger.rocAuc.estimate - (gateOutputs.challenger_roc_auc as number)) < 1e-12);

      // The model artefact finds the run, and the card shows all of it.
      assert.deepEqual(
        (await store.listRuns({ ref: `model:app-churn@${secondVersion}` })).map((r) => r.id),
        [latest!.id],
      );
      const card = await loadModelCard(registry, 'app-churn', secondVersion, store);
      assert.equal(card.run?.id, latest!.id);
      assert.equal(card.gate?.championVersion, firstVersion);
      assert.equal(card.champion?.version, firstVersion);
      assert.deepEqual(card.intervals, intervals);
      assert.equal(card.purpose, 'churn on the simulated app (notebook 04 as a job)');
      assert.ok(card.features.length > 0 && card.features.every((f) => f.training !== null), 'every numeric input has its training distribution');
      const text = cardMarkdown(card);
      assert.match(text, /## Against the champion, on the same rows/);
      assert.match(text, new RegExp(`Champion ${firstVersion}`));
      assert.doesNotMatch(text, /not recorded/, 'a job records everything a card shows');
    } finally {
      await store.close();
    }
  });

  it('records a run whose step fails as failed, with the error', async () => {
    const empty = tempDir('wb-runs-job-empty-');
    const run = await runDag(findDag('app-churn'), { dataDir: empty });
    assert.equal(run.status, 'failed');
    const store = await openTracking(undefined, empty);
    try {
      const [recorded] = await store.listRuns();
      assert.equal(recorded?.status, 'failed');
      const failed = run.steps.find((s) => s.status === 'failed')!;
      const error = recorded!.artifacts.find((a) => a.name === 'error')!.value as unknown as { step: string; message: string };
      assert.equal(error.step, failed.job);
      assert.equal(error.message, failed.error);
    } finally {
      await store.close();
    }
  });
});
