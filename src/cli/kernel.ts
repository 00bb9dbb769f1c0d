import type { Command } from 'commander';
import { WorkbenchError } from '../workbench/errors.js';

/** `wb kernel install`: register the repo's tslab kernel with Jupyter (what `npm install` does). */
export function registerKernel(program: Command): void {
  program
    .command('kernel')
    .description('the Jupyter kernel that runs the notebooks (tslab, started from the repo root)')
    .command('install')
    .description('register the kernel "TypeScript (plg-workbench)" with your Jupyter')
    .action(() => {
      const { registerKernel: register } = require('../../scripts/register-kernel.cjs') as { registerKernel: () => boolean };
      if (!register()) throw new WorkbenchError('the kernel was not registered (see above)');
    });
}
