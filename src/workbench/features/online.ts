import { dict, own } from '../dict.js';
import { SERVICE_EVENTS } from '../event.js';
import { matchesWhere, WINDOWS, windowStart, type Feature, type FeatureValue } from './definition.js';

/**
 * The online compiler: feature definitions become incremental state, updated one event at a time
 * and read at any time. Per user and feature the state is a short list of time buckets (the
 * window's bucket size), so memory per user is bounded by the window, and a bucket leaves exactly
 * when the window no longer covers it. last_n keeps its n newest values instead of buckets.
 */

/** An event as the online state needs it; `time` in ms. */
export interface FeatureEvent {
  event_id: string;
  time: number;
  user_id: string;
  event: string;
  props: Record<string, unknown>;
}

/**
 * A windowed feature's buckets, oldest first, flattened: BUCKET numbers each (start, n, sum, min,
 * max). One array of doubles rather than an object per bucket: V8 keeps it as one block, where
 * objects (and their boxed doubles) were hundreds of thousands of small allocations per set of
 * users, which every young-generation collection had to copy when a deploy brought a set's states in.
 */
type Buckets = number[];

/** distinct_count's buckets, and beside each the distinct values it saw. */
interface DistinctBuckets {
  buckets: Buckets;
  values: string[][];
}

interface LastN {
  /** Newest last: [time, event_id, value]. */
  items: [number, string, string][];
}

type Slot = Buckets | DistinctBuckets | LastN;

/** Numbers per bucket in a Buckets list. */
export const BUCKET = 5;

const LIFETIME_START = Number.MIN_SAFE_INTEGER;

/** One user's feature values read at a moment from the online state, and which of them fell back to defaults. */
export interface FeatureRead {
  values: Record<string, FeatureValue>;
  /** Features that had no matching event in their window and show their declared default. */
  defaulted: string[];
}

/**
 * A user's state: one slot per feature of the set, in order: Buckets (a flat list of numbers),
 * DistinctBuckets for distinct_count, LastN for last_n. Plain data, so snapshots are JSON.
 */
export type UserState = Slot[];

/**
 * Compiled incremental state for one feature set; holds no users itself (see FeatureStore).
 *
 * @example
 * ```ts
 * const online = new OnlineFeatures(appFeatures);
 * const state = online.emptyState();
 * online.update(state, { event_id: 'e1', time: Date.now(), user_id: 'u1', event: 'login', props: {} });
 * console.log(online.read(state, Date.now()));
 * ```
 */
export class OnlineFeatures {
  private readonly byEvent = new Map<string, number[]>();
  private readonly anyEvent: number[] = [];

  constructor(readonly features: readonly Feature[]) {
    features.forEach((f, i) => {
      if (f.source.event === '*') this.anyEvent.push(i);
      else (this.byEvent.get(f.source.event) ?? this.byEvent.set(f.source.event, []).get(f.source.event)!).push(i);
    });
  }

  /** Whether any feature of the set reads this event name (a consumer skips the rest cheaply). */
  reads(eventName: string): boolean {
    return this.byEvent.has(eventName) || (this.anyEvent.length > 0 && !SERVICE_EVENTS.has(eventName));
  }

  emptyState(): UserState {
    return this.features.map((f) => (f.aggregation === 'last_n' ? { items: [] } : f.aggregation === 'distinct_count' ? { buckets: [], values: [] } : []));
  }

  /** Folds one event into a user's state. Returns whether any feature took it. */
  update(state: UserState, e: FeatureEvent): boolean {
    let took = false;
    const named = this.byEvent.get(e.event);
    if (named) for (const i of named) took = this.updateOne(state, i, e) || took;
    if (!SERVICE_EVENTS.has(e.event)) for (const i of this.anyEvent) took = this.updateOne(state, i, e) || took;
    return took;
  }

  /**
   * Every feature's value at time `at` (ms), from the events folded in so far, which must all be
   * before `at`: true when serving now, and in parity checks, which replay up to each sample time.
   */
  read(state: UserState | undefined, at: number): FeatureRead {
    const values = dict<FeatureValue>();
    const defaulted: string[] = [];
    this.features.forEach((f, i) => {
      const v = state ? valueOf(f, state[i]!, at) : undefined;
      if (v === undefined) {
        values[f.name] = Array.isArray(f.default) ? [...f.default] : f.default;
        defaulted.push(f.name);
      } else values[f.name] = v;
    });
    return { values, defaulted };
  }

  /** Drops buckets no window can cover any more at time `at`; returns whether the state is now empty. */
  expire(state: UserState, at: number): boolean {
    let empty = true;
    this.features.forEach((f, i) => {
      const slot = state[i]!;
      const from = windowStart(f.window, at);
      if (!('items' in slot)) {
        const buckets = Array.isArray(slot) ? slot : slot.buckets;
        let drop = 0;
        while (drop < buckets.length && buckets[drop]! < from) drop += BUCKET;
        if (drop > 0) {
          buckets.splice(0, drop);
          if (!Array.isArray(slot)) slot.values.splice(0, drop / BUCKET);
        }
        if (buckets.length > 0) empty = false;
      } else {
        let drop = 0;
        while (drop < slot.items.length && slot.items[drop]![0] < from) drop++;
        if (drop > 0) slot.items.splice(0, drop);
        if (slot.items.length > 0) empty = false;
      }
    });
    return empty;
  }

  private updateOne(state: UserState, i: number, e: FeatureEvent): boolean {
    const f = this.features[i]!;
    if (!matchesWhere(f.source.where, e.props)) return false;
    const slot = state[i]!;
    let numeric = 0;
    let text: string | undefined;
    if (f.prop !== undefined) {
      const v = own(e.props, f.prop);
      if (f.aggregation === 'distinct_count' || f.aggregation === 'last_n') {
        text = categorical(v);
        if (text === undefined) return false;
      } else {
        if (typeof v !== 'number' || !Number.isFinite(v)) return false;
        numeric = v;
      }
    }
    if ('items' in slot) {
      insertNewest(slot, [e.time, e.event_id, text!], f.n!);
      return true;
    }
    const buckets = Array.isArray(slot) ? slot : slot.buckets;
    const bucketMs = WINDOWS[f.window].bucketMs;
    // Lifetime: one bucket with a finite start, since states travel as JSON (which has no Infinity).
    const start = Number.isFinite(bucketMs) ? Math.floor(e.time / bucketMs) * bucketMs : LIFETIME_START;
    // Events arrive mostly in time order: the bucket is nearly always the last one.
    let at = buckets.length - BUCKET;
    while (at >= 0 && buckets[at]! > start) at -= BUCKET;
    if (f.aggregation === 'time_since_last' || f.aggregation === 'first_seen_age') numeric = e.time;
    if (at < 0 || buckets[at] !== start) {
      at += BUCKET;
      buckets.splice(at, 0, start, 0, 0, numeric, numeric);
      if (!Array.isArray(slot)) slot.values.splice(at / BUCKET, 0, []);
    }
    buckets[at + 1]!++;
    buckets[at + 2]! += numeric;
    if (numeric < buckets[at + 3]!) buckets[at + 3] = numeric;
    if (numeric > buckets[at + 4]!) buckets[at + 4] = numeric;
    if (text !== undefined && !Array.isArray(slot)) {
      const values = slot.values[at / BUCKET]!;
      if (!values.includes(text)) values.push(text);
    }
    return true;
  }
}

/** The text of a categorical prop value; objects, arrays and null are not categories. */
function categorical(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'boolean') return String(v);
  return undefined;
}

/** Keeps the n newest items in (time, event_id) order. */
function insertNewest(slot: LastN, item: [number, string, string], n: number): void {
  const items = slot.items;
  let at = items.length;
  while (at > 0 && later(items[at - 1]!, item)) at--;
  items.splice(at, 0, item);
  if (items.length > n) items.splice(0, items.length - n);
}

const later = (a: [number, string, string], b: [number, string, string]) => a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);

function valueOf(f: Feature, slot: Slot, at: number): FeatureValue | undefined {
  const from = windowStart(f.window, at);
  if ('items' in slot) {
    const values: string[] = [];
    for (let k = slot.items.length - 1; k >= 0 && values.length < f.n!; k--) {
      const [time, , value] = slot.items[k]!;
      if (time >= at) continue;
      if (time < from) break;
      values.push(value);
    }
    return values.length > 0 ? values : undefined;
  }
  const buckets = Array.isArray(slot) ? slot : slot.buckets;
  let n = 0;
  let sum = 0;
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let distinct: Set<string> | undefined;
  for (let b = 0; b < buckets.length; b += BUCKET) {
    if (buckets[b]! < from) continue;
    n += buckets[b + 1]!;
    sum += buckets[b + 2]!;
    if (buckets[b + 3]! < min) min = buckets[b + 3]!;
    if (buckets[b + 4]! > max) max = buckets[b + 4]!;
    if (!Array.isArray(slot)) for (const v of slot.values[b / BUCKET]!) (distinct ??= new Set()).add(v);
  }
  if (n === 0) return undefined;
  switch (f.aggregation) {
    case 'count':
      return n;
    case 'sum':
      return sum;
    case 'mean':
      return sum / n;
    case 'min':
      return min;
    case 'max':
      return max;
    case 'distinct_count':
      return distinct?.size ?? 0;
    case 'time_since_last':
      return (at - max) / 1000;
    case 'first_seen_age':
      return (at - min) / 1000;
    case 'last_n':
      return undefined; // kept as a list, above
  }
}
