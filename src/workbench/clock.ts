/**
 * The service's sense of "now". Real use runs on the wall clock. A replay of history (`npm start`)
 * runs the whole service on the replay's simulated clock instead, so that everything measured in
 * time (feature windows, experiment durations, the dashboard's last hour, prediction and assignment
 * times) speaks the same time as the events, and a model trained on the history sees served
 * features from the same distribution. Operational timers (timeouts, snapshot intervals, retries)
 * stay on the wall clock whatever the mode: they are about the machine, not the product.
 */
export interface Clock {
  /** `wall`, or `simulated` (driven by a replay). */
  readonly kind: 'wall' | 'simulated';
  /** Milliseconds since the epoch. Never goes backwards. */
  now(): number;
}

/** The machine's clock: the default everywhere. */
export const wallClock: Clock = { kind: 'wall', now: () => Date.now() };

/**
 * A clock that a replay drives: it stands still until told to run, then advances `speed` simulated
 * milliseconds per wall millisecond, never past the bound it was given (the next event the replay
 * has yet to emit), so the service never gets ahead of the data it has been sent. Never goes backwards.
 */
export class SimulatedClock implements Clock {
  readonly kind = 'simulated' as const;
  private base: number;
  private baseWall = Date.now();
  private speed = 0;
  private until = Number.POSITIVE_INFINITY;

  /** Stands still at `start` (ms since the epoch) until `run` is called. */
  constructor(start: number) {
    if (!Number.isFinite(start)) throw new RangeError(`a simulated clock needs a finite start time, got ${start}`);
    this.base = start;
  }

  now(): number {
    if (this.speed === 0) return this.base;
    return Math.max(this.base, Math.min(this.until, this.base + (Date.now() - this.baseWall) * this.speed));
  }

  /**
   * Advances from the current time at `speed` simulated ms per wall ms (0 stops it; Infinity jumps
   * straight to `until`), never past `until`.
   */
  run(speed: number, until = Number.POSITIVE_INFINITY): void {
    if (!(speed >= 0)) throw new RangeError(`a simulated clock's speed must be 0 or more, got ${speed}`);
    const now = this.now();
    this.base = speed === Number.POSITIVE_INFINITY && Number.isFinite(until) ? Math.max(now, until) : now;
    this.baseWall = Date.now();
    this.speed = speed === Number.POSITIVE_INFINITY ? 0 : speed;
    this.until = until;
  }

  /** Jumps forward to `time` if it is later than now (never backwards), keeping the speed and bound. */
  advanceTo(time: number): void {
    const now = this.now();
    if (time <= now) return;
    this.base = time;
    this.baseWall = Date.now();
    if (this.until < time) this.until = time;
  }
}
