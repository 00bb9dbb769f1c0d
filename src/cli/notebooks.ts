import type { Command } from 'commander';
import { readdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { consoleProgress, dataDir } from '../workbench/index.js';
import { InputError } from '../workbench/errors.js';
import { cellsWithOutputs, readNotebook, stripNotebook, writeNotebook } from '../workbench/notebooks/notebook.js';
import { parseParamFlags } from '../workbench/notebooks/parameters.js';
import { runNotebook } from '../workbench/notebooks/run.js';
import { collect, intOption } from './main.js';

interface RunFlags {
  param: string[];
  ci?: boolean;
  timeout: number;
  out?: string;
  reportCode?: boolean;
}

const defaultNotebooks = () =>
  readdirSync('notebooks')
    .filter((f) => f.endsWith('.ipynb'))
    .sort()
    .map((f) => join('notebooks', f));

export function registerNotebooks(program: Command): void {
  const nb = program.command('nb').description('notebooks as versioned, tested documents');

  nb.command('run')
    .description('execute notebooks headlessly with the tslab kernel; writes each executed notebook and an HTML report')
    .argument('<notebooks...>', 'notebook files (.ipynb)')
    .option('-p, --param <key=value>', "set a value of the notebook's `parameters` cell (repeatable)", collect, [])
    .option('--ci', "use the notebook's CI parameters (metadata plg-workbench.ci_parameters); --param still wins")
    .option('--timeout <seconds>', 'longest a single cell may run', intOption('--timeout', 1), 300)
    .option('--out <dir>', 'where executed notebooks and reports go (default <data-dir>/runs)')
    .option('--report-code', 'show code in the HTML report (default: text, tables and charts only)')
    .action(async (files: string[], flags: RunFlags) => {
      const params = parseParamFlags(flags.param);
      const outDir = resolve(flags.out ?? join(dataDir(program.opts().dataDir), 'runs'));
      const progress = consoleProgress();
      const failures: string[] = [];
      const started = Date.now();
      for (const file of files) {
        const result = await runNotebook(file, { params, ci: flags.ci, cellTimeout: flags.timeout, outDir, reportCode: flags.reportCode, progress });
        console.log(`${result.ok ? 'ok    ' : 'FAILED'} ${file} (${result.seconds.toFixed(1)} s) -> ${relative(process.cwd(), result.report)}`);
        if (result.error) {
          console.error(`\n${result.error.message}\n`);
          failures.push(file);
        }
      }
      console.log(`${files.length - failures.length} passed, ${failures.length} failed (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      if (failures.length > 0) process.exitCode = 1;
    });

  nb.command('strip')
    .description('remove outputs and execution counts, so that git diffs of notebooks stay readable')
    .argument('[notebooks...]', 'notebook files (default: notebooks/*.ipynb)')
    .action((files: string[]) => {
      for (const file of files.length > 0 ? files : defaultNotebooks()) {
        const before = readNotebook(file);
        const dirty = cellsWithOutputs(before).length;
        if (dirty > 0) writeNotebook(file, stripNotebook(before));
        console.log(`${file}: ${dirty > 0 ? `stripped ${dirty} cells` : 'already clean'}`);
      }
    });

  nb.command('check')
    .description('fail if a notebook holds outputs or execution counts, or is not valid (what CI checks)')
    .argument('[notebooks...]', 'notebook files (default: notebooks/*.ipynb)')
    .action((files: string[]) => {
      const dirty: string[] = [];
      for (const file of files.length > 0 ? files : defaultNotebooks()) {
        const cells = cellsWithOutputs(readNotebook(file));
        if (cells.length > 0) dirty.push(`${file}: cells ${cells.map((i) => i + 1).join(', ')} hold outputs or execution counts`);
      }
      if (dirty.length > 0) throw new InputError(`notebooks must be committed without outputs; run \`npx wb nb strip\`:\n  ${dirty.join('\n  ')}`);
      console.log('notebooks are clean (no outputs, no execution counts)');
    });
}
