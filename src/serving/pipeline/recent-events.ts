import type { EnrichedEvent } from '../../workbench/event.js';

/**
 * The newest events of the log, decoded, by offset: ingest puts each batch here once it is
 * durable, and consumers that keep up take their batches from here instead of reading and
 * parsing the log again (three consumers would otherwise parse every event three times).
 * A consumer that falls behind the ring reads the log as usual.
 */
export class RecentEvents {
  private readonly events: (EnrichedEvent | undefined)[];
  private readonly offsets: Float64Array;

  constructor(readonly capacity = 200_000) {
    this.events = new Array(capacity);
    this.offsets = new Float64Array(capacity).fill(-1);
  }

  put(first: number, events: readonly EnrichedEvent[]): void {
    for (let i = 0; i < events.length; i++) {
      const slot = (first + i) % this.capacity;
      this.events[slot] = events[i];
      this.offsets[slot] = first + i;
    }
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
}
