import { Command, CommanderError, Help, InvalidArgumentError } from 'commander';
import { InputError, WorkbenchError } from '../workbench/errors.js';

type Register = (program: Command) => void;

/**
 * The top-level commands, each with the module that registers it, loaded only when that command runs:
 * the modules pull in DuckDB, tfjs and the service, a second of start-up that `wb nb run` or
 * `wb --help` has no use for. `term` and `description` are what the root help lists, as the loaded
 * command would show them (test/cli/wb.test.ts checks they match); a module may register several.
 * require(), not import(): the package is CommonJS run through tsx's require hook, and import() would
 * go to Node's ESM loader, which `bin/wb.cjs` does not teach TypeScript.
 */
/* eslint-disable @typescript-eslint/no-require-imports -- loading on first use is the point here */
const REGISTRARS: readonly { commands: readonly (readonly [term: string, description: string])[]; load: () => Register }[] = [
  {
    commands: [['start [options]', 'build the lakehouse, start the service and replay the data through it (no servers to install); Ctrl-C stops']],
    load: () => (require('./start.js') as typeof import('./start.js')).registerStart,
  },
  {
    commands: [['lake', 'build and inspect the lakehouse (Parquet archive + OLTP replica, queried with DuckDB)']],
    load: () => (require('./lake.js') as typeof import('./lake.js')).registerLake,
  },
  { commands: [['app', 'the simulated SaaS product (stage 1)']], load: () => (require('./app.js') as typeof import('./app.js')).registerApp },
  {
    commands: [['nb', 'notebooks as versioned, tested documents']],
    load: () => (require('./notebooks.js') as typeof import('./notebooks.js')).registerNotebooks,
  },
  {
    commands: [['kernel', 'the Jupyter kernel that runs the notebooks (tslab, started from the repo root)']],
    load: () => (require('./kernel.js') as typeof import('./kernel.js')).registerKernel,
  },
  {
    commands: [['jupyter [options] [jupyter-args...]', "start JupyterLab (or Jupyter Notebook) with this checkout's kernel; arguments after -- go to Jupyter"]],
    load: () => (require('./kernel.js') as typeof import('./kernel.js')).registerJupyter,
  },
  {
    commands: [
      ['serve [options]', 'start the service: event ingest, the event log and its consumers (Ctrl-C stops it gracefully)'],
      ['keys', 'API keys of the service (kept hashed in <data-dir>/keys.json)'],
    ],
    load: () => (require('./serve.js') as typeof import('./serve.js')).registerServe,
  },
  {
    commands: [['cluster', 'a local cluster: several `wb serve` instances behind HAProxy, on PostgreSQL and NATS JetStream']],
    load: () => (require('./cluster.js') as typeof import('./cluster.js')).registerCluster,
  },
  {
    commands: [['logs [options]', "search the service's logs (<data-dir>/logs) by level, time range and text"]],
    load: () => (require('./serve.js') as typeof import('./serve.js')).registerLogs,
  },
  {
    commands: [
      [
        'replay [options]',
        'stream the real retail log and the simulated app through POST /v1/events at a chosen speed. Both timelines start together ' +
          '(the shop on 2010-12-01, the app on --start); events are stamped with the wall-clock time they are sent, the original ' +
          'time in props.original_time. Replaying twice is idempotent; --run <tag> sends the same history again as new data. ' +
          'Ctrl-C stops after the requests in flight.',
      ],
    ],
    load: () => (require('./replay.js') as typeof import('./replay.js')).registerReplay,
  },
  {
    commands: [['features', 'feature definitions: list them, check offline/online parity']],
    load: () => (require('./features.js') as typeof import('./features.js')).registerFeatures,
  },
  {
    commands: [['models', 'the model registry: versions, metrics, aliases and their history']],
    load: () => (require('./models.js') as typeof import('./models.js')).registerModels,
  },
  {
    commands: [['jobs', 'training DAGs: snapshot OLTP -> training set -> train -> evaluate against the champion -> publish']],
    load: () => (require('./jobs.js') as typeof import('./jobs.js')).registerJobs,
  },
  {
    commands: [['runs', 'training runs: parameters, data snapshot, metrics and artefacts, listed, shown and compared']],
    load: () => (require('./runs.js') as typeof import('./runs.js')).registerRuns,
  },
  {
    commands: [['experiments', 'experiments: create, start, stop, ship, roll back, history, results']],
    load: () => (require('./experiments.js') as typeof import('./experiments.js')).registerExperiments,
  },
  {
    commands: [['dlq [options]', 'dead letters: records a consumer of the service could not apply, set aside (list, show, retry)']],
    load: () => (require('./dlq.js') as typeof import('./dlq.js')).registerDlq,
  },
  {
    commands: [['sql [options] [query]', 'run SQL on the lakehouse and print a table (or write CSV, JSON, NDJSON or Parquet); without a query, open a prompt']],
    load: () => (require('./sql.js') as typeof import('./sql.js')).registerSql,
  },
];
/* eslint-enable @typescript-eslint/no-require-imports */

const commandName = (term: string): string => term.split(' ')[0]!;

/**
 * The `wb` command tree. `only` names the one top-level command to load for real (the others are
 * stand-ins that carry their name and description, for the root help and commander's
 * did-you-mean); `null` loads none; without it every command is loaded (tests walk the full tree).
 */
export function buildProgram(only?: string | null): Command {
  const program = new Command('wb')
    .description('plg-workbench: lakehouse, notebooks, models and experiments for product-led growth')
    .option('--data-dir <dir>', 'where generated state lives (env WB_DATA_DIR)', process.env.WB_DATA_DIR ?? '.wb')
    .option('--debug', 'print stack traces of errors')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  const standInTerms = new Map<Command, string>();
  for (const registrar of REGISTRARS) {
    if (only === undefined || registrar.commands.some(([term]) => commandName(term) === only)) {
      registrar.load()(program);
      continue;
    }
    for (const [term, description] of registrar.commands) {
      const standIn = program
        .command(commandName(term))
        .description(description)
        .allowUnknownOption()
        .allowExcessArguments()
        .action(() => {
          // main() loads the command it is about to run; reaching a stand-in means that guess was wrong.
          throw new WorkbenchError(`wb ${commandName(term)} was not loaded before it ran (a bug in src/cli/main.ts)`);
        });
      standInTerms.set(standIn, term);
    }
  }
  if (standInTerms.size > 0) program.configureHelp({ subcommandTerm: (cmd) => standInTerms.get(cmd) ?? new Help().subcommandTerm(cmd) });
  return program;
}

/**
 * The top-level command `argv` runs (after `help`, the one it asks about), or null: read by
 * commander's own option parser with the root's options, so `--data-dir <dir>` is skipped as it will be.
 */
export function commandOf(argv: readonly string[]): string | null {
  const root = new Command('wb')
    .option('--data-dir <dir>')
    .option('--debug')
    .exitOverride()
    .configureOutput({ writeErr: () => {} });
  let operands: string[];
  try {
    ({ operands } = root.parseOptions(argv.slice(2)));
  } catch {
    return null; // e.g. --data-dir without its value: the real parse says so
  }
  const name = operands[0] === 'help' ? operands[1] : operands[0];
  return name !== undefined && REGISTRARS.some((r) => r.commands.some(([term]) => commandName(term) === name)) ? name : null;
}

/** The `wb` command: every subcommand has --help; errors are one clear line, not a stack. */
export async function main(argv: string[]): Promise<void> {
  const program = buildProgram(commandOf(argv));
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
