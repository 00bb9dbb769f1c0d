import { mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { UserState } from '../../workbench/features/online.js';
import { readCheckedSnapshot, writeCheckedSnapshotInSlices } from '../../workbench/files.js';
import { StoreMovedError, type OnlineStore, type StorePosition } from './store.js';

interface Snapshot {
  setVersion: string;
  offset: number;
  users: [string, UserState][];
}

/**
 * The embedded online store: states in a Map, snapshotted to one file (at most every
 * `snapshotEveryMs`, and on flush) with the offset they reflect and a SHA-256 of the content on its
 * last line. After a crash the store starts from the snapshot and the consumer replays the log from
 * its offset, so nothing is lost or counted twice. A snapshot that fails its check is reported and
 * set aside: the states are rebuilt from the log.
 */
export class MemoryOnlineStore implements OnlineStore {
  readonly kind = 'memory';
  private states = new Map<string, UserState>();
  private pos: StorePosition | undefined;
  private lastSnapshot = Date.now();
  private dirty = false;
  /** Only the offset moved since the last snapshot (records that change no state: predictions, other events). */
  private moved = false;
  /** The snapshot being written, if any: flushes run one after the other. */
  private flushing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly path: string,
    private readonly snapshotEveryMs: number,
  ) {}

  static open(path: string, options: { snapshotEveryMs?: number; warn?: (message: string) => void } = {}): MemoryOnlineStore {
    const store = new MemoryOnlineStore(path, options.snapshotEveryMs ?? 10_000);
    const read = readCheckedSnapshot(path);
    if (!read) return store;
    if ('corrupt' in read) {
      options.warn?.(`the online feature snapshot ${path} fails its checksum; kept as ${read.corrupt}, rebuilding the states from the event log`);
      return store;
    }
    const snap = JSON.parse(read.body) as Snapshot;
    store.pos = { setVersion: snap.setVersion, offset: snap.offset };
    store.states = new Map(snap.users);
    return store;
  }

  async position(): Promise<StorePosition | undefined> {
    return this.pos && { ...this.pos };
  }

  async reset(setVersion: string): Promise<void> {
    this.states.clear();
    this.pos = { setVersion, offset: 0 };
    this.dirty = true;
  }

  async get(users: readonly string[]): Promise<Map<string, UserState>> {
    const out = new Map<string, UserState>();
    for (const u of users) {
      const s = this.states.get(u);
      // A copy: the caller updates it, and the store must only change in write().
      if (s) out.set(u, copyOf(s));
    }
    return out;
  }

  async peek(user: string): Promise<UserState | undefined> {
    return this.peekNow(user);
  }

  /** `peek` without a promise: a deploy's join reads every user's state, and a promise each cost more than the reads. */
  peekNow(user: string): UserState | undefined {
    return this.states.get(user);
  }

  async write(states: ReadonlyMap<string, UserState | undefined>, offset: number, from?: number): Promise<void> {
    if (!this.pos) throw new Error('the online store was written before reset() chose its feature set');
    if (from !== undefined && from !== this.pos.offset) throw new StoreMovedError(from, { ...this.pos });
    for (const [user, state] of states) {
      if (state) this.states.set(user, state);
      else this.states.delete(user);
    }
    this.pos.offset = offset;
    // A batch that changed no state (the service's own prediction records, mostly) does not make the
    // snapshot be rewritten: megabytes rendered and written every interval for an offset. A
    // snapshot behind by such records is as right; a restart folds them again, changing nothing.
    if (states.size > 0) this.dirty = true;
    else this.moved = true;
    if (Date.now() - this.lastSnapshot >= this.snapshotEveryMs) await this.flush(false);
  }

  /**
   * Writes the snapshot. A store of thousands of users is megabytes of JSON (13 MB on the default
   * data, 130-150 ms of one synchronous stringify): it is written a few milliseconds at a time, so
   * reads keep being answered meanwhile. The snapshot is consistent: it holds the entries and offset
   * of the moment it starts, and writes replace a user's state object, never change it in place.
   */
  flush(offsetToo = true): Promise<void> {
    const run = this.flushing.then(() => this.writeSnapshot(offsetToo));
    this.flushing = run.catch(() => undefined);
    return run;
  }

  /** `offsetToo`: also when only the offset moved (on flush and close; the interval's snapshots wait for a change of state, or ten intervals). */
  private async writeSnapshot(offsetToo: boolean): Promise<void> {
    if (!this.pos) return;
    const offsetDue = this.moved && (offsetToo || Date.now() - this.lastSnapshot >= 10 * this.snapshotEveryMs);
    if (!this.dirty && !offsetDue) return;
    const head = JSON.stringify({ setVersion: this.pos.setVersion, offset: this.pos.offset });
    const users = [...this.states];
    this.dirty = false;
    this.moved = false;
    this.lastSnapshot = Date.now();
    mkdirSync(dirname(this.path), { recursive: true });
    try {
      await writeCheckedSnapshotInSlices(this.path, snapshotPieces(head, users));
    } catch (err) {
      this.dirty = true;
      throw err;
    }
  }

  async size(): Promise<number> {
    return this.states.size;
  }

  async close(): Promise<void> {
    await this.flush();
  }

  async drop(): Promise<void> {
    // A snapshot being written would be renamed into place after the file is removed.
    await this.flushing;
    this.states.clear();
    this.pos = undefined;
    this.dirty = false;
    this.moved = false;
    // Not rmSync: unlinking a snapshot of megabytes held the event loop 10 ms during a deploy's swap.
    await rm(this.path, { force: true });
  }
}

/**
 * A deep copy of a state: plain data (arrays, objects of the compiler's own fields, numbers,
 * strings). Every event the feature consumer reads costs its user's copy (a served prediction too:
 * its read is captured); structuredClone took about 75 us for a user of the default data, this 10.
 */
function copyOf<T>(value: T): T {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    // The compiler's lists hold either values (a window's bucket numbers, an item's fields, a
    // bucket's distinct texts) or lists and objects, never both: a list of values is copied whole.
    if (value.length > 0 && typeof value[0] !== 'object') return value.slice() as T;
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) out[i] = copyOf<unknown>(value[i]);
    return out as T;
  }
  // The keys are the online compiler's field names (start, n, items...), never a sender's text.
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) out[key] = copyOf<unknown>((value as Record<string, unknown>)[key]);
  return out as T;
}

/** The snapshot's JSON (`Snapshot`) in pieces: the head's fields, then one user at a time. */
function* snapshotPieces(head: string, users: readonly [string, UserState][]): Generator<string> {
  yield `${head.slice(0, -1)},"users":[`;
  for (let i = 0; i < users.length; i++) yield (i === 0 ? '' : ',') + JSON.stringify(users[i]);
  yield ']}';
}
