import { randomBytes } from 'node:crypto';
import { describeExit, KernelClient, KernelStartError } from './kernel-client.js';
import { findKernelSpec, type KernelSpec } from './kernel-spec.js';
import { cellSource, type Cell, type Notebook } from './notebook.js';
import { OutputCollector } from './outputs.js';
import type { JupyterMessage } from './wire.js';

/**
 * Runs a notebook's code cells in order in a fresh kernel, the way nbclient does for the Jupyter
 * engine: outputs, execution counts and timings go into a copy of the notebook, the kernel's
 * language_info into its metadata; the first failing cell stops the run, and the notebook is returned
 * executed up to it either way.
 */

export type ExecuteStatus = 'ok' | 'error' | 'timeout' | 'dead_kernel' | 'kernel_error';

/** The run's outcome, the same shape as the Jupyter engine's summary (execute.py). */
export interface ExecuteSummary {
  status: ExecuteStatus;
  /** Index (in `cells`, from 0) of the cell that failed. */
  failed_cell: number | null;
  reason: string | null;
  seconds: number;
}

export interface ExecuteNotebookOptions {
  /** The kernel's working directory. */
  cwd: string;
  env?: NodeJS.ProcessEnv;
  /** Seconds a single cell may run before it is interrupted (then the kernel is killed if it does not stop). */
  cellTimeout: number;
  spec?: KernelSpec;
  /** After each code cell: how many have run, of how many. */
  onCell?: (done: number, of: number) => void;
  /** Told when the kernel listened but never answered, and was started again. */
  onKernelRestart?: (reason: string) => void;
}

export async function executeNotebook(nb: Notebook, options: ExecuteNotebookOptions): Promise<{ notebook: Notebook; summary: ExecuteSummary }> {
  const started = performance.now();
  // nbformat 4.5 requires cell ids; nbformat's reader gives one to a cell that lacks it, so do we.
  const cells: Cell[] = nb.cells.map((c) =>
    nb.nbformat_minor >= 5 && typeof c.id !== 'string' ? { id: randomBytes(4).toString('hex'), ...structuredClone(c) } : structuredClone(c),
  );
  const notebook: Notebook = { ...nb, metadata: structuredClone(nb.metadata), cells };
  const summary: ExecuteSummary = { status: 'ok', failed_cell: null, reason: null, seconds: 0 };
  const finish = () => ({ notebook, summary: { ...summary, seconds: Math.round(performance.now() - started) / 1000 } });

  let kernel: KernelClient;
  try {
    kernel = await KernelClient.start({ spec: options.spec ?? findKernelSpec(), cwd: options.cwd, env: options.env, onRestart: options.onKernelRestart });
  } catch (err) {
    Object.assign(summary, {
      status: 'kernel_error',
      reason: err instanceof KernelStartError ? err.message : `${(err as Error).name}: ${(err as Error).message}`,
    });
    return finish();
  }
  const languageInfo = kernel.info.language_info;
  if (typeof languageInfo === 'object' && languageInfo !== null) notebook.metadata.language_info = languageInfo;

  const collector = new OutputCollector();
  const code = cells.flatMap((c, i) => (c.cell_type === 'code' ? [i] : []));
  try {
    for (const [n, index] of code.entries()) {
      const cell = cells[index]!;
      const source = cellSource(cell);
      // nbclient skips a cell with no code: it keeps no count and no outputs.
      if (source.trim() === '') {
        options.onCell?.(n + 1, code.length);
        continue;
      }
      cell.outputs = collector.cell(index);
      const timing: Record<string, string> = {};
      cell.metadata = { ...cell.metadata, execution: timing };
      const outcome = await kernel.execute(source, {
        timeoutMs: options.cellTimeout * 1000,
        onMessage: (msg: JupyterMessage) => {
          collector.handle(index, msg);
          recordTiming(timing, msg);
          if (typeof msg.content.execution_count === 'number') cell.execution_count = msg.content.execution_count;
        },
      });
      options.onCell?.(n + 1, code.length);
      if ('reply' in outcome) {
        timing['shell.execute_reply'] = outcome.reply.header.date;
        if (typeof outcome.reply.content.execution_count === 'number') cell.execution_count = outcome.reply.content.execution_count;
        if (outcome.status === 'ok') continue;
        const { ename, evalue } = outcome.reply.content;
        const reason = typeof ename === 'string' ? `${ename}: ${String(evalue ?? '')}` : `the cell failed (${outcome.status})`;
        Object.assign(summary, { status: 'error', failed_cell: index, reason });
      } else if (outcome.status === 'timeout') {
        Object.assign(summary, { status: 'timeout', failed_cell: index, reason: `the cell ran longer than ${options.cellTimeout} s` });
      } else {
        const log = kernel.log.trim();
        Object.assign(summary, {
          status: 'dead_kernel',
          failed_cell: index,
          reason: `the kernel died (${describeExit(outcome.exit)})${log ? `:\n${log.slice(-2000)}` : ''}`,
        });
      }
      break;
    }
  } finally {
    // A failed run's kernel is of no more use: a second to stop, not the grace a finished one gets to close its files.
    await kernel.shutdown(summary.status === 'ok' ? undefined : 1_000);
  }
  return finish();
}

/** The timestamps nbclient records in `metadata.execution` (its `record_timing`), from the kernel's own message dates. */
function recordTiming(timing: Record<string, string>, msg: JupyterMessage): void {
  if (msg.header.msg_type === 'status') {
    if (msg.content.execution_state === 'busy') timing['iopub.status.busy'] = msg.header.date;
    else if (msg.content.execution_state === 'idle') timing['iopub.status.idle'] = msg.header.date;
  } else if (msg.header.msg_type === 'execute_input') {
    timing['iopub.execute_input'] = msg.header.date;
  }
}
