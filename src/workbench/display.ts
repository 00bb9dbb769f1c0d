import * as arrow from 'apache-arrow';
import { readFileSync } from 'node:fs';
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
export type Tabular = Rows | arrow.Table | FrameLike;

export interface TableOptions {
  /** Rows shown; the rest are counted in a footer. Default 20. */
  maxRows?: number;
  caption?: string;
}

/** A table as HTML, escaped, with numbers right-aligned and at most `maxRows` rows. */
export function htmlTable(data: Tabular, options: TableOptions = {}): string {
  const { columns, rows } = normalise(data);
  const max = options.maxRows ?? 20;
  const shown = rows.slice(0, max);
  const head = columns.map((c) => `<th>${escapeHtml(c)}</th>`).join('');
  const body = shown
    .map((r) => `<tr>${r.map((v) => `<td${typeof v === 'number' || typeof v === 'bigint' ? ' style="text-align:right"' : ''}>${escapeHtml(formatValue(v))}</td>`).join('')}</tr>`)
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

let plotlyIncluded = false;
let plotCounter = 0;

/**
 * A figure as self-contained HTML. The plotly.js script is inlined with the first figure of the
 * session (a kernel runs one notebook), not with every figure, so a notebook carries it once.
 */
export function plotHtml(figure: Figure, options: { height?: number } = {}): string {
  const id = `wb-plot-${process.pid}-${++plotCounter}`;
  const script = plotlyIncluded ? '' : `<script type="text/javascript">${plotlyScript()}</script>\n`;
  plotlyIncluded = true;
  const spec = JSON.stringify({ data: figure.data, layout: { height: options.height ?? 400, ...figure.layout }, config: { responsive: true, ...figure.config } }, (_k, v: unknown) =>
    typeof v === 'bigint' ? Number(v) : v,
  ).replaceAll('</', '<\\/');
  return `${script}<div id="${id}" class="wb-plot"></div>
<script type="text/javascript">(function () {
  var spec = ${spec};
  var draw = function () { window.Plotly.newPlot(${JSON.stringify(id)}, spec.data, spec.layout, spec.config); };
  if (window.Plotly) draw(); else window.addEventListener('load', draw);
})();</script>`;
}

/** Shows a table (rows, Arrow table or DataFrame) or a figure in the notebook; prints text elsewhere. */
export function show(value: Tabular | Figure, options: TableOptions & { height?: number } = {}): void {
  if (isFigure(value)) {
    if (!displayHtml(plotHtml(value, options))) console.log(`[figure: ${value.data.length} trace(s)${value.layout?.title ? `, ${JSON.stringify(value.layout.title)}` : ''}]`);
    return;
  }
  if (!displayHtml(htmlTable(value, options))) console.log(textTable(value, options.maxRows ?? 20));
}

/** Shows HTML in the notebook. Returns false outside a Jupyter kernel. */
export function displayHtml(html: string): boolean {
  let tslab: { display: { html(s: string): void } };
  try {
    tslab = require('tslab');
  } catch {
    return false;
  }
  try {
    tslab.display.html(html);
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

const isFigure = (v: unknown): v is Figure => typeof v === 'object' && v !== null && !Array.isArray(v) && Array.isArray((v as Figure).data) && !('columns' in v) && !(v instanceof arrow.Table);

function escapeHtml(s: string): string {
  return s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

let cachedScript: string | undefined;
function plotlyScript(): string {
  cachedScript ??= readFileSync(require.resolve('plotly.js-dist-min'), 'utf8').replaceAll('</script', '<\\/script');
  return cachedScript;
}
