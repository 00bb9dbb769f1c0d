import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { Experiments } from '../serving/experiments/experiments.js';
import { dataDir, oltpUrl } from '../workbench/config.js';
import { STATUSES, type ExperimentStatus } from '../workbench/experiments/definition.js';
import { fmtDays, fmtLift } from '../workbench/experiments/decide.js';
import { metricCatalog } from '../workbench/experiments/metrics.js';
import { InputError } from '../workbench/errors.js';
import { openOltp } from '../workbench/oltp/index.js';

/**
 * `wb experiments`: definitions in the OLTP database, changed with the same checks, versions and
 * history as the API (a running service picks changes up within seconds). Results live in the
 * service: `wb experiments results` asks it.
 */
export function registerExperiments(program: Command): void {
  const cmd = program.command('experiments').description('experiments: create, start, stop, ship, roll back, history, results');
  const withStore = async <T>(flags: { oltp?: string }, fn: (x: Experiments) => Promise<T>): Promise<T> => {
    const oltp = await openOltp(oltpUrl(flags.oltp), dataDir(program.opts().dataDir));
    try {
      await oltp.migrate();
      return await fn(await Experiments.open(oltp, metricCatalog(), (message) => console.error(`warning: ${message}`)));
    } finally {
      await oltp.close();
    }
  };
  const by = () => `${userInfo().username} (wb cli)`;
  const oltpOption = ['--oltp <url>', 'OLTP database: postgres://... or a SQLite file (env WB_OLTP_URL)'] as const;

  cmd
    .command('list')
    .description('every experiment: status, version, arms, objective')
    .option(...oltpOption)
    .option('--json', 'print JSON')
    .action((flags: { oltp?: string; json?: boolean }) =>
      withStore(flags, async (x) => {
        const list = x.list();
        if (flags.json) return void console.log(JSON.stringify(list, null, 2));
        if (list.length === 0) return void console.log('no experiments yet: `wb experiments create <file.json>`');
        for (const s of list) {
          const e = s.experiment;
          console.log(
            `${e.key.padEnd(24)} ${e.status.padEnd(12)} v${String(s.version).padEnd(4)} ${e.arms
              .map((a) => `${a.key} ${a.weight}`)
              .join(' / ')
              .padEnd(28)} objective ${e.objective}${e.winner ? `, winner ${e.winner}` : ''}`,
          );
        }
      }),
    );

  cmd
    .command('show <key>')
    .description('one experiment as JSON, with its version')
    .option(...oltpOption)
    .action((key: string, flags: { oltp?: string }) =>
      withStore(flags, async (x) => void console.log(JSON.stringify({ ...x.get(key).experiment, version: x.get(key).version }, null, 2))),
    );

  cmd
    .command('create <file>')
    .description('create an experiment from a JSON definition (draft unless it says "status": "running")')
    .option(...oltpOption)
    .action((file: string, flags: { oltp?: string }) =>
      withStore(flags, async (x) => {
        const s = await x.create(readJson(file), by());
        console.log(`created ${s.experiment.key} (version ${s.version}, ${s.experiment.status})`);
      }),
    );

  cmd
    .command('update <file>')
    .description('replace a definition; --version names the version it was edited from (see `show`)')
    .requiredOption('--version <n>', 'the version the change was made against')
    .option(...oltpOption)
    .action((file: string, flags: { oltp?: string; version: string }) =>
      withStore(flags, async (x) => {
        const input = readJson(file) as { key?: string };
        const s = await x.update(String(input.key), input, versionOf(flags.version), by());
        console.log(`${s.experiment.key}: version ${s.version}`);
      }),
    );

  cmd
    .command('status <key> <status>')
    .description(`change the status (${STATUSES.join(', ')}); shipping names --winner`)
    .option('--reason <text>', 'why, kept in the history', '')
    .option('--winner <arm>', 'with shipped: the arm everyone gets')
    .option('--version <n>', 'the version the change was made against (default: the current one)')
    .option(...oltpOption)
    .action((key: string, status: string, flags: { oltp?: string; reason: string; winner?: string; version?: string }) =>
      withStore(flags, async (x) => {
        if (!(STATUSES as readonly string[]).includes(status))
          throw new InputError(`status must be one of ${STATUSES.join(', ')}, not ${JSON.stringify(status)}`);
        const version = flags.version ? versionOf(flags.version) : x.get(key).version;
        const s = await x.setStatus(key, status as ExperimentStatus, version, by(), flags.reason, flags.winner);
        console.log(`${key}: ${s.experiment.status} (version ${s.version})`);
      }),
    );

  cmd
    .command('history <key>')
    .description('every change: version, when, who, what')
    .option(...oltpOption)
    .action((key: string, flags: { oltp?: string }) =>
      withStore(flags, async (x) => {
        for (const h of await x.history(key)) console.log(`v${String(h.version).padEnd(4)} ${h.updated_at}  ${h.updated_by.padEnd(24)} ${h.change}`);
      }),
    );

  cmd
    .command('results <key>')
    .description("the live results from a running service: each metric's lift per arm, SRM, the decision")
    .option('--url <url>', 'the service (env WB_URL)', process.env.WB_URL ?? 'http://127.0.0.1:8080')
    .option('--key <key>', 'an API key with the read scope (env WB_API_KEY)', process.env.WB_API_KEY)
    .option('--json', 'print JSON')
    .action(async (key: string, flags: { url: string; key?: string; json?: boolean }) => {
      if (!flags.key) throw new InputError('results come from the service: pass --key (or set WB_API_KEY) with a read key');
      const res = await fetch(`${flags.url.replace(/\/$/, '')}/v1/experiments/${encodeURIComponent(key)}/results`, {
        headers: { authorization: `Bearer ${flags.key}` },
      });
      const body = (await res.json()) as ResultsBody & { error?: { message: string } };
      if (!res.ok) throw new InputError(`the service answered ${res.status}: ${body.error?.message ?? 'no message'}`);
      if (flags.json) return void console.log(JSON.stringify(body, null, 2));
      const r = body.results;
      console.log(`${r.experiment} (${r.status}) as of ${r.asOf ?? 'no data yet'}`);
      console.log(
        `users: ${r.arms.map((a) => `${a.arm} ${a.users}`).join(', ')}; sample ratio ${r.srm.mismatch ? 'MISMATCH' : 'ok'} (p = ${r.srm.pValue.toPrecision(3)})`,
      );
      for (const m of r.metrics) {
        for (const c of m.comparisons) {
          // A one-sided interval's open end is infinite: null in JSON.
          const end = (x: number | null, open: number) => fmtLift(x === null ? open : x);
          const ci = c.sequential.ci
            ? `[${end(c.sequential.ci[0], Number.NEGATIVE_INFINITY)}, ${end(c.sequential.ci[1], Number.POSITIVE_INFINITY)}]`
            : `(${c.sequential.reason ?? 'no estimate'})`;
          console.log(
            `  ${m.role.padEnd(9)} ${m.metric.padEnd(14)} ${c.arm.padEnd(10)} lift ${fmtLift(c.sequential.estimate).padStart(8)} ${ci}  ${c.verdict}`,
          );
        }
      }
      if (r.plan.usersPerArm)
        console.log(
          `plan: ${r.plan.usersPerArm} users per arm for the MDE (fixed horizon, 80% power${r.plan.alternative === 'one-sided' ? ', one-sided' : ''}); ${r.plan.usersSoFar ?? 0} so far in the pacing arm` +
            `${r.plan.daysToDecision !== undefined ? `, about ${fmtDays(r.plan.daysToDecision)} more` : ''}` +
            ' (the always-valid interval may decide earlier: see the decision)',
        );
      else if (r.plan.reason) console.log(`plan: ${r.plan.reason}`);
      if (body.decision)
        console.log(
          `decision: ${body.decision.action}${body.decision.acted ? ' (done)' : body.decision.action === 'continue' ? '' : ' (recommended)'}: ${body.decision.reason}`,
        );
    });
}

interface ResultsBody {
  results: {
    experiment: string;
    status: string;
    asOf?: string;
    arms: { arm: string; users: number }[];
    srm: { pValue: number; mismatch: boolean };
    metrics: {
      metric: string;
      role: string;
      comparisons: { arm: string; sequential: { estimate?: number; ci?: [number, number]; reason?: string }; verdict: string }[];
    }[];
    plan: { usersPerArm?: number; alternative?: string; usersSoFar?: number; daysToDecision?: number; reason?: string };
  };
  decision?: { action: string; acted: boolean; reason: string };
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new InputError(`cannot read an experiment definition: ${(err as Error).message}`, { file });
  }
}

function versionOf(text: string): number {
  const v = Number(text);
  if (!Number.isInteger(v) || v < 1) throw new InputError(`--version must be a whole number from \`wb experiments show\`, not ${JSON.stringify(text)}`);
  return v;
}
