import { InvalidArgumentError, type Command } from 'commander';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, join, relative, resolve } from 'node:path';
// Single modules, not the workbench's index: `wb nb run` should not load DuckDB and tfjs before its kernel starts.
import { dataDir } from '../workbench/config.js';
import { consoleProgress, silentProgress, type Progress } from '../workbench/progress.js';
import { InputError } from '../workbench/errors.js';
import { diffNotebooks, notebookAtHead } from '../workbench/notebooks/diff.js';
import { cellsWithOutputs, cleanNotebookFile, readNotebook } from '../workbench/notebooks/notebook.js';
import { parseParamFlags } from '../workbench/notebooks/parameters.js';
import { ENGINES, runNotebook, type Engine, type RunResult } from '../workbench/notebooks/run.js';
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
  engine: Engine;
  jobs: number;
}

const engineOption = (value: string): Engine => {
  const engine = ENGINES.find((e) => e === value);
  if (!engine) throw new InvalidArgumentError(`--engine must be one of ${ENGINES.join(', ')}`);
  return engine;
};

/**
 * Runs `items` with at most `jobs` at once; `onDone` sees each result as it comes (in completion
 * order), the returned list keeps the input order.
 */
async function pool<T, R>(items: readonly T[], jobs: number, run: (item: T) => Promise<R>, onDone: (result: R) => void): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      const result = await run(items[i]!);
      results[i] = result;
      onDone(result);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, items.length) }, worker));
  return results;
}

/**
 * With several notebooks at once, one line per event, each naming its notebook: live bars of two
 * runs would overwrite each other on a terminal. Cell progress is left out; the run's line says it all.
 */
const parallelProgress = (file: string): Progress => ({
  log: (message) => void process.stderr.write(`[${basename(file)}] ${message}\n`),
  task: silentProgress.task,
});

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
    .option('--engine <engine>', "node: the workbench's own Jupyter client, no Python; jupyter: Python's nbclient and nbconvert", engineOption, 'node')
    .option('-j, --jobs <n>', 'notebooks run at once, each in its own kernel (default: the number of cores)', intOption('--jobs', 1), availableParallelism())
    .action(async (files: string[], flags: RunFlags) => {
      const params = parseParamFlags(flags.param);
      const outDir = resolve(flags.out ?? join(dataDir(program.opts().dataDir), 'runs'));
      // Two notebooks of the same name would write the same executed notebook and report.
      const names = new Map<string, string>();
      for (const file of files) {
        const other = names.get(basename(file));
        if (other !== undefined && resolve(other) !== resolve(file))
          throw new InputError(`${other} and ${file} would both write ${basename(file)} in ${outDir}; run them apart`);
        names.set(basename(file), file);
      }
      const jobs = Math.min(flags.jobs, files.length);
      if (jobs > 1) console.log(`running ${files.length} notebooks, ${jobs} at a time (${flags.engine} engine)`);
      const started = Date.now();
      const results = await pool(
        files,
        jobs,
        async (file): Promise<{ file: string; result: RunResult; published?: string }> => {
          const runStarted = new Date();
          const progress = jobs > 1 ? parallelProgress(file) : consoleProgress();
          const result = await runNotebook(file, {
            params,
            ci: flags.ci,
            cellTimeout: flags.timeout,
            outDir,
            reportCode: flags.reportCode,
            progress,
            engine: flags.engine,
          });
          if (!flags.publish) return { file, result };
          const published = publishReport(dataDir(program.opts().dataDir), { result, startedAt: runStarted, gitCommit: lineageOf(file).gitCommit });
          return { file, result, published: published.id };
        },
        // Each run reports in one piece when it ends, its error under it, so parallel runs never interleave.
        ({ file, result, published }) => {
          const lines = [`${result.ok ? 'ok    ' : 'FAILED'} ${file} (${result.seconds.toFixed(1)} s) -> ${relative(process.cwd(), result.report)}`];
          if (published) lines.push(`       published to the gallery: /reports/${published}`);
          console.log(lines.join('\n'));
          if (result.error) console.error(`\n${result.error.message}\n`);
        },
      );
      const failures = results.filter((r) => !r.result.ok).map((r) => r.file);
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      console.log(`${files.length - failures.length} passed, ${failures.length} failed (${seconds} s)${failures.length > 0 ? `: ${failures.join(', ')}` : ''}`);
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
