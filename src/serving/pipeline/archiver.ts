import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { lakeLayout, sourceDir } from '../../workbench/lakehouse/layout.js';
import { LIVE_SOURCE, LiveArchiveWriter } from '../../workbench/lakehouse/live.js';
import type { RecordConsumer } from './consumer.js';

/**
 * The archiver: micro-batches of the log's records, as they are, of the event log into the lakehouse's Parquet archive. Its position is
 * read from the archive's own file names (they carry offset ranges), not only from the log's
 * committed offset, so a crash between writing a batch and committing it never writes it twice.
 */
export class Archiver implements RecordConsumer {
  readonly name = 'archiver';
  readonly input = 'records';
  /** Its files are named by offset and it resumes after the highest: a dead letter can be archived late, alone. */
  readonly acceptsLateRecords = true;
  private lastWrite: { at: number; newestEvent: string } | undefined;
  /** Archive files set aside by the last rewind (paths), for the recovery report. */
  quarantined: string[] = [];

  private constructor(
    private readonly writer: LiveArchiveWriter,
    private readonly lakeDir: string,
  ) {}

  static async open(lakeDir: string): Promise<Archiver> {
    return new Archiver(await LiveArchiveWriter.open(lakeDir), lakeDir);
  }

  async resumeAt(committed: number): Promise<number> {
    return Math.max(committed, this.writer.resumeAt());
  }

  /**
   * The log lost its records from `end` on: archive files holding any offset from `end` on move to
   * `<lake>/quarantine/live-log-recovery/<time>/` (outside the archive, so a resent copy of a lost
   * event is not counted twice; kept, since they hold events the log lost). Archiving resumes after
   * the last file left, which may be before `end` when a moved file also held records before it.
   */
  async rewind(end: number): Promise<number> {
    const layout = lakeLayout(this.lakeDir);
    const archive = sourceDir(layout, LIVE_SOURCE);
    const aside = join(layout.quarantine, 'live-log-recovery', new Date().toISOString().replace(/[:.]/g, '-'));
    this.quarantined = [];
    for (const date of existsSync(archive) ? readdirSync(archive) : []) {
      for (const f of readdirSync(join(archive, date))) {
        const m = /^part-(\d+)-(\d+)\.parquet$/.exec(f);
        if (!m || Number(m[2]) < end) continue;
        mkdirSync(join(aside, date), { recursive: true });
        renameSync(join(archive, date, f), join(aside, date, f));
        this.quarantined.push(join(aside, date, f));
      }
    }
    return Math.min(end, this.writer.resumeAt());
  }

  async handle(records: Uint8Array[], first: number): Promise<void> {
    let written: { newestEvent: string };
    try {
      written = await this.writer.write(records, first, first + records.length - 1);
    } catch (err) {
      // A failed batch leaves its staging folder (its records as NDJSON, maybe some Parquet), and a
      // poison record is tried, and split, many times: each try would leave one. (Leftovers of a
      // crash are removed when the writer opens.)
      this.removeUnfinishedBatches();
      throw err;
    }
    this.lastWrite = { at: Date.now(), newestEvent: written.newestEvent };
  }

  /** Batches being staged (`*.tmp`, as LiveArchiveWriter names them); a `.ready` one is complete and left to be published. */
  private removeUnfinishedBatches(): void {
    const staging = join(lakeLayout(this.lakeDir).root, '.staging-live');
    for (const entry of existsSync(staging) ? readdirSync(staging) : []) {
      if (entry.endsWith('.tmp')) rmSync(join(staging, entry), { recursive: true, force: true });
    }
  }

  /** When the archive last received a batch, and the newest event time in it (archive freshness). */
  get freshness(): { at: number; newestEvent: string } | undefined {
    return this.lastWrite;
  }

  async close(): Promise<void> {
    this.writer.close();
  }
}
