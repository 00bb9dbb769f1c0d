import { closeSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Rejected } from './csv.js';
import type { LakeLayout } from './layout.js';

/** Rejected rows of one source, written to `quarantine/<source>.csv` when the source is committed. */
export class QuarantineWriter {
  private readonly staged: string;
  private fd: number | undefined;
  private pending = '';
  count = 0;

  constructor(
    private readonly layout: LakeLayout,
    private readonly source: string,
  ) {
    this.staged = join(layout.staging, `quarantine-${source}.csv`);
    this.fd = openSync(this.staged, 'w');
    writeSync(this.fd, 'line,reason,record\n');
  }

  add(r: Rejected): void {
    this.count++;
    this.pending += `${r.line},${csvField(r.reason)},${csvField(r.record)}\n`;
    if (this.pending.length > 1 << 20) this.flush();
  }

  close(): void {
    if (this.fd === undefined) return;
    this.flush();
    closeSync(this.fd);
    this.fd = undefined;
  }

  private flush(): void {
    writeSync(this.fd!, this.pending);
    this.pending = '';
  }

  commit(): void {
    this.close();
    mkdirSync(this.layout.quarantine, { recursive: true });
    renameSync(this.staged, join(this.layout.quarantine, `${this.source}.csv`));
  }
}

function csvField(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}
