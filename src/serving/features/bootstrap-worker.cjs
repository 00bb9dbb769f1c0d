'use strict';
// The entry of the archive bootstrap's worker process (bootstrap.ts starts it).

// The service's requests come first. On Linux bootstrap.ts starts this process under SCHED_IDLE
// (chrt) where it can; its threads also get a lower nice value before it loads anything, which is
// all they have where chrt is missing. Each thread has its own: every thread that exists now (V8's)
// is lowered, and those started later (libuv's, which run DuckDB's queries) inherit it.
const NICE = 10;
try {
  const { readdirSync } = require('node:fs');
  const { setPriority } = require('node:os');
  for (const tid of readdirSync('/proc/self/task')) setPriority(Number(tid), NICE);
} catch {
  // Not Linux, or not allowed: the bootstrap runs at the service's priority.
}

// A worker starts without the TypeScript loader of its parent (bin/wb.cjs registers tsx with
// require, the tests and benchmarks with --import, which bootstrap.ts does not pass on): it
// registers tsx's, as bin/wb.cjs does.
require('tsx/cjs');
require('./bootstrap-worker.ts');
