import type { Command } from 'commander';
import { dataDir, oltpUrl } from '../workbench/config.js';
import { runDag, RunStore } from '../workbench/jobs/dag.js';
import { findDag, TRAINING_DAGS } from '../workbench/jobs/training.js';
import { consoleProgress } from '../workbench/progress.js';
import { collect } from './main.js';
import { parseParamFlags } from '../workbench/notebooks/parameters.js';
import { openModelRegistry } from '../serving/models/registry-postgres.js';

/** `wb jobs`: the training DAGs, run now or listed with their past runs. */
export function registerJobs(program: Command): void {
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
    .action(async (name: string, flags: { param: string[]; runId?: string; trigger: string }) => {
      const dir = dataDir(program.opts().dataDir);
      const params = parseParamFlags(flags.param);
      const run = await runDag(findDag(name), {
        dataDir: dir,
        params,
        // The service's registry: in PostgreSQL (and the blob store) when the OLTP is, else the data dir's.
        openRegistry: () => openModelRegistry({ dataDir: dir, oltpUrl: params.oltp ?? oltpUrl() }),
        progress: consoleProgress(),
        runId: flags.runId,
        trigger: flags.trigger,
      });
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
    .option('--json', 'print JSON')
    .action((flags: { dag?: string; json?: boolean }) => {
      const runs = RunStore.forDataDir(dataDir(program.opts().dataDir)).list({ dag: flags.dag });
      if (flags.json) return void console.log(JSON.stringify(runs, null, 2));
      for (const r of runs) {
        console.log(
          `${r.run_id.padEnd(44)} ${r.status.padEnd(10)} ${r.started_at}  ${r.trigger.padEnd(10)} ${r.steps.map((s) => `${s.job}:${s.status}`).join(' ')}`,
        );
      }
    });
}
