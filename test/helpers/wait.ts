import { performance } from 'node:perf_hooks';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a value, or fails naming what it waited for. */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * Wall time over CPU time of 20 ms of busy work: 1 on an idle machine, more when others share its
 * cores. Timed tests scale their bounds by it, so a loaded machine is not a failure. Never under 1:
 * the CPU time is the whole process's, and while other threads (the collector's, libuv's) work at
 * the same time the ratio falls below 1, which once shrank a bound to half its idle value.
 */
export function stretch(): number {
  const wall = performance.now();
  const cpu = process.cpuUsage();
  let x = 0;
  while (performance.now() - wall < 20) x += Math.sqrt(x + 1);
  const used = process.cpuUsage(cpu);
  return x > 0 ? Math.max(1, (performance.now() - wall) / Math.max(1, (used.user + used.system) / 1000)) : 1;
}

/** A time bound for this machine now: `ms` on an idle one, stretched by its load (see `stretch`). */
export function loadScaled(ms: number): number {
  return ms * stretch();
}

/**
 * Milliseconds until `probe` holds, polling every 10 ms, or a failure after `timeoutMs` (scaled by
 * the machine's load when the wait starts, so "within a second" means a second on an idle machine).
 */
export async function within(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 1_000): Promise<number> {
  const bound = loadScaled(timeoutMs);
  const start = performance.now();
  for (;;) {
    if (await probe()) return performance.now() - start;
    if (performance.now() - start > bound) throw new Error(`${what}: not within ${bound.toFixed(0)} ms (${timeoutMs} ms scaled by the machine's load)`);
    await sleep(10);
  }
}
