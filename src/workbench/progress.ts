/**
 * Progress on long work. The library reports through this interface; the CLI draws a bar on a
 * terminal and prints occasional lines elsewhere (CI logs, notebooks), so nobody stares at silence.
 */
export interface ProgressTask {
  /** Sets how much is done, in the task's unit. */
  update(done: number): void;
  /** Ends the task, with a one-line summary. */
  finish(summary?: string): void;
}

export interface Progress {
  task(label: string, total?: number, unit?: 'bytes' | 'rows' | 'files' | 'cells' | 'epochs' | 'days'): ProgressTask;
  log(message: string): void;
}

export const silentProgress: Progress = {
  task: () => ({ update() {}, finish() {} }),
  log() {},
};

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
