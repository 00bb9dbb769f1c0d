/**
 * A small embedded time-series store for low-cardinality metrics (events per minute by
 * `{event, country}`, revenue, response times), with memory bounded per series and in the number of
 * series.
 *
 * Kinds. A series is a `count` or a `sum` (a bucket holds the total of its values; an empty bucket
 * is 0: nothing happened) or a `gauge` (a bucket holds the sum and the number of its values and
 * reads as their mean; an empty bucket is unknown and is not returned: nothing was measured). Its
 * first `add` fixes the kind. Values are checked: a non-finite value is refused (counted in
 * `nonFinite`: one NaN would poison every sum after it), and with a `clock`, a time more than
 * `maxAheadMs` after it is refused (counted in `future`: a time a year ahead would otherwise move
 * `now` a year on, and every real point after it would fall out of the windows).
 *
 * Each series keeps two ring buffers of counts:
 * - fine buckets (default 60 s) for the last `fineRetentionMs` (default 6 h = 360 buckets): enough
 *   to see the current hour minute by minute and draw a recent dashboard;
 * - hourly buckets for the last `hourRetentionMs` (default 5 weeks = 840 buckets): enough for a
 *   seasonal baseline from the same hour of week in the 4 previous weeks.
 * Keeping 5 weeks of minutes instead would cost 50,400 buckets (~400 KB) per series.
 *
 * Memory per series with the defaults: (360 + 840) Float64 = 9,600 bytes of counts, plus about
 * 1 KB of JS heap for the key, the labels and the objects (measured: 10,000 series with 3 labels
 * each took 9,600 B of array buffers and 1,000 B of heap per series), so ~10.6 KB. At the default
 * cap of 10,000 series that is ~106 MB; lower `maxSeries` where that is too much. `bytesPerSeries`
 * gives the count part for the configured sizes.
 *
 * Time is event time, never the wall clock: the store's `now` is the latest event time seen (or
 * passed to `advance`), so replays and tests run as fast as they can feed events. Buckets that fall
 * out of a window as `now` moves on are evicted (overwritten lazily, and never read again).
 */

export type Labels = Readonly<Record<string, string>>;

export interface TimeSeriesStoreOptions {
  /** Width of a fine bucket in ms; must divide one hour. Default 60,000 (one minute). */
  bucketMs?: number;
  /** How far back fine buckets are kept. Default 6 hours. */
  fineRetentionMs?: number;
  /** How far back hourly buckets are kept. Default 5 weeks. */
  hourRetentionMs?: number;
  /** Most series kept; events of further new series are refused and counted in `dropped`. Default 10,000. */
  maxSeries?: number;
  /** The present (the service's clock): points stamped more than `maxAheadMs` after it are refused. */
  clock?: () => number;
  /** Default 1 hour. */
  maxAheadMs?: number;
}

export type SeriesKind = 'count' | 'sum' | 'gauge';

/** A bucket: its start time (ms since the epoch) and the sum of the values added in it. */
export interface Bucket {
  start: number;
  value: number;
}

export interface SeriesInfo {
  key: string;
  name: string;
  kind: SeriesKind;
  labels: Labels;
  /** Start of the first fine bucket that holds data: earlier buckets are unknown, not zero. */
  firstMs: number;
}

export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;
export const WEEK_MS = 7 * DAY_MS;

/** `name{a="1",b="2"}` with labels sorted by name and values escaped as in Prometheus. */
export function seriesKey(name: string, labels: Labels): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${String(labels[k]).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return `${name}{${parts.join(',')}}`;
}

/**
 * Counts for consecutive buckets `index` (= floor(time / width)) in a fixed array, slot
 * `index mod length`. `head` is the newest index written; moving it forward zeroes the slots it
 * passes over, so a slot never mixes two periods. The store checks retention against its global
 * `now` before calling, so a series that went silent reads as zeros, never as stale counts.
 */
class Ring {
  private readonly values: Float64Array;
  private head: number;

  constructor(length: number, firstIndex: number) {
    this.values = new Float64Array(length);
    this.head = firstIndex - 1;
  }

  add(index: number, value: number): void {
    const n = this.values.length;
    if (index > this.head) {
      if (index - this.head >= n) this.values.fill(0);
      else for (let i = this.head + 1; i <= index; i++) this.values[slot(i, n)] = 0;
      this.head = index;
    }
    this.values[slot(index, n)]! += value;
  }

  /** The count at `index`, which the caller has checked is inside the retention window. */
  get(index: number): number {
    return index > this.head ? 0 : this.values[slot(index, this.values.length)]!;
  }
}

const slot = (index: number, n: number) => ((index % n) + n) % n;

interface Series extends SeriesInfo {
  fine: Ring;
  hourly: Ring;
  /** Gauges: the number of values in each bucket. */
  fineN?: Ring;
  hourlyN?: Ring;
}

export class TimeSeriesStore {
  readonly bucketMs: number;
  readonly fineLength: number;
  readonly hourLength: number;
  readonly maxSeries: number;
  /** Events refused because their series would have exceeded `maxSeries`. */
  dropped = 0;
  /** Events older than the hourly window when they arrived (kept nowhere). */
  late = 0;
  /** Points refused because their value was NaN or infinite. */
  nonFinite = 0;
  /** Points refused because they were stamped more than `maxAheadMs` after the clock. */
  future = 0;
  private readonly clock?: () => number;
  private readonly maxAheadMs: number;
  private nowMs = -Infinity;
  private readonly byKey = new Map<string, Series>();

  constructor(options: TimeSeriesStoreOptions = {}) {
    this.bucketMs = options.bucketMs ?? MINUTE_MS;
    if (!(this.bucketMs > 0) || HOUR_MS % this.bucketMs !== 0) throw new RangeError('bucketMs must divide one hour');
    this.fineLength = Math.ceil((options.fineRetentionMs ?? 6 * HOUR_MS) / this.bucketMs);
    this.hourLength = Math.ceil((options.hourRetentionMs ?? 5 * WEEK_MS) / HOUR_MS);
    this.maxSeries = options.maxSeries ?? 10_000;
    this.clock = options.clock;
    this.maxAheadMs = options.maxAheadMs ?? HOUR_MS;
  }

  /** Bytes of counts each series holds (the rings); add ~1 KB of heap per series for keys and objects. */
  get bytesPerSeries(): number {
    return (this.fineLength + this.hourLength) * Float64Array.BYTES_PER_ELEMENT;
  }

  /** The latest event time seen or advanced to. */
  get now(): number {
    return this.nowMs;
  }

  /** Moves event time forward without an event (a quiet period), evicting what falls out of the windows. */
  advance(timeMs: number): void {
    if (timeMs > this.nowMs) this.nowMs = timeMs;
  }

  /**
   * Adds `value` to the series `name{labels}` (of `kind`, fixed by its first point) at event time
   * `timeMs`. Returns false when the point was not stored: a non-finite value or time (counted in
   * `nonFinite`), a time too far ahead of the clock (`future`), a new series beyond the cap
   * (`dropped`) or a time older than the hourly window (`late`). `key`: `seriesKey(name, labels)`,
   * when the caller has it already.
   */
  add(name: string, labels: Labels, timeMs: number, value = 1, kind: SeriesKind = 'count', key = seriesKey(name, labels)): boolean {
    if (!Number.isFinite(value) || !Number.isFinite(timeMs)) {
      this.nonFinite++;
      return false;
    }
    if (this.clock && timeMs > this.clock() + this.maxAheadMs) {
      this.future++;
      return false;
    }
    let s = this.byKey.get(key);
    if (!s) {
      if (this.byKey.size >= this.maxSeries) {
        this.dropped++;
        return false;
      }
      const fineIndex = Math.floor(timeMs / this.bucketMs);
      s = {
        key,
        name,
        kind,
        labels: Object.freeze({ ...labels }),
        firstMs: fineIndex * this.bucketMs,
        fine: new Ring(this.fineLength, fineIndex),
        hourly: new Ring(this.hourLength, Math.floor(timeMs / HOUR_MS)),
        ...(kind === 'gauge' ? { fineN: new Ring(this.fineLength, fineIndex), hourlyN: new Ring(this.hourLength, Math.floor(timeMs / HOUR_MS)) } : {}),
      };
      this.byKey.set(key, s);
    }
    this.advance(timeMs);
    const hourIndex = Math.floor(timeMs / HOUR_MS);
    if (hourIndex < this.oldestHourIndex()) {
      this.late++;
      return false;
    }
    s.hourly.add(hourIndex, value);
    s.hourlyN?.add(hourIndex, 1);
    const fineIndex = Math.floor(timeMs / this.bucketMs);
    if (fineIndex >= this.oldestFineIndex()) {
      s.fine.add(fineIndex, value);
      s.fineN?.add(fineIndex, 1);
    }
    return true;
  }

  series(): SeriesInfo[] {
    return [...this.byKey.values()].map(({ key, name, kind, labels, firstMs }) => ({ key, name, kind, labels, firstMs }));
  }

  /** Fine buckets overlapping [fromMs, toMs) that are known: inside the window and after the series began. */
  minutes(key: string, fromMs: number, toMs: number): Bucket[] {
    const s = this.byKey.get(key);
    if (!s) return [];
    const first = Math.max(this.oldestFineIndex(), Math.floor(s.firstMs / this.bucketMs));
    return read(s.fine, s.fineN, this.bucketMs, first, this.lastIndex(this.bucketMs, this.fineLength), fromMs, toMs);
  }

  /** Hourly buckets overlapping [fromMs, toMs) that are known (the current hour is partial). */
  hours(key: string, fromMs: number, toMs: number): Bucket[] {
    const s = this.byKey.get(key);
    if (!s) return [];
    const first = Math.max(this.oldestHourIndex(), Math.floor(s.firstMs / HOUR_MS));
    return read(s.hourly, s.hourlyN, HOUR_MS, first, this.lastIndex(HOUR_MS, this.hourLength), fromMs, toMs);
  }

  /** The value of the hour starting at `startMs` (a gauge's mean), or undefined when that hour is not known. */
  hour(key: string, startMs: number): number | undefined {
    return this.hours(key, startMs, startMs + 1)[0]?.value;
  }

  /** Reads may run ahead of `now` (those buckets are 0: nothing has arrived), but by at most one window. */
  private lastIndex(width: number, length: number): number {
    return Math.floor(this.nowMs / width) + length;
  }

  private oldestFineIndex(): number {
    return Math.floor(this.nowMs / this.bucketMs) - this.fineLength + 1;
  }

  private oldestHourIndex(): number {
    return Math.floor(this.nowMs / HOUR_MS) - this.hourLength + 1;
  }
}

/** The buckets in range; for a gauge (`counts` given) the mean of each, and none where nothing was measured. */
function read(ring: Ring, counts: Ring | undefined, width: number, firstIndex: number, lastIndex: number, fromMs: number, toMs: number): Bucket[] {
  const out: Bucket[] = [];
  for (let i = Math.max(firstIndex, Math.floor(fromMs / width)); i <= lastIndex && i * width < toMs; i++) {
    if (!counts) out.push({ start: i * width, value: ring.get(i) });
    else if (counts.get(i) > 0) out.push({ start: i * width, value: ring.get(i) / counts.get(i) });
  }
  return out;
}
