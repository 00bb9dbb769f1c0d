// Registers this checkout's tslab kernel with the user's Jupyter under a name of its own,
// `plg-workbench-<hash of the checkout's path>` shown as "TypeScript (plg-workbench: <folder>)": two
// checkouts never share a kernel, so Jupyter can never run another checkout's code under the same name
// (it used to be one `plg-workbench` per user: the last `npm install` won). The committed notebooks keep
// the stable name `plg-workbench`, which resolves to this checkout's spec under `wb jupyter` and
// `wb nb run` (JUPYTER_PATH puts jupyter/ first); the git clean filter turns a per-checkout name saved
// by Jupyter back into it. Runs on `npm install` and as `wb kernel install`, and also configures git
// for notebooks (git-notebooks.cjs). Never fails the install: where Jupyter is absent it says what to do.
'use strict';
const { spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const SPEC = path.join(ROOT, 'jupyter', 'kernels', 'plg-workbench');
const { configureGitNotebooks } = require('./git-notebooks.cjs');

/** This checkout's kernel: its name and display name say which checkout it runs. */
function kernelIdentity(root = ROOT) {
  let real = root;
  try {
    real = fs.realpathSync(root);
  } catch {
    // a path that does not exist yet hashes as given
  }
  const hash = crypto.createHash('sha256').update(real).digest('hex').slice(0, 8);
  return { name: `plg-workbench-${hash}`, displayName: `TypeScript (plg-workbench: ${path.basename(real)})`, root: real };
}

/** A Python with jupyter_client (Debian's first: the python3 first on PATH may lack it). */
function findJupyterPython() {
  const candidates = process.env.WB_JUPYTER_PYTHON ? [process.env.WB_JUPYTER_PYTHON] : ['/usr/bin/python3', 'python3'];
  for (const candidate of candidates) {
    const r = spawnSync(candidate, ['-c', 'import jupyter_client.kernelspec'], { stdio: 'ignore' });
    if (r.status === 0) return candidate;
  }
  return undefined;
}

// Installs the spec, then removes what would let Jupyter run another checkout's code: the old shared
// `plg-workbench` user kernel, and per-checkout kernels whose checkout no longer exists.
const INSTALL = `
import json, os, shutil, sys
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_core.paths import jupyter_data_dir
print(KernelSpecManager().install_kernel_spec(sys.argv[1], kernel_name=sys.argv[2], user=True, replace=True))
kernels = os.path.join(jupyter_data_dir(), "kernels")
for name in sorted(os.listdir(kernels)) if os.path.isdir(kernels) else []:
    if not name.startswith("plg-workbench"):
        continue
    try:
        with open(os.path.join(kernels, name, "kernel.json")) as f:
            mark = json.load(f).get("metadata", {}).get("plg-workbench")
    except Exception:
        continue
    root = mark.get("root") if isinstance(mark, dict) else None
    if mark and (name == "plg-workbench" or (root and not os.path.isdir(root))):
        shutil.rmtree(os.path.join(kernels, name), ignore_errors=True)
        print("removed " + name, file=sys.stderr)
`;

function registerKernel({ quiet = false } = {}) {
  configureGitNotebooks({ root: ROOT, quiet });
  const python = findJupyterPython();
  if (!python) {
    console.log(
      'plg-workbench: Jupyter was not found, so the notebook kernel was not registered. ' +
        'Install it (Debian/Ubuntu: `sudo apt-get install -y jupyter-nbconvert jupyter-notebook`; elsewhere `pip install notebook`) ' +
        'and run `npx wb kernel install`. `wb nb run` needs only jupyter-nbconvert.',
    );
    return false;
  }
  const kernel = kernelIdentity();
  // The registered copy names this checkout in its argv (not in an environment variable, which a
  // process started from another checkout's kernel would pass on) and runs the node that installed it.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wb-kernel-'));
  const dir = path.join(tmp, kernel.name);
  fs.mkdirSync(dir);
  const spec = JSON.parse(fs.readFileSync(path.join(SPEC, 'kernel.json'), 'utf8'));
  spec.argv = [process.execPath, '{resource_dir}/launch.cjs', '{connection_file}', kernel.root];
  spec.display_name = kernel.displayName;
  spec.metadata = { 'plg-workbench': { root: kernel.root } };
  fs.writeFileSync(path.join(dir, 'kernel.json'), JSON.stringify(spec, null, 2));
  fs.copyFileSync(path.join(SPEC, 'launch.cjs'), path.join(dir, 'launch.cjs'));
  const r = spawnSync(python, ['-c', INSTALL, dir, kernel.name], { encoding: 'utf8' });
  fs.rmSync(tmp, { recursive: true, force: true });
  if (r.status !== 0) {
    console.log(`plg-workbench: registering the kernel failed (${(r.stderr || '').trim()}); \`wb nb run\` still works.`);
    return false;
  }
  if (!quiet) {
    console.log(`plg-workbench: registered the Jupyter kernel "${kernel.displayName}" (${kernel.name}) for ${kernel.root} in ${r.stdout.trim()}`);
    if (r.stderr.includes('removed plg-workbench\n')) console.log('plg-workbench: removed the old kernel "plg-workbench" shared by all checkouts.');
  }
  return true;
}

module.exports = { registerKernel, kernelIdentity };
if (require.main === module) registerKernel();
