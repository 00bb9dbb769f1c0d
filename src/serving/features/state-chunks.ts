import type { UserState } from '../../workbench/features/online.js';

/**
 * Users' online states as flat data, for the archive bootstrap's worker process to hand them to the
 * main thread in chunks: every number in a Float64Array (moved, not copied) and each text once,
 * the first time a chunk refers to it, in a JSON list. Rebuilding the states from it is a tight
 * loop of object literals, several times faster than deserializing the same states from a
 * structured clone or from JSON (a user's hour buckets are hundreds of small objects), and the main
 * thread is what the service answers requests on; a text that many states hold (a page, an item)
 * is one string shared by all of them.
 *
 * Per user: the user's text, the number of slots, then each slot: a bucket list as its length k
 * followed by k times (start, n, sum, min, max, the number of distinct values or -1 without them,
 * those values' texts); last_n's items as -(m + 1) followed by m times (time, event_id's text,
 * value's text). A text is its index among all the texts sent so far. A chunk of users is their texts.
 */
export interface StateChunk {
  /** The texts first referred to in this chunk, a JSON list. */
  texts: string;
  numbers: Float64Array;
}

type Bucket = Extract<UserState[number], unknown[]>[number];
type LastN = Exclude<UserState[number], unknown[]>;

/** The worker's side: turns states into chunks, remembering the texts already sent. */
export class StateChunkWriter {
  private readonly sent = new Map<string, number>();
  private fresh: string[] = [];

  /** The chunk of these users' states. */
  states(entries: readonly (readonly [string, UserState])[]): StateChunk {
    const out: number[] = [];
    for (const [user, state] of entries) {
      out.push(this.text(user), state.length);
      for (const slot of state) {
        if (Array.isArray(slot)) {
          out.push(slot.length);
          for (const b of slot) {
            out.push(b.start, b.n, b.sum, b.min, b.max, b.values ? b.values.length : -1);
            if (b.values) for (const v of b.values) out.push(this.text(v));
          }
        } else {
          out.push(-(slot.items.length + 1));
          for (const [time, id, value] of slot.items) out.push(time, this.text(id), this.text(value));
        }
      }
    }
    return this.chunk(out);
  }

  /** The chunk of these users. */
  users(users: readonly string[]): StateChunk {
    return this.chunk(users.map((u) => this.text(u)));
  }

  private text(s: string): number {
    let i = this.sent.get(s);
    if (i === undefined) {
      i = this.sent.size;
      this.sent.set(s, i);
      this.fresh.push(s);
    }
    return i;
  }

  private chunk(numbers: number[]): StateChunk {
    const texts = JSON.stringify(this.fresh);
    this.fresh = [];
    return { texts, numbers: Float64Array.from(numbers) };
  }
}

/** The main thread's side: rebuilds the states of the chunks a StateChunkWriter wrote, in the order it wrote them. */
export class StateChunkReader {
  private readonly texts: string[] = [];

  /** Rebuilds a chunk's states into `into`; returns how many users it held. */
  states(chunk: StateChunk, into: Map<string, UserState>): number {
    const texts = this.learn(chunk);
    const x = chunk.numbers;
    let p = 0;
    let users = 0;
    while (p < x.length) {
      const user = texts[x[p]!]!;
      const slots = x[p + 1]!;
      p += 2;
      const state: UserState = [];
      for (let i = 0; i < slots; i++) {
        const k = x[p++]!;
        if (k >= 0) {
          const buckets: Bucket[] = [];
          for (let j = 0; j < k; j++) {
            const start = x[p]!;
            const n = x[p + 1]!;
            const sum = x[p + 2]!;
            const min = x[p + 3]!;
            const max = x[p + 4]!;
            const distinct = x[p + 5]!;
            p += 6;
            if (distinct < 0) buckets.push({ start, n, sum, min, max });
            else {
              const values: string[] = [];
              for (let v = 0; v < distinct; v++) values.push(texts[x[p++]!]!);
              buckets.push({ start, n, sum, min, max, values });
            }
          }
          state.push(buckets);
        } else {
          const items: LastN['items'] = [];
          for (let j = 0; j < -k - 1; j++, p += 3) items.push([x[p]!, texts[x[p + 1]!]!, texts[x[p + 2]!]!]);
          state.push({ items });
        }
      }
      into.set(user, state);
      users++;
    }
    return users;
  }

  /** Adds a chunk's users to `into`. */
  users(chunk: StateChunk, into: Set<string>): void {
    const texts = this.learn(chunk);
    for (const i of chunk.numbers) into.add(texts[i]!);
  }

  private learn(chunk: StateChunk): string[] {
    for (const s of JSON.parse(chunk.texts) as string[]) this.texts.push(s);
    return this.texts;
  }
}

/** What a user's states cost to rebuild, roughly in objects: the measure of a chunk's size. */
export function stateUnits(state: UserState): number {
  let units = 1;
  for (const slot of state) {
    if (!Array.isArray(slot)) units += slot.items.length;
    else for (const b of slot) units += 1 + (b.values?.length ?? 0);
  }
  return units;
}
