import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDb, type AppendType } from '../duckdb.js';
import type { EnrichedEvent } from '../event.js';
import { sql } from '../sql.js';
import { lakeLayout, sourceDir } from './layout.js';

/**
 * The live part of the event archive: micro-batches from the event log, written by the service's
 * archiver under `archive/events/source=live/date=<d>/part-<first>-<last>.parquet`. File names
 * carry the log offsets they hold, so the archive itself says how far it has got: a batch is staged
 * whole, marked ready, then moved in; after a crash, a ready batch is finished and an unfinished one
 * discarded, and archiving resumes after the last offset on disk. No row is lost or written twice.
 */
export const LIVE_SOURCE = 'live';

const COLUMNS: readonly (readonly [string, AppendType])[] = [
  ['event_id', 'VARCHAR'],
  ['time', 'TIMESTAMP'],
  ['user_id', 'VARCHAR'],
  ['event', 'VARCHAR'],
  ['props', 'VARCHAR'],
  ['dims', 'VARCHAR'],
  ['experiments', 'VARCHAR'],
  ['received_at', 'TIMESTAMP'],
];

const PART = /^part-(\d+)-(\d+)\.parquet$/;

export class LiveArchiveWriter {
  private constructor(
    private readonly db: DuckDb,
    private readonly archive: string,
    private readonly staging: string,
  ) {}

  static async open(lakeDir: string): Promise<LiveArchiveWriter> {
    const layout = lakeLayout(lakeDir);
    const writer = new LiveArchiveWriter(await DuckDb.open(':memory:', { threads: 1 }), sourceDir(layout, LIVE_SOURCE), join(layout.root, '.staging-live'));
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

  /** Writes events with log offsets first..last (inclusive), one file per event date. */
  async write(events: readonly EnrichedEvent[], first: number, last: number): Promise<{ files: number }> {
    const name = `${pad(first)}-${pad(last)}`;
    const tmp = join(this.staging, `${name}.tmp`);
    rmSync(tmp, { recursive: true, force: true });
    const byDate = new Map<string, EnrichedEvent[]>();
    for (const e of events) {
      const date = new Date(e.time).toISOString().slice(0, 10);
      (byDate.get(date) ?? byDate.set(date, []).get(date)!).push(e);
    }
    await this.db.run(sql`CREATE OR REPLACE TEMP TABLE live (event_id VARCHAR, time TIMESTAMP, user_id VARCHAR, event VARCHAR,
      props VARCHAR, dims VARCHAR, experiments VARCHAR, received_at TIMESTAMP)`);
    for (const [date, rows] of byDate) {
      await this.db.run(sql`DELETE FROM live`);
      const appender = await this.db.appender('live', COLUMNS.map(([, t]) => t));
      try {
        for (let i = 0; i < rows.length; i++) {
          const e = rows[i]!;
          appender.append([e.event_id, Date.parse(e.time), e.user_id, e.event, JSON.stringify(e.props), JSON.stringify(e.dims), JSON.stringify(e.experiments), Date.parse(e.received_at)]);
          // Let the service's other work in between: a large batch would hold the event loop for long.
          if (i % 2000 === 1999) await new Promise((r) => setImmediate(r));
        }
      } finally {
        appender.close();
      }
      const dir = join(tmp, `date=${date}`);
      mkdirSync(dir, { recursive: true });
      await this.db.run(sql`COPY (
          SELECT event_id, time, user_id, event, CAST(props AS JSON) AS props, CAST(dims AS JSON) AS dims,
                 CAST(experiments AS JSON) AS experiments, received_at
          FROM live ORDER BY time, event_id
        ) TO ${join(dir, `part-${name}.parquet`)} (FORMAT parquet, COMPRESSION zstd)`);
    }
    const ready = join(this.staging, `${name}.ready`);
    renameSync(tmp, ready);
    this.publish(ready);
    return { files: byDate.size };
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
