import type { Command } from 'commander';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { consoleProgress, dataDir } from '../workbench/index.js';
import { InputError } from '../workbench/errors.js';
import { diffNotebooks, notebookAtHead } from '../workbench/notebooks/diff.js';
import { cellsWithOutputs, cleanNotebookFile, readNotebook } from '../workbench/notebooks/notebook.js';
import { parseParamFlags } from '../workbench/notebooks/parameters.js';
import { runNotebook } from '../workbench/notebooks/run.js';
import { publishReport } from '../workbench/notebooks/gallery.js';
import { lineageOf } from '../workbench/models/lineage.js';
import { collect, intOption } from './main.js';

interface RunFlags {
  param: string[];
  ci?: boolean;
  timeout: number;
  out?: string;
  reportCode?: boolean;
  publish?: boolean;
}

const isClean = (file: string): boolean => {
  const { text, clean } = cleanNotebookFile(file);
  return text === clean;
};

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
    .option('--publish', "add each run's report to the gallery in the data dir (served at /reports), failed runs too")
    .action(async (files: string[], flags: RunFlags) => {
      const params = parseParamFlags(flags.param);
      const outDir = resolve(flags.out ?? join(dataDir(program.opts().dataDir), 'runs'));
      const progress = consoleProgress();
      const failures: string[] = [];
      const started = Date.now();
      for (const file of files) {
        const runStarted = new Date();
        const result = await runNotebook(file, { params, ci: flags.ci, cellTimeout: flags.timeout, outDir, reportCode: flags.reportCode, progress });
        console.log(`${result.ok ? 'ok    ' : 'FAILED'} ${file} (${result.seconds.toFixed(1)} s) -> ${relative(process.cwd(), result.report)}`);
        if (flags.publish) {
          const published = publishReport(dataDir(program.opts().dataDir), { result, startedAt: runStarted, gitCommit: lineageOf(file).gitCommit });
          console.log(`       published to the gallery: /reports/${published.id}`);
        }
        if (result.error) {
          console.error(`\n${result.error.message}\n`);
          failures.push(file);
        }
      }
      console.log(`${files.length - failures.length} passed, ${failures.length} failed (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      if (failures.length > 0) process.exitCode = 1;
    });

  nb.command('strip')
    .description('remove outputs, execution counts and volatile metadata (what the git filter does on commit)')
    .argument('[notebooks...]', 'notebook files (default: notebooks/*.ipynb)')
    .option('--stdin', 'read a notebook on stdin and write the clean one to stdout')
    .action((files: string[], flags: { stdin?: boolean }) => {
      if (flags.stdin) {
        const { cleanNotebookText } = require('../../scripts/notebook-clean.cjs') as { cleanNotebookText: (text: string) => string };
        try {
          process.stdout.write(cleanNotebookText(readFileSync(0, 'utf8')));
        } catch (err) {
          throw new InputError(`stdin: ${(err as Error).message}`);
        }
        return;
      }
      for (const file of files.length > 0 ? files : defaultNotebooks()) {
        const dirty = cellsWithOutputs(readNotebook(file)).length;
        const { text, clean } = cleanNotebookFile(file);
        if (clean !== text) writeFileSync(file, clean);
        console.log(`${file}: ${clean === text ? 'already clean' : dirty > 0 ? `stripped ${dirty} cells` : 'metadata and layout normalised'}`);
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
        else if (!isClean(file)) dirty.push(`${file}: holds volatile metadata or is not in Jupyter's layout`);
      }
      if (dirty.length > 0) throw new InputError(`notebooks must be committed clean; run \`npx wb nb strip\`:\n  ${dirty.join('\n  ')}`);
      console.log('notebooks are clean (no outputs, no execution counts, no volatile metadata)');
    });

  nb.command('diff')
    .description('cell-level diff of two notebooks, or of one against git HEAD: sources as unified diffs, outputs summarised')
    .argument('<notebook>', 'a notebook file (alone: compared with its version at git HEAD)')
    .argument('[other]', 'a second notebook: show what changed from <notebook> to it')
    .action((first: string, second: string | undefined) => {
      const [before, after, labels] = second
        ? [readNotebook(first), readNotebook(second), { a: first, b: second }]
        : [notebookAtHead(first), readNotebook(first), { a: `${first} (HEAD)`, b: `${first} (working tree)` }];
      process.stdout.write(diffNotebooks(before, after, labels) || `no differences between ${labels.a} and ${labels.b}\n`);
    });
}
