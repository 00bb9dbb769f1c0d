import { existsSync, mkdirSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { lakeLayout, sourceDir } from '../../workbench/lakehouse/layout.js';
import { LIVE_SOURCE, LiveArchiveWriter, type LiveArchiveOptions } from '../../workbench/lakehouse/live.js';
import type { SharedArchive } from '../cluster/shared-archive.js';
import type { RecordConsumer } from './consumer.js';

export interface ArchiverOptions extends LiveArchiveOptions {
  /**
   * The archive in the blob store (instances on several machines): each batch is committed there
   * before it is moved into the local lakehouse, and archiving resumes after the last commit.
   */
  shared?: SharedArchive;
}

/**
 * The archiver: micro-batches of the log's records, as they are, of the event log into the lakehouse's Parquet archive. Its position is
 * read from the archive's own file names (they carry offset ranges), not only from the log's
 * committed offset, so a crash between writing a batch and committing it never writes it twice.
 *
 * With several instances on one lake it is a singleton (the `wb:archiver` lease): the holder runs it,
 * and each run (each term) opens the writer afresh in `resumeAt`, so a new holder resumes after the
 * last file any holder published, and `close` closes it. The writer's `beforePublish` is the fence.
 * With a `shared` archive (the blob store) the commits there, not the local files, say how far it got.
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
    private readonly options: ArchiverOptions,
  ) {}

  /** Opens the writer at once (finishing or discarding what a crash left staged); it is reopened on each start after a `close`. */
  static async open(lakeDir: string, options: ArchiverOptions = {}): Promise<Archiver> {
    const archiver = new Archiver(lakeDir, options);
    await archiver.writer();
    return archiver;
  }

  /**
   * Opens nothing yet: the writer opens when a runner starts (`resumeAt`). For the service's
   * singleton, whose instance must not touch the shared staging folder before it holds the lease.
   */
  static unopened(lakeDir: string, options: ArchiverOptions = {}): Archiver {
    return new Archiver(lakeDir, options);
  }

  private async writer(): Promise<LiveArchiveWriter> {
    if (this.opened) return this.opened;
    const { shared, ...options } = this.options;
    if (!shared) return (this.opened = await LiveArchiveWriter.open(this.lakeDir, options));
    const fence = options.beforePublish;
    const writer = await LiveArchiveWriter.open(this.lakeDir, { ...options, share: (batch) => shared.publish(batch, fence) });
    try {
      // A lakehouse archived before the blob store was used is published first; then the local copy
      // is brought up to the commits, so that it says the same as the blob store.
      await shared.adopt(this.lakeDir, fence);
      await shared.sync(this.lakeDir);
    } catch (err) {
      writer.close();
      throw err;
    }
    return (this.opened = writer);
  }

  async resumeAt(committed: number): Promise<number> {
    const local = (await this.writer()).resumeAt();
    return Math.max(committed, this.options.shared ? await this.options.shared.end() : local);
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
    const local = (await this.writer()).resumeAt();
    return Math.min(end, this.options.shared ? await this.options.shared.rewind(end) : local);
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
