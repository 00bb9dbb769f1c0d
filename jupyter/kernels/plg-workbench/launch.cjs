// Starts tslab from the repository root, because tslab compiles local `.ts` imports only under
// the kernel's working directory: that is what lets notebooks/ import src/.
// The root is the 4th argument in the per-checkout copy `npm install` registers with the user's Jupyter
// (scripts/register-kernel.cjs), else this spec's place in the repository (jupyter/kernels/<name>/).
// Never an environment variable: a kernel's environment is inherited by whatever it starts.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(process.argv[3] || path.join(__dirname, '..', '..', '..'));
const connectionFile = process.argv[2];
if (!connectionFile) {
  console.error('plg-workbench kernel: Jupyter did not pass a connection file.');
  process.exit(1);
}
const tslab = path.join(root, 'node_modules', 'tslab', 'dist', 'main.js');
if (!fs.existsSync(tslab)) {
  console.error(`plg-workbench kernel: tslab is not installed under ${root} (moved or deleted?); run \`npm install\` in your checkout.`);
  process.exit(1);
}

/** The plg-workbench checkout holding `dir`, or null: a checkout has this very spec under jupyter/. */
function checkoutOf(dir) {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, 'jupyter', 'kernels', 'plg-workbench', 'launch.cjs')) && fs.existsSync(path.join(d, 'package.json'))) return d;
    if (path.dirname(d) === d) return null;
  }
}

// Jupyter starts a kernel in its notebook's directory. A notebook of another checkout would import that
// checkout's src/ by its relative path but run this one's: refuse, saying which kernel to pick.
const notebookCheckout = checkoutOf(process.cwd());
const real = (p) => (fs.existsSync(p) ? fs.realpathSync(p) : p);
if (notebookCheckout && real(notebookCheckout) !== real(root)) {
  console.error(
    `plg-workbench kernel: this kernel runs the code of ${root}, but the notebook is in ${notebookCheckout}. ` +
      `Pick the kernel "TypeScript (plg-workbench: ${path.basename(real(notebookCheckout))})" or start Jupyter there with \`npx wb jupyter\`.`,
  );
  process.exit(1);
}
process.chdir(root);
process.argv = [process.argv[0], tslab, 'kernel', '--config-path', connectionFile];
require(tslab).main();
