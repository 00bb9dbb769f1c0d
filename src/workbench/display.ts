import * as arrow from 'apache-arrow';
import { randomBytes } from 'node:crypto';
import { relative, sep } from 'node:path';
import type { Scalar } from './duckdb.js';

/**
 * Showing results in notebooks: tables as HTML, plotly figures that render both in Jupyter and in
 * the HTML report `wb nb run` writes. Outside a kernel (a job, a script) the same calls print text.
 */

/** Rows of any object type (interfaces too, which have no index signature). */
type Rows = readonly object[];
/** danfo's DataFrame, by shape: danfo's types are not visible to tslab (see DEPENDENCIES.md). */
interface FrameLike {
  columns: string[];
  values: unknown[][];
}
/** What `show` and `htmlTable` accept as a table: rows, an Apache Arrow table or a danfo DataFrame. */
export type Tabular = Rows | arrow.Table | FrameLike;

export interface TableOptions {
  /** Rows shown; the rest are counted in a footer. Default 20. */
  maxRows?: number;
  caption?: string;
}

/**
 * A table as HTML, escaped, with numbers right-aligned and at most `maxRows` rows.
 *
 * @example
 * ```ts
 * const html = htmlTable([{ country: 'GB', revenue: 10 }], { caption: 'Revenue' });
 * ```
 */
export function htmlTable(data: Tabular, options: TableOptions = {}): string {
  const { columns, rows } = normalise(data);
  const max = options.maxRows ?? 20;
  const shown = rows.slice(0, max);
  const head = columns.map((c) => `<th>${escapeHtml(c)}</th>`).join('');
  const body = shown
    .map(
      (r) =>
        `<tr>${r.map((v) => `<td${typeof v === 'number' || typeof v === 'bigint' ? ' style="text-align:right"' : ''}>${escapeHtml(formatValue(v))}</td>`).join('')}</tr>`,
    )
    .join('\n');
  const more = rows.length > max ? `<p style="color:#666">${rows.length - max} more rows (${rows.length} in all)</p>` : '';
  const caption = options.caption ? `<caption style="text-align:left;font-weight:bold">${escapeHtml(options.caption)}</caption>` : '';
  return `<table class="wb-table" style="border-collapse:collapse">${caption}<thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>${more}`;
}

/** A plotly figure: traces, layout and config, as plotly.js takes them. */
export interface Figure {
  data: readonly Record<string, unknown>[];
  layout?: Record<string, unknown>;
  config?: Record<string, unknown>;
}

/**
 * A figure as HTML that draws itself wherever it is shown, without depending on any other output:
 * - in the HTML report, `wb nb run` inlines plotly.js once per page (see {@link PLOTLY_SCRIPT_PATH}),
 *   so `window.Plotly` is there when the figure's script runs;
 * - in JupyterLab and the Notebook (a live kernel, a reload, a new tab), the figure loads plotly.js
 *   from this checkout through the Jupyter server's `/files/` handler, once per page. The server's
 *   root is read from the page (`serverRoot`, JupyterLab) or, failing that, each directory above
 *   the checkout is tried as the root, nearest first. No CDN: the machines may have no network.
 * plotly.js 4 sets `window.Plotly` itself and has no AMD branch, so require.js (classic Notebook,
 * nbconvert's template) does not capture it.
 * A figure carries its data and a 1.5 kB loader, so a notebook stays small however many it shows.
 *
 * @example
 * ```ts
 * const html = plotHtml({ data: [{ type: 'bar', x: ['GB', 'FR'], y: [10, 4] }] });
 * ```
 */
export function plotHtml(figure: Figure, options: { height?: number } = {}): string {
  const id = `wb-plot-${randomBytes(6).toString('hex')}`;
  const height = options.height ?? 400;
  const spec = scriptJson({ data: figure.data, layout: { height, ...figure.layout }, config: { responsive: true, ...figure.config } });
  const asset = scriptJson({ root: REPO_ROOT.split(sep).join('/'), path: relative(REPO_ROOT, PLOTLY_SCRIPT_PATH).split(sep).join('/') });
  return `<div id="${id}" class="wb-plot" style="min-height:${Number(height) || 400}px"></div>
<script type="text/javascript">(function () {
  var id = ${JSON.stringify(id)}, spec = ${spec}, asset = ${asset}, w = window;
  function draw(Plotly) {
    var node = document.getElementById(id);
    if (node) Plotly.newPlot(node, spec.data, spec.layout, spec.config); else setTimeout(function () { draw(Plotly); }, 50);
  }
  if (w.Plotly) return draw(w.Plotly);
  function urls() {
    var base = '/', root = null, cfg = document.getElementById('jupyter-config-data'), out = [];
    try { if (cfg) { var c = JSON.parse(cfg.textContent); base = c.baseUrl || base; root = c.serverRoot || null; } } catch (e) {}
    if (!cfg && document.body && document.body.getAttribute('data-base-url')) base = document.body.getAttribute('data-base-url');
    if (base.charAt(base.length - 1) !== '/') base += '/';
    var dirs = asset.root.split('/').filter(Boolean), file = asset.path.split('/');
    var url = function (segments) { return base + 'files/' + segments.concat(file).map(encodeURIComponent).join('/'); };
    if (root) {
      var r = root.split('/').filter(Boolean);
      if (root.charAt(0) === '/' && r.join('/') === dirs.slice(0, r.length).join('/')) out.push(url(dirs.slice(r.length)));
    }
    for (var i = dirs.length; i >= 0; i--) { var u = url(dirs.slice(i)); if (out.indexOf(u) < 0) out.push(u); }
    return out;
  }
  w.__wbPlotly = w.__wbPlotly || new Promise(function (resolve, reject) {
    var tried = urls(), next = 0;
    (function attempt() {
      if (next >= tried.length) { w.__wbPlotly = null; return reject(tried); }
      var s = document.createElement('script');
      s.src = tried[next++];
      s.onload = function () { if (w.Plotly) resolve(w.Plotly); else attempt(); };
      s.onerror = attempt;
      document.head.appendChild(s);
    })();
  });
  w.__wbPlotly.then(draw, function (tried) {
    var node = document.getElementById(id);
    if (node) node.textContent = 'This chart needs plotly.js from the workbench checkout (' + asset.root + '), served by Jupyter; it was not found at ' +
      tried.join(', ') + '. Start Jupyter in the checkout (wb jupyter), or open the HTML report of wb nb run.';
  });
})();</script>`;
}

/** JSON safe inside a <script> element: no `</script>`, bigint as numbers. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))
    .replaceAll('<', '\\u003c')
    .replaceAll('\u2028', '\\u2028')
    .replaceAll('\u2029', '\\u2029');
}

/**
 * Shows a table (rows, Arrow table or DataFrame) or a figure in the notebook; prints text elsewhere.
 *
 * @example
 * ```ts
 * show(await lake.query(sql`SELECT * FROM users LIMIT 5`), { caption: 'Users' });
 * show({ data: [{ type: 'bar', x: ['GB', 'FR'], y: [10, 4] }], layout: { title: { text: 'Revenue' } } });
 * ```
 */
export function show(value: Tabular | Figure, options: TableOptions & { height?: number } = {}): void {
  if (isFigure(value)) {
    if (!displayHtml(plotHtml(value, options)))
      console.log(`[figure: ${value.data.length} trace(s)${value.layout?.title ? `, ${JSON.stringify(value.layout.title)}` : ''}]`);
    return;
  }
  if (!displayHtml(htmlTable(value, options))) console.log(textTable(value, options.maxRows ?? 20));
}

/**
 * Shows HTML in the notebook. Returns false outside a Jupyter kernel.
 *
 * @example
 * ```ts
 * displayHtml('<b>Training done</b>');
 * ```
 */
export function displayHtml(html: string): boolean {
  return displayAs('html', html);
}

/**
 * Shows Markdown in the notebook, rendered by Jupyter and by the HTML report of `wb nb run`.
 * Returns false outside a Jupyter kernel. A model card shows best this way (`cardMarkdown`):
 * `cardHtml` is a standalone page whose style hangs on its `<body>`, which an output loses.
 *
 * @example
 * ```ts
 * displayMarkdown(cardMarkdown(modelCard(bundle)));
 * ```
 */
export function displayMarkdown(markdown: string): boolean {
  return displayAs('markdown', markdown);
}

function displayAs(kind: 'html' | 'markdown', text: string): boolean {
  let tslab: { display: { html(s: string): void; markdown(s: string): void } };
  try {
    tslab = require('tslab');
  } catch {
    return false;
  }
  try {
    tslab.display[kind](text);
    return true;
  } catch {
    return false; // "Not ready": tslab is installed but this is not a kernel
  }
}

function textTable(data: Tabular, max: number): string {
  const { columns, rows } = normalise(data);
  const cells = [columns, ...rows.slice(0, max).map((r) => r.map(formatValue))];
  const widths = columns.map((_, i) => Math.max(...cells.map((r) => String(r[i]).length)));
  const lines = cells.map((r) => r.map((v, i) => String(v).padEnd(widths[i]!)).join('  '));
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  if (rows.length > max) lines.push(`... ${rows.length - max} more rows`);
  return lines.join('\n');
}

function normalise(data: Tabular): { columns: string[]; rows: unknown[][] } {
  if (data instanceof arrow.Table) {
    const columns = data.schema.fields.map((f) => f.name);
    return { columns, rows: data.toArray().map((r) => columns.map((c) => (r as Record<string, unknown>)[c])) };
  }
  if (!Array.isArray(data) && 'columns' in data && 'values' in data) {
    return { columns: [...data.columns], rows: data.values.map((r) => (Array.isArray(r) ? r : [r])) };
  }
  const rows = data as readonly Record<string, unknown>[];
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return { columns, rows: rows.map((r) => columns.map((c) => r[c])) };
}

function formatValue(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (v instanceof Date) return v.toISOString().replace('T00:00:00.000Z', '').replace('.000Z', 'Z');
  if (typeof v === 'number') return Number.isInteger(v) ? v.toLocaleString('en-US') : v.toLocaleString('en-US', { maximumFractionDigits: 4 });
  if (typeof v === 'bigint') return v.toLocaleString('en-US');
  if (typeof v === 'object') return JSON.stringify(v as Scalar, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));
  return String(v);
}

const isFigure = (v: unknown): v is Figure =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Array.isArray((v as Figure).data) && !('columns' in v) && !(v instanceof arrow.Table);

function escapeHtml(s: string): string {
  return s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

/** The plotly.js bundle in this checkout: the HTML report inlines it, Jupyter serves it under `/files/`. */
export const PLOTLY_SCRIPT_PATH: string = require.resolve('plotly.js-dist-min');
/** The checkout that holds plotly.js: figures look it up on the Jupyter server relative to it. */
const REPO_ROOT = PLOTLY_SCRIPT_PATH.slice(0, PLOTLY_SCRIPT_PATH.lastIndexOf(`${sep}node_modules${sep}`));
