import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A cell of a test notebook: code unless `markdown`, with optional tags (`parameters`). */
export interface TestCell {
  source: string;
  markdown?: boolean;
  tags?: string[];
}

/**
 * Writes `<dir>/<name>.ipynb`, an unexecuted nbformat 4.5 notebook on the workbench's kernel, with
 * these cells and the given CI parameters; returns its path.
 */
export function writeNotebook(dir: string, name: string, cells: readonly (TestCell | string)[], ciParameters: Record<string, unknown> = {}): string {
  const path = join(dir, `${name}.ipynb`);
  writeFileSync(
    path,
    JSON.stringify({
      nbformat: 4,
      nbformat_minor: 5,
      metadata: {
        kernelspec: { name: 'plg-workbench', display_name: 'TypeScript (plg-workbench)', language: 'typescript' },
        'plg-workbench': { ci_parameters: ciParameters },
      },
      cells: cells.map((cell, i) => {
        const c = typeof cell === 'string' ? { source: cell } : cell;
        return c.markdown
          ? { cell_type: 'markdown', id: `m${i}`, metadata: {}, source: c.source }
          : { cell_type: 'code', id: `c${i}`, metadata: c.tags ? { tags: c.tags } : {}, source: c.source, outputs: [], execution_count: null };
      }),
    }),
  );
  return path;
}
