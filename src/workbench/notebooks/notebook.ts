import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { InputError } from '../errors.js';
import { writeFileAtomic } from '../files.js';

/** The parts of the nbformat 4 schema the workbench reads; everything else is kept as it is. */
const CellSchema = z
  .object({
    cell_type: z.enum(['code', 'markdown', 'raw']),
    source: z.union([z.string(), z.array(z.string())]),
    metadata: z.record(z.string(), z.unknown()).default({}),
    outputs: z.array(z.unknown()).optional(),
    execution_count: z.number().int().nullable().optional(),
  })
  .passthrough();

const NotebookSchema = z
  .object({
    nbformat: z.literal(4),
    nbformat_minor: z.number().int(),
    metadata: z.record(z.string(), z.unknown()),
    cells: z.array(CellSchema),
  })
  .passthrough();

export type Notebook = z.infer<typeof NotebookSchema>;
export type Cell = z.infer<typeof CellSchema>;

export function readNotebook(path: string): Notebook {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new InputError('no such notebook', { file: path });
  }
  return parseNotebook(text, path);
}

/** A notebook from its JSON text; `source` names it in errors (a file, or "x.ipynb at HEAD"). */
export function parseNotebook(text: string, source: string): Notebook {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new InputError(`not valid JSON: ${(err as Error).message}`, { file: source });
  }
  const parsed = NotebookSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InputError(`not a Jupyter notebook (nbformat 4): ${issue.path.join('.') || 'top level'}: ${issue.message}`, { file: source });
  }
  return parsed.data;
}

/** The shared definition of a clean notebook (also git's clean filter, hence plain CommonJS). */
const clean = require('../../../scripts/notebook-clean.cjs') as {
  stripNotebook(nb: unknown): unknown;
  formatNotebook(nb: unknown): string;
  cleanNotebookText(text: string): string;
  notebookAsText(text: string): string;
  summariseOutputs(outputs: unknown): string;
};

/** The notebook as nbformat (and so Jupyter) writes it: sorted keys, indent 1, sources and output text as lines. */
export const formatNotebook = (nb: Notebook): string => clean.formatNotebook(splitOutputText(nb));

/** Mime types nbformat writes as lists of lines besides `text/*`; other data (JSON, base64 images) stays whole. */
const SPLIT_MIMES = new Set(['application/javascript', 'image/svg+xml']);

/** Python's str.splitlines(keepends=True), nbformat's `split_lines` on outputs. */
function splitLines(text: string): string[] {
  // eslint-disable-next-line no-control-regex -- these control characters are line boundaries to Python
  return text.match(/[^\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]*(?:\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]|$)/g)!.filter((line) => line !== '');
}

/** Stream text and textual output data as lists of lines, as nbformat writes them. */
function splitOutputText(nb: Notebook): Notebook {
  const split = (v: unknown) => (typeof v === 'string' ? splitLines(v) : v);
  const cells = nb.cells.map((cell) => {
    if (cell.cell_type !== 'code' || !cell.outputs?.length) return cell;
    const outputs = cell.outputs.map((o) => {
      if (typeof o !== 'object' || o === null) return o;
      const out = o as Record<string, unknown>;
      if (out.output_type === 'stream') return { ...out, text: split(out.text) };
      if ((out.output_type === 'display_data' || out.output_type === 'execute_result') && typeof out.data === 'object' && out.data !== null) {
        const data = Object.fromEntries(
          Object.entries(out.data).map(([mime, value]) => [mime, mime.startsWith('text/') || SPLIT_MIMES.has(mime) ? split(value) : value]),
        );
        return { ...out, data };
      }
      return out;
    });
    return { ...cell, outputs };
  });
  return { ...nb, cells };
}

export function writeNotebook(path: string, nb: Notebook): void {
  // Jupyter's own layout: a clean notebook saved by Jupyter changes no byte.
  writeFileAtomic(path, formatNotebook(nb));
}

/** The clean text of a notebook file: what git stores through the clean filter and `wb nb strip` writes. */
export function cleanNotebookFile(path: string): { text: string; clean: string } {
  readNotebook(path); // the clear error for a file that is not a notebook
  const text = readFileSync(path, 'utf8');
  return { text, clean: clean.cleanNotebookText(text) };
}

/** "3 outputs: text/html, stream stdout (2 lines)", or '' without outputs. */
export const summariseOutputs = (cell: Cell): string => clean.summariseOutputs(cell.outputs);

export const cellSource = (cell: Cell): string => (Array.isArray(cell.source) ? cell.source.join('') : cell.source);

export const cellTags = (cell: Cell): string[] => {
  const tags = cell.metadata.tags;
  return Array.isArray(tags) ? tags.filter((t): t is string => typeof t === 'string') : [];
};

/** Code cells that hold outputs or execution counts, by index. */
export function cellsWithOutputs(nb: Notebook): number[] {
  return nb.cells.flatMap((c, i) => (c.cell_type === 'code' && ((c.outputs?.length ?? 0) > 0 || (c.execution_count ?? null) !== null) ? [i] : []));
}

/**
 * The notebook without outputs, execution counts, run-time and UI metadata, cells injected by
 * `wb nb run`, and with the stable kernelspec (scripts/notebook-clean.cjs says exactly what stays).
 */
export const stripNotebook = (nb: Notebook): Notebook => clean.stripNotebook(nb) as Notebook;
