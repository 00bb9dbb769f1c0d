import type { UserState } from '../../workbench/features/online.js';

/** Where an online store's states stand: the feature set they were built for, and the log offset after the last batch in them. */
export interface StorePosition {
  setVersion: string;
  offset: number;
}

/**
 * The online feature store: each user's incremental feature state, written by the features
 * consumer and read by the feature and predict routes. The embedded one keeps states in memory and
 * snapshots them to disk; the Redis one keeps them in a Redis hash. Both pass
 * test/serving/features/conformance.ts.
 */
export interface OnlineStore {
  /** `memory` or `redis`. */
  readonly kind: string;
  position(): Promise<StorePosition | undefined>;
  /** Forgets every state and starts over for a feature set (the consumer then replays the log from 0). */
  reset(setVersion: string): Promise<void>;
  /** States the caller may change (the store itself changes only in write()). */
  get(users: readonly string[]): Promise<Map<string, UserState>>;
  /** One user's state to read, not to change: no copy is made (the predict path). */
  peek(user: string): Promise<UserState | undefined>;
  /**
   * Stores the states a batch changed (undefined: the user has nothing left in any window) together
   * with the offset after the batch: after a crash the store is at a batch boundary, never half-way.
   * With `from` (where the batch's states were read), the write is refused with StoreMovedError,
   * changing nothing, unless the store still stands at `from`: of several instances folding into one
   * shared store, only the first to apply a batch does (a compare-and-set on the position).
   */
  write(states: ReadonlyMap<string, UserState | undefined>, offset: number, from?: number): Promise<void>;
  /** Makes what was written survive a restart (the memory store writes its snapshot). */
  flush(): Promise<void>;
  /** Users held. */
  size(): Promise<number>;
  close(): Promise<void>;
  /** Deletes every state and the position, and closes: the set is no longer served. */
  drop(): Promise<void>;
}

/** A write refused because the store no longer stands where its batch was read: another writer applied it first. */
export class StoreMovedError extends Error {
  constructor(
    readonly expected: number,
    readonly position: StorePosition | undefined,
  ) {
    super(
      `the online store moved: the batch was read at offset ${expected}, the store stands at ${position ? `${position.offset} (set ${position.setVersion})` : 'nothing (dropped)'}`,
    );
    this.name = 'StoreMovedError';
  }
}
