import {
  BIGINT,
  BOOLEAN,
  DOUBLE,
  DuckDBDataChunk,
  DuckDBInstance,
  DuckDBTimestampValue,
  INTEGER,
  TIMESTAMP,
  VARCHAR,
  type DuckDBAppender,
  type DuckDBConnection,
  type DuckDBType,
  type DuckDBValue,
} from '@duckdb/node-api';
import { SqlError } from './errors.js';
import type { Sql } from './sql.js';

/**
 * The one module that touches DuckDB. Everything else speaks `Sql` fragments and gets back plain
 * JavaScript columns; errors come back as `SqlError` carrying the statement that failed.
 */

/** One value of a query result (`Row`): narrow it with `typeof`, `instanceof Date` or `Number()`, never a cast. */
export type Scalar = null | boolean | number | bigint | string | Date | Uint8Array | Scalar[] | { [k: string]: Scalar };

export interface ColumnarResult {
  names: string[];
  /** DuckDB's type of each column, as SQL text (`BIGINT`, `TIMESTAMP`, `VARCHAR`, ...). */
  types: string[];
  /** One array per column. BIGINT arrives as `bigint`, timestamps and dates as `Date`. */
  columns: Scalar[][];
  rowCount: number;
}

export interface RowAppender {
  append(row: readonly unknown[]): void;
  /** Flushes what was appended; nothing is visible to queries before. */
  close(): void;
}

export type AppendType = 'VARCHAR' | 'DOUBLE' | 'INTEGER' | 'BIGINT' | 'BOOLEAN' | 'TIMESTAMP';

export class DuckDb {
  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly connection: DuckDBConnection,
  ) {}

  /** An in-memory database (the default) or a file; `threads` limits DuckDB's worker threads. */
  static async open(path = ':memory:', options: { threads?: number; readOnly?: boolean } = {}): Promise<DuckDb> {
    const config: Record<string, string> = {};
    if (options.threads) config.threads = String(options.threads);
    if (options.readOnly) config.access_mode = 'READ_ONLY';
    const instance = await DuckDBInstance.create(path, config);
    return new DuckDb(instance, await instance.connect());
  }

  async run(statement: Sql): Promise<void> {
    const text = statement.toString();
    try {
      await this.connection.run(text);
    } catch (err) {
      throw new SqlError(text, err);
    }
  }

  /**
   * A result a chunk at a time (up to 2,048 rows, as rows of JavaScript values, BIGINT as `bigint`):
   * DuckDB computes on its own threads and each chunk is converted only when asked for, so a large
   * result never holds the event loop in one piece (the service's online feature bootstrap).
   */
  async *stream(statement: Sql): AsyncGenerator<Scalar[][]> {
    const text = statement.toString();
    try {
      const result = await this.connection.stream(text);
      for await (const rows of result.yieldRowsJs()) yield rows as Scalar[][];
    } catch (err) {
      throw new SqlError(text, err);
    }
  }

  async query(statement: Sql): Promise<ColumnarResult> {
    const text = statement.toString();
    try {
      const reader = await this.connection.runAndReadAll(text);
      return {
        names: reader.columnNames(),
        types: reader.columnTypes().map((t) => t.toString()),
        columns: reader.getColumnsJS() as Scalar[][],
        rowCount: reader.currentRowCount,
      };
    } catch (err) {
      throw new SqlError(text, err);
    }
  }

  /**
   * Opens DuckDB's appender on an existing table: the fast, synchronous path for loading rows
   * produced in JavaScript. `types` gives the column types in table order; null appends NULL.
   */
  async appender(table: string, types: readonly AppendType[]): Promise<RowAppender> {
    let appender: DuckDBAppender;
    try {
      appender = await this.connection.createAppender(table);
    } catch (err) {
      throw new SqlError(`-- appender for table ${table}`, err);
    }
    // Rows are gathered into column arrays and handed over a data chunk at a time: one native call
    // per column per 2048 rows instead of one per value, several times faster on wide loads.
    const duckTypes = types.map((t) => DUCK_TYPES[t]);
    const convert = types.map((t) => CONVERTERS[t]);
    let columns: DuckDBValue[][] = types.map(() => []);
    let rows = 0;
    const flushChunk = () => {
      if (rows === 0) return;
      const chunk = DuckDBDataChunk.create(duckTypes, rows);
      chunk.setColumns(columns);
      appender.appendDataChunk(chunk);
      columns = types.map(() => []);
      rows = 0;
    };
    let open = true;
    return {
      append(row) {
        for (let i = 0; i < types.length; i++) {
          const v = row[i];
          columns[i]!.push(v === null || v === undefined ? null : convert[i]!(v));
        }
        if (++rows === CHUNK_ROWS) flushChunk();
      },
      close() {
        if (!open) return;
        open = false;
        try {
          flushChunk();
          appender.flushSync();
        } finally {
          appender.closeSync();
        }
      },
    };
  }

  /** Appends every row, then closes the appender. */
  async append(table: string, types: readonly AppendType[], rows: Iterable<readonly unknown[]>): Promise<number> {
    const writer = await this.appender(table, types);
    let n = 0;
    try {
      for (const row of rows) {
        writer.append(row);
        n++;
      }
    } finally {
      writer.close();
    }
    return n;
  }

  close(): void {
    this.connection.closeSync();
    this.instance.closeSync();
  }
}

const CHUNK_ROWS = 2048;

const DUCK_TYPES: Record<AppendType, DuckDBType> = {
  VARCHAR: VARCHAR,
  DOUBLE: DOUBLE,
  INTEGER: INTEGER,
  BIGINT: BIGINT,
  BOOLEAN: BOOLEAN,
  TIMESTAMP: TIMESTAMP,
};

const CONVERTERS: Record<AppendType, (v: unknown) => DuckDBValue> = {
  VARCHAR: (v) => String(v),
  DOUBLE: (v) => Number(v),
  INTEGER: (v) => Number(v),
  BIGINT: (v) => BigInt(v as number | bigint),
  BOOLEAN: (v) => Boolean(v),
  TIMESTAMP: (v) => new DuckDBTimestampValue(BigInt(v instanceof Date ? v.getTime() : (v as number)) * 1000n),
};
