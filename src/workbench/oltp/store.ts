import type { ClientBase } from 'pg';

/**
 * The OLTP database of the app, behind one small interface. The app writes users; the service reads
 * them to enrich events; stage 6 writes precomputed predictions; the lakehouse replicates every table.
 * SQLite is the embedded default, PostgreSQL the scale-out implementation; both pass one
 * conformance suite (test/workbench/oltp/conformance.ts).
 */
export type Tier = 'free' | 'pro';

/** One user of the simulated product in the OLTP database. */
export interface User {
  user_id: string;
  country: string;
  device: string;
  tier: Tier;
  /** ISO-8601 UTC instant of the user's first login. */
  first_seen: string;
}

/** One prediction the service logged: model, version, user, score and when. */
export interface Prediction {
  model: string;
  version: string;
  user_id: string;
  score: number;
  /** ISO-8601 UTC instant. */
  created_at: string;
}

/** A user's arm in an experiment, kept once given (sticky): later changes of weights move nobody. */
export interface Assignment {
  experiment: string;
  user_id: string;
  arm: string;
  /** ISO-8601 UTC instant of the user's exposure (their first assignment). */
  assigned_at: string;
}

/**
 * An assignment with the instant the database stored it (its claim), on the database's clock. It is
 * not `assigned_at`, which is the time of the event that assigned the user (ingest takes events up
 * to 30 days late): only the claim's own time says how long ago its exposure was due in the log.
 */
export interface ClaimedAssignment extends Assignment {
  /** ISO-8601 UTC instant, to the millisecond. */
  claimed_at: string;
}

/** Where a pass over claims stands: the last row of a page (the next page starts after it), or an instant with empty keys. */
export type ClaimCursor = Pick<ClaimedAssignment, 'claimed_at' | 'experiment' | 'user_id'>;

/** A page of `claimedAssignments`, with the cutoff it was read up to: the later pages of one pass give it back as `until`. */
export interface ClaimPage {
  rows: ClaimedAssignment[];
  until: string;
}

/** An experiment's current definition (JSON text), with an optimistic-concurrency version. */
export interface ExperimentRecord {
  key: string;
  /** 1 on creation, +1 on every change: a change names the version it was made against. */
  version: number;
  definition: string;
  updated_at: string;
  updated_by: string;
}

/** One entry of an experiment's change history: who, when, what, and the definition it produced. */
export interface ExperimentChange extends ExperimentRecord {
  change: string;
}

export interface TableRows {
  users: User;
  predictions: Prediction;
  assignments: Assignment;
}
export type TableName = keyof TableRows;

/** Column types of every OLTP table, in the vocabulary the lakehouse replica is written with. */
export const TABLE_COLUMNS: { [T in TableName]: Record<keyof TableRows[T], 'VARCHAR' | 'DOUBLE' | 'TIMESTAMP'> } = {
  users: { user_id: 'VARCHAR', country: 'VARCHAR', device: 'VARCHAR', tier: 'VARCHAR', first_seen: 'TIMESTAMP' },
  predictions: { model: 'VARCHAR', version: 'VARCHAR', user_id: 'VARCHAR', score: 'DOUBLE', created_at: 'TIMESTAMP' },
  assignments: { experiment: 'VARCHAR', user_id: 'VARCHAR', arm: 'VARCHAR', assigned_at: 'TIMESTAMP' },
};
/** The OLTP tables the lakehouse replicates. */
export const TABLE_NAMES = Object.keys(TABLE_COLUMNS) as TableName[];

/** The OLTP database (SQLite or PostgreSQL): users, predictions and assignments (see `openOltp`). */
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
  /** Keeps the assignments of users that have none in that experiment yet; returns what is stored for every row's (experiment, user). */
  insertAssignmentsIfAbsent(rows: readonly Assignment[]): Promise<Assignment[]>;
  /**
   * `insertAssignmentsIfAbsent` that also says, per row, whether this call stored it (`claimed`) or
   * found one there (then `assignment` is the stored one): of several service instances assigning
   * one user at once, the database picks exactly one winner, which alone logs the exposure.
   */
  claimAssignments(rows: readonly Assignment[]): Promise<{ assignment: Assignment; claimed: boolean }[]>;
  /** An experiment's assignments, of the given users or of all. */
  getAssignments(experiment: string, userIds?: readonly string[]): Promise<Assignment[]>;
  /**
   * The assignments of `experiments` by when the database stored them: claimed after `after` and
   * no later than `until` (default: the database's now less `olderThanMs`, returned as the page's
   * `until`), oldest claim first, then by experiment and user, at most `limit` rows. Rows stored
   * before claims were timed (no claimed_at) are never listed.
   */
  claimedAssignments(query: { experiments: readonly string[]; after?: ClaimCursor; until?: string; olderThanMs?: number; limit: number }): Promise<ClaimPage>;
  /**
   * Writes an experiment's definition and appends the change to its history, in one transaction.
   * `record.version` must be one more than the stored version (1 for a new key); otherwise nothing
   * is written and a ConflictError names the version that is stored.
   */
  saveExperiment(record: ExperimentRecord, change: string, guard?: WriteGuard): Promise<void>;
  getExperiments(): Promise<ExperimentRecord[]>;
  /** Every change of one experiment, oldest first. */
  experimentHistory(key: string): Promise<ExperimentChange[]>;
  count(table: TableName): Promise<number>;
  /** Every row of a table, in primary-key order, in batches: what the lakehouse replica reads. */
  scan<T extends TableName>(table: T, batchSize?: number): AsyncIterable<TableRows[T][]>;
  close(): Promise<void>;
}

/**
 * A check that must pass for a write to commit, run inside the write's transaction where the store
 * has one it can lend: PostgreSQL hands over the transaction's client (a lease's fence locks its row
 * there until the commit); SQLite, whose transactions are synchronous, runs the guard just before its
 * transaction, with no client. Throwing refuses the write and nothing is written.
 */
export type WriteGuard = (tx: { client?: ClientBase }) => Promise<void>;

/** Normalises a timestamp to the ISO-8601 UTC form every implementation returns. */
export function isoInstant(value: string | Date): string {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) throw new TypeError(`not a timestamp: ${String(value)}`);
  return d.toISOString();
}

/** The message of a refused experiment write: the same from every implementation. */
export function versionConflict(key: string, wanted: number, stored: number | undefined): string {
  return stored === undefined
    ? `experiment ${key} does not exist (a change names version ${wanted - 1}; create it first)`
    : wanted === 1
      ? `experiment ${key} already exists (version ${stored})`
      : `experiment ${key} was changed by someone else: it is at version ${stored}, this change was made against version ${wanted - 1}; read it again and retry`;
}
