#!/usr/bin/env node
// The `wb` command. The workbench is TypeScript run as it is (through tsx), so that notebooks,
// jobs and the CLI all execute the very same source files.
'use strict';
// V8's default young generation (16 MB semi-spaces). Setting a larger one here, at run time, did
// nothing: the heap is configured before any script runs. Given on node's command line, 64 MB gave
// no more ingest throughput (bench:ingest: 43,100 against 48,800 events/s).
require('tsx/cjs');
require('../src/cli/main.ts')
  .main(process.argv)
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
