/**
 * How much this machine delays a process as large as the service, whatever the process does:
 *
 *   node bench/stall-probe.ts <MB> <seconds>
 *
 * holds <MB> of touched memory and sleeps 1 ms at a time, timing how late each wake-up comes; prints
 * one JSON line. Where the kernel samples memory access (DAMON: `kdamond` wakes every half second and
 * walks pages for up to tens of ms), a process's wake-ups come late while it runs, the more often the
 * more memory the process holds: the figure to read a serving tail against. No imports from the
 * project: it measures the machine.
 */
import { performance } from 'node:perf_hooks';

const mb = Number(process.argv[2] ?? 0);
const seconds = Number(process.argv[3] ?? 5);
const held = Array.from({ length: mb }, () => Buffer.alloc(1 << 20, 1));

async function sleepInTurn(): Promise<number[]> {
  const late: number[] = [];
  let touched = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const asleep = performance.now();
    await new Promise((r) => setTimeout(r, 1));
    late.push(performance.now() - asleep - 1);
    // A little of the memory is used between sleeps, as a service's would be.
    for (let i = 0; i < 64 && mb > 0; i++, touched++) held[touched % mb]![(touched * 4099) & 0xfffff]!++;
  }
  return late;
}

void sleepInTurn().then((late) => {
  late.sort((a, b) => a - b);
  const at = (q: number) => Math.round(late[Math.min(late.length - 1, Math.floor(q * late.length))]! * 100) / 100;
  console.log(
    JSON.stringify({
      held_mb: mb,
      wakeups: late.length,
      late_p99_ms: at(0.99),
      late_p999_ms: at(0.999),
      late_max_ms: Math.round(late[late.length - 1]! * 10) / 10,
      late_over_5ms: late.filter((x) => x > 5).length,
    }),
  );
});
