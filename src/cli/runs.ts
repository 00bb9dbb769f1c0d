import type { Command } from 'commander';
import { dataDir, oltpUrl } from '../workbench/config.js';
import { InputError } from '../workbench/errors.js';
import { openTracking } from '../workbench/runs/index.js';
import { RUN_STATUSES, type ParamValue, type RunStatus, type TrackedRun, type TrackingStore } from '../workbench/runs/store.js';
import { compareRuns, type ComparedValue } from '../workbench/runs/table.js';
import { intOption } from './main.js';

/**
 * `wb runs`: the training runs recorded by notebooks (`startRun`) and jobs, in the data dir's
 * tracking.sqlite or the PostgreSQL database of WB_OLTP_URL. (`wb jobs runs` lists the DAG runs:
 * which steps ran; these are what was trained, with its parameters and metrics.)
 */
export function registerRuns(program: Command): void {
  const runs = program.command('runs').description('training runs: parameters, data snapshot, metrics and artefacts, listed, shown and compared');
  const withStore = async <T>(fn: (store: TrackingStore) => Promise<T>): Promise<T> => {
    const store = await openTracking(oltpUrl(), dataDir(program.opts().dataDir));
    try {
      return await fn(store);
    } finally {
      await store.close();
    }
  };

  runs
    .command('list')
    .description('runs, newest first: id, status, start, duration, name and metrics')
    .option('--name <name>', 'only runs of this name (a model)')
    .option('--status <status>', `only runs ${RUN_STATUSES.join(', ')}`)
    .option('--limit <n>', 'at most this many (1 to 1000)', intOption('--limit', 1), 50)
    .option('--json', 'print JSON')
    .action(async (flags: { name?: string; status?: string; limit: number; json?: boolean }) => {
      if (flags.status !== undefined && !RUN_STATUSES.includes(flags.status as RunStatus))
        throw new InputError(`--status ${JSON.stringify(flags.status)}: one of ${RUN_STATUSES.join(', ')}`);
      const list = await withStore((s) => s.listRuns({ name: flags.name, status: flags.status as RunStatus | undefined, limit: flags.limit }));
      if (flags.json) return void console.log(JSON.stringify(list, null, 2));
      if (list.length === 0) return void console.log('no runs recorded yet: run `wb jobs run app-churn`, or call startRun() in a notebook');
      for (const r of list) {
        const metrics = Object.entries(r.metrics)
          .slice(0, 6)
          .map(([k, v]) => `${shown(k, 30)} ${num(v)}`)
          .join(', ');
        console.log(`${r.id}  ${r.status.padEnd(8)} ${r.startedAt.slice(0, 19)}  ${duration(r).padStart(8)}  ${shown(r.name, 30).padEnd(24)} ${metrics}`);
      }
    });

  runs
    .command('show <id>')
    .description('one run (by id or a unique prefix of 4 or more digits): everything it recorded')
    .option('--json', 'print JSON')
    .action(async (id: string, flags: { json?: boolean }) => {
      const [run, histories] = await withStore(async (s) => {
        const r = await s.getRun(id);
        const h = new Map<string, number>();
        for (const key of Object.keys(r.metrics)) h.set(key, (await s.metricHistory(r.id, key)).length);
        return [r, h] as const;
      });
      if (flags.json) return void console.log(JSON.stringify(run, null, 2));
      const line = (k: string, v: string) => console.log(`${k.padEnd(14)} ${v}`);
      line('run', run.id);
      line('name', shown(run.name));
      line('status', run.status);
      line('source', shown(run.source ?? '-'));
      if (run.description) line('description', shown(run.description));
      line('started', run.startedAt);
      line('ended', run.endedAt ?? '(running)');
      line('duration', duration(run));
      line('git commit', shown(run.gitCommit ?? '-'));
      line('data snapshot', shown(run.dataSnapshot ?? '-'));
      console.log('\nparameters');
      for (const [k, v] of Object.entries(run.params)) console.log(`  ${shown(k, 60).padEnd(28)} ${shown(JSON.stringify(v), 200)}`);
      console.log('\nmetrics (last value, values logged)');
      for (const [k, v] of Object.entries(run.metrics)) console.log(`  ${shown(k, 60).padEnd(28)} ${num(v).padStart(12)}  ${histories.get(k) ?? 1}`);
      console.log('\nartefacts');
      for (const a of run.artifacts)
        console.log(`  ${shown(a.name, 60).padEnd(28)} ${a.ref ? `${shown(a.ref, 80)}  ` : ''}${shown(JSON.stringify(a.value), 160)}`);
    });

  runs
    .command('compare <ids...>')
    .description('runs side by side: parameters (with code and data) and metrics; rows whose values differ are marked *')
    .option('--diff', 'only the rows that differ')
    .option('--json', 'print JSON')
    .action(async (ids: string[], flags: { diff?: boolean; json?: boolean }) => {
      if (ids.length < 2) throw new InputError('compare needs at least two run ids');
      const list = await withStore(async (s) => {
        const out: TrackedRun[] = [];
        for (const id of ids) out.push(await s.getRun(id));
        return out;
      });
      const comparison = compareRuns(list);
      if (flags.json) return void console.log(JSON.stringify(comparison, null, 2));
      const header = ['', ...list.map((r) => `${r.id.slice(0, 8)} ${shown(r.name, 14)}`)];
      const rows = (title: string, values: ComparedValue[]) => [
        [`${title}`, ...list.map(() => '')],
        ...values.filter((v) => !flags.diff || v.differs).map((v) => [`${v.differs ? '*' : ' '} ${shown(v.key, 40)}`, ...v.values.map(cell)]),
      ];
      printTable([header, ...rows('parameters', comparison.params), ...rows('metrics', comparison.metrics)]);
      const differing = [...comparison.params, ...comparison.metrics].filter((v) => v.differs).length;
      console.log(`\n${differing} of ${comparison.params.length + comparison.metrics.length} rows differ (marked *)`);
    });
}

function cell(v: ParamValue | undefined): string {
  if (v === undefined) return '-';
  return typeof v === 'number' ? num(v) : shown(JSON.stringify(v), 30);
}

function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
}

function num(v: number): string {
  return Number.isInteger(v) ? String(v) : Number.isFinite(v) ? v.toFixed(4) : String(v);
}

function duration(r: TrackedRun): string {
  if (!r.endedAt) return 'running';
  const s = (Date.parse(r.endedAt) - Date.parse(r.startedAt)) / 1000;
  return s < 90 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`;
}

/** Text from a run, safe on a terminal: control and direction characters shown as escapes, cut to `max`. */
function shown(s: string, max = 500): string {
  // eslint-disable-next-line no-control-regex
  const safe = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return safe.length > max ? `${safe.slice(0, max - 3)}...` : safe;
}
