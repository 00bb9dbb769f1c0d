import { LiveArchiveWriter } from '../../workbench/lakehouse/live.js';
import type { RecordConsumer } from './consumer.js';

/**
 * The archiver: micro-batches of the log's records, as they are, of the event log into the lakehouse's Parquet archive. Its position is
 * read from the archive's own file names (they carry offset ranges), not only from the log's
 * committed offset, so a crash between writing a batch and committing it never writes it twice.
 */
export class Archiver implements RecordConsumer {
  readonly name = 'archiver';
  readonly input = 'records';
  private lastWrite: { at: number; newestEvent: string } | undefined;

  private constructor(private readonly writer: LiveArchiveWriter) {}

  static async open(lakeDir: string): Promise<Archiver> {
    return new Archiver(await LiveArchiveWriter.open(lakeDir));
  }

  async resumeAt(committed: number): Promise<number> {
    return Math.max(committed, this.writer.resumeAt());
  }

  async handle(records: Uint8Array[], first: number): Promise<void> {
    const { newestEvent } = await this.writer.write(records, first, first + records.length - 1);
    this.lastWrite = { at: Date.now(), newestEvent };
  }

  /** When the archive last received a batch, and the newest event time in it (archive freshness). */
  get freshness(): { at: number; newestEvent: string } | undefined {
    return this.lastWrite;
  }

  async close(): Promise<void> {
    this.writer.close();
  }
}
