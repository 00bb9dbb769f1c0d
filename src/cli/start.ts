import type { Command } from 'commander';
import { relative } from 'node:path';
import { addBuildOptions, printBuildReport, runBuild, type LakeBuildFlags } from './lake.js';

/** `npm start`: the main job on embedded defaults. Builds the lakehouse and says what to open next. */
export function registerStart(program: Command): void {
  addBuildOptions(program.command('start').description('build the lakehouse on embedded defaults (no servers needed) and show what to open next')).action(
    async (flags: LakeBuildFlags) => {
      const report = await runBuild(flags, program.opts().dataDir);
      printBuildReport(report);
      const lake = relative(process.cwd(), report.lake) || '.';
      console.log(`
Next:
  npx wb lake info                               what is in ${lake}, and its views
  jupyter notebook notebooks/                    open the notebooks (kernel "TypeScript (plg-workbench)")
  npx wb nb run notebooks/01-lakehouse-tour.ipynb   run a notebook headlessly; writes an HTML report
  npm test                                       type checks, unit tests and every notebook`);
    },
  );
}
