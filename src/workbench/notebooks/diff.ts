import { spawnSync } from 'node:child_process';
import { basename, dirname } from 'node:path';
import { InputError } from '../errors.js';
import { cellSource, cellTags, parseNotebook, stripNotebook, summariseOutputs, type Cell, type Notebook } from './notebook.js';

/**
 * A cell-level diff of two notebooks, like nbdime: cells are aligned by id (by source where a cell has
 * none), each changed cell shows its source as a unified diff, outputs are summarised, never dumped.
 * Returns '' when the notebooks differ in nothing but outputs-free formatting.
 */
export function diffNotebooks(a: Notebook, b: Notebook, labels: { a: string; b: string }): string {
  const out: string[] = [];
  const pairs = alignCells(a.cells, b.cells);
  for (const { before, after, index } of pairs) {
    const header = (cell: Cell, what: string) =>
      `## cell ${index} (${cell.cell_type}${typeof cell.id === 'string' ? `, id ${cell.id}` : ''}${cellTags(cell).length ? `, tags ${cellTags(cell).join(' ')}` : ''}): ${what}`;
    if (before && !after) {
      out.push(header(before, 'removed'), ...prefixed('-', lines(cellSource(before))));
      continue;
    }
    if (!before && after) {
      out.push(header(after, 'added'), ...prefixed('+', lines(cellSource(after))));
      const outputs = summariseOutputs(after);
      if (outputs) out.push(`  outputs: ${outputs}`);
      continue;
    }
    if (!before || !after) continue;
    const changes: string[] = [];
    if (before.cell_type !== after.cell_type) changes.push(`  type: ${before.cell_type} -> ${after.cell_type}`);
    if (cellTags(before).join(' ') !== cellTags(after).join(' ')) changes.push(`  tags: [${cellTags(before).join(', ')}] -> [${cellTags(after).join(', ')}]`);
    changes.push(...unifiedDiff(lines(cellSource(before)), lines(cellSource(after))));
    const [outBefore, outAfter] = [summariseOutputs(before), summariseOutputs(after)];
    if (outBefore !== outAfter || JSON.stringify(before.outputs ?? []) !== JSON.stringify(after.outputs ?? [])) {
      changes.push(`  outputs: ${outBefore || 'none'} -> ${outAfter || 'none'}${outBefore === outAfter ? ' (contents changed)' : ''}`);
    }
    if (changes.length > 0) out.push(header(after, 'modified'), ...changes);
  }
  const [metaA, metaB] = [metadataLines(a), metadataLines(b)];
  if (metaA.join('\n') !== metaB.join('\n')) out.push('## notebook metadata: modified', ...unifiedDiff(metaA, metaB));
  return out.length === 0 ? '' : [`--- ${labels.a}`, `+++ ${labels.b}`, ...out, ''].join('\n');
}

/** The notebook at git HEAD for a file in a git work tree. */
export function notebookAtHead(path: string): Notebook {
  const r = spawnSync('git', ['-C', dirname(path), 'show', `HEAD:./${basename(path)}`], { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.error) throw new InputError('git is not installed, so there is no HEAD to compare with; give two notebooks', { file: path });
  if (r.status !== 0) throw new InputError(`not in git HEAD (${r.stderr.trim().split('\n')[0]}); give two notebooks to compare`, { file: path });
  return parseNotebook(r.stdout, `${path} at HEAD`);
}

interface CellPair {
  before: Cell | null;
  after: Cell | null;
  /** 1-based position in the newer notebook (in the older one for a removed cell). */
  index: number;
}

/** Longest common subsequence of cell keys; unmatched cells in the same gap pair up when neither has an id. */
function alignCells(a: Cell[], b: Cell[]): CellPair[] {
  const key = (c: Cell) => (typeof c.id === 'string' ? `id:${c.id}` : `src:${c.cell_type}:${cellSource(c)}`);
  const ops = lcs(a.map(key), b.map(key));
  const pairs: CellPair[] = [];
  let removed: number[] = [];
  let added: number[] = [];
  const flush = () => {
    while (removed.length > 0 && added.length > 0 && typeof a[removed[0]!]!.id !== 'string' && typeof b[added[0]!]!.id !== 'string') {
      const j = added.shift()!;
      pairs.push({ before: a[removed.shift()!]!, after: b[j]!, index: j + 1 });
    }
    for (const i of removed) pairs.push({ before: a[i]!, after: null, index: i + 1 });
    for (const j of added) pairs.push({ before: null, after: b[j]!, index: j + 1 });
    removed = [];
    added = [];
  };
  for (const op of ops) {
    if (op.kind === 'same') {
      flush();
      pairs.push({ before: a[op.a]!, after: b[op.b]!, index: op.b + 1 });
    } else if (op.kind === 'removed') removed.push(op.a);
    else added.push(op.b);
  }
  flush();
  return pairs;
}

type Op = { kind: 'same'; a: number; b: number } | { kind: 'removed'; a: number } | { kind: 'added'; b: number };

/** Edit script by longest common subsequence (cells and cell sources are small: O(n·m) is fine). */
function lcs(a: string[], b: string[]): Op[] {
  const n = a.length;
  const m = b.length;
  const table = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) table[i]![j] = a[i] === b[j] ? table[i + 1]![j + 1]! + 1 : Math.max(table[i + 1]![j]!, table[i]![j + 1]!);
  }
  const ops: Op[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) ops.push({ kind: 'same', a: i++, b: j++ });
    // Removals first on a tie, as diff(1) shows them.
    else if (i < n && (j === m || table[i + 1]![j]! >= table[i]![j + 1]!)) ops.push({ kind: 'removed', a: i++ });
    else ops.push({ kind: 'added', b: j++ });
  }
  return ops;
}

/** Unified diff hunks (3 lines of context), or [] when equal. */
export function unifiedDiff(a: string[], b: string[], context = 3): string[] {
  if (a.length * b.length > 25_000_000) return a.join('\n') === b.join('\n') ? [] : ['@@ too large to diff line by line: replaced @@'];
  const ops = lcs(a, b);
  const changed = ops.map((op) => op.kind !== 'same');
  if (!changed.includes(true)) return [];
  const out: string[] = [];
  let k = 0;
  while (k < ops.length) {
    if (!changed[k]) {
      k++;
      continue;
    }
    const start = Math.max(0, k - context);
    let end = k;
    // Extend the hunk while the next change is within 2 × context lines.
    for (let next = k; next < ops.length; next++) if (changed[next] && next - end <= 2 * context) end = next;
    end = Math.min(ops.length, end + context + 1);
    const hunk = ops.slice(start, end);
    const aStart = firstLine(ops, start, 'a', a.length);
    const bStart = firstLine(ops, start, 'b', b.length);
    const aCount = hunk.filter((op) => op.kind !== 'added').length;
    const bCount = hunk.filter((op) => op.kind !== 'removed').length;
    out.push(`@@ -${aStart + (aCount > 0 ? 1 : 0)},${aCount} +${bStart + (bCount > 0 ? 1 : 0)},${bCount} @@`);
    for (const op of hunk) out.push(op.kind === 'same' ? ` ${a[op.a]}` : op.kind === 'removed' ? `-${a[op.a]}` : `+${b[op.b]}`);
    k = end;
  }
  return out;
}

/** The 0-based line of side `side` where the op at `at` starts. */
function firstLine(ops: Op[], at: number, side: 'a' | 'b', length: number): number {
  for (let k = at; k < ops.length; k++) {
    const op = ops[k]!;
    if (side === 'a' && op.kind !== 'added') return op.a;
    if (side === 'b' && op.kind !== 'removed') return op.b;
  }
  return length;
}

const lines = (text: string): string[] => (text === '' ? [] : text.replace(/\n$/, '').split('\n'));
const prefixed = (mark: string, ls: string[]) => ls.map((l) => `${mark}${l}`);
/** The metadata worth comparing: what a clean notebook keeps, pretty-printed with sorted keys. */
const metadataLines = (nb: Notebook): string[] => JSON.stringify(sortKeys(stripNotebook(nb).metadata), null, 1).split('\n');

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = Object.create(null);
  for (const key of Object.keys(value).sort()) out[key] = sortKeys((value as Record<string, unknown>)[key]);
  return out;
}
