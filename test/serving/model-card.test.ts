import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Browser } from 'playwright-core';
import { oltpUrl } from '../../src/workbench/config.js';
import { featureSet } from '../../src/workbench/features/definition.js';
import { bootstrapIntervals } from '../../src/workbench/models/bootstrap.js';
import { createBundle, type ModelBundle } from '../../src/workbench/models/bundle.js';
import type { CardBlock, ModelCard } from '../../src/workbench/models/card.js';
import { columnsFor } from '../../src/workbench/models/preprocess.js';
import { publish } from '../../src/workbench/models/publish.js';
import { trainClassifier } from '../../src/workbench/models/train.js';
import { openTracking } from '../../src/workbench/runs/index.js';
import { startRun } from '../../src/workbench/runs/run.js';
import { launchBrowser } from '../helpers/browser.js';
import { startTestService, type TestService } from '../helpers/service.js';

/** A label that is markup: the card must show it as text. */
const EVIL = '<img src=x onerror="window.__pwned=1">';

describe('model cards served at /models/<name>/<version>', { timeout: 120_000 }, () => {
  let t: TestService;
  let browser: Browser | string;
  let bundle: ModelBundle;
  let runId: string;
  before(async () => {
    t = await startTestService();
    browser = await launchBrowser();
    const features = featureSet([{ name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 }]);
    const rows = Array.from({ length: 200 }, (_, i) => ({ logins_7d: i % 9, [EVIL]: (i * 7) % 9 < 3 ? 1 : 0 }));
    const model = await trainClassifier(rows, EVIL, columnsFor(features), { maxEpochs: 5, seed: 2 });
    const scores = model.predict(rows);
    bundle = await createBundle('card-page', model, features, {
      metrics: {
        rocAuc: 0.66,
        intervals: bootstrapIntervals(
          rows.map((r) => r[EVIL]!),
          scores,
          { resamples: 200 },
        ),
      },
      lineage: { source: 'test', dataSnapshot: 'lakehouse abcd (built 2026-01-01)' },
    });
    model.dispose();
    await publish(bundle, { url: t.service.url, key: t.keys.admin, alias: 'champion' });
    // The run that made it, recorded where the service looks (the data dir, or WB_OLTP_URL's database).
    const store = await openTracking(oltpUrl(), t.dataDir);
    try {
      const run = await startRun({ name: 'card-page', params: { learningRate: 0.05 }, description: `Picks users to nudge. ${EVIL}`, store });
      await run.model(bundle);
      await run.end();
      runId = run.id;
    } finally {
      await store.close();
    }
  });
  after(async () => {
    if (typeof browser !== 'string') await browser?.close();
    await t?.stop();
  });

  it('answers the card with a read key, by version or alias, and refuses what is not one', async () => {
    const path = `/v1/models/card-page/${bundle.version}/card`;
    assert.equal((await t.call(path)).status, 401);
    const res = await t.call(path, { key: t.keys.read });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { card: ModelCard; blocks: CardBlock[] };
    assert.equal(body.card.version, bundle.version);
    assert.equal(body.card.run?.id, runId);
    assert.equal(body.card.purpose, `Picks users to nudge. ${EVIL}`);
    assert.equal(body.blocks[0]!.kind, 'heading');
    const byAlias = (await (await t.call('/v1/models/card-page/champion/card', { key: t.keys.read })).json()) as { card: ModelCard };
    assert.equal(byAlias.card.version, bundle.version);
    assert.equal((await t.call('/v1/models/card-page/challenger/card', { key: t.keys.read })).status, 404);
    assert.equal((await t.call('/v1/models/card-page/constructor/card', { key: t.keys.read })).status, 404);
    assert.equal((await t.call('/v1/models/nobody/0123456789abcdef/card', { key: t.keys.read })).status, 404);
    assert.equal((await t.call('/v1/models/card-page/%3Cscript%3E/card', { key: t.keys.read })).status, 400);
    assert.equal((await t.call('/v1/models/Card_Page/champion/card', { key: t.keys.read })).status, 400);
  });

  it('opens in Chromium, draws every section, and shows markup from the model as text', async (ctx: TestContext) => {
    if (typeof browser === 'string') return ctx.skip(browser);
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${t.service.url}/models/card-page/${bundle.version}#key=${encodeURIComponent(t.keys.read)}`);
    await page.waitForSelector('#card h1', { timeout: 20_000 });
    assert.equal(page.url(), `${t.service.url}/models/card-page/${bundle.version}`, 'the key is taken out of the address bar');
    assert.equal(await page.textContent('#card h1'), `Model card: card-page ${bundle.version}`);
    const headings = await page.$$eval('#card h2', (hs) => hs.map((h) => h.textContent));
    assert.deepEqual(headings, [
      'Purpose',
      'Data and lineage',
      'Features and their training distribution',
      'Metrics on the test rows',
      'Calibration',
      "The gate's result",
      'Against the champion, on the same rows',
    ]);
    const text = (await page.textContent('#card')) ?? '';
    assert.ok(text.includes(`Picks users to nudge. ${EVIL}`), 'the purpose, markup and all, as text');
    assert.ok(text.includes(`probability that ${EVIL} = 1`));
    assert.ok(text.includes(runId));
    assert.ok(text.includes('lakehouse abcd (built 2026-01-01)'));
    assert.match(text, /ROC AUC0\.66\[0\.\d+, 0\.\d+\]/);
    assert.equal(await page.$$eval('#card img, #card script', (n) => n.length), 0, 'no element came from the data');
    assert.equal(await page.evaluate('window.__pwned'), undefined);
    assert.equal(await page.title(), `card-page ${bundle.version}: model card`);
    assert.deepEqual(errors, []);
  });

  it('asks for a key when the one given is not valid', async (ctx: TestContext) => {
    if (typeof browser === 'string') return ctx.skip(browser);
    const page = await browser.newPage();
    await page.goto(`${t.service.url}/models/card-page/champion#key=wb_000000000000_${'x'.repeat(43)}`);
    await page.waitForSelector('#login:not([hidden])', { timeout: 10_000 });
    assert.match((await page.textContent('#status')) ?? '', /API key is not valid/);
  });
});
