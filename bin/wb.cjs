#!/usr/bin/env node
// The `wb` command. The workbench is TypeScript run as it is (through tsx), so that notebooks,
// jobs and the CLI all execute the very same source files.
'use strict';
require('tsx/cjs');
require('../src/cli/main.ts').main(process.argv).catch((err) => {
  console.error(err);
  process.exit(1);
});
