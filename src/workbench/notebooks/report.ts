import { readFileSync } from 'node:fs';
import MarkdownIt from 'markdown-it';
import { cellSource, cellTags, type Cell, type Notebook } from './notebook.js';

/**
 * The HTML report of an executed notebook, in Node (what nbconvert's `lab` template gave the Jupyter
 * engine): markdown cells rendered, then each code cell's outputs (text, tables, charts, markdown,
 * images, errors) in JupyterLab's class names, code only when asked. One self-contained file: no
 * script or style from elsewhere, plotly.js inlined once in the head when a figure needs it (figures
 * draw with the page's `window.Plotly`, display.ts), so the report opens from a file, offline.
 */

export interface ReportOptions {
  /** Show each code cell's source above its outputs (default: outputs and text only). */
  code?: boolean;
  /** The page title (default: the notebook's title or first heading). */
  title?: string;
  /** plotly.js to inline when the report shows a figure. */
  plotlyScript?: string;
}

/** The richest representation first, as nbconvert chooses among an output's mime types. */
const MIME_ORDER = ['application/javascript', 'text/html', 'text/markdown', 'image/svg+xml', 'text/latex', 'image/png', 'image/jpeg', 'text/plain'];
const PLOT_MARKER = 'class="wb-plot"';

// eslint-disable-next-line no-control-regex -- ESC starts the terminal colour codes this removes
const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
const escapeHtml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
const joined = (v: unknown): string => (typeof v === 'string' ? v : Array.isArray(v) ? v.map(String).join('') : '');
const record = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {});

const markdown = new MarkdownIt({ html: true });
// Headings get the id and the pilcrow link nbconvert gives them ("Weekly revenue" -> #Weekly-revenue).
const headingText = (inline: { children: { type: string; content: string }[] | null } | undefined) =>
  (inline?.children ?? []).map((t) => (t.type === 'text' || t.type === 'code_inline' ? t.content : '')).join('');
markdown.renderer.rules.heading_open = (tokens, idx, options, _env, self) => {
  tokens[idx]!.attrSet('id', anchorId(headingText(tokens[idx + 1])));
  return self.renderToken(tokens, idx, options);
};
markdown.renderer.rules.heading_close = (tokens, idx, options, _env, self) =>
  `<a class="anchor-link" href="#${escapeHtml(anchorId(headingText(tokens[idx - 1])))}">&#182;</a>${self.renderToken(tokens, idx, options)}`;
const anchorId = (text: string) => text.trim().replace(/\s+/g, '-');

export const renderMarkdown = (source: string): string => markdown.render(source);

/** The report's HTML. */
export function renderReport(nb: Notebook, options: ReportOptions = {}): string {
  const body = nb.cells.map((cell) => renderCell(cell, options.code === true)).join('\n');
  const title = options.title ?? notebookTitle(nb) ?? 'Notebook';
  const plotly = body.includes(PLOT_MARKER) && options.plotlyScript ? readFileSync(options.plotlyScript, 'utf8').replaceAll('</script', '<\\/script') : null;
  return [
    '<!DOCTYPE html>',
    '<html>',
    '<head>',
    '<meta charset="utf-8" />',
    '<meta name="viewport" content="width=device-width, initial-scale=1.0" />',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${STYLE}</style>`,
    ...(plotly === null ? [] : [`<script type="text/javascript">${plotly}</script>`]),
    '</head>',
    '<body class="jp-Notebook" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">',
    body,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

/** The notebook's title: metadata.title, else the text of its first markdown heading. */
export function notebookTitle(nb: Notebook): string | null {
  if (typeof nb.metadata.title === 'string' && nb.metadata.title.trim()) return nb.metadata.title.trim();
  for (const cell of nb.cells) {
    if (cell.cell_type !== 'markdown') continue;
    const m = /^#{1,6}\s+(.+?)\s*#*\s*$/m.exec(cellSource(cell));
    if (m) return m[1]!.replace(/[*_`]/g, '');
  }
  return null;
}

function renderCell(cell: Cell, showCode: boolean): string {
  const tags = cellTags(cell)
    .map((t) => ` celltag_${escapeHtml(t.replace(/\s+/g, '_'))}`)
    .join('');
  if (cell.cell_type === 'markdown') {
    return `<div class="jp-Cell jp-MarkdownCell jp-Notebook-cell${tags}">\n<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown jp-MarkdownOutput" data-mime-type="text/markdown">\n${renderMarkdown(cellSource(cell))}</div>\n</div>`;
  }
  if (cell.cell_type === 'raw') {
    const format = record(cell.metadata).format ?? record(cell.metadata).raw_mimetype;
    return format === 'text/html' ? `<div class="jp-Cell jp-RawCell jp-Notebook-cell${tags}">${cellSource(cell)}</div>` : '';
  }
  const outputs = (cell.outputs ?? []).map((o) => renderOutput(record(o))).filter((html) => html !== '');
  const source = cellSource(cell);
  const input = showCode && source.trim() !== '' ? `<div class="jp-InputArea jp-Cell-inputArea"><pre class="jp-Code">${escapeHtml(source)}</pre></div>\n` : '';
  if (input === '' && outputs.length === 0) return '';
  const area =
    outputs.length === 0
      ? ''
      : `<div class="jp-OutputArea jp-Cell-outputArea">\n${outputs.map((o) => `<div class="jp-OutputArea-child">\n${o}\n</div>`).join('\n')}\n</div>`;
  return `<div class="jp-Cell jp-CodeCell jp-Notebook-cell${showCode ? '' : ' jp-mod-noInput'}${tags}">\n${input}${area}\n</div>`;
}

const text = (mime: string, body: string) =>
  `<div class="jp-RenderedText jp-OutputArea-output" data-mime-type="${mime}">\n<pre>${escapeHtml(stripAnsi(body))}</pre>\n</div>`;

function renderOutput(out: Record<string, unknown>): string {
  switch (out.output_type) {
    case 'stream':
      return text(out.name === 'stderr' ? 'application/vnd.jupyter.stderr' : 'text/plain', joined(out.text));
    case 'error':
      return text(
        'application/vnd.jupyter.stderr',
        Array.isArray(out.traceback) && out.traceback.length > 0
          ? joined(out.traceback.map((l) => `${String(l)}\n`))
          : `${joined(out.ename)}: ${joined(out.evalue)}`,
      );
    case 'display_data':
    case 'execute_result':
      return renderData(record(out.data));
    default:
      return '';
  }
}

function renderData(data: Record<string, unknown>): string {
  const mime = MIME_ORDER.find((m) => Object.hasOwn(data, m));
  if (mime === undefined) return '';
  const value = joined(data[mime]);
  switch (mime) {
    case 'text/html':
      return `<div class="jp-RenderedHTMLCommon jp-RenderedHTML jp-OutputArea-output" data-mime-type="text/html">\n${value}\n</div>`;
    case 'text/markdown':
      return `<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown jp-OutputArea-output" data-mime-type="text/markdown">\n${renderMarkdown(value)}</div>`;
    case 'image/svg+xml':
      return `<div class="jp-RenderedSVG jp-OutputArea-output" data-mime-type="image/svg+xml">\n${value}\n</div>`;
    case 'image/png':
    case 'image/jpeg':
      return `<div class="jp-RenderedImage jp-OutputArea-output" data-mime-type="${mime}">\n<img src="data:${mime};base64,${value.replace(/\s+/g, '')}" />\n</div>`;
    case 'application/javascript':
      return `<div class="jp-RenderedJavaScript jp-OutputArea-output" data-mime-type="application/javascript">\n<script type="text/javascript">\n${value.replaceAll('</script', '<\\/script')}\n</script>\n</div>`;
    default:
      return text(mime, value);
  }
}

/** JupyterLab's light look, in the few rules a report needs. */
const STYLE = `
body.jp-Notebook { margin: 0 auto; max-width: 1100px; padding: 24px 32px; color: rgba(0,0,0,.87); background: #fff;
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
.jp-Cell { margin: 0 0 12px; }
.jp-Cell:empty { display: none; }
pre, code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 13px; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; }
.jp-InputArea pre.jp-Code { background: #f5f5f5; border: 1px solid #e0e0e0; border-radius: 2px; padding: 6px 8px; margin-bottom: 6px; }
.jp-OutputArea-child { margin: 4px 0; overflow-x: auto; }
.jp-RenderedText pre { padding: 2px 0; }
.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"] { background: #fdd; padding: 4px 8px; }
.jp-RenderedHTMLCommon table { border-collapse: collapse; border: none; font-size: 12px; margin: 6px 0; }
.jp-RenderedHTMLCommon th, .jp-RenderedHTMLCommon td { padding: 4px 8px; border: none; text-align: right; vertical-align: middle; }
.jp-RenderedHTMLCommon thead { border-bottom: 1px solid rgba(0,0,0,.3); }
.jp-RenderedHTMLCommon tbody tr:nth-child(odd) { background: #f5f5f5; }
.jp-RenderedHTMLCommon tbody tr:hover { background: rgba(66,165,245,.2); }
.jp-RenderedHTMLCommon code { background: #f5f5f5; padding: 1px 4px; }
.jp-RenderedHTMLCommon h1, .jp-RenderedHTMLCommon h2, .jp-RenderedHTMLCommon h3 { line-height: 1.25; margin: 1em 0 .5em; }
.jp-RenderedHTMLCommon img { max-width: 100%; }
.anchor-link { visibility: hidden; margin-left: 6px; text-decoration: none; color: #1976d2; }
h1:hover .anchor-link, h2:hover .anchor-link, h3:hover .anchor-link, h4:hover .anchor-link { visibility: visible; }
`;
