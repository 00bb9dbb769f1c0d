import { BUCKET, type UserState } from '../../workbench/features/online.js';

/**
 * Users' online states as flat data, for the archive bootstrap's worker process to hand them to the
 * main thread in chunks: every number in a Float64Array (moved, not copied) and each text once,
 * the first time a chunk refers to it, in a JSON list. Rebuilding the states from it is a tight
 * loop, faster than deserializing the same states from a structured clone or from JSON, and the
 * main thread is what the service answers requests on; a text that many states hold (a page, an
 * item) is one string shared by all of them.
 *
 * Per user: the user's text, the number of slots, then each slot: a tag and its content.
 * BUCKETS: the list's length L and its L numbers; DISTINCT: the same, then for each bucket the
 * number of its distinct values and their texts; LAST_N: the number of items m and m times (time,
 * event_id's text, value's text). A text is its index among all the texts sent so far. A chunk of
 * users is their texts.
 */
export interface StateChunk {
  /** The texts first referred to in this chunk, a JSON list. */
  texts: string;
  numbers: Float64Array;
}

type Slot = UserState[number];
type LastN = Extract<Slot, { items: unknown }>;

const BUCKETS = 0;
const DISTINCT = 1;
const LAST_N = 2;

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
          out.push(BUCKETS, slot.length);
          for (const x of slot) out.push(x);
        } else if ('buckets' in slot) {
          out.push(DISTINCT, slot.buckets.length);
          for (const x of slot.buckets) out.push(x);
          for (const values of slot.values) {
            out.push(values.length);
            for (const v of values) out.push(this.text(v));
          }
        } else {
          out.push(LAST_N, slot.items.length);
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
        const tag = x[p]!;
        const length = x[p + 1]!;
        p += 2;
        if (tag === LAST_N) {
          const items: LastN['items'] = [];
          for (let j = 0; j < length; j++, p += 3) items.push([x[p]!, texts[x[p + 1]!]!, texts[x[p + 2]!]!]);
          state.push({ items });
          continue;
        }
        // Pushed one by one: a list of doubles from the start, kept by V8 as one block (see Buckets).
        const buckets: number[] = [];
        for (let j = 0; j < length; j++) buckets.push(x[p + j]!);
        p += length;
        if (tag === BUCKETS) {
          state.push(buckets);
          continue;
        }
        const values: string[][] = [];
        for (let b = 0; b < length / BUCKET; b++) {
          const bucket: string[] = [];
          for (let k = x[p++]!; k > 0; k--) bucket.push(texts[x[p++]!]!);
          values.push(bucket);
        }
        state.push({ buckets, values });
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

/** What a user's states cost to rebuild, roughly in objects and numbers: the measure of a chunk's size. */
export function stateUnits(state: UserState): number {
  let units = 1;
  for (const slot of state) {
    if (Array.isArray(slot)) units += 1 + slot.length / BUCKET;
    else if ('buckets' in slot) units += 1 + slot.buckets.length / BUCKET + slot.values.reduce((a, v) => a + v.length, 0);
    else units += slot.items.length;
  }
  return units;
}
