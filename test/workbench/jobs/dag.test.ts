import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { simulateIntoOltp } from '../../../src/app/history.js';
import { runDag, RunStore, topologicalOrder, type Dag } from '../../../src/workbench/jobs/dag.js';
import { findDag } from '../../../src/workbench/jobs/training.js';
import { buildLakehouse, ModelRegistry, openOltp } from '../../../src/workbench/index.js';
import { tempDir } from '../../helpers/tmp.js';

const step = (name: string, needs: string[] = [], run: () => Promise<Record<string, unknown> | void> = async () => ({ ok: name })) => ({ name, needs, run });

describe('DAGs', () => {
  it('run steps after what they need, and refuse unknown needs and cycles', () => {
    const dag: Dag = { name: 'd', description: '', jobs: [step('c', ['b']), step('a'), step('b', ['a'])] };
    assert.deepEqual(
      topologicalOrder(dag).map((j) => j.name),
      ['a', 'b', 'c'],
    );
    assert.throws(() => topologicalOrder({ name: 'd', description: '', jobs: [step('a', ['zz'])] }), /step a needs zz, which is not a step/);
    assert.throws(() => topologicalOrder({ name: 'd', description: '', jobs: [step('a', ['b']), step('b', ['a'])] }), /has a cycle: a -> b -> a/);
  });

  it('record every run: outputs handed to later steps, a failure skips the rest and fails the run', async () => {
    const dir = tempDir('wb-dag-');
    const seen: unknown[] = [];
    const dag: Dag = {
      name: 'demo',
      description: '',
      jobs: [
        step('one', [], async () => ({ n: 41 })),
        { name: 'two', needs: ['one'], run: async (ctx) => void seen.push(ctx.inputs.one) },
        step('three', ['two'], async () => {
          throw new Error('no data for three');
        }),
        step('four', ['three']),
      ],
    };
    const run = await runDag(dag, { dataDir: dir, params: { x: '1' }, trigger: 'test' });
    assert.deepEqual(seen, [{ n: 41 }]);
    assert.equal(run.status, 'failed');
    assert.deepEqual(
      run.steps.map((s) => s.status),
      ['succeeded', 'succeeded', 'failed', 'skipped'],
    );
    assert.equal(run.steps[2]!.error, 'no data for three');
    const stored = await RunStore.forDataDir(dir).get(run.run_id);
    assert.deepEqual(stored, run);
    assert.deepEqual(
      (await RunStore.forDataDir(dir).list({ dag: 'demo' })).map((r) => r.run_id),
      [run.run_id],
    );
    await assert.rejects(RunStore.forDataDir(dir).get('../../etc/passwd'), /is not a run id/);
  });
});

describe('the app-churn training DAG', { timeout: 120_000 }, () => {
  const dir = tempDir('wb-dag-app-');
  before(async () => {
    const oltp = await openOltp(undefined, dir);
    // Big enough to learn from: on 200 users over 50 days even the true probabilities reach a ROC AUC
    // of only 0.66 and no model beats the base rate's Brier score, which the gate now requires.
    await buildLakehouse({ lakeDir: join(dir, 'lake'), app: await simulateIntoOltp({ seed: 7, users: 250, days: 60, start: '2025-03-01' }, oltp), oltp });
    await oltp.close();
  });

  it('publishes the first passing model as champion, the next as challenger, and nothing below the gate', async () => {
    const first = await runDag(findDag('app-churn'), { dataDir: dir });
    assert.equal(first.status, 'succeeded', JSON.stringify(first.steps.filter((s) => s.error)));
    const published = first.steps.find((s) => s.job === 'publish')!.outputs!;
    assert.deepEqual([published.published, published.alias, published.to], [true, 'champion', 'registry']);
    const registry = ModelRegistry.open(join(dir, 'registry'));
    assert.equal(registry.resolve('app-churn', 'champion'), published.version);
    assert.equal(registry.get(published.version as string).lineage.source, 'job:app-churn');

    const second = await runDag(findDag('app-churn'), { dataDir: dir });
    const gate = second.steps.find((s) => s.job === 'evaluate-vs-champion')!.outputs!;
    assert.equal(gate.champion_version, published.version);
    assert.equal(typeof gate.champion_roc_auc, 'number');
    assert.equal(second.steps.find((s) => s.job === 'publish')!.outputs!.alias, 'challenger');

    const blocked = await runDag(findDag('app-churn'), { dataDir: dir, params: { minAuc: '0.999' } });
    assert.equal(blocked.status, 'succeeded');
    assert.match(String(blocked.steps.find((s) => s.job === 'evaluate-vs-champion')!.outputs!.reason), /below the minimum 0.999/);
    assert.deepEqual(blocked.steps.find((s) => s.job === 'publish')!.outputs, { published: false, reason: 'the model did not pass the gate' });
  });
});
