/**
 * How long a piece of long synchronous work runs before it gives the event loop back, in ms: a
 * request that arrives meanwhile waits up to this long (the serving goal is a p99 of a few ms).
 */
export const SLICE_MS = 2;

/**
 * Long synchronous work split in slices: `pause()` is undefined while the current slice has time
 * left, and otherwise a promise that resolves once the event loop has turned (setImmediate lets
 * other requests' I/O in). A promise only when one is needed: awaiting on every item would cost more
 * than the work on small items.
 *
 * @example
 * const slices = new TimeSlices();
 * for (const item of items) {
 *   work(item);
 *   const pause = slices.pause();
 *   if (pause) await pause;
 * }
 */
export class TimeSlices {
  private since = performance.now();
  constructor(private readonly budgetMs = SLICE_MS) {}

  pause(): Promise<void> | undefined {
    if (performance.now() - this.since < this.budgetMs) return undefined;
    return new Promise((resolve) =>
      setImmediate(() => {
        this.since = performance.now();
        resolve();
      }),
    );
  }
}
