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
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new InputError(`not valid JSON: ${(err as Error).message}`, { file: path });
  }
  const parsed = NotebookSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InputError(`not a Jupyter notebook (nbformat 4): ${issue.path.join('.') || 'top level'}: ${issue.message}`, { file: path });
  }
  return parsed.data;
}

export function writeNotebook(path: string, nb: Notebook): void {
  // Jupyter's own layout (one-space indent, trailing newline) keeps diffs small when Jupyter saves it.
  writeFileAtomic(path, `${JSON.stringify(nb, null, 1)}\n`);
}

export const cellSource = (cell: Cell): string => (Array.isArray(cell.source) ? cell.source.join('') : cell.source);

export const cellTags = (cell: Cell): string[] => {
  const tags = cell.metadata.tags;
  return Array.isArray(tags) ? tags.filter((t): t is string => typeof t === 'string') : [];
};

/** Code cells that hold outputs or execution counts, by index. */
export function cellsWithOutputs(nb: Notebook): number[] {
  return nb.cells.flatMap((c, i) => (c.cell_type === 'code' && ((c.outputs?.length ?? 0) > 0 || (c.execution_count ?? null) !== null) ? [i] : []));
}

/** The notebook with every output and execution count removed (and run-time metadata dropped). */
export function stripNotebook(nb: Notebook): Notebook {
  return {
    ...nb,
    cells: nb.cells.map((c) => {
      if (c.cell_type !== 'code') return c;
      const { execution: _timing, ...metadata } = c.metadata as Record<string, unknown>;
      return { ...c, metadata, outputs: [], execution_count: null };
    }),
  };
}
