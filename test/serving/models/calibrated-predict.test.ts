import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { createBundle } from '../../../src/workbench/models/bundle.js';
import { applyCalibration, calibrated, fitIsotonic, uncalibrated } from '../../../src/workbench/models/calibration.js';
import { columnsFor } from '../../../src/workbench/models/preprocess.js';
import { publish } from '../../../src/workbench/models/publish.js';
import { trainClassifier, type Classifier } from '../../../src/workbench/models/train.js';
import { Random } from '../../../src/workbench/random.js';
import { startTestService, type TestService } from '../../helpers/service.js';

const features = featureSet([
  { name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 },
  { name: 'spend_30d', source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: '30d', default: 0 },
]);
const r = new Random(4);
const rows = Array.from({ length: 1200 }, () => {
  const logins = r.int(8);
  const spend = r.next() * 100;
  return { logins_7d: logins, spend_30d: spend, bought: r.bernoulli(1 / (1 + Math.exp(-(0.5 * logins + 0.02 * spend - 2)))) ? 1 : 0 };
});

describe('a calibrated model served', { timeout: 120_000 }, () => {
  let t: TestService;
  let trained: Classifier;
  let model: Classifier;
  before(async () => {
    t = await startTestService();
    trained = await trainClassifier(rows.slice(0, 800), 'bought', columnsFor(features), { seed: 1, maxEpochs: 20 });
    // Labels the model never trained on, with half the positives dropped: the isotonic map has to pull scores down.
    const held = rows.slice(800);
    const labels = held.map((x, i) => (x.bought === 1 && i % 2 === 0 ? 1 : 0));
    model = calibrated(trained, fitIsotonic(labels, trained.predict(held)));
  });
  after(async () => {
    trained?.dispose();
    await t?.stop();
  });

  it('answers /v1/predict with the calibrated probability, the one the notebook evaluates', async () => {
    const bundle = await createBundle('propensity', model, features, { lineage: { source: 'test' } });
    assert.equal(bundle.calibration?.method, 'isotonic');
    await publish(bundle, { url: t.service.url, key: t.keys.admin, alias: 'champion' });
    for (const values of [
      { logins_7d: 0, spend_30d: 0 },
      { logins_7d: 3, spend_30d: 40 },
      { logins_7d: 7, spend_30d: 95 },
    ]) {
      const res = await t.call('/v1/predict', {
        method: 'POST',
        key: t.keys.read,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'propensity', user_id: 'nobody', values }),
      });
      const body = (await res.json()) as { score: number };
      assert.equal(res.status, 200, JSON.stringify(body));
      const raw = uncalibrated(model).predict([values])[0]!;
      const expected = Math.fround(applyCalibration(bundle.calibration!, [raw])[0]!);
      assert.equal(body.score, expected);
      assert.equal(body.score, model.predict([values])[0]);
      assert.ok(Math.abs(body.score - raw) > 0.01, `calibrated ${body.score} vs raw ${raw}: the map should move it`);
    }
  });
});
