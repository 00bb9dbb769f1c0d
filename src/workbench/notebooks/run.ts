import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { NotebookError, WorkbenchError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import { silentProgress, type Progress } from '../progress.js';
import { executeNotebook, type ExecuteSummary } from './execute.js';
import { KERNEL_NAME, REPO_ROOT } from './kernel-spec.js';
import { cellSource, formatNotebook, readNotebook, writeNotebook, type Notebook } from './notebook.js';
import { injectParameters, type ParamValue } from './parameters.js';
import { notebookTitle, renderReport } from './report.js';
import { trustNotebook } from './trust.js';

export { KERNEL_NAME, REPO_ROOT };

/**
 * plotly.js, which the report inlines once per page for the figures: the file display.ts's
 * PLOTLY_SCRIPT_PATH names, resolved here rather than imported, because display.ts brings Apache Arrow
 * (a tenth of a second) into every `wb nb run` before its kernel can start.
 */
export const REPORT_PLOTLY_SCRIPT: string = require.resolve('plotly.js-dist-min');

/**
 * Who runs the notebook: `node`, this package's own Jupyter client (kernel-client.ts) and report
 * (report.ts), which needs nothing but Node; or `jupyter`, Python's nbclient and nbconvert
 * (execute.py), for anyone who wants Jupyter's own tools.
 */
export type Engine = 'node' | 'jupyter';
export const ENGINES: readonly Engine[] = ['node', 'jupyter'];

export interface RunOptions {
  /** Values for the notebook's `parameters` cell (raw strings are converted to the default's type). */
  params?: Record<string, string | ParamValue>;
  /** Use the parameters in the notebook's metadata `plg-workbench.ci_parameters` (given params win). */
  ci?: boolean;
  /** Seconds a single cell may run. */
  cellTimeout?: number;
  /** Where the executed notebook and its HTML report go. */
  outDir: string;
  /** Show code in the HTML report (default: outputs and text only, for readers who do not code). */
  reportCode?: boolean;
  progress?: Progress;
  /** Default `node`. */
  engine?: Engine;
}

export interface RunResult {
  notebook: string;
  ok: boolean;
  seconds: number;
  executed: string;
  report: string;
  /** Set when a cell failed: the notebook, the cell, its source and the real error. */
  error?: NotebookError | WorkbenchError;
}

interface ExecutorSummary extends ExecuteSummary {
  report_error?: string;
  trust_error?: string;
}

/**
 * Executes a notebook headlessly with the workbench's tslab kernel, after injecting parameters, with
 * the engine asked for (default: Node alone). Writes `<outDir>/<name>.ipynb` (executed) and `<name>.html` (the report).
 * Input errors (bad JSON, unknown parameter) throw before anything runs; a failing cell does not
 * throw but comes back as `error`, with the executed notebook written up to that cell.
 */
export async function runNotebook(path: string, options: RunOptions): Promise<RunResult> {
  const nb = readNotebook(path);
  const ciParams = options.ci ? ciParameters(nb) : {};
  const prepared = injectParameters(nb, { ...ciParams, ...(options.params ?? {}) }, path);
  const engine = options.engine ?? 'node';
  const python = engine === 'jupyter' ? findJupyterPython() : null;
  const name = basename(path, '.ipynb');
  const outDir = resolve(options.outDir);
  mkdirSync(outDir, { recursive: true });
  const executed = join(outDir, `${name}.ipynb`);
  const report = join(outDir, `${name}.html`);

  const progress = options.progress ?? silentProgress;
  const codeCells = prepared.cells.filter((c) => c.cell_type === 'code').length;
  const task = progress.task(`running ${path}`, codeCells, 'cells');
  const cellTimeout = options.cellTimeout ?? 300;
  const summary =
    python === null
      ? await executeWithNode(prepared, {
          executed,
          report,
          outDir,
          cellTimeout,
          reportCode: options.reportCode === true,
          title: notebookTitle(prepared) ?? name,
          onCell: (n) => task.update(n),
          onKernelRestart: (reason) => progress.log(`warning: ${path}: the kernel was restarted: ${reason}`),
        })
      : await executeWithJupyter(python, prepared, {
          name,
          executed,
          report,
          outDir,
          cellTimeout,
          reportCode: options.reportCode === true,
          onCell: (n) => task.update(n),
          onKernelRestart: (reason) => progress.log(`warning: ${path}: the kernel was restarted: ${reason}`),
        });
  if (summary.report_error) progress.log(`warning: the HTML report could not be written: ${summary.report_error}`);
  if (summary.trust_error) progress.log(`warning: the executed notebook is not signed as trusted for Jupyter: ${summary.trust_error}`);
  if (summary.status === 'ok') {
    task.finish(`ok, ${codeCells} code cells`);
    return { notebook: path, ok: true, seconds: summary.seconds, executed, report };
  }
  task.finish(`FAILED (${summary.status})`);
  return { notebook: path, ok: false, seconds: summary.seconds, executed, report, error: describeFailure(path, executed, summary, prepared) };
}

interface EngineRun {
  executed: string;
  report: string;
  outDir: string;
  cellTimeout: number;
  reportCode: boolean;
  onCell: (n: number) => void;
  onKernelRestart?: (reason: string) => void;
}

/** The Node engine: this package's Jupyter client, the executed notebook and the report written here. */
async function executeWithNode(prepared: Notebook, run: EngineRun & { title: string }): Promise<ExecutorSummary> {
  // The kernel starts where nbclient would start it (the notebook's folder); the spec's launcher moves to the root.
  const { notebook, summary } = await executeNotebook(prepared, {
    cwd: run.outDir,
    env: kernelEnv(),
    cellTimeout: run.cellTimeout,
    onCell: run.onCell,
    onKernelRestart: run.onKernelRestart,
  });
  const text = formatNotebook(notebook);
  writeFileAtomic(run.executed, text);
  const result: ExecutorSummary = { ...summary };
  try {
    // As Jupyter does for a notebook it ran itself, and as the Jupyter engine does (execute.py).
    await trustNotebook(text);
  } catch (err) {
    // an unsigned notebook only opens untrusted: Jupyter asks before it runs the figures' scripts
    result.trust_error = `${(err as Error).name}: ${(err as Error).message}`;
  }
  try {
    writeFileAtomic(run.report, renderReport(notebook, { code: run.reportCode, title: run.title, plotlyScript: REPORT_PLOTLY_SCRIPT }));
  } catch (err) {
    // a report that cannot be written must not hide the run's own result
    result.report_error = `${(err as Error).name}: ${(err as Error).message}`;
  }
  return result;
}

/** The Jupyter engine: nbclient and nbconvert in Python (execute.py). */
async function executeWithJupyter(python: string, prepared: Notebook, run: EngineRun & { name: string }): Promise<ExecutorSummary> {
  const input = join(run.outDir, `.${run.name}.input.ipynb`);
  writeNotebook(input, prepared);
  try {
    return await execute(
      python,
      [input, run.executed, run.report, KERNEL_NAME, String(run.cellTimeout), run.reportCode ? '1' : '0'],
      run.onCell,
      run.onKernelRestart,
    );
  } finally {
    rmSync(input, { force: true });
  }
}

/** The kernel's environment: the spec runs `node`, and that is the one running wb. */
function kernelEnv(): NodeJS.ProcessEnv {
  return { ...process.env, PATH: [join(REPO_ROOT, 'node_modules', '.bin'), dirname(process.execPath), process.env.PATH].filter(Boolean).join(delimiter) };
}

/** The parameters a notebook asks CI to run it with, from its metadata. */
export function ciParameters(nb: Notebook): Record<string, ParamValue> {
  const meta = nb.metadata['plg-workbench'] as { ci_parameters?: Record<string, ParamValue> } | undefined;
  return meta?.ci_parameters ?? {};
}

function describeFailure(path: string, executedPath: string, summary: ExecutorSummary, prepared: Notebook): WorkbenchError {
  if (summary.failed_cell === null) {
    return new WorkbenchError(`${path}: the notebook could not be run: ${summary.reason ?? summary.status}${kernelHint(summary.reason)}`);
  }
  const nb = existsSync(executedPath) ? readNotebook(executedPath) : prepared;
  const cell = nb.cells[summary.failed_cell]!;
  const details: string[] = [];
  for (const out of (cell.outputs ?? []) as Record<string, unknown>[]) {
    if (out.output_type === 'error') {
      const trace = Array.isArray(out.traceback) ? (out.traceback as string[]).map(stripAnsi).join('\n') : '';
      details.push(`${out.ename}: ${out.evalue}${trace ? `\n${trace}` : ''}`);
    } else if (out.output_type === 'stream' && out.name === 'stderr') {
      details.push(stripAnsi(Array.isArray(out.text) ? out.text.join('') : String(out.text)));
    }
  }
  if (summary.status === 'timeout') details.unshift(`timed out: ${summary.reason}`);
  if (summary.status === 'dead_kernel' && summary.reason) details.unshift(stripAnsi(summary.reason));
  if (details.length === 0 && summary.reason) details.push(stripAnsi(summary.reason));
  return new NotebookError(path, summary.failed_cell + 1, cellSource(cell), details.join('\n').trim());
}

function kernelHint(reason: string | null): string {
  return reason && /No such kernel|NoSuchKernel/.test(reason)
    ? `\nThe kernel spec ${KERNEL_NAME} was not found; it lives in ${join(REPO_ROOT, 'jupyter', 'kernels')} (see README: Notebooks).`
    : '';
}

function execute(python: string, args: string[], onCell: (n: number) => void, onKernelRestart?: (reason: string) => void): Promise<ExecutorSummary> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(python, [join(__dirname, 'execute.py'), ...args], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        // This checkout's spec first: Jupyter takes the first `plg-workbench` it finds on JUPYTER_PATH, and
        // that spec's launcher derives the root from its own place, so the kernel runs this checkout's code
        // whatever other checkouts registered or whatever environment wb was started from.
        JUPYTER_PATH: [join(REPO_ROOT, 'jupyter'), process.env.JUPYTER_PATH].filter(Boolean).join(delimiter),
        // The spec runs `node`: the one running wb.
        PATH: [join(REPO_ROOT, 'node_modules', '.bin'), dirname(process.execPath), process.env.PATH].filter(Boolean).join(delimiter),
        PYDEVD_DISABLE_FILE_VALIDATION: '1',
        // The report inlines plotly.js once for all its figures (execute.py).
        WB_PLOTLY_JS: REPORT_PLOTLY_SCRIPT,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderrTail = '';
    let pending = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      pending += d;
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        const m = /^\{"cell": (\d+)/.exec(line);
        if (m) onCell(Number(m[1]));
        else if (line.startsWith('{"restart": ')) onKernelRestart?.(String((JSON.parse(line) as { restart: unknown }).restart));
        else stderrTail = (stderrTail + line + '\n').slice(-4000);
      }
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const last = stdout.trim().split('\n').pop() ?? '';
      try {
        resolvePromise(JSON.parse(last) as ExecutorSummary);
      } catch {
        reject(new WorkbenchError(`the notebook executor stopped (exit ${code}) without a result:\n${stderrTail.trim()}`));
      }
    });
  });
}

let cachedPython: string | undefined;

/** A Python that has Jupyter's nbclient and nbconvert: Debian's first, since the first on PATH may lack them. */
export function findJupyterPython(): string {
  if (cachedPython) return cachedPython;
  const candidates = [process.env.WB_JUPYTER_PYTHON, '/usr/bin/python3', 'python3'].filter((p): p is string => Boolean(p));
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import nbclient, nbconvert, nbformat'], { stdio: 'ignore' });
    if (r.status === 0) return (cachedPython = py);
  }
  throw new WorkbenchError(
    'Jupyter is not installed: `wb nb run` needs nbclient and nbconvert. On Debian or Ubuntu: ' +
      '`sudo apt-get install -y --no-install-recommends jupyter-nbconvert`; elsewhere `pip install nbconvert`. ' +
      'Set WB_JUPYTER_PYTHON to use a particular Python.',
  );
}

// eslint-disable-next-line no-control-regex -- ESC starts the terminal colour codes this removes
const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
