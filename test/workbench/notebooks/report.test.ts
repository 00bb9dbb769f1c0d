import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, it } from 'node:test';
import { runNotebook } from '../../../src/workbench/notebooks/run.js';
import { launchBrowser } from '../../helpers/browser.js';
import { tempDir } from '../../helpers/tmp.js';

describe('the HTML report of a notebook run, in a real browser', { timeout: 180_000 }, () => {
  it('renders every plotly figure and table, with the plotly script included once', async (t) => {
    const dir = tempDir();
    const path = join(dir, 'charts.ipynb');
    const cells = [
      "import { show } from './src/workbench/index';\nshow([{ country: 'GB', revenue: 10 }, { country: 'FR', revenue: 4 }], { caption: 'Revenue' });",
      "show({ data: [{ type: 'bar', x: ['GB', 'FR'], y: [10, 4] }], layout: { title: { text: 'first' } } });",
      "show({ data: [{ type: 'scatter', mode: 'lines', x: [1, 2, 3], y: [3, 1, 2] }], layout: { title: { text: 'second' } } });",
    ];
    writeFileSync(
      path,
      JSON.stringify({
        nbformat: 4,
        nbformat_minor: 5,
        metadata: { kernelspec: { name: 'plg-workbench', display_name: 'TypeScript (plg-workbench)', language: 'typescript' } },
        cells: cells.map((source, i) => ({ cell_type: 'code', id: `c${i}`, metadata: {}, source, outputs: [], execution_count: null })),
      }),
    );
    const result = await runNotebook(path, { outDir: join(dir, 'runs'), cellTimeout: 120 });
    assert.equal(result.ok, true, result.error?.message);
    const html = readFileSync(result.report, 'utf8');
    assert.equal(html.split('plotly.js v').length - 1, 1, 'the plotly.js script is in the report once');

    const browser = await launchBrowser();
    if (typeof browser === 'string') return t.skip(browser);
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(pathToFileURL(result.report).href);
      await page.waitForFunction("document.querySelectorAll('.wb-plot .main-svg').length >= 2", undefined, { timeout: 30_000 });
      const titles = await page.$$eval('.wb-plot .gtitle', (nodes) => nodes.map((n) => n.textContent));
      assert.deepEqual(titles, ['first', 'second']);
      assert.equal(await page.$$eval('.wb-plot .point', (n) => n.length), 2, 'the bar chart has its two bars');
      assert.deepEqual(await page.$$eval('table.wb-table td', (n) => n.map((c) => c.textContent)), ['GB', '10', 'FR', '4']);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
});
