import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Browser } from 'playwright-core';
import type { AnomalyAlert, Incident } from '../../src/serving/observability/alerts.js';
import { seriesKey } from '../../src/serving/observability/timeseries.js';
import { launchBrowser } from '../helpers/browser.js';
import { event, startTestService, type TestService } from '../helpers/service.js';

describe('the live dashboard in headless Chromium', { timeout: 120_000 }, () => {
  let t: TestService;
  let browser: Browser | string;
  before(async () => {
    t = await startTestService();
    browser = await launchBrowser();
  });
  after(async () => {
    if (typeof browser !== 'string') await browser?.close();
    await t?.stop();
  });

  it('loads, draws its chart, and shows a burst of events as it arrives', async (ctx: TestContext) => {
    if (typeof browser === 'string') return ctx.skip(browser);
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${t.service.url}/dashboard#key=${encodeURIComponent(t.keys.read)}`);
    await page.waitForSelector('#chart .main-svg', { timeout: 20_000 });
    assert.match((await page.textContent('#status')) ?? '', /^live:/);
    assert.equal(page.url(), `${t.service.url}/dashboard`, 'the key is taken out of the address bar');

    const burst = Array.from({ length: 300 }, (_, i) => event(`burst-${i}`, { user_id: `u${i % 7}`, props: { country: i % 2 ? 'GB' : 'DE', device: 'web' } }));
    const sentAt = Date.now();
    assert.equal((await t.post('/v1/events', burst)).status, 200);
    await page.waitForFunction("Number(document.getElementById('total').dataset.count) >= 300", undefined, { timeout: 10_000 });
    const shownAfter = Date.now() - sentAt;
    assert.equal(await page.textContent('td[data-event="login"]'), '300');
    const traces = await page.$$eval('#chart .scatterlayer .trace', (n) => n.length);
    assert.ok(traces >= 2, `a line per country (${traces})`);
    await page.selectOption('#dimension', 'device');
    await page.waitForFunction("document.querySelectorAll('#chart .scatterlayer .trace').length === 1");
    assert.ok(await page.$('td[data-consumer="archiver"]'));
    assert.deepEqual(errors, []);
    console.log(`# the burst was on the page ${shownAfter} ms after it was sent`);
  });

  it('shows the models served and counts their predictions', async (ctx: TestContext) => {
    if (typeof browser === 'string') return ctx.skip(browser);
    const { featureSet } = await import('../../src/workbench/features/definition.js');
    const { createBundle } = await import('../../src/workbench/models/bundle.js');
    const { columnsFor } = await import('../../src/workbench/models/preprocess.js');
    const { publish } = await import('../../src/workbench/models/publish.js');
    const { trainClassifier } = await import('../../src/workbench/models/train.js');
    const features = featureSet([{ name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 }]);
    const model = await trainClassifier(
      Array.from({ length: 60 }, (_, i) => ({ logins_7d: i % 6, y: i % 2 })),
      'y',
      columnsFor(features),
      { maxEpochs: 2 },
    );
    const bundle = await createBundle('dash-model', model, features);
    model.dispose();
    await publish(bundle, { url: t.service.url, key: t.keys.admin, alias: 'champion' });
    const page = await browser.newPage();
    await page.goto(`${t.service.url}/dashboard#key=${encodeURIComponent(t.keys.read)}`);
    await page.waitForSelector('td[data-model="dash-model"]', { timeout: 10_000 });
    for (let i = 0; i < 3; i++) {
      const res = await t.call('/v1/predict', {
        method: 'POST',
        key: t.keys.read,
        body: JSON.stringify({ model: 'dash-model', user_id: 'u1' }),
        headers: { 'content-type': 'application/json' },
      });
      assert.equal(res.status, 200);
    }
    await page.waitForFunction("document.querySelector('td[data-model=\"dash-model\"]').textContent === '3'", undefined, { timeout: 10_000 });
    assert.match((await page.textContent('#models')) ?? '', new RegExp(`champion ${bundle.version.slice(0, 8)}`));
  });

  it('shows an incident in its card: when it started, its peak as it grows, open until it is resolved', async (ctx: TestContext) => {
    if (typeof browser === 'string') return ctx.skip(browser);
    // The monitor needs days of history before it judges a series: the incident is raised through the
    // service's own AlertSink as the monitor raises it (monitor.test.ts and alerts.test.ts check the detection).
    const labels = { device: 'ios' };
    const series = seriesKey('latency_ms', labels);
    const start = '2025-02-12T13:00:00.000Z';
    const alert: AnomalyAlert = {
      series,
      labels,
      metric: 'gauge',
      direction: 'spike',
      pattern: 'point',
      observed: 310.4,
      expected: 121.2,
      score: 9.3,
      threshold: 6,
      windowStart: start,
      windowEnd: '2025-02-12T13:15:00.000Z',
      detectedAt: '2025-02-12T13:16:00.000Z',
      incident: `${series}@${start}`,
    };
    const opened: Incident = {
      kind: 'incident',
      id: alert.incident,
      series,
      labels,
      metric: 'gauge',
      direction: 'spike',
      start,
      detectedAt: alert.detectedAt,
      peak: { at: start, observed: alert.observed, expected: alert.expected, score: alert.score },
      end: alert.windowEnd,
      intervals: 1,
      resolved: false,
      resolvedAt: null,
      alert,
    };
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${t.service.url}/dashboard#key=${encodeURIComponent(t.keys.read)}`);
    await page.waitForFunction("/^live:/.test(document.getElementById('status').textContent)", undefined, { timeout: 10_000 });
    assert.equal(await page.textContent('#incidents'), 'none');
    // The card's one row, and its cells as shown.
    const row = '#incidents tr[data-incident]';
    const cells = () => page.$$eval(`${row} td`, (tds) => tds.map((td) => td.textContent));
    const shows = (cell: string, text: string) =>
      page.waitForFunction(`document.querySelector(${JSON.stringify(`${row} ${cell}`)})?.textContent === ${JSON.stringify(text)}`, undefined, {
        timeout: 5_000,
      });

    t.service.alerts.raise(alert, opened);
    await page.waitForSelector(row, { timeout: 5_000 });
    assert.equal(await page.getAttribute(row, 'data-incident'), alert.incident);
    assert.deepEqual(await cells(), ['spike', series, '2025-02-12T13:00 to 13:15', 'peak 310 vs 121', 'open']);
    assert.equal(await page.getAttribute(`${row} td:first-child`, 'class'), 'spike');

    // The episode goes on: a higher peak and a later end, shown at the next push (updates are only listed, every 2 s).
    t.service.alerts.update({
      ...opened,
      peak: { at: '2025-02-12T13:45:00.000Z', observed: 1402.6, expected: 119.5, score: 14.1 },
      end: '2025-02-12T14:15:00.000Z',
      intervals: 5,
    });
    await shows('td:nth-child(4)', 'peak 1,403 vs 120');
    assert.deepEqual(await cells(), ['spike', series, '2025-02-12T13:00 to 14:15', 'peak 1,403 vs 120', 'open']);

    t.service.alerts.resolve({
      ...opened,
      peak: { at: '2025-02-12T13:45:00.000Z', observed: 1402.6, expected: 119.5, score: 14.1 },
      end: '2025-02-12T14:15:00.000Z',
      intervals: 5,
      resolved: true,
      resolvedAt: '2025-02-12T17:15:00.000Z',
    });
    await shows('td:last-child', 'resolved');
    assert.deepEqual(await cells(), ['spike', series, '2025-02-12T13:00 to 14:15', 'peak 1,403 vs 120', 'resolved']);
    assert.equal(await page.$$eval('#incidents tr', (rows) => rows.length), 1, 'one row per incident, not one per update');
    assert.deepEqual(errors, []);
  });

  it('asks for a key when the one given is not valid', async (ctx: TestContext) => {
    if (typeof browser === 'string') return ctx.skip(browser);
    const page = await browser.newPage();
    await page.goto(`${t.service.url}/dashboard#key=wb_000000000000_${'x'.repeat(43)}`);
    await page.waitForSelector('#login:not([hidden])', { timeout: 10_000 });
    assert.match((await page.textContent('#status')) ?? '', /API key is not valid/);
  });

  it("shows an experiment's page: arms, users, each metric's lift over time, sample ratio and the decision", async (ctx: TestContext) => {
    if (typeof browser === 'string') return ctx.skip(browser);
    const { assign, ExperimentSchema } = await import('../../src/workbench/experiments/definition.js');
    const def = {
      key: 'page-test',
      hypothesis: 'the page shows what happens',
      arms: [
        { key: 'control', weight: 0.5 },
        { key: 'bold', weight: 0.5 },
      ],
      exposureEvent: 'login',
      objective: 'logins',
      guardrails: [{ metric: 'cancellation', bad: 'increase', tolerance: 0.5 }],
      mde: 0.05,
      minRunDays: 0,
      status: 'running',
    };
    assert.equal((await t.post('/v1/experiments', def, t.keys.admin)).status, 201);
    const e = ExperimentSchema.parse(def);
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(`${t.service.url}/experiments/page-test#key=${encodeURIComponent(t.keys.read)}`);
    await page.waitForSelector('#arms td[data-arm="control"]', { timeout: 10_000 });
    // Two waves of traffic, so the lift has points over time.
    for (const wave of [0, 1]) {
      const events = [];
      for (let i = 0; i < 120; i++) {
        const user = `page-u${i}`;
        const n = (assign(e, { user_id: user }) === 'bold' ? 4 : 2) + (i % 3);
        for (let k = 0; k < n; k++)
          events.push(event(`page-${wave}-${i}-${k}`, { user_id: user, time: new Date(Date.now() - (wave ? 2_000 : 8_000) + k * 10).toISOString() }));
      }
      assert.equal((await t.post('/v1/events', events)).status, 200);
      await new Promise((r) => setTimeout(r, 1_200));
    }
    await page.waitForFunction(
      'Number(document.querySelector(\'#arms td[data-arm="control"]\').textContent) + Number(document.querySelector(\'#arms td[data-arm="bold"]\').textContent) === 120',
      undefined,
      { timeout: 15_000 },
    );
    await page.waitForSelector('#chart-logins .main-svg', { timeout: 10_000 });
    await page.waitForFunction("document.querySelector('#metrics tr[data-metric=\"logins\"] td:last-child').textContent === 'better'", undefined, {
      timeout: 10_000,
    });
    assert.equal(await page.textContent('#srm-status'), 'ok');
    // The decision comes from the platform's next evaluation (every 2 s), a little after the numbers.
    await page.waitForFunction("document.getElementById('decision').dataset.action === 'ship'", undefined, { timeout: 10_000 });
    assert.match((await page.textContent('#decision')) ?? '', /^ship bold \(recommended\): objective logins is better in bold/);
    // Planned users against users so far, and why the decision came before the plan.
    await page.waitForFunction("document.getElementById('plan').dataset.early === 'yes'", undefined, { timeout: 10_000 });
    const plan = (await page.textContent('#plan')) ?? '';
    const planned = Number(await page.getAttribute('#plan', 'data-planned'));
    const soFar = Number(await page.getAttribute('#plan', 'data-so-far'));
    assert.ok(soFar >= 50 && soFar < planned, `${soFar} of ${planned}`);
    assert.match(
      plan,
      new RegExp(`^Plan: ${planned.toLocaleString('en-US')} users per arm .* so far ${soFar} in the arm that sets the pace \\(\\d+% of the plan\\)`),
    );
    assert.match(plan, /Decided \(ship\) before the plan: .* stops as soon as it excludes 0/);
    assert.deepEqual(errors, []);
  });
});
