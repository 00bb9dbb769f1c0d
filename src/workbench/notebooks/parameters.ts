import { dict, hasOwn } from '../dict.js';
import { InputError } from '../errors.js';
import { cellSource, cellTags, type Cell, type Notebook } from './notebook.js';

/**
 * Notebook parameters, the papermill way: a code cell tagged `parameters` declares defaults, one per
 * line, as `const name = literal;` (number, string or boolean). Given values are injected in a new
 * cell right after it, tagged `injected-parameters`, which redeclares them (tslab allows a later cell
 * to redeclare a name), so the notebook reads as it would with its defaults.
 */
export type ParamValue = number | string | boolean;

export interface ParameterCell {
  index: number;
  defaults: Record<string, ParamValue>;
}

const DECLARATION = /^\s*(?:export\s+)?(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*(?::\s*[\w$<>[\]| ]+)?=\s*(.+?)\s*;?\s*(?:\/\/.*)?$/;

export function findParameterCell(nb: Notebook, file: string): ParameterCell | undefined {
  const index = nb.cells.findIndex((c) => c.cell_type === 'code' && cellTags(c).includes('parameters'));
  if (index === -1) return undefined;
  const defaults: Record<string, ParamValue> = {};
  cellSource(nb.cells[index]!)
    .split('\n')
    .forEach((line, i) => {
      if (/^\s*(\/\/.*)?$/.test(line)) return;
      const m = DECLARATION.exec(line);
      const value = m ? parseLiteral(m[2]!) : undefined;
      if (!m || value === undefined) {
        throw new InputError(
          `the parameters cell must hold lines like \`const users = 500;\` (number, string or boolean); line ${i + 1} is ${JSON.stringify(line.trim())}`,
          {
            file,
            cell: index + 1,
          },
        );
      }
      defaults[m[1]!] = value;
    });
  return { index, defaults };
}

/**
 * Returns the notebook with `params` (raw `key=value` text from the command line, or typed values)
 * injected after the parameters cell, each converted to the type of its default.
 */
export function injectParameters(nb: Notebook, params: Record<string, string | ParamValue>, file: string): Notebook {
  const names = Object.keys(params);
  if (names.length === 0) return nb;
  const cell = findParameterCell(nb, file);
  if (!cell) throw new InputError(`--param ${names[0]} given, but the notebook has no cell tagged "parameters"`, { file });
  const lines: string[] = [];
  for (const name of names) {
    // Only the notebook's own parameters: `--param constructor=x` is unknown, not found on Object.prototype.
    if (!hasOwn(cell.defaults, name)) {
      throw new InputError(`unknown parameter ${JSON.stringify(name)}: the notebook's parameters are ${Object.keys(cell.defaults).join(', ') || '(none)'}`, {
        file,
        cell: cell.index + 1,
      });
    }
    const value = coerce(params[name]!, cell.defaults[name]!, name, file);
    lines.push(`const ${name} = ${JSON.stringify(value)};`);
  }
  const injected: Cell = {
    cell_type: 'code',
    // nbformat 4.5 requires an id on every cell (and 4.4 allows none); a run injects one cell at most.
    ...(nb.nbformat_minor >= 5 ? { id: 'injected-parameters' } : {}),
    metadata: { tags: ['injected-parameters'] },
    source: `// Parameters injected by wb nb run\n${lines.join('\n')}`,
    outputs: [],
    execution_count: null,
  };
  const cells = [...nb.cells];
  // Replace an injected cell left by an earlier run rather than stacking a second one.
  const next = cells[cell.index + 1];
  const replace = next && cellTags(next).includes('injected-parameters') ? 1 : 0;
  cells.splice(cell.index + 1, replace, injected);
  return { ...nb, cells };
}

/** Parses `key=value` flags, refusing anything else with the flag named. */
export function parseParamFlags(flags: readonly string[]): Record<string, string> {
  const out = dict<string>();
  for (const flag of flags) {
    const eq = flag.indexOf('=');
    if (eq <= 0) throw new InputError(`--param ${JSON.stringify(flag)} is not key=value`);
    out[flag.slice(0, eq).trim()] = flag.slice(eq + 1);
  }
  return out;
}

function coerce(raw: string | ParamValue, like: ParamValue, name: string, file: string): ParamValue {
  if (typeof raw !== 'string') {
    if (typeof raw !== typeof like) throw new InputError(`parameter ${name} must be a ${typeof like}, got ${JSON.stringify(raw)}`, { file });
    return raw;
  }
  if (typeof like === 'number') {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n)) throw new InputError(`parameter ${name} must be a number, got ${JSON.stringify(raw)}`, { file });
    return n;
  }
  if (typeof like === 'boolean') {
    if (raw !== 'true' && raw !== 'false') throw new InputError(`parameter ${name} must be true or false, got ${JSON.stringify(raw)}`, { file });
    return raw === 'true';
  }
  return raw;
}

function parseLiteral(text: string): ParamValue | undefined {
  const t = text.trim();
  if (t === 'true' || t === 'false') return t === 'true';
  if (/^-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t) || /^-?\d[\d_]*$/.test(t)) return Number(t.replaceAll('_', ''));
  const q = t[0];
  if ((q === "'" || q === '"' || q === '`') && t.endsWith(q!) && t.length >= 2) {
    const body = t.slice(1, -1);
    if (q === '"') return JSON.parse(t) as string;
    return body.replaceAll(`\\${q}`, q!).replaceAll('\\\\', '\\');
  }
  return undefined;
}
