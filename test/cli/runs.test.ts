import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { featureSet } from '../../src/workbench/features/definition.js';
import { createBundle } from '../../src/workbench/models/bundle.js';
import { columnsFor } from '../../src/workbench/models/preprocess.js';
import { ModelRegistry } from '../../src/workbench/models/registry.js';
import { trainClassifier } from '../../src/workbench/models/train.js';
import { openTracking } from '../../src/workbench/runs/index.js';
import { startRun } from '../../src/workbench/runs/run.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('wb-cli-runs-');
const wb = (...args: string[]) => {
  const r = spawnSync(process.execPath, ['bin/wb.cjs', '--data-dir', dir, ...args], {
    encoding: 'utf8',
    env: { ...process.env, WB_DEBUG: '', WB_OLTP_URL: '', WB_DATA_DIR: '' },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('wb runs and wb models card', { timeout: 120_000 }, () => {
  const ids: string[] = [];
  let version = '';
  before(async () => {
    const store = await openTracking(undefined, dir);
    try {
      for (const [lr, auc] of [
        [0.01, 0.71],
        [0.03, 0.74],
      ] as const) {
        const run = await startRun({ name: 'churn', params: { learningRate: lr, seed: 1 }, source: 'test', dataSnapshot: 'snap', store });
        await run.log({ roc_auc: auc, best_epoch: 12 });
        await run.end();
        ids.push(run.id);
      }
      const evil = await startRun({ name: 'evil\u001b[31mred\u001b[0m', params: JSON.parse('{"__proto__": 1}') as Record<string, number>, store });
      ids.push(evil.id);
      const features = featureSet([{ name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 }]);
      const model = await trainClassifier(
        Array.from({ length: 80 }, (_, i) => ({ logins_7d: i % 7, y: i % 7 < 2 ? 1 : 0 })),
        'y',
        columnsFor(features),
        { maxEpochs: 3 },
      );
      const bundle = await createBundle('churn', model, features, { metrics: { rocAuc: 0.74 }, lineage: { source: 'test', dataSnapshot: 'snap' } });
      model.dispose();
      version = bundle.version;
      const registry = ModelRegistry.open(join(dir, 'registry'));
      registry.put(bundle);
      registry.setAlias('churn', 'champion', bundle.version);
      const card = await startRun({ name: 'churn', params: { learningRate: 0.03 }, description: 'Who will churn.', store });
      await card.model(bundle);
      await card.end();
    } finally {
      await store.close();
    }
  });

  it('lists runs newest first, by name, as JSON, with names made safe for a terminal', () => {
    const all = wb('runs', 'list');
    assert.equal(all.code, 0, all.err);
    const lines = all.out.trim().split('\n');
    assert.equal(lines.length, 4);
    assert.match(lines[1]!, new RegExp(`^${ids[2]}  running`));
    assert.match(all.out, /evil\\u001b\[31mred/, 'an escape sequence in a name is shown, not obeyed');
    assert.ok(!all.out.includes('\u001b'), 'no raw escape character');
    const churn = JSON.parse(wb('runs', 'list', '--name', 'churn', '--json').out) as { id: string; metrics: { roc_auc?: number } }[];
    assert.deepEqual(
      churn.slice(1).map((r) => r.id),
      [ids[1], ids[0]],
    );
    assert.equal(churn[1]!.metrics.roc_auc, 0.74);
    const bad = wb('runs', 'list', '--status', 'nope');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /^error: --status "nope": one of running, finished, failed, killed/);
  });

  it('shows one run by a prefix, and says when a prefix is ambiguous or unknown', () => {
    const shown = wb('runs', 'show', ids[0]!.slice(0, 8));
    assert.equal(shown.code, 0, shown.err);
    assert.match(shown.out, new RegExp(`^run +${ids[0]}$`, 'm'));
    assert.match(shown.out, /^ {2}learningRate +0\.01$/m);
    assert.match(shown.out, /^ {2}roc_auc +0\.7100 {2}1$/m);
    assert.match(shown.out, /^data snapshot +snap$/m);
    const unknown = wb('runs', 'show', 'ffffffffffffffff');
    assert.equal(unknown.code, 1);
    assert.match(unknown.err, /^error: no run ffffffffffffffff/);
    assert.equal(wb('runs', 'show', 'x;rm').code, 2);
  });

  it('compares runs side by side, marking the rows that differ', () => {
    const c = wb('runs', 'compare', ids[0]!, ids[1]!);
    assert.equal(c.code, 0, c.err);
    assert.match(c.out, /^\* learningRate +0\.0100 +0\.0300$/m);
    assert.match(c.out, /^\* roc_auc +0\.7100 +0\.7400$/m);
    assert.match(c.out, /^ {2}seed +1 +1$/m);
    assert.match(c.out, /^ {2}best_epoch +12 +12$/m);
    assert.match(c.out, /^ {2}data snapshot +"snap" +"snap"$/m);
    assert.match(c.out, /2 of 6 rows differ/);
    const diff = wb('runs', 'compare', '--diff', ids[0]!, ids[1]!);
    assert.doesNotMatch(diff.out, /seed/);
    const json = JSON.parse(wb('runs', 'compare', '--json', ids[0]!, ids[2]!).out) as { params: { key: string; differs: boolean }[] };
    assert.equal(json.params.find((p) => p.key === '__proto__')?.differs, true);
    assert.equal(wb('runs', 'compare', ids[0]!).code, 2);
  });

  it('writes a model card: Markdown on stdout, HTML to a file, by version or alias', () => {
    const md = wb('models', 'card', 'churn');
    assert.equal(md.code, 0, md.err);
    assert.match(md.out, new RegExp(`^# Model card: churn ${version}$`, 'm'));
    assert.match(md.out, /^Who will churn\.$/m, 'the purpose from the run that made it');
    const out = join(dir, 'card.html');
    const html = wb('models', 'card', 'churn', version, '--out', out);
    assert.equal(html.code, 0, html.err);
    const page = readFileSync(out, 'utf8');
    assert.match(page, /^<!doctype html>/);
    assert.match(page, /<h2>Against the champion, on the same rows<\/h2>/);
    const missing = wb('models', 'card', 'nobody');
    assert.equal(missing.code, 1);
    assert.match(missing.err, /^error: no model named nobody/);
  });
});
