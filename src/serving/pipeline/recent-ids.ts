/**
 * The event ids ingest has accepted recently, so that a retried batch is not appended twice.
 * Bounded twice: ids older than the window are forgotten, and past `maxIds` the oldest go first
 * (a retry later than either bound would be appended again; both are settings).
 */
export class RecentIds {
  // Map keeps insertion order, which is arrival order: expiry only ever looks at the head.
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly windowMs: number,
    private readonly maxIds: number,
  ) {}

  has(id: string): boolean {
    return this.seen.has(id);
  }

  add(id: string, atMs: number): void {
    this.seen.set(id, atMs);
    if (this.seen.size > this.maxIds) this.seen.delete(this.seen.keys().next().value!);
  }

  delete(id: string): void {
    this.seen.delete(id);
  }

  /** Forgets ids that arrived before `nowMs - window`. */
  expire(nowMs: number): void {
    const cutoff = nowMs - this.windowMs;
    for (const [id, at] of this.seen) {
      if (at >= cutoff) break;
      this.seen.delete(id);
    }
  }

  get size(): number {
    return this.seen.size;
  }
}
