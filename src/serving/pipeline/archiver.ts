import { existsSync, mkdirSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { lakeLayout, sourceDir } from '../../workbench/lakehouse/layout.js';
import { LIVE_SOURCE, LiveArchiveWriter, type LiveArchiveOptions } from '../../workbench/lakehouse/live.js';
import type { RecordConsumer } from './consumer.js';

/**
 * The archiver: micro-batches of the log's records, as they are, of the event log into the lakehouse's Parquet archive. Its position is
 * read from the archive's own file names (they carry offset ranges), not only from the log's
 * committed offset, so a crash between writing a batch and committing it never writes it twice.
 *
 * With several instances on one lake it is a singleton (the `wb:archiver` lease): the holder runs it,
 * and each run (each term) opens the writer afresh in `resumeAt`, so a new holder resumes after the
 * last file any holder published, and `close` closes it. The writer's `beforePublish` is the fence.
 */
export class Archiver implements RecordConsumer {
  readonly name = 'archiver';
  readonly input = 'records';
  /** Its files are named by offset and it resumes after the highest: a dead letter can be archived late, alone. */
  readonly acceptsLateRecords = true;
  private lastWrite: { at: number; newestEvent: string } | undefined;
  /** Archive files set aside by the last rewind (paths), for the recovery report. */
  quarantined: string[] = [];

  private opened: LiveArchiveWriter | undefined;

  private constructor(
    private readonly lakeDir: string,
    private readonly options: LiveArchiveOptions,
  ) {}

  /** Opens the writer at once (finishing or discarding what a crash left staged); it is reopened on each start after a `close`. */
  static async open(lakeDir: string, options: LiveArchiveOptions = {}): Promise<Archiver> {
    const archiver = new Archiver(lakeDir, options);
    await archiver.writer();
    return archiver;
  }

  /**
   * Opens nothing yet: the writer opens when a runner starts (`resumeAt`). For the service's
   * singleton, whose instance must not touch the shared staging folder before it holds the lease.
   */
  static unopened(lakeDir: string, options: LiveArchiveOptions = {}): Archiver {
    return new Archiver(lakeDir, options);
  }

  private async writer(): Promise<LiveArchiveWriter> {
    return (this.opened ??= await LiveArchiveWriter.open(this.lakeDir, this.options));
  }

  async resumeAt(committed: number): Promise<number> {
    return Math.max(committed, (await this.writer()).resumeAt());
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
    return Math.min(end, (await this.writer()).resumeAt());
  }

  async handle(records: Uint8Array[], first: number): Promise<void> {
    const writer = await this.writer();
    let written: { newestEvent: string };
    try {
      written = await writer.write(records, first, first + records.length - 1);
    } catch (err) {
      // A failed batch leaves its staging folder (its records as NDJSON, maybe some Parquet), and a
      // poison record is tried, and split, many times: each try would leave one. (Leftovers of a
      // crash are removed when the writer opens.)
      writer.discardUnfinished();
      throw err;
    }
    this.lastWrite = { at: Date.now(), newestEvent: written.newestEvent };
  }

  /** When the archive last received a batch, and the newest event time in it (archive freshness). */
  get freshness(): { at: number; newestEvent: string } | undefined {
    return this.lastWrite;
  }

  async close(): Promise<void> {
    const writer = this.opened;
    this.opened = undefined;
    writer?.close();
  }
}
