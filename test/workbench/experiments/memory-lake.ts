import { DuckDb } from '../../../src/workbench/duckdb.js';
import { ASSIGNMENT_MACROS } from '../../../src/workbench/experiments/macros.js';
import type { Lakehouse } from '../../../src/workbench/lakehouse.js';
import { join, sql, type Sql } from '../../../src/workbench/sql.js';

/** An event as the archive has it: what `live_events` holds for the experiment statistics. */
export interface LakeEvent {
  time: string;
  user_id: string;
  event: string;
  props: Record<string, unknown>;
  experiments: Record<string, string>;
}

/**
 * A `live_events` table in an in-memory DuckDB, with the assignment macros, answering `query` as
 * the lakehouse does (rows as objects): the lakehouse statistics' SQL runs on it unchanged.
 */
export async function memoryLake(events: readonly LakeEvent[]): Promise<Pick<Lakehouse, 'query'> & { close(): void }> {
  const db = await DuckDb.open(':memory:');
  await db.run(sql`CREATE TABLE live_events (time TIMESTAMP, user_id VARCHAR, event VARCHAR, props JSON, experiments JSON)`);
  for (const macro of ASSIGNMENT_MACROS) await db.run(macro);
  for (let i = 0; i < events.length; i += 1000) {
    const rows = events
      .slice(i, i + 1000)
      .map(
        (e) =>
          sql`(CAST(${e.time} AS TIMESTAMP), ${e.user_id}, ${e.event}, CAST(${JSON.stringify(e.props)} AS JSON), CAST(${JSON.stringify(e.experiments)} AS JSON))`,
      );
    await db.run(sql`INSERT INTO live_events VALUES ${join(rows)}`);
  }
  return {
    async query<T extends object>(statement: Sql): Promise<T[]> {
      const r = await db.query(statement);
      return Array.from({ length: r.rowCount }, (_, i) => Object.fromEntries(r.names.map((name, c) => [name, narrow(r.columns[c]![i])])) as T);
    },
    close: () => db.close(),
  };
}

/** BIGINT counts as numbers (the lakehouse narrows them the same way). */
const narrow = (v: unknown) => (typeof v === 'bigint' ? Number(v) : v);
