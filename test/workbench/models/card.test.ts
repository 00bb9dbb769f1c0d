import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { NotFoundError } from '../../../src/workbench/errors.js';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { bootstrapIntervals, pairedBootstrap } from '../../../src/workbench/models/bootstrap.js';
import { createBundle, type ModelBundle } from '../../../src/workbench/models/bundle.js';
import { calibrated, chooseCalibration, fitPlatt } from '../../../src/workbench/models/calibration.js';
import { cardBlocks, cardHtml, cardMarkdown, loadModelCard, modelCard, type GateRecord } from '../../../src/workbench/models/card.js';
import { columnsFor } from '../../../src/workbench/models/preprocess.js';
import { ModelRegistry } from '../../../src/workbench/models/registry.js';
import { trainClassifier, type Classifier } from '../../../src/workbench/models/train.js';
import { Random } from '../../../src/workbench/random.js';
import { openTracking } from '../../../src/workbench/runs/index.js';
import { startRun } from '../../../src/workbench/runs/run.js';
import type { TrackedRun } from '../../../src/workbench/runs/store.js';
import { tempDir } from '../../helpers/tmp.js';

const features = featureSet([
  { name: 'logins_7d', description: 'logins in the last 7 days', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 },
  { name: 'spend_30d', source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: '30d', default: 0 },
]);
const EVIL = '<img src=x onerror="window.__pwned=1">|*_`#';
const r = new Random(4);
const rows = Array.from({ length: 800 }, () => {
  const logins = r.int(12);
  const spend = Math.round(r.next() * 100);
  return { logins_7d: logins, spend_30d: spend, [EVIL]: r.bernoulli(logins < 3 ? 0.5 : 0.15) ? 1 : 0 };
});

describe('model cards', { timeout: 60_000 }, () => {
  let trained: Classifier;
  let bundle: ModelBundle;
  let labels: number[];
  let scores: Float32Array;
  before(async () => {
    trained = await trainClassifier(rows.slice(0, 600), EVIL, columnsFor(features), { seed: 3, maxEpochs: 30 });
    const test = rows.slice(600);
    labels = test.map((x) => x[EVIL] as number);
    scores = trained.predict(test);
    bundle = await createBundle('card-model', trained, features, {
      metrics: { rocAuc: 0.7, brier: 0.12, ece: 0.031, baseRateBrier: 0.14, intervals: bootstrapIntervals(labels, scores, { resamples: 300 }) },
      lineage: {
        source: 'notebooks/test.ipynb',
        gitCommit: 'abc123',
        dataSnapshot: 'lakehouse 0011 (built 2026-01-01)',
        createdAt: '2026-01-02T00:00:00.000Z',
      },
    });
  });
  after(() => trained?.dispose());

  it("shows what the bundle holds, each input's training distribution as recomputed here, and says what was not recorded", () => {
    const card = modelCard(bundle);
    assert.equal(card.version, bundle.version);
    assert.equal(card.lineage.dataSnapshot, 'lakehouse 0011 (built 2026-01-01)');
    assert.equal(card.run, null);
    assert.equal(card.gate, null);
    assert.equal(card.champion, null);
    assert.match(card.purpose, /not recorded/);
    // The bundle's training distribution, checked against the training rows directly.
    if (bundle.training) {
      for (const f of card.features) {
        const values = rows.slice(0, 600).map((x) => x[f.name as 'logins_7d' | 'spend_30d']);
        assert.equal(f.training?.min, Math.min(...values));
        assert.equal(f.training?.max, Math.max(...values));
        assert.ok(Math.abs(f.training!.mean - values.reduce((a, b) => a + b, 0) / values.length) < 1e-9);
        assert.equal(f.training?.count, 600);
      }
    }
    const rocAuc = card.metrics.find((m) => m.name === 'rocAuc')!;
    assert.equal(rocAuc.value, 0.7);
    assert.deepEqual(rocAuc.interval, bootstrapIntervals(labels, scores, { resamples: 300 }).rocAuc);
    assert.deepEqual(
      card.calibrationMetrics.map((m) => m.name),
      ['ece', 'brier', 'baseRateBrier'],
    );
    const text = cardMarkdown(card);
    for (const heading of [
      'Purpose',
      'Data and lineage',
      'Features and their training distribution',
      'Metrics on the test rows',
      'Calibration',
      "The gate's result",
      'Against the champion, on the same rows',
    ])
      assert.match(text, new RegExp(`^## ${heading.replace(/[()]/g, '\\$&')}$`, 'm'));
    assert.match(text, /- \*\*Run:\*\* not recorded/);
    assert.match(text, /The gate's result was not recorded/);
    assert.match(text, /\| ROC AUC \| 0\.7 \| \\\[0\.\d+, 0\.\d+\\\] \|/);
  });

  it('takes the purpose, parameters, gate and champion comparison from the run that made the version', async () => {
    const championScores = scores.map((s, i) => (i % 2 ? s : 1 - s));
    const comparison = pairedBootstrap(labels, scores, championScores, { resamples: 300 });
    const gate: GateRecord = {
      passed: false,
      reasons: ['ROC AUC 0.7000 is below the minimum 0.75'],
      minAuc: 0.75,
      tolerance: 0.005,
      rocAuc: 0.7,
      championVersion: 'ffffffffffffffff',
      championRocAuc: comparison.champion.rocAuc.estimate,
    };
    const run: TrackedRun = {
      id: '0123456789abcdef',
      name: 'card-model',
      source: 'job:test',
      description: `Finds users about to churn. ${EVIL}`,
      status: 'finished',
      startedAt: '2026-01-02T00:00:00.000Z',
      endedAt: '2026-01-02T00:01:00.000Z',
      gitCommit: 'abc123',
      dataSnapshot: 'x',
      params: Object.assign(Object.create(null) as Record<string, number | string>, { ['__proto__']: 1, learningRate: 0.03 }),
      metrics: Object.create(null) as Record<string, number>,
      artifacts: [
        { name: 'gate', ref: null, value: JSON.parse(JSON.stringify(gate)), at: '2026-01-02T00:01:00.000Z' },
        { name: 'champion', ref: null, value: JSON.parse(JSON.stringify({ version: 'ffffffffffffffff', comparison })), at: '2026-01-02T00:01:00.000Z' },
      ],
    };
    const card = modelCard(bundle, { run });
    assert.equal(card.purpose, run.description);
    assert.deepEqual(card.gate, gate);
    assert.deepEqual(card.champion?.comparison, comparison);
    const text = cardMarkdown(card);
    assert.match(text, /- \*\*Result:\*\* did not pass: ROC AUC 0\.7000 is below the minimum 0\.75/);
    assert.match(text, /Champion ffffffffffffffff scored on this model's 200 test rows/);
    assert.match(text, /\| \\_\\_proto\\_\\_ \| 1 \|/, 'a parameter named __proto__ is a row like any other');
    const row = cardBlocks(card)
      .filter((b) => b.kind === 'table')
      .flatMap((b) => (b.kind === 'table' ? b.rows : []))
      .findLast((x) => x[0] === 'ROC AUC')!;
    assert.match(row[3]!, new RegExp(`^${comparison.difference.rocAuc.estimate.toPrecision(4).replace('.', '\\.').replace(/0+$/, '')}`));

    // A damaged artefact is not recorded, never half-shown.
    const damaged = modelCard(bundle, { run: { ...run, artifacts: [{ name: 'gate', ref: null, value: { passed: 'yes' }, at: run.startedAt }] } });
    assert.equal(damaged.gate, null);
  });

  it("shows the bundle's calibration: the map, how it was chosen and every candidate", async () => {
    // Platt only, fitted on the test rows' scores (the card shows whatever the bundle holds).
    const calibration = chooseCalibration(labels, scores, { methods: ['none', 'platt'], source: 'the test rows' });
    const forced = calibration.method === 'platt' ? calibration : { ...calibration, ...fitPlatt(labels, scores), method: 'platt' as const };
    const withMap = await createBundle('card-model', calibrated(trained, forced), features, { lineage: { createdAt: '2026-01-02T00:00:00.000Z' } });
    const card = modelCard(withMap);
    assert.deepEqual(card.calibration, withMap.calibration);
    assert.ok(card.calibration?.method === 'platt');
    const text = cardMarkdown(card);
    assert.match(text, /- \*\*Method:\*\* platt/);
    assert.match(text, new RegExp(`- \\*\\*Map:\\*\\* p = 1 / \\(1 \\+ exp\\(${card.calibration.a.toPrecision(4).replace(/0+$/, '').replace('.', '\\.')}`));
    assert.match(text, /200 validation rows \(\d+ positives\), the test rows, by 5-fold out-of-fold logLoss/);
    assert.match(text, /\| none \| \d\.\d+ \| \d\.\d+ \|/);
    assert.match(text, /\| platt( \(chosen\))? \| \d\.\d+ \| \d\.\d+ \|/);
    assert.equal(modelCard(bundle).calibration, null);
    assert.match(cardMarkdown(modelCard(bundle)), /A calibration map was not recorded/);
  });

  it('renders every value as text: escaped in HTML (no script, a CSP), escaped in Markdown', () => {
    const card = modelCard(bundle, { purpose: `Purpose ${EVIL} </p><script>window.__pwned=1</script>` });
    const html = cardHtml(card);
    assert.doesNotMatch(html, /<img|<script/i);
    assert.match(html, /&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;/);
    assert.match(html, /Content-Security-Policy" content="default-src 'none'/);
    const md = cardMarkdown(card);
    assert.doesNotMatch(md, /(^|[^\\])<(img|script|\/p)/, 'every < is escaped');
    assert.match(md, /\\<img src=x onerror="window\.\\_\\_pwned=1"\\>\\\|\\\*\\_\\`\\#/);
  });

  it('is found for a version, an alias or the champion, with the run that made it', async () => {
    const dir = tempDir('wb-card-');
    const registry = ModelRegistry.open(dir);
    registry.put(bundle);
    assert.equal((await loadModelCard(registry, 'card-model')).version, bundle.version, 'no champion: the newest version');
    registry.setAlias('card-model', 'champion', bundle.version);
    assert.equal((await loadModelCard(registry, 'card-model', 'champion')).version, bundle.version);
    await assert.rejects(loadModelCard(registry, 'card-model', 'challenger'), NotFoundError);
    await assert.rejects(loadModelCard(registry, 'other-model', bundle.version), NotFoundError);
    await assert.rejects(loadModelCard(registry, 'card-model', '../../etc'), /neither a version/);

    const store = await openTracking(undefined, dir);
    try {
      assert.equal((await loadModelCard(registry, 'card-model', bundle.version, store)).run, null);
      const run = await startRun({ name: 'card-model', params: { seed: 3 }, description: 'What the test model is for.', store });
      await run.model(bundle);
      await run.end();
      const card = await loadModelCard(registry, 'card-model', bundle.version, store);
      assert.equal(card.run?.id, run.id);
      assert.equal(card.purpose, 'What the test model is for.');
      assert.equal(card.run?.params.seed, 3);
    } finally {
      await store.close();
    }
  });
});
