/**
 * The OLTP database of the app, behind one small interface. The app writes users; the service reads
 * them to enrich events; stage 6 writes precomputed predictions; the lakehouse replicates every table.
 * SQLite is the embedded default, PostgreSQL the scale-out implementation; both pass one
 * conformance suite (test/workbench/oltp/conformance.ts).
 */
export type Tier = 'free' | 'pro';

export interface User {
  user_id: string;
  country: string;
  device: string;
  tier: Tier;
  /** ISO-8601 UTC instant of the user's first login. */
  first_seen: string;
}

export interface Prediction {
  model: string;
  version: string;
  user_id: string;
  score: number;
  /** ISO-8601 UTC instant. */
  created_at: string;
}

export interface TableRows {
  users: User;
  predictions: Prediction;
}
export type TableName = keyof TableRows;

/** Column types of every OLTP table, in the vocabulary the lakehouse replica is written with. */
export const TABLE_COLUMNS: { [T in TableName]: Record<keyof TableRows[T], 'VARCHAR' | 'DOUBLE' | 'TIMESTAMP'> } = {
  users: { user_id: 'VARCHAR', country: 'VARCHAR', device: 'VARCHAR', tier: 'VARCHAR', first_seen: 'TIMESTAMP' },
  predictions: { model: 'VARCHAR', version: 'VARCHAR', user_id: 'VARCHAR', score: 'DOUBLE', created_at: 'TIMESTAMP' },
};
export const TABLE_NAMES = Object.keys(TABLE_COLUMNS) as TableName[];

export interface OltpStore {
  /** `sqlite` or `postgres`. */
  readonly kind: string;
  /** Where it is, with any password removed: safe to print. */
  readonly location: string;
  /** Creates the tables if they do not exist. Safe to call on every start. */
  migrate(): Promise<void>;
  /** Inserts users, or replaces every column of those that exist, in one transaction. */
  upsertUsers(users: readonly User[]): Promise<void>;
  /**
   * Inserts the users that do not exist yet and leaves existing ones untouched (ingest creates users
   * on their first event; a concurrent second batch must not move their first_seen).
   */
  insertUsersIfAbsent(users: readonly User[]): Promise<void>;
  /** The users among `ids` that exist, by id. */
  getUsers(ids: readonly string[]): Promise<Map<string, User>>;
  /** Inserts predictions, replacing the one per (model, user_id) that exists, in one transaction. */
  upsertPredictions(rows: readonly Prediction[]): Promise<void>;
  count(table: TableName): Promise<number>;
  /** Every row of a table, in primary-key order, in batches: what the lakehouse replica reads. */
  scan<T extends TableName>(table: T, batchSize?: number): AsyncIterable<TableRows[T][]>;
  close(): Promise<void>;
}

/** Normalises a timestamp to the ISO-8601 UTC form every implementation returns. */
export function isoInstant(value: string | Date): string {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) throw new TypeError(`not a timestamp: ${String(value)}`);
  return d.toISOString();
}
