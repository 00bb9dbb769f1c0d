import type { Command } from 'commander';
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { WorkbenchError } from '../workbench/errors.js';
import { REPO_ROOT } from '../workbench/notebooks/run.js';

/** `wb kernel install`: register this checkout's tslab kernel with Jupyter (what `npm install` does). */
export function registerKernel(program: Command): void {
  program
    .command('kernel')
    .description('the Jupyter kernel that runs the notebooks (tslab, started from the repo root)')
    .command('install')
    .description('register this checkout\'s kernel "TypeScript (plg-workbench: <folder>)" with your Jupyter, and the git notebook filter')
    .action(() => {
      const { registerKernel: register } = require('../../scripts/register-kernel.cjs') as { registerKernel: () => boolean };
      if (!register()) throw new WorkbenchError('the kernel was not registered (see above)');
    });
}

const NOT_INSTALLED =
  'neither JupyterLab nor Jupyter Notebook is installed. Install one: `pip install jupyterlab` (or `pip install notebook`); ' +
  'Debian/Ubuntu: `sudo apt-get install -y jupyter-notebook`. Then run `npx wb jupyter` again. (`wb nb run` needs only jupyter-nbconvert.)';

/**
 * `wb jupyter`: JupyterLab (or Notebook) at the repository root, with this checkout's kernel spec first
 * on JUPYTER_PATH, so the notebooks' kernel `plg-workbench` is this checkout's code and no other.
 */
export function registerJupyter(program: Command): void {
  program
    .command('jupyter')
    .description("start JupyterLab (or Jupyter Notebook) with this checkout's kernel; arguments after -- go to Jupyter")
    .option('--notebook', 'Jupyter Notebook even where JupyterLab is installed')
    .argument('[jupyter-args...]', 'passed to Jupyter as they are (e.g. -- --no-browser --port 8899)')
    .action(async (args: string[], flags: { notebook?: boolean }) => {
      const wanted = flags.notebook ? ['jupyter-notebook'] : ['jupyter-lab', 'jupyter-notebook'];
      const found = wanted.map((name) => ({ name, path: onPath(name) })).find((f) => f.path !== null);
      if (!found?.path)
        throw new WorkbenchError(
          flags.notebook ? NOT_INSTALLED.replace('neither JupyterLab nor Jupyter Notebook is', 'Jupyter Notebook is not') : NOT_INSTALLED,
        );
      console.log(`plg-workbench: ${found.name} in ${REPO_ROOT}; open notebooks/ and use the kernel "TypeScript (plg-workbench)" (this checkout).`);
      const env = {
        ...process.env,
        JUPYTER_PATH: [join(REPO_ROOT, 'jupyter'), process.env.JUPYTER_PATH].filter(Boolean).join(delimiter),
        // The kernel spec runs `node`: the one running wb, whatever the shell Jupyter was started from.
        PATH: [dirname(process.execPath), process.env.PATH].filter(Boolean).join(delimiter),
      };
      const child = spawn(found.path, args, { cwd: REPO_ROOT, env, stdio: 'inherit' });
      // Ctrl-C reaches Jupyter through the terminal; wb waits for it to shut down cleanly.
      const ignore = () => {};
      process.on('SIGINT', ignore);
      const code = await new Promise<number>((resolve, reject) => {
        child.on('error', reject);
        child.on('close', (c, signal) => resolve(c ?? (signal ? 1 : 0)));
      }).finally(() => process.off('SIGINT', ignore));
      process.exitCode = code;
    });
}

/** The executable `name` on PATH, or null. */
function onPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}
