import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Notebook } from '../../../src/workbench/notebooks/notebook.js';
import { notebookTitle, renderReport } from '../../../src/workbench/notebooks/report.js';
import { tempDir } from '../../helpers/tmp.js';

const nb = (cells: Notebook['cells']): Notebook => ({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells });
const code = (source: string, outputs: unknown[]) => ({ cell_type: 'code' as const, source, metadata: {}, outputs, execution_count: 1 });

describe('the HTML report, written in Node', () => {
  const notebook = nb([
    { cell_type: 'markdown', source: '# Weekly *revenue*\n\nBy `country`:\n\n| a | b |\n|---|--:|\n| 1 | 2 |', metadata: {} },
    code('console.log("<b>")', [{ output_type: 'stream', name: 'stdout', text: ['<b>\n', 'two\n'] }]),
    code('warn()', [{ output_type: 'stream', name: 'stderr', text: '\u001b[31mred\u001b[0m warning' }]),
    code('show(rows)', [
      { output_type: 'display_data', data: { 'text/html': '<table class="wb-table"><tr><td>GB</td></tr></table>', 'text/plain': 'x' }, metadata: {} },
    ]),
    code('card()', [
      { output_type: 'display_data', data: { 'text/markdown': '## A card\n\n| metric | value |\n| --- | ---: |\n| AUC | 0.7 |' }, metadata: {} },
    ]),
    code('1 + 1', [{ output_type: 'execute_result', data: { 'text/plain': '2' }, metadata: {}, execution_count: 5 }]),
    code('png()', [{ output_type: 'display_data', data: { 'image/png': 'iVBORw0KGgo=\n' }, metadata: {} }]),
    code('throw', [{ output_type: 'error', ename: 'Error', evalue: 'boom', traceback: ['Error: boom', '    at <anonymous>'] }]),
    code('const quiet = 1;', []),
  ]);

  it('renders markdown, text, tables, markdown outputs, images and errors, without code by default', () => {
    const html = renderReport(notebook);
    assert.match(html, /<title>Weekly revenue<\/title>/);
    assert.match(html, /<h1 id="Weekly-revenue">Weekly <em>revenue<\/em><a class="anchor-link" href="#Weekly-revenue">&#182;<\/a><\/h1>/);
    assert.match(html, /<th style="text-align:right">b<\/th>/);
    assert.match(html, /<pre>&lt;b&gt;\ntwo\n<\/pre>/, 'stream text escaped, its lines joined');
    assert.match(html, /data-mime-type="application\/vnd.jupyter.stderr">\n<pre>red warning<\/pre>/, 'terminal colours removed');
    assert.match(html, /<table class="wb-table"><tr><td>GB<\/td><\/tr><\/table>/, 'HTML before plain text');
    assert.doesNotMatch(html, /data-mime-type="text\/plain">\n<pre>x<\/pre>/);
    assert.match(html, /<h2 id="A-card">A card/);
    assert.match(html, /<td style="text-align:right">0.7<\/td>/);
    assert.match(html, /<pre>2<\/pre>/);
    assert.match(html, /<img src="data:image\/png;base64,iVBORw0KGgo=" \/>/);
    assert.match(html, /<pre>Error: boom\n {4}at &lt;anonymous&gt;\n<\/pre>/);
    assert.doesNotMatch(html, /console\.log|const quiet/, 'no code unless asked');
    assert.doesNotMatch(html, /<script/, 'no script without a figure');
    assert.match(renderReport(notebook, { code: true }), /<pre class="jp-Code">console.log\(&quot;&lt;b&gt;&quot;\)<\/pre>/);
  });

  it('inlines plotly.js once, in the head, only when a figure needs it', () => {
    const dir = tempDir();
    const plotly = join(dir, 'plotly.js');
    writeFileSync(plotly, '/* plotly.js v9 */ var s = "</script>";');
    const figure = { output_type: 'display_data', data: { 'text/html': '<div class="wb-plot"></div><script>draw()</script>' }, metadata: {} };
    const html = renderReport(nb([code('a', [figure]), code('b', [figure])]), { plotlyScript: plotly });
    assert.equal(html.split('plotly.js v9').length - 1, 1);
    assert.ok(html.indexOf('plotly.js v9') < html.indexOf('</head>'));
    assert.match(html, /var s = "<\\\/script>"/, 'a closing script tag inside plotly.js cannot end its script element');
    assert.doesNotMatch(renderReport(notebook, { plotlyScript: plotly }), /plotly\.js v9/);
  });

  it('titles a notebook by its metadata, else its first heading', () => {
    assert.equal(notebookTitle({ ...notebook, metadata: { title: 'Given' } }), 'Given');
    assert.equal(notebookTitle(notebook), 'Weekly revenue');
    assert.equal(notebookTitle(nb([])), null);
  });
});
