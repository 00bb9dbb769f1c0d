'use strict';
// The entry of the archive bootstrap's worker thread (bootstrap.ts starts it).

// The service's requests come first: on Linux a thread has a priority of its own (a nice value), and
// this one's is lowered before it loads anything, so that on a machine short of cores the scheduler
// runs the service's event loop before the bootstrap. The threads DuckDB runs its queries on keep theirs.
const NICE = 10;
try {
  const tid = Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop());
  if (Number.isInteger(tid) && tid > 0) require('node:os').setPriority(tid, NICE);
} catch {
  // Not Linux, or not allowed: the bootstrap runs at the service's priority.
}

// A worker starts without the TypeScript loader of its parent (bin/wb.cjs registers tsx with
// require, the tests and benchmarks with --import, which bootstrap.ts does not pass on): it
// registers tsx's, as bin/wb.cjs does.
require('tsx/cjs');
require('./bootstrap-worker.ts');
