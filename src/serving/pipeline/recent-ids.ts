import { hash, randomBytes } from 'node:crypto';

/**
 * The event ids ingest has accepted recently, so that a retried batch is not appended twice.
 * Bounded twice: ids older than the window are forgotten, and past `maxIds` the oldest go first
 * (a retry later than either bound would be appended again; both are settings).
 *
 * An id is kept as 64 bits of a keyed hash, in typed arrays: a Map of the ids themselves cost about
 * 100 bytes an id on the heap (a string, a boxed time, the entry), 200 MB at the default bound of
 * 2 million, all of it for the garbage collector to trace and every new id promoted into it; this
 * costs 25-50 bytes an id, in a few blocks the collector never looks into. At that bound a new id is
 * taken for one held (and refused as a duplicate) with a probability of about 2^-43; the hash is
 * salted per process, so ids cannot be chosen to collide, or to crowd one stretch of the table.
 */
export class RecentIds {
  private readonly salt = randomBytes(16).toString('latin1');
  /** The entries in arrival order, a ring: each key's two halves, its time, and whether it was deleted since. */
  private hi: Int32Array;
  private lo: Int32Array;
  private at: Float64Array;
  private gone: Uint8Array;
  /** Ring positions (counted from 0 forever; `% capacity` is the slot) of the oldest entry held and one past the newest. */
  private first = 0;
  private end = 0;
  /** Open addressing (linear probing) from a key to its ring slot + 1; 0: empty, -1: a removed entry's place. */
  private table: Int32Array;
  /** Table places not empty (entries and removed ones' places). */
  private taken = 0;
  private live = 0;
  /** The last id hashed and its key: ingest asks `has` and then `add` for the same id. */
  private lastId: string | undefined;
  private lastHi = 0;
  private lastLo = 0;

  constructor(
    private readonly windowMs: number,
    private readonly maxIds: number,
    initialCapacity = 1024,
  ) {
    // A power of two, for the table's mask.
    initialCapacity = 2 ** Math.ceil(Math.log2(Math.max(2, initialCapacity)));
    this.hi = new Int32Array(initialCapacity);
    this.lo = new Int32Array(initialCapacity);
    this.at = new Float64Array(initialCapacity);
    this.gone = new Uint8Array(initialCapacity);
    this.table = new Int32Array(initialCapacity * 2);
  }

  has(id: string): boolean {
    this.key(id);
    return this.find(this.lastHi, this.lastLo) >= 0;
  }

  add(id: string, atMs: number): void {
    this.key(id);
    const { lastHi: hi, lastLo: lo } = this;
    const slot = this.find(hi, lo);
    // As a Map's `set`: an id already held keeps its place and takes the new time.
    if (slot >= 0) {
      this.at[slot] = atMs;
      return;
    }
    if (this.end - this.first === this.hi.length) this.makeRoom();
    const at = this.end % this.hi.length;
    this.hi[at] = hi;
    this.lo[at] = lo;
    this.at[at] = atMs;
    this.gone[at] = 0;
    this.end++;
    this.live++;
    this.place(lo, at);
    if (this.live > this.maxIds) {
      while (this.gone[this.first % this.hi.length]) this.first++;
      this.dropHead();
    }
  }

  delete(id: string): void {
    this.key(id);
    const slot = this.find(this.lastHi, this.lastLo);
    if (slot < 0) return;
    this.unplace(slot);
    this.gone[slot] = 1;
    this.live--;
  }

  /** Forgets ids that arrived before `nowMs - window`. */
  expire(nowMs: number): void {
    const cutoff = nowMs - this.windowMs;
    while (this.first < this.end) {
      const slot = this.first % this.hi.length;
      if (!this.gone[slot] && this.at[slot]! >= cutoff) break;
      this.dropHead();
    }
  }

  get size(): number {
    return this.live;
  }

  /** Drops the ring's oldest slot: its entry, unless deleted already. */
  private dropHead(): void {
    const slot = this.first % this.hi.length;
    this.first++;
    if (this.gone[slot]) return;
    this.unplace(slot);
    this.live--;
  }

  private key(id: string): void {
    if (id === this.lastId) return;
    // UTF-16 as it is: two ids that differ only in a lone surrogate stay two keys.
    const digest = hash('sha256', Buffer.from(this.salt + id, 'utf16le'), 'buffer');
    this.lastHi = digest.readInt32LE(0);
    this.lastLo = digest.readInt32LE(4);
    this.lastId = id;
  }

  private home(lo: number): number {
    return (lo >>> 0) & (this.table.length - 1);
  }

  /** The ring slot holding this key, or -1. */
  private find(hi: number, lo: number): number {
    const mask = this.table.length - 1;
    for (let i = this.home(lo); ; i = (i + 1) & mask) {
      const t = this.table[i]!;
      if (t === 0) return -1;
      if (t > 0 && this.lo[t - 1] === lo && this.hi[t - 1] === hi) return t - 1;
    }
  }

  private place(lo: number, slot: number): void {
    const mask = this.table.length - 1;
    let i = this.home(lo);
    while (this.table[i]! > 0) i = (i + 1) & mask;
    if (this.table[i] === 0) this.taken++;
    this.table[i] = slot + 1;
    // Removed entries' places fill the table too (a search walks over them): rebuilt at 3/4.
    if (this.taken * 4 > this.table.length * 3) this.rebuild(this.hi.length);
  }

  private unplace(slot: number): void {
    const mask = this.table.length - 1;
    for (let i = this.home(this.lo[slot]!); ; i = (i + 1) & mask) {
      if (this.table[i] === slot + 1) {
        this.table[i] = -1;
        return;
      }
    }
  }

  /**
   * The ring is full: it doubles (up to what `maxIds` and the deleted entries in it need), or, when
   * half of it is deleted entries, keeps its size and drops them.
   */
  private makeRoom(): void {
    const capacity = this.hi.length;
    const grow = this.live * 2 > capacity;
    this.rebuild(grow ? capacity * 2 : capacity);
  }

  /** Copies the live entries, oldest first, into a ring of `capacity` and a table twice as large. */
  private rebuild(capacity: number): void {
    const hi = new Int32Array(capacity);
    const lo = new Int32Array(capacity);
    const at = new Float64Array(capacity);
    const gone = new Uint8Array(capacity);
    let n = 0;
    for (let p = this.first; p < this.end; p++) {
      const slot = p % this.hi.length;
      if (this.gone[slot]) continue;
      hi[n] = this.hi[slot]!;
      lo[n] = this.lo[slot]!;
      at[n] = this.at[slot]!;
      n++;
    }
    this.hi = hi;
    this.lo = lo;
    this.at = at;
    this.gone = gone;
    this.first = 0;
    this.end = n;
    this.table = new Int32Array(capacity * 2);
    this.taken = 0;
    const mask = this.table.length - 1;
    for (let slot = 0; slot < n; slot++) {
      let i = this.home(lo[slot]!);
      while (this.table[i] !== 0) i = (i + 1) & mask;
      this.table[i] = slot + 1;
      this.taken++;
    }
  }
}
