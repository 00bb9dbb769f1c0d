import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { InputError, WorkbenchError } from '../workbench/errors.js';
import { registerApp } from './app.js';
import { registerDlq } from './dlq.js';
import { registerFeatures } from './features.js';
import { registerExperiments } from './experiments.js';
import { registerJobs } from './jobs.js';
import { registerJupyter, registerKernel } from './kernel.js';
import { registerLake } from './lake.js';
import { registerModels } from './models.js';
import { registerNotebooks } from './notebooks.js';
import { registerReplay } from './replay.js';
import { registerRuns } from './runs.js';
import { registerSql } from './sql.js';
import { registerLogs, registerServe } from './serve.js';
import { registerStart } from './start.js';

/** The `wb` command tree, every subcommand registered (tests walk it to check each one's --help). */
export function buildProgram(): Command {
  const program = new Command('wb')
    .description('plg-workbench: lakehouse, notebooks, models and experiments for product-led growth')
    .option('--data-dir <dir>', 'where generated state lives (env WB_DATA_DIR)', process.env.WB_DATA_DIR ?? '.wb')
    .option('--debug', 'print stack traces of errors')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerStart(program);
  registerLake(program);
  registerApp(program);
  registerNotebooks(program);
  registerKernel(program);
  registerJupyter(program);
  registerServe(program);
  registerLogs(program);
  registerReplay(program);
  registerFeatures(program);
  registerModels(program);
  registerJobs(program);
  registerRuns(program);
  registerExperiments(program);
  registerDlq(program);
  registerSql(program);
  return program;
}

/** The `wb` command: every subcommand has --help; errors are one clear line, not a stack. */
export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    const debug = program.opts().debug || process.env.WB_DEBUG;
    if (err instanceof WorkbenchError && !debug) {
      console.error(`error: ${err.message}`);
      process.exitCode = err instanceof InputError ? 2 : 1;
      return;
    }
    console.error(err);
    process.exitCode = 1;
  }
}

export function intOption(name: string, min = 0) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be a whole number of at least ${min}`);
    return n;
  };
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
