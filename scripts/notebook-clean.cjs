// The one definition of a clean notebook: no outputs, no execution counts, no run-time or UI
// metadata, the stable kernelspec, in Jupyter's own layout (nbformat's writer: keys sorted, one-space
// indent, sources as lists of lines, a trailing newline). Jupyter saving a clean notebook therefore
// changes no byte, and stripping what Jupyter or `wb nb run` wrote gives back the committed bytes.
//
// Plain CommonJS without dependencies, because git runs it as the clean filter on every `git add`,
// `git status` and `git diff` of a notebook: loading tsx and the whole CLI would cost ~1 s each time.
// `wb nb strip` uses the same functions (src/workbench/notebooks/notebook.ts), so the two never differ.
//
//   node scripts/notebook-clean.cjs --stdin          clean filter: notebook on stdin, clean one on stdout
//   node scripts/notebook-clean.cjs --textconv FILE  readable text for `git diff` (diff textconv)
//   node scripts/notebook-clean.cjs FILE...          strip files in place
'use strict';
const fs = require('node:fs');

/** What every committed notebook says about its kernel; per-checkout kernel names never reach git. */
const KERNELSPEC = Object.freeze({ display_name: 'TypeScript (plg-workbench)', language: 'typescript', name: 'plg-workbench' });
const OUR_KERNEL = /^plg-workbench(-[0-9a-f]+)?$/;
/** Notebook metadata worth versioning; the rest (widgets state, signature, vscode, papermill...) is per session. */
const NOTEBOOK_METADATA_KEPT = new Set(['kernelspec', 'language_info', 'plg-workbench', 'title', 'authors']);
const LANGUAGE_INFO_KEPT = ['file_extension', 'mimetype', 'name'];
/** Cell metadata an author sets; timings, collapsed/scrolled and other UI state are dropped. */
const CELL_METADATA_KEPT = new Set(['tags', 'name', 'editable', 'deletable', 'slideshow', 'format', 'raw_mimetype', 'plg-workbench']);
/** The cell `wb nb run` adds after the parameters cell: an artefact of a run, never authored. */
const INJECTED_TAG = 'injected-parameters';

const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Python's str.splitlines(keepends=True), which nbformat applies to every source when it writes. */
function splitLines(text) {
  const lines = [];
  // eslint-disable-next-line no-control-regex -- these control characters are line boundaries to Python
  const boundary = /\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]/g;
  let start = 0;
  for (let m = boundary.exec(text); m; m = boundary.exec(text)) {
    lines.push(text.slice(start, m.index + m[0].length));
    start = m.index + m[0].length;
  }
  if (start < text.length) lines.push(text.slice(start));
  return lines;
}

const joinSource = (source) => (Array.isArray(source) ? source.join('') : typeof source === 'string' ? source : '');

/** Copies only the listed keys, into a null-prototype object (keys come from outside). */
function pick(object, keep) {
  const out = Object.create(null);
  for (const key of Object.keys(object)) if (keep.has(key)) out[key] = object[key];
  return out;
}

const cellTags = (cell) => (isObject(cell.metadata) && Array.isArray(cell.metadata.tags) ? cell.metadata.tags : []);

/** The notebook (parsed JSON, nbformat 4) without outputs and volatile metadata. Throws on a non-notebook. */
function stripNotebook(nb) {
  if (!isObject(nb) || nb.nbformat !== 4 || !Array.isArray(nb.cells)) throw new Error('not a Jupyter notebook (nbformat 4)');
  const metadata = pick(isObject(nb.metadata) ? nb.metadata : {}, NOTEBOOK_METADATA_KEPT);
  if (isObject(metadata.kernelspec) && OUR_KERNEL.test(String(metadata.kernelspec.name))) metadata.kernelspec = { ...KERNELSPEC };
  if (isObject(metadata.language_info)) metadata.language_info = pick(metadata.language_info, new Set(LANGUAGE_INFO_KEPT));
  const cells = nb.cells
    .filter((cell) => !(isObject(cell) && cellTags(cell).includes(INJECTED_TAG)))
    .map((cell, index) => {
      if (!isObject(cell)) throw new Error(`cell ${index + 1} is not an object`);
      const { outputs: _outputs, execution_count: _count, ...rest } = cell;
      const clean = { ...rest, metadata: pick(isObject(cell.metadata) ? cell.metadata : {}, CELL_METADATA_KEPT) };
      if (cell.cell_type === 'code') Object.assign(clean, { outputs: [], execution_count: null });
      return clean;
    });
  return { ...nb, metadata, cells };
}

/** Recursively sorted keys (nbformat writes with sort_keys=True), null-prototype so any key is safe. */
function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (!isObject(value)) return value;
  const out = Object.create(null);
  for (const key of Object.keys(value).sort()) out[key] = sortKeys(value[key]);
  return out;
}

/** The notebook as nbformat writes it: sources as lists of lines, keys sorted, indent 1, final newline. */
function formatNotebook(nb) {
  const cells = Array.isArray(nb.cells)
    ? nb.cells.map((cell) => (isObject(cell) && 'source' in cell ? { ...cell, source: splitLines(joinSource(cell.source)) } : cell))
    : nb.cells;
  return `${JSON.stringify(sortKeys({ ...nb, cells }), null, 1)}\n`;
}

/** Clean notebook text from notebook text. Throws with the reason when it is not a notebook. */
function cleanNotebookText(text) {
  return formatNotebook(stripNotebook(JSON.parse(text)));
}

/**
 * Readable text for `git diff`: each cell's kind, id and tags, then its source, of the notebook as git
 * stores it (cleaned first: git gives textconv the raw working-tree file, outputs and all).
 */
function notebookAsText(text) {
  let nb;
  try {
    nb = stripNotebook(JSON.parse(text));
  } catch {
    return text; // a conflicted or broken notebook: show it as it is
  }
  const parts = [];
  for (const cell of nb.cells) {
    // No cell numbers in headers: inserting a cell would change every header after it.
    const tags = cellTags(cell).filter((t) => typeof t === 'string');
    parts.push(`──── ${cell.cell_type} cell${cell.id ? ` ${cell.id}` : ''}${tags.length ? ` [${tags.join(', ')}]` : ''}`);
    const source = joinSource(cell.source);
    parts.push(source.endsWith('\n') ? source.slice(0, -1) : source);
  }
  const meta = JSON.stringify(sortKeys(nb.metadata), null, 1);
  return `${parts.join('\n')}\n──── notebook metadata\n${meta}\n`;
}

/** "2 outputs: text/html, stream stdout (3 lines)": enough to see that outputs changed, never their bytes. */
function summariseOutputs(outputs) {
  if (!Array.isArray(outputs) || outputs.length === 0) return '';
  const kinds = outputs.map((out) => {
    if (!isObject(out)) return '?';
    if (out.output_type === 'stream') {
      const n = splitLines(joinSource(out.text)).length;
      return `stream ${out.name} (${n} line${n === 1 ? '' : 's'})`;
    }
    if (out.output_type === 'error') return `error ${out.ename}: ${String(out.evalue).slice(0, 120)}`;
    return isObject(out.data) ? Object.keys(out.data).sort().join(' + ') : String(out.output_type);
  });
  return `${outputs.length} output${outputs.length === 1 ? '' : 's'}: ${kinds.join(', ')}`;
}

function main(argv) {
  if (argv[0] === '--stdin') {
    const input = fs.readFileSync(0, 'utf8');
    let output = input;
    try {
      output = cleanNotebookText(input);
    } catch (err) {
      // Never fail the filter on content (a merge conflict, a half-written file): git would refuse to
      // add or even show the file. It goes in as it is and `wb nb check` reports it.
      process.stderr.write(`plg-workbench: notebook left as it is (${err.message})\n`);
    }
    process.stdout.write(output);
    return 0;
  }
  if (argv[0] === '--textconv') {
    process.stdout.write(notebookAsText(fs.readFileSync(argv[1], 'utf8')));
    return 0;
  }
  let status = 0;
  for (const file of argv) {
    try {
      const text = fs.readFileSync(file, 'utf8');
      const clean = cleanNotebookText(text);
      if (clean !== text) fs.writeFileSync(file, clean);
      console.log(`${file}: ${clean !== text ? 'stripped' : 'already clean'}`);
    } catch (err) {
      console.error(`${file}: ${err.message}`);
      status = 1;
    }
  }
  return status;
}

module.exports = { KERNELSPEC, INJECTED_TAG, stripNotebook, formatNotebook, cleanNotebookText, notebookAsText, summariseOutputs, splitLines };
if (require.main === module) process.exitCode = main(process.argv.slice(2));
