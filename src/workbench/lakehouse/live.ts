import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { DuckDb } from '../duckdb.js';
import { raw, sql } from '../sql.js';
import { lakeLayout, sourceDir } from './layout.js';

/**
 * The live part of the event archive: micro-batches from the event log, written by the service's
 * archiver under `archive/events/source=live/date=<d>/part-<first>-<last>.parquet`. File names
 * carry the log offsets they hold, so the archive itself says how far it has got: a batch is staged
 * whole, marked ready, then moved in; after a crash, a ready batch is finished and an unfinished one
 * discarded, and archiving resumes after the last offset on disk. No row is lost or written twice.
 */
export const LIVE_SOURCE = 'live';

/** The fields of a log record (an `EnrichedEvent` as JSON); times are ISO text in UTC, as ingest writes them. */
const RECORD_COLUMNS = `{event_id: 'VARCHAR', time: 'VARCHAR', user_id: 'VARCHAR', event: 'VARCHAR', props: 'JSON', dims: 'JSON', experiments: 'JSON', received_at: 'VARCHAR'}`;
const NEWLINE = Buffer.from('\n');

const PART = /^part-(\d+)-(\d+)\.parquet$/;

export interface LiveArchiveOptions {
  /**
   * Runs right before a staged batch is moved into the archive, and may refuse it by throwing: the
   * service's fence, so that a writer whose lease has passed to another instance adds no file (the
   * batch stays staged; the next holder discards it when it opens).
   */
  beforePublish?: () => Promise<void>;
  /**
   * Runs after the fence and before the batch's files are moved into the local archive: the
   * service's copy to the blob store (a failure leaves the batch out, as a failed write does).
   */
  share?: (batch: StagedBatch) => Promise<void>;
}

/** A batch's Parquet files, staged: `date` is the partition folder (`date=<d>`), `name` the file name. */
export interface StagedBatch {
  first: number;
  last: number;
  files: { date: string; name: string; path: string }[];
}

export class LiveArchiveWriter {
  /** In its staging folders' names: two writers on one lake (an old lease holder and the new one) never share or remove each other's. */
  private readonly id = randomBytes(4).toString('hex');

  private constructor(
    private readonly db: DuckDb,
    private readonly archive: string,
    private readonly staging: string,
    private readonly options: LiveArchiveOptions,
  ) {}

  static async open(lakeDir: string, options: LiveArchiveOptions = {}): Promise<LiveArchiveWriter> {
    const layout = lakeLayout(lakeDir);
    const writer = new LiveArchiveWriter(
      await DuckDb.open(':memory:', { threads: 1 }),
      sourceDir(layout, LIVE_SOURCE),
      join(layout.root, '.staging-live'),
      options,
    );
    writer.recover();
    return writer;
  }

  /** The offset after the last one archived: where archiving resumes. */
  resumeAt(): number {
    let next = 0;
    if (!existsSync(this.archive)) return next;
    for (const date of readdirSync(this.archive)) {
      for (const f of readdirSync(join(this.archive, date))) {
        const m = PART.exec(f);
        if (m) next = Math.max(next, Number(m[2]) + 1);
      }
    }
    return next;
  }

  /**
   * Writes the log records with offsets first..last (inclusive), one file per event date. The
   * records are the log's JSON text as it is: DuckDB parses them on its own thread, so archiving
   * costs the service's event loop little more than writing the bytes to a staging file.
   * Returns the newest event time in the batch (ISO).
   */
  async write(records: readonly Uint8Array[], first: number, last: number): Promise<{ files: number; newestEvent: string }> {
    const name = `${pad(first)}-${pad(last)}`;
    const tmp = join(this.staging, `${name}.${this.id}.tmp`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    const input = join(tmp, 'records.ndjson');
    await writeFile(input, Buffer.concat(records.flatMap((r) => [r, NEWLINE])));
    await this.db.run(sql`CREATE OR REPLACE TEMP TABLE live AS
      SELECT event_id, CAST(time AS TIMESTAMP) AS time, user_id, event, props, dims, experiments,
             CAST(received_at AS TIMESTAMP) AS received_at
      FROM read_json(${input}, format = 'newline_delimited', columns = ${raw(RECORD_COLUMNS)})`);
    const dates = await this.db.query(sql`SELECT strftime(CAST(time AS DATE), '%Y-%m-%d') AS date, max(time) AS newest FROM live GROUP BY 1 ORDER BY 1`);
    const [dateColumn, newestColumn] = dates.columns as [string[], Date[]];
    for (const date of dateColumn) {
      const dir = join(tmp, `date=${date}`);
      mkdirSync(dir, { recursive: true });
      await this.db.run(sql`COPY (
          SELECT * FROM live WHERE CAST(time AS DATE) = CAST(${date} AS DATE) ORDER BY time, event_id
        ) TO ${join(dir, `part-${name}.parquet`)} (FORMAT parquet, COMPRESSION zstd)`);
    }
    rmSync(input);
    await this.db.run(sql`DROP TABLE live`);
    // The fence: from here to the renames below nothing awaits (but `share`, which checks it again
    // right before its one commit write), so a stale writer gets past it only if it is paused for the
    // rest of its term between the check and the renames (a few syscalls) or that write.
    await this.options.beforePublish?.();
    await this.options.share?.({
      first,
      last,
      files: dateColumn.map((date) => ({ date: `date=${date}`, name: `part-${name}.parquet`, path: join(tmp, `date=${date}`, `part-${name}.parquet`) })),
    });
    const ready = join(this.staging, `${name}.${this.id}.ready`);
    renameSync(tmp, ready);
    this.publish(ready);
    return { files: dateColumn.length, newestEvent: new Date(Math.max(...newestColumn.map(Number))).toISOString() };
  }

  /** Removes this writer's batches left half-staged by a failed write (a poison record is tried, and split, many times). */
  discardUnfinished(): void {
    for (const entry of existsSync(this.staging) ? readdirSync(this.staging) : []) {
      if (entry.endsWith(`.${this.id}.tmp`)) rmSync(join(this.staging, entry), { recursive: true, force: true });
    }
  }

  close(): void {
    this.db.close();
  }

  private recover(): void {
    if (!existsSync(this.staging)) return;
    for (const entry of readdirSync(this.staging)) {
      const path = join(this.staging, entry);
      if (entry.endsWith('.ready')) this.publish(path);
      else rmSync(path, { recursive: true, force: true });
    }
  }

  /** Moves a complete staged batch into the archive; safe to repeat after a crash half-way. */
  private publish(ready: string): void {
    for (const date of readdirSync(ready)) {
      mkdirSync(join(this.archive, date), { recursive: true });
      for (const f of readdirSync(join(ready, date))) renameSync(join(ready, date, f), join(this.archive, date, f));
    }
    rmSync(ready, { recursive: true, force: true });
  }
}

const pad = (n: number) => String(n).padStart(12, '0');
