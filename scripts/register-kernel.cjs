// Registers the repo's tslab kernel spec (jupyter/kernels/plg-workbench) with the user's Jupyter, so
// notebooks/ opens with the right kernel from `jupyter notebook`. Runs on `npm install` and as
// `wb kernel install`. Never fails the install: where Jupyter is absent it says so and what to do.
// `wb nb run` does not need this: it points Jupyter at the repo's spec through JUPYTER_PATH.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const SPEC = path.join(ROOT, 'jupyter', 'kernels', 'plg-workbench');

/** A Python with jupyter_client (Debian's first: the python3 first on PATH may lack it). */
function findJupyterPython() {
  const candidates = process.env.WB_JUPYTER_PYTHON ? [process.env.WB_JUPYTER_PYTHON] : ['/usr/bin/python3', 'python3'];
  for (const candidate of candidates) {
    const r = spawnSync(candidate, ['-c', 'import jupyter_client.kernelspec'], { stdio: 'ignore' });
    if (r.status === 0) return candidate;
  }
  return undefined;
}

const INSTALL = `
import sys
from jupyter_client.kernelspec import KernelSpecManager
print(KernelSpecManager().install_kernel_spec(sys.argv[1], kernel_name="plg-workbench", user=True, replace=True))
`;

function registerKernel({ quiet = false } = {}) {
  const python = findJupyterPython();
  if (!python) {
    console.log(
      'plg-workbench: Jupyter was not found, so the notebook kernel was not registered. ' +
        'Install it (Debian/Ubuntu: `sudo apt-get install -y jupyter-nbconvert jupyter-notebook`; elsewhere `pip install notebook`) ' +
        'and run `npx wb kernel install`. `wb nb run` needs only jupyter-nbconvert.',
    );
    return false;
  }
  // The registered copy carries the repo's absolute path: Jupyter copies the spec elsewhere.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wb-kernel-'));
  const dir = path.join(tmp, 'plg-workbench');
  fs.mkdirSync(dir);
  const spec = JSON.parse(fs.readFileSync(path.join(SPEC, 'kernel.json'), 'utf8'));
  spec.env = { ...(spec.env || {}), PLG_WORKBENCH_ROOT: ROOT };
  fs.writeFileSync(path.join(dir, 'kernel.json'), JSON.stringify(spec, null, 2));
  fs.copyFileSync(path.join(SPEC, 'launch.cjs'), path.join(dir, 'launch.cjs'));
  const r = spawnSync(python, ['-c', INSTALL, dir], { encoding: 'utf8' });
  fs.rmSync(tmp, { recursive: true, force: true });
  if (r.status !== 0) {
    console.log(`plg-workbench: registering the kernel failed (${(r.stderr || '').trim()}); \`wb nb run\` still works.`);
    return false;
  }
  if (!quiet) console.log(`plg-workbench: registered the Jupyter kernel "TypeScript (plg-workbench)" for ${ROOT} in ${r.stdout.trim()}`);
  return true;
}

module.exports = { registerKernel };
if (require.main === module) registerKernel();
