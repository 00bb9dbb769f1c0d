import type { JupyterMessage } from './wire.js';

/**
 * Turns a kernel's IOPub messages into the nbformat 4 outputs of the cells that caused them, the way
 * nbclient does (so both engines write the same notebook): stream, display_data, execute_result and
 * error become outputs; clear_output empties the cell's outputs (at once, or with `wait` just before
 * its next output); update_display_data, and display_data carrying a display id already shown,
 * replace the data of every output shown under that id, in any cell.
 */

export type Output =
  | { output_type: 'stream'; name: string; text: string }
  | { output_type: 'display_data'; data: Record<string, unknown>; metadata: Record<string, unknown> }
  | { output_type: 'execute_result'; data: Record<string, unknown>; metadata: Record<string, unknown>; execution_count: number | null }
  | { output_type: 'error'; ename: string; evalue: string; traceback: string[] };

type Rich = Extract<Output, { data: Record<string, unknown> }>;

const record = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
const text = (v: unknown): string => (typeof v === 'string' ? v : Array.isArray(v) ? v.join('') : '');

/** The nbformat output of one IOPub message, or null for messages that are not outputs. */
export function outputFromMessage(msg: JupyterMessage): Output | null {
  const c = msg.content;
  switch (msg.header.msg_type) {
    case 'stream':
      return { output_type: 'stream', name: c.name === 'stderr' ? 'stderr' : 'stdout', text: text(c.text) };
    case 'display_data':
    case 'update_display_data':
      return { output_type: 'display_data', data: record(c.data), metadata: record(c.metadata) };
    case 'execute_result':
      return {
        output_type: 'execute_result',
        data: record(c.data),
        metadata: record(c.metadata),
        execution_count: typeof c.execution_count === 'number' ? c.execution_count : null,
      };
    case 'error':
      return {
        output_type: 'error',
        ename: typeof c.ename === 'string' ? c.ename : 'Error',
        evalue: typeof c.evalue === 'string' ? c.evalue : '',
        traceback: Array.isArray(c.traceback) ? c.traceback.map(String) : [],
      };
    default:
      return null;
  }
}

/** The outputs of every cell of one run; `cell(i)` is the live list written into the notebook. */
export class OutputCollector {
  private readonly outputs = new Map<number, Output[]>();
  private readonly clearBeforeNext = new Set<number>();
  /** display id -> the outputs shown under it (by reference: a cleared output simply drops out). */
  private readonly displays = new Map<string, { cell: number; output: Rich }[]>();

  cell(index: number): Output[] {
    let list = this.outputs.get(index);
    if (!list) this.outputs.set(index, (list = []));
    return list;
  }

  /** Applies one IOPub message that belongs to the cell at `index`. */
  handle(index: number, msg: JupyterMessage): void {
    const type = msg.header.msg_type;
    const displayId = record(msg.content.transient).display_id;
    const out = outputFromMessage(msg);
    if (typeof displayId === 'string' && out && 'data' in out) this.updateDisplay(displayId, out);
    if (type === 'clear_output') {
      if (msg.content.wait === true) this.clearBeforeNext.add(index);
      else this.clear(index);
      return;
    }
    if (type === 'update_display_data' || out === null) return;
    if (this.clearBeforeNext.delete(index)) this.clear(index);
    this.cell(index).push(out);
    if (typeof displayId === 'string' && 'data' in out) {
      const shown = this.displays.get(displayId) ?? [];
      shown.push({ cell: index, output: out });
      this.displays.set(displayId, shown);
    }
  }

  private clear(index: number): void {
    this.cell(index).length = 0;
    for (const [id, shown] of this.displays) {
      this.displays.set(
        id,
        shown.filter((s) => s.cell !== index),
      );
    }
  }

  private updateDisplay(id: string, out: Rich): void {
    for (const { output } of this.displays.get(id) ?? []) {
      output.data = out.data;
      output.metadata = out.metadata;
    }
  }
}
