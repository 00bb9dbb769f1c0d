// Starts tslab from the repository root, because tslab compiles local `.ts` imports only under
// the kernel's working directory: that is what lets notebooks/ import src/.
// The root is this spec's grandparent's parent (jupyter/kernels/<name>/), or PLG_WORKBENCH_ROOT when
// `npm install` registered a copy of this spec in the user's Jupyter data directory.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = process.env.PLG_WORKBENCH_ROOT || path.resolve(__dirname, '..', '..', '..');
const tslab = path.join(root, 'node_modules', 'tslab', 'dist', 'main.js');
if (!fs.existsSync(tslab)) {
  console.error(`plg-workbench kernel: tslab is not installed under ${root}; run \`npm install\` there first.`);
  process.exit(1);
}
const connectionFile = process.argv[2];
if (!connectionFile) {
  console.error('plg-workbench kernel: Jupyter did not pass a connection file.');
  process.exit(1);
}
process.chdir(root);
process.argv = [process.argv[0], tslab, 'kernel', '--config-path', connectionFile];
require(tslab).main();
