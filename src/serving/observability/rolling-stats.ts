/**
 * Order statistics over a sliding window, kept up to date one value at a time, so that a detector
 * can read the median, the MAD and the k-th largest of thousands of recent values every hour of
 * every series without sorting or selecting them from scratch (a catch-up of 120 days of ~100
 * series did that 800,000 times: 45 s of CPU). The values are also kept sorted: a new one is put in
 * place by binary search and a move of the values above it (a memmove of a few KB at the window
 * sizes used: a few hundred ns), and the one leaving the window is taken out the same way.
 *
 * The order statistics (median, MAD, k-th largest) are exactly those computed from scratch
 * (`robustSpread`, `median`, a selection): the same values give the same numbers whatever the
 * algorithm. The sum of |v| is kept exactly (Shewchuk's expansions, as Python's math.fsum) and read
 * correctly rounded, so it depends on the values in the window only, never on their order or on
 * those that left (a running sum would drift, and a window of zeros would stop summing to 0); it
 * differs from a loop's sum in the last bits at most.
 */

/** A multiset of numbers kept sorted ascending. */
export class SortedValues {
  private a: Float64Array;
  private n = 0;

  constructor(capacity = 64) {
    this.a = new Float64Array(Math.max(1, capacity));
  }

  get size(): number {
    return this.n;
  }

  /** The i-th smallest value (0-based). */
  at(i: number): number {
    return this.a[i]!;
  }

  insert(v: number): void {
    if (this.n === this.a.length) {
      const grown = new Float64Array(this.a.length * 2);
      grown.set(this.a);
      this.a = grown;
    }
    const i = this.lowerBound(v);
    this.a.copyWithin(i + 1, i, this.n);
    this.a[i] = v;
    this.n++;
  }

  /** Removes one occurrence of `v` (which must be there). */
  remove(v: number): void {
    let i = this.lowerBound(v);
    // Not found by the search only for a NaN (never ordered): looked for one by one. (A -0 may take
    // a +0's place: equal in every figure read here.)
    if (i >= this.n || this.a[i] !== v) {
      i = -1;
      for (let j = 0; j < this.n && i < 0; j++) if (this.a[j] !== this.a[j]) i = j;
      if (i < 0) return;
    }
    this.a.copyWithin(i, i + 1, this.n);
    this.n--;
  }

  /** The first index whose value is not below `v`. */
  lowerBound(v: number): number {
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.a[mid]! < v) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The first index whose value is above `v`. */
  upperBound(v: number): number {
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.a[mid]! <= v) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The median (the mean of the two middle values for an even size); NaN when empty. */
  median(): number {
    const n = this.n;
    if (n === 0) return Number.NaN;
    const hi = this.a[n >> 1]!;
    return n % 2 ? hi : (hi + this.a[(n >> 1) - 1]!) / 2;
  }

  /**
   * The median of |v - m| over the values, for `m` their median: the deviations of the values
   * below m grow leftwards and those of the others rightwards, two sorted sequences whose k-th
   * smallest joint element is found by binary search, in O(log n).
   */
  medianAbsoluteDeviation(m: number): number {
    const n = this.n;
    if (n === 0) return Number.NaN;
    const p = this.lowerBound(m); // values below m: a[0..p-1]
    const hi = this.kthDeviation(n >> 1, m, p);
    return n % 2 ? hi : (hi + this.kthDeviation((n >> 1) - 1, m, p)) / 2;
  }

  /** The k-th smallest (0-based) of the deviations: left ones m - a[p-1-i], right ones a[p+j] - m. */
  private kthDeviation(k: number, m: number, p: number): number {
    const a = this.a;
    const nr = this.n - p;
    // Take i of the k + 1 smallest from the left and k + 1 - i from the right: the least i for
    // which the left's next (its i-th) is not below the right's last taken (its (k - i)-th).
    let lo = Math.max(0, k + 1 - nr);
    let hi = Math.min(k + 1, p);
    while (lo < hi) {
      const i = (lo + hi) >>> 1;
      if (m - a[p - 1 - i]! < a[p + k - i]! - m) lo = i + 1;
      else hi = i;
    }
    const lastLeft = lo > 0 ? m - a[p - lo]! : -Infinity;
    const lastRight = k + 1 - lo > 0 ? a[p + k - lo]! - m : -Infinity;
    return Math.max(lastLeft, lastRight);
  }
}

/**
 * An exact sum of doubles, values added and taken away: the exact total is held as non-overlapping
 * partials (Shewchuk 1997, "Adaptive precision floating-point arithmetic"; the msum/fsum recipe) and
 * read correctly rounded.
 */
export class ExactSum {
  private p = new Float64Array(4);
  private n = 0;

  add(value: number): void {
    let x = value;
    let i = 0;
    const p = this.p;
    for (let j = 0; j < this.n; j++) {
      let y = p[j]!;
      if (Math.abs(x) < Math.abs(y)) {
        const t = x;
        x = y;
        y = t;
      }
      const hi = x + y;
      const lo = y - (hi - x);
      if (lo !== 0) p[i++] = lo;
      x = hi;
    }
    if (i === this.p.length) {
      const grown = new Float64Array(this.p.length * 2);
      grown.set(this.p);
      this.p = grown;
    }
    this.p[i] = x;
    this.n = i + 1;
  }

  /** The sum, correctly rounded (fsum's last step, half-way cases included). */
  value(): number {
    const p = this.p;
    let n = this.n;
    if (n === 0) return 0;
    let hi = p[--n]!;
    let lo = 0;
    while (n > 0) {
      const x = hi;
      const y = p[--n]!;
      hi = x + y;
      lo = y - (hi - x);
      if (lo !== 0) break;
    }
    if (n > 0 && ((lo < 0 && p[n - 1]! < 0) || (lo > 0 && p[n - 1]! > 0))) {
      const y = lo * 2;
      const x = hi + y;
      if (y === x - hi) hi = x;
    }
    return hi;
  }
}

/**
 * The last `capacity` values in the order they came (a ring) and sorted: their median, their MAD,
 * the mean of their absolute values and their robust spread, as of now.
 */
export class RollingWindow {
  private readonly ring: Float64Array;
  private head = 0;
  private n = 0;
  private readonly sorted: SortedValues;
  private readonly absSum = new ExactSum();

  constructor(readonly capacity: number) {
    this.ring = new Float64Array(capacity);
    this.sorted = new SortedValues(capacity);
  }

  /** Values held: all pushed, up to `capacity`. */
  get size(): number {
    return this.n;
  }

  push(v: number): void {
    if (this.n === this.capacity) {
      const old = this.ring[this.head]!;
      this.sorted.remove(old);
      this.absSum.add(-Math.abs(old));
      this.ring[this.head] = v;
      this.head = (this.head + 1) % this.capacity;
    } else {
      this.ring[(this.head + this.n) % this.capacity] = v;
      this.n++;
    }
    this.sorted.insert(v);
    this.absSum.add(Math.abs(v));
  }

  /** The mean of |v|. */
  meanAbs(): number {
    return this.absSum.value() / this.n;
  }

  /**
   * `robustSpread` of the values held. Its fallback (a MAD of 0: more than half the values equal
   * the median) sums |v - m| over the values that differ from m, in sorted order: few of them
   * where the fallback is needed (a sparse series, mostly zeros).
   */
  robustSpread(): number {
    if (this.n === 0) return 0;
    const s = this.sorted;
    const m = s.median();
    const mad = s.medianAbsoluteDeviation(m);
    if (mad > 0) return 1.4826 * mad;
    let sum = 0;
    const below = s.lowerBound(m);
    for (let i = 0; i < below; i++) sum += m - s.at(i);
    for (let i = s.upperBound(m); i < this.n; i++) sum += s.at(i) - m;
    return (1.2533 * sum) / this.n;
  }
}
