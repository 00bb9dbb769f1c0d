import type { EnrichedEvent } from '../../workbench/event.js';

/**
 * The newest events of the log, decoded, by offset: ingest puts each batch here once it is
 * durable, and consumers that keep up take their batches from here instead of reading and
 * parsing the log again (three consumers would otherwise parse every event three times).
 * A consumer that falls behind the ring reads the log as usual.
 *
 * The ring is bounded by count and, when ingest says how large each event's record is, by bytes:
 * a count alone let a burst of large events (props near their size limit) keep hundreds of MB
 * alive after every consumer had read them (issue 10: a hostile burst left the service at 700 MB).
 *
 * Ingest puts a batch a few microtasks after the log makes it durable, and the log wakes waiting
 * consumers first: a consumer that read the log as soon as it woke found the ring a step behind and
 * decoded every record itself. `waitFor` lets it wait for the put instead.
 */
export class RecentEvents {
  private readonly events: (EnrichedEvent | undefined)[];
  private readonly offsets: Float64Array;
  private readonly sizes: Float64Array;
  private bytes = 0;
  /** The oldest offset the ring may still hold; eviction moves it forward. */
  private oldest = -1;
  /** One past the newest offset put. */
  private end = 0;
  /** Consumers waiting for an offset to be put (or to be evicted, when it never will be). */
  private readonly waiters = new Map<() => void, number>();

  /** `maxBytes` bounds the sum of the record sizes given to `put` (records' JSON text, in UTF-16 units). */
  constructor(
    readonly capacity = 200_000,
    readonly maxBytes = 48 * 1024 * 1024,
  ) {
    this.events = new Array(capacity);
    this.offsets = new Float64Array(capacity).fill(-1);
    this.sizes = new Float64Array(capacity);
  }

  /**
   * Events at offsets `at` to `at + events.length - 1`, or, when `at` is a list, each at its own
   * offset (a log shared with other writers: the offsets between are theirs, never held here, so a
   * consumer reads them from the log). `sizes` (their records' lengths) lets the ring keep to its
   * byte bound.
   */
  put(at: number | readonly number[], events: readonly EnrichedEvent[], sizes?: readonly number[]): void {
    if (events.length === 0) return;
    const list = typeof at === 'number' ? undefined : at;
    let first = list ? list[0]! : (at as number);
    let end = first + events.length;
    if (list) {
      end = first + 1;
      for (const o of list) {
        if (o < first) first = o;
        if (o >= end) end = o + 1;
      }
    }
    if (this.oldest < 0) this.oldest = first;
    for (let i = 0; i < events.length; i++) {
      const offset = list ? list[i]! : first + i;
      // A batch that arrives after the ring evicted past it is left to the log.
      if (offset < this.oldest) continue;
      const slot = offset % this.capacity;
      if (this.offsets[slot]! >= 0) this.bytes -= this.sizes[slot]!;
      this.events[slot] = events[i];
      this.offsets[slot] = offset;
      this.sizes[slot] = sizes?.[i] ?? 0;
      this.bytes += this.sizes[slot]!;
    }
    this.end = Math.max(this.end, end);
    this.oldest = Math.max(this.oldest, end - this.capacity);
    while (this.bytes > this.maxBytes && this.oldest < end) this.evictOldest();
    if (this.waiters.size > 0) this.wake();
  }

  /**
   * Whether `offset` may still come to the ring: not put yet, and not before what the ring has
   * dropped. A ring never put to expects nothing (a consumer reading a backlog after a restart).
   */
  expects(offset: number): boolean {
    return this.oldest >= 0 && offset >= this.oldest && this.offsets[offset % this.capacity] !== offset;
  }

  /**
   * Resolves once the ring holds `offset` or has dropped past it, or after `timeoutMs` (an offset
   * another writer appended to a shared log never comes here).
   */
  waitFor(offset: number, timeoutMs: number): Promise<void> {
    if (!this.expects(offset) || !(timeoutMs > 0)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.waiters.set(done, offset);
    });
  }

  /** Up to `max` consecutive events from offset `from`, as far as the ring holds them. */
  take(from: number, max: number): EnrichedEvent[] {
    const out: EnrichedEvent[] = [];
    for (let o = from; out.length < max; o++) {
      const slot = o % this.capacity;
      if (this.offsets[slot] !== o) break;
      out.push(this.events[slot]!);
    }
    return out;
  }

  /**
   * Drops the events before `offset`, which every consumer has read: the ring holds what consumers
   * have yet to take, so memory falls back once a burst is handled.
   */
  release(offset: number): void {
    const until = Math.min(offset, this.end);
    while (this.oldest >= 0 && this.oldest < until) this.evictOldest();
    if (this.waiters.size > 0) this.wake();
  }

  /** The sum of the sizes of the records held (0 when ingest gives none). */
  get heldBytes(): number {
    return this.bytes;
  }

  private wake(): void {
    for (const [done, offset] of this.waiters) if (!this.expects(offset)) done();
  }

  private evictOldest(): void {
    const slot = this.oldest % this.capacity;
    if (this.offsets[slot] === this.oldest) {
      this.bytes -= this.sizes[slot]!;
      this.events[slot] = undefined;
      this.offsets[slot] = -1;
      this.sizes[slot] = 0;
    }
    this.oldest++;
  }
}
