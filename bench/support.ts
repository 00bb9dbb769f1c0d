/** What the benchmarks share: quantiles, rounding, and a server in a child process. */
import { spawn, type ChildProcess } from 'node:child_process';

export const quantile = (xs: readonly number[], q: number): number => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

export const round = (x: number, digits = 1): number => Math.round(x * 10 ** digits) / 10 ** digits;

/**
 * Starts a server (`node <args>`) and resolves with its URL once it prints `listening <url>` or
 * `service on <url>`. BENCH_PROFILE=<dir> writes a V8 CPU profile of it there (open in Chrome DevTools),
 * sampled every BENCH_PROFILE_INTERVAL_US microseconds (default 1000). BENCH_NODE_FLAGS: more of
 * node's flags for it, space-separated (e.g. `--single-threaded-gc`, to try a V8 setting).
 */
export function startServer(args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const profile = process.env.BENCH_PROFILE
    ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`, `--cpu-prof-interval=${process.env.BENCH_PROFILE_INTERVAL_US ?? 1000}`]
    : [];
  const extra = process.env.BENCH_NODE_FLAGS ? process.env.BENCH_NODE_FLAGS.split(' ') : [];
  const child = spawn(process.execPath, [...extra, ...profile, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /(?:listening|service on) (http:\/\/[\d.:]+)/.exec(out);
      if (m) resolve({ child, url: m[1]! });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`the server exited (${code}): ${out}`)));
  });
}

/** Stops a server started by startServer: SIGTERM, then SIGKILL if it has not exited in 15 s. */
export async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(killer);
}
