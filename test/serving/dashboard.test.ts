import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Browser } from 'playwright-core';
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

  it('asks for a key when the one given is not valid', async (ctx: TestContext) => {
    if (typeof browser === 'string') return ctx.skip(browser);
    const page = await browser.newPage();
    await page.goto(`${t.service.url}/dashboard#key=wb_000000000000_${'x'.repeat(43)}`);
    await page.waitForSelector('#login:not([hidden])', { timeout: 10_000 });
    assert.match((await page.textContent('#status')) ?? '', /API key is not valid/);
  });
});
