/**
 * Progress on long work. The library reports through this interface; the CLI draws a bar on a
 * terminal and prints occasional lines elsewhere (CI logs), and a Jupyter notebook shows a bar that
 * is updated in place (`notebookProgress`), so nobody stares at silence.
 */
export interface ProgressTask {
  /** Sets how much is done, in the task's unit. */
  update(done: number): void;
  /** Ends the task, with a one-line summary. */
  finish(summary?: string): void;
}

export type ProgressUnit = 'bytes' | 'rows' | 'files' | 'cells' | 'epochs' | 'days' | 'folds' | 'steps';

/** Where a long operation reports its steps: a bar in a notebook, a line on a terminal, or nothing. */
export interface Progress {
  task(label: string, total?: number, unit?: ProgressUnit): ProgressTask;
  log(message: string): void;
}

/** A progress that shows nothing (tests, or a job that logs elsewhere). */
export const silentProgress: Progress = {
  task: () => ({ update() {}, finish() {} }),
  log() {},
};

/**
 * Progress on a terminal stream (stderr by default): a bar redrawn in place on a TTY, a line every 10% elsewhere (CI, logs).
 *
 * @example
 * ```ts
 * const data = await appChurnData(lake, { progress: consoleProgress() });
 * ```
 */
export function consoleProgress(stream: NodeJS.WriteStream = process.stderr): Progress {
  const tty = Boolean(stream.isTTY) && !process.env.CI;
  return {
    log: (message) => void stream.write(`${message}\n`),
    task(label, total, unit = 'rows') {
      const started = Date.now();
      let lastDraw = 0;
      let lastLinePct = -1;
      const fmt = (n: number) => (unit === 'bytes' ? `${(n / 1048576).toFixed(1)} MB` : n.toLocaleString('en-US'));
      const draw = (done: number, force = false) => {
        const now = Date.now();
        if (!force && now - lastDraw < (tty ? 100 : 2000)) return;
        lastDraw = now;
        const pct = total ? Math.min(100, Math.floor((done / total) * 100)) : undefined;
        if (tty) {
          const width = 30;
          const filled = pct === undefined ? 0 : Math.round((pct / 100) * width);
          const bar = pct === undefined ? '' : `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(pct).padStart(3)}% `;
          stream.write(`\r${label} ${bar}${fmt(done)}${total ? ` / ${fmt(total)}` : ''}\x1b[K`);
        } else if (pct === undefined || pct >= lastLinePct + 10) {
          lastLinePct = pct ?? lastLinePct;
          stream.write(`${label}: ${pct === undefined ? '' : `${pct}% `}(${fmt(done)}${total ? ` of ${fmt(total)}` : ''})\n`);
        }
      };
      return {
        update: (done) => draw(done),
        finish(summary) {
          const seconds = ((Date.now() - started) / 1000).toFixed(1);
          stream.write(`${tty ? '\r' : ''}${label}: ${summary ?? 'done'} (${seconds} s)${tty ? '\x1b[K' : ''}\n`);
        },
      };
    },
  };
}

/**
 * Whether to draw now: the first call and forced calls (a task's end) always, otherwise at most
 * once per `intervalMs`, so that a fast loop (an epoch every millisecond) does not flood the output.
 */
export function throttle(intervalMs: number, now: () => number = Date.now): (force?: boolean) => boolean {
  let last = Number.NEGATIVE_INFINITY;
  return (force = false) => {
    const t = now();
    if (!force && t - last < intervalMs) return false;
    last = t;
    return true;
  };
}

/** One line of progress: `training: 40% (12 of 30 epochs)`, or `loading: 1,200 rows` without a total. */
export function progressText(label: string, done: number, total: number | undefined, unit: ProgressUnit = 'rows'): string {
  const fmt = (n: number) => (unit === 'bytes' ? `${(n / 1048576).toFixed(1)} MB` : n.toLocaleString('en-US'));
  const unitName = unit === 'bytes' ? '' : ` ${unit}`;
  if (!total) return `${label}: ${fmt(done)}${unitName}`;
  const pct = Math.min(100, Math.floor((done / total) * 100));
  return `${label}: ${pct}% (${fmt(done)} of ${fmt(total)}${unitName})`;
}

/** Where a notebook progress bar is drawn: one output, replaced at each draw. */
export interface ProgressDisplay {
  html(html: string): void;
}

export interface NotebookProgressOptions {
  /** Least time between two draws of a bar; default 250 ms. */
  intervalMs?: number;
  /** A new output per task; default a tslab display, updated in place (`update_display_data`). */
  newDisplay?: () => ProgressDisplay;
  now?: () => number;
}

/**
 * Progress as bars in a Jupyter notebook: each task is one output that tslab's `newDisplay()`
 * replaces in place (Jupyter's display ids), so a task shows one live bar, not a line per step,
 * and the executed notebook keeps the final state (the summary and the time it took).
 * `log` messages are printed as text lines.
 *
 * @example
 * ```ts
 * await buildTrainingSet(lake, appFeatures, source, { progress: notebookProgress() });
 * ```
 */
export function notebookProgress(options: NotebookProgressOptions = {}): Progress {
  const now = options.now ?? Date.now;
  const newDisplay = options.newDisplay ?? tslabDisplay;
  return {
    log: (message) => console.log(message),
    task(label, total, unit = 'rows') {
      const started = now();
      const display = newDisplay();
      const shouldDraw = throttle(options.intervalMs ?? 250, now);
      let done = 0;
      const draw = (text: string, value: number | undefined, max: number | undefined) => {
        const bar = value === undefined ? '<progress style="width:16em"></progress>' : `<progress value="${value}" max="${max}" style="width:16em"></progress>`;
        display.html(`<div class="wb-progress" style="font-family:monospace;white-space:pre">${bar} ${escapeHtml(text)}</div>`);
      };
      const seconds = () => `${((now() - started) / 1000).toFixed(1)} s`;
      shouldDraw(true);
      draw(progressText(label, 0, total, unit), total ? 0 : undefined, total);
      return {
        update(value) {
          done = value;
          if (shouldDraw()) draw(`${progressText(label, done, total, unit)}, ${seconds()}`, total ? Math.min(done, total) : undefined, total);
        },
        finish(summary) {
          shouldDraw(true);
          draw(`${label}: ${summary ?? 'done'} (${seconds()})`, 1, 1);
        },
      };
    },
  };
}

/** True while a Jupyter kernel (tslab) runs this code in a cell, where displays can be shown. */
export function inNotebook(): boolean {
  try {
    // tslab keeps the current cell's output channel here; it is null outside a kernel's cell.
    // (An internal of tslab 1.0.22: if it moves, notebooks fall back to no progress, nothing breaks.)
    const jupyter = require('tslab/dist/jupyter') as { lastWriteDisplayData?: unknown };
    return jupyter.lastWriteDisplayData != null;
  } catch {
    return false;
  }
}

/**
 * The progress a library function uses when none is passed: bars in a notebook, silence elsewhere
 * (a job or the CLI passes its own, `consoleProgress`).
 *
 * @example
 * ```ts
 * const task = defaultProgress().task('scoring', rows.length, 'rows');
 * task.update(rows.length);
 * task.finish();
 * ```
 */
export function defaultProgress(): Progress {
  return inNotebook() ? notebookProgress() : silentProgress;
}

function tslabDisplay(): ProgressDisplay {
  const tslab = require('tslab') as { newDisplay(): ProgressDisplay };
  const display = tslab.newDisplay();
  return {
    html(html) {
      try {
        display.html(html);
      } catch {
        // "Not ready": the kernel has no cell running any more (work left running after its cell); drop the frame
      }
    },
  };
}

function escapeHtml(s: string): string {
  return s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}
