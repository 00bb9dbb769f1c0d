import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { displayHtml, displayMarkdown, htmlTable, plotHtml } from '../../src/workbench/display.js';
import { readNotebook } from '../../src/workbench/notebooks/notebook.js';
import { runNotebook } from '../../src/workbench/notebooks/run.js';
import { launchBrowser } from '../helpers/browser.js';
import { tempDir } from '../helpers/tmp.js';

describe('display helpers', () => {
  it('renders rows, Arrow tables and DataFrame-shaped data as the same escaped HTML table', () => {
    const rows = [
      { name: '<script>alert(1)</script>', n: 1234 },
      { name: 'b & c', n: 2 },
    ];
    const html = htmlTable(rows);
    assert.doesNotMatch(html, /<script>/);
    assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    assert.match(html, /b &amp; c/);
    assert.match(html, /<td style="text-align:right">1,234<\/td>/);
    const table = arrow.tableFromArrays({ name: ['<script>alert(1)</script>', 'b & c'], n: Float64Array.from([1234, 2]) });
    assert.equal(htmlTable(table), html);
    assert.equal(
      htmlTable({
        columns: ['name', 'n'],
        values: [
          ['<script>alert(1)</script>', 1234],
          ['b & c', 2],
        ],
      }),
      html,
    );
  });

  it('shows HTML and Markdown only in a kernel: elsewhere they say so and throw nothing', () => {
    assert.equal(displayHtml('<b>x</b>'), false);
    assert.equal(displayMarkdown('# x'), false);
  });

  it('shows at most maxRows rows and says how many more there are', () => {
    const html = htmlTable(
      Array.from({ length: 30 }, (_, i) => ({ i })),
      { maxRows: 5 },
    );
    assert.equal(html.match(/<tr>/g)!.length, 6);
    assert.match(html, /25 more rows \(30 in all\)/);
  });

  it('makes every figure self-sufficient and small: no plotly.js inside, a unique id, data kept from closing the script', () => {
    const first = plotHtml({ data: [{ type: 'bar', x: ['</script><b>'], y: [1n as unknown as number] }] });
    const second = plotHtml({ data: [{ type: 'bar', x: ['a'], y: [2] }] });
    for (const html of [first, second]) {
      assert.ok(html.length < 4_000, `a figure without data is small (${html.length} characters)`);
      assert.doesNotMatch(html, /plotly\.js v\d/, 'the figure does not carry plotly.js');
      assert.match(html, /Plotly\.newPlot\(node, spec\.data/);
    }
    assert.notEqual(first.match(/id="(wb-plot-[0-9a-f]+)"/)![1], second.match(/id="(wb-plot-[0-9a-f]+)"/)![1]);
    assert.doesNotMatch(first, /<\/script><b>/);
    assert.match(first, /"x":\["\\u003c\/script>\\u003cb>"\],"y":\[1\]/, 'bigint values are written as numbers, < is escaped');
    assert.match(first, new RegExp(`"path":"node_modules/plotly.js-dist-min/plotly.min.js"`));
  });
});

/** A stand-in for the Jupyter server: `<base>files/<path>` under `root`, and a page that shows one output as JupyterLab does. */
interface FakeJupyter {
  url: string;
  /** Paths asked for, in order. */
  requests: string[];
  /** Pages served by path, set by the test. */
  pages: Map<string, string>;
  close(): Promise<void>;
}

async function fakeJupyter(root: string, base: string): Promise<FakeJupyter> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
    requests.push(path);
    if (path.startsWith(`${base}files/`)) {
      const file = resolve(root, path.slice(`${base}files/`.length));
      if (file.startsWith(root + sep) && existsSync(file) && statSync(file).isFile()) {
        res.writeHead(200, { 'content-type': 'text/javascript' }).end(readFileSync(file));
        return;
      }
    }
    const page = pages.get(path);
    if (page !== undefined) res.writeHead(200, { 'content-type': 'text/html' }).end(page);
    else res.writeHead(404).end('not found');
  });
  const pages = new Map<string, string>();
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, requests, pages, close: () => new Promise((ok) => server.close(() => ok())) };
}

describe('figures of an executed notebook, in a real browser', { timeout: 240_000 }, () => {
  it('draw after a reload in Jupyter (only their own output), and once each in the report, with a five-chart notebook under 1 MB; a progress bar updates in place', async (t) => {
    const dir = tempDir();
    const path = join(dir, 'five-charts.ipynb');
    const chart = (i: number) =>
      `show({ data: [{ type: 'scatter', mode: 'markers', x: Array.from({ length: 500 }, (_, j) => j), y: Array.from({ length: 500 }, (_, j) => Math.sin(j / ${i + 1})) }], layout: { title: { text: 'chart ${i + 1}' } } });`;
    const crossValidation =
      "import { crossValidate } from './src/workbench/index';\n" +
      'const rows = Array.from({ length: 200 }, (_, i) => ({ x: i % 10, y: i % 10 > 4 ? 1 : 0 }));\n' +
      "await crossValidate(rows, 'y', [{ name: 'x', kind: 'numeric' }], { folds: 3, maxEpochs: 3 });";
    const markdown =
      "import { displayMarkdown } from './src/workbench/index';\nif (!displayMarkdown('## A card\\n\\n| metric | value |\\n| --- | ---: |\\n| ROC AUC | 0.74 |')) throw new Error('no kernel');";
    const cells = ["import { show } from './src/workbench/index';", ...[0, 1, 2, 3, 4].map(chart), crossValidation, markdown];
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
    const executedBytes = statSync(result.executed).size;
    assert.ok(executedBytes < 1_000_000, `the executed notebook weighs ${executedBytes} bytes`);
    const outputs = readNotebook(result.executed).cells.flatMap((c) => (c.outputs ?? []) as { data?: Record<string, string | string[]> }[]);
    const charts = outputs.flatMap((o) => {
      const html = o.data?.['text/html'];
      return html === undefined ? [] : [Array.isArray(html) ? html.join('') : html];
    });
    // The progress bar of the cross-validation: drawn at its start and end (and throttled steps), one output replaced in place.
    const bars = charts.filter((html) => html.includes('wb-progress'));
    assert.equal(bars.length, 1, 'one output for the task: tslab display updates replaced it in place');
    assert.match(
      bars[0]!,
      /<progress value="1" max="1"[^>]*><\/progress> cross-validating on 200 rows: ROC AUC \d\.\d{4} ± \d\.\d{4} over 3 folds \(\d+\.\d s\)/,
    );
    charts.splice(charts.indexOf(bars[0]!), 1);
    assert.equal(charts.length, 5);
    const report = readFileSync(result.report, 'utf8');
    assert.equal(report.split('plotly.js v').length - 1, 1, 'the report includes plotly.js once');
    // Markdown (a model card) is an output of its own kind, rendered as HTML in the report.
    assert.equal(outputs.filter((o) => o.data?.['text/markdown'] !== undefined).length, 1);
    assert.match(report, /<h2[^>]*>A card/);
    assert.match(report, /<td[^>]*>ROC AUC<\/td>/);

    const browser = await launchBrowser();
    if (typeof browser === 'string') return t.skip(browser);
    const repo = resolve(__dirname, '..', '..');
    // JupyterLab started in the checkout (serverRoot in the page), and a Notebook started one directory above it (no serverRoot).
    const lab = await fakeJupyter(repo, '/jp/');
    const classic = await fakeJupyter(dirname(repo), '/');
    const elsewhere = await fakeJupyter(dir, '/');
    try {
      const drawIn = async (server: FakeJupyter, page: string, html: string) => {
        server.pages.set('/notebook', page.replace('%OUTPUT%', JSON.stringify(html).replaceAll('<', '\\u003c')));
        const context = await browser.newContext(); // a new tab after a reload: nothing loaded before
        const tab = await context.newPage();
        const errors: string[] = [];
        tab.on('pageerror', (e) => errors.push(e.message));
        await tab.goto(`${server.url}/notebook`);
        return { tab, errors, close: () => context.close() };
      };
      // As JupyterLab renders a trusted text/html output: innerHTML, then each script re-created so that it runs.
      const render = `<div class="jp-OutputArea-output" id="out"></div><script>
        var out = document.getElementById('out'); out.innerHTML = %OUTPUT%;
        out.querySelectorAll('script').forEach(function (old) { var s = document.createElement('script'); s.text = old.text; old.replaceWith(s); });
      </script>`;
      const labPage = `<html><head><script id="jupyter-config-data" type="application/json">${JSON.stringify({ baseUrl: '/jp/', serverRoot: repo })}</script></head><body>${render}</body></html>`;
      const classicPage = `<html><head></head><body data-base-url="/">${render}</body></html>`;
      for (const [i, html] of charts.entries()) {
        for (const [server, page] of [
          [lab, labPage],
          [classic, classicPage],
        ] as const) {
          const { tab, errors, close } = await drawIn(server, page, html);
          await tab.waitForFunction("document.querySelectorAll('.wb-plot .main-svg').length >= 1", undefined, { timeout: 30_000 });
          assert.deepEqual(await tab.$$eval('.wb-plot .gtitle', (n) => n.map((x) => x.textContent)), [`chart ${i + 1}`]);
          assert.deepEqual(errors, []);
          await close();
        }
      }
      assert.ok(lab.requests.includes('/jp/files/node_modules/plotly.js-dist-min/plotly.min.js'), 'JupyterLab: plotly.js found at once from serverRoot');
      assert.ok(
        classic.requests.includes(`/files/${basename(repo)}/node_modules/plotly.js-dist-min/plotly.min.js`),
        'the Notebook: found by trying the directories above',
      );

      // A Jupyter that does not serve the checkout: the chart says what is missing instead of staying blank.
      const { tab, errors, close } = await drawIn(elsewhere, classicPage, charts[0]!);
      await tab.waitForFunction("document.querySelector('.wb-plot').textContent.includes('plotly.js')", undefined, { timeout: 30_000 });
      assert.match((await tab.textContent('.wb-plot'))!, /needs plotly\.js from the workbench checkout .* Start Jupyter in the checkout/);
      assert.deepEqual(errors, []);
      await close();

      const page = await browser.newPage();
      await page.goto(pathToFileURL(result.report).href);
      await page.waitForFunction("document.querySelectorAll('.wb-plot .main-svg').length >= 5", undefined, { timeout: 30_000 });
      assert.deepEqual(
        await page.$$eval('.wb-plot .gtitle', (n) => n.map((x) => x.textContent)),
        [1, 2, 3, 4, 5].map((i) => `chart ${i}`),
      );
    } finally {
      await Promise.all([lab.close(), classic.close(), elsewhere.close()]);
      await browser.close();
    }
  });
});
