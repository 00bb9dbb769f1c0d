#!/usr/bin/env node
// The `wb` command. The workbench is TypeScript run as it is (through tsx), so that notebooks,
// jobs and the CLI all execute the very same source files.
'use strict';
// A larger young generation: the service allocates a short-lived object per event, and with V8's
// default 16 MB semi-spaces it spends a tenth of its time in scavenges at ingest rates. Must be set
// before the heap grows, hence here.
require('node:v8').setFlagsFromString('--max-semi-space-size=64');
require('tsx/cjs');
require('../src/cli/main.ts')
  .main(process.argv)
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
