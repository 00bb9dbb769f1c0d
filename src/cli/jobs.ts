import type { Command } from 'commander';
import { dataDir, oltpUrl } from '../workbench/config.js';
import { runDag, type RunRecord } from '../workbench/jobs/dag.js';
import { openJobRuns } from '../workbench/jobs/open-runs.js';
import type { JobRunStore } from '../workbench/jobs/run-store.js';
import { findDag, TRAINING_DAGS } from '../workbench/jobs/training.js';
import { consoleProgress } from '../workbench/progress.js';
import { InputError } from '../workbench/errors.js';
import { collect } from './main.js';
import { parseParamFlags } from '../workbench/notebooks/parameters.js';
import { openModelRegistry } from '../serving/models/registry-postgres.js';

/**
 * `wb jobs`: the training DAGs, run now or listed with their past runs. Run records are in the data
 * dir, or with a PostgreSQL OLTP (`--oltp`, env WB_OLTP_URL) in its `job_runs` table, which the
 * service instances on it read too.
 */
export function registerJobs(program: Command): void {
  const oltpOption = ['--oltp <url>', 'OLTP database: with postgres://... the job runs the service instances share there (env WB_OLTP_URL)'] as const;
  const withRuns = async <T>(flags: { oltp?: string }, fn: (runs: JobRunStore) => Promise<T>): Promise<T> => {
    const runs = await openJobRuns(oltpUrl(flags.oltp), dataDir(program.opts().dataDir));
    try {
      return await fn(runs);
    } finally {
      await runs.close();
    }
  };
  const jobs = program.command('jobs').description('training DAGs: snapshot OLTP -> training set -> train -> evaluate against the champion -> publish');

  jobs
    .command('list')
    .description('the DAGs and their steps')
    .action(() => {
      for (const dag of TRAINING_DAGS) {
        console.log(`${dag.name}: ${dag.description}`);
        for (const job of dag.jobs) console.log(`  ${job.name}${job.needs?.length ? `  (after ${job.needs.join(', ')})` : ''}`);
      }
    });

  jobs
    .command('run <dag>')
    .description('run a DAG now; exits 1 if a step fails (a model that does not pass the gate is not a failure)')
    .option('--param <key=value>', 'a parameter (minAuc, alias, url, key, oltp); repeatable', collect, [])
    .option('--run-id <id>', 'the run id to record under (the service passes one)')
    .option('--trigger <who>', 'who started the run, for the record', 'cli')
    .option(...oltpOption)
    .action(async (name: string, flags: { param: string[]; runId?: string; trigger: string; oltp?: string }) => {
      const dir = dataDir(program.opts().dataDir);
      const params = parseParamFlags(flags.param);
      const url = oltpUrl(flags.oltp);
      const run = await withRuns(flags, (store) =>
        runDag(findDag(name), {
          dataDir: dir,
          params,
          // The service's registry: in PostgreSQL (and the blob store) when the OLTP is, else the data dir's.
          openRegistry: () => openModelRegistry({ dataDir: dir, oltpUrl: params.oltp ?? url }),
          progress: consoleProgress(),
          runId: flags.runId,
          trigger: flags.trigger,
          store,
        }),
      );
      const publish = run.steps.find((s) => s.job === 'publish')?.outputs;
      console.log(
        `${run.dag} ${run.run_id}: ${run.status}${publish ? ` (${publish.published ? `published ${publish.version} as ${publish.alias} to ${publish.to}` : publish.reason})` : ''}`,
      );
      if (run.status !== 'succeeded') process.exitCode = 1;
    });

  jobs
    .command('runs')
    .description('past runs, newest first')
    .option('--dag <name>', 'only this DAG')
    .option('--limit <n>', 'at most this many', '50')
    .option('--json', 'print JSON')
    .option(...oltpOption)
    .action(async (flags: { dag?: string; limit: string; json?: boolean; oltp?: string }) => {
      const limit = Number(flags.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new InputError(`--limit ${JSON.stringify(flags.limit)}: give a whole number of runs, 1 or more`);
      const runs = await withRuns(flags, (store) => store.list({ dag: flags.dag, limit }));
      if (flags.json) return void console.log(JSON.stringify(runs, null, 2));
      for (const r of runs) console.log(runLine(r));
    });

  jobs
    .command('show <run_id>')
    .description("one run's record: its parameters and each step with its timing, outputs or error")
    .option(...oltpOption)
    .action(async (runId: string, flags: { oltp?: string }) => {
      console.log(JSON.stringify(await withRuns(flags, (store) => store.get(runId)), null, 2));
    });
}

function runLine(r: RunRecord): string {
  return `${r.run_id.padEnd(44)} ${r.status.padEnd(10)} ${r.started_at}  ${r.trigger.padEnd(10)} ${r.steps.map((s) => `${s.job}:${s.status}`).join(' ')}`;
}
