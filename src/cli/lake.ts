import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { simulateIntoOltp } from '../app/history.js';
import { SimulationConfigSchema } from '../app/simulator.js';
import { Lakehouse, buildLakehouse, consoleProgress, dataDir, lakeDir, openOltp, oltpUrl, type BuildReport } from '../workbench/index.js';
import { InputError } from '../workbench/errors.js';
import { intOption } from './main.js';
import { openBlobStore } from '../serving/cluster/blob-store/open.js';
import { SharedArchive } from '../serving/cluster/shared-archive.js';
import { SharedLakehouse } from '../serving/cluster/shared-lakehouse.js';

export interface LakeBuildFlags {
  retail?: string;
  telco?: string;
  users: number;
  days: number;
  seed: number;
  start: string;
  force?: boolean;
  oltp?: string;
  /** Only `wb lake build` offers it: `wb start` always refuses a CSV that yields no row. */
  allowEmpty?: boolean;
}

export const DATA_FILES = {
  retail: 'data/online-retail-uci/online_retail.csv.gz',
  telco: 'data/telco-customer-churn/Telco-Customer-Churn.csv.gz',
};

export function addBuildOptions(cmd: Command): Command {
  const sim = SimulationConfigSchema.parse({});
  return cmd
    .option('--retail <file>', 'the UCI Online Retail log (CSV, gzip allowed)', DATA_FILES.retail)
    .option('--telco <file>', 'the IBM Telco churn table (CSV, gzip allowed)', DATA_FILES.telco)
    .option('--users <n>', 'simulated app: number of users', intOption('--users', 1), sim.users)
    .option('--days <n>', 'simulated app: days of history', intOption('--days', 1), sim.days)
    .option('--seed <n>', 'simulated app: random seed (same seed, same data)', intOption('--seed', 0), sim.seed)
    .option('--start <date>', 'simulated app: first day (YYYY-MM-DD)', sim.start)
    .option('--oltp <url>', 'OLTP database: postgres://... or a SQLite file (env WB_OLTP_URL; default the data dir)')
    .option('--force', 'rebuild every source even if its inputs have not changed');
}

/** Builds the lakehouse from the shipped data and the simulator, as `wb lake build` and `wb start` do. */
export async function runBuild(flags: LakeBuildFlags, dataDirFlag: string): Promise<BuildReport> {
  const data = dataDir(dataDirFlag);
  const config = SimulationConfigSchema.safeParse({ seed: flags.seed, users: flags.users, days: flags.days, start: flags.start });
  if (!config.success) {
    const issue = config.error.issues[0]!;
    throw new InputError(`--${String(issue.path[0])}: ${issue.message}`);
  }
  for (const [flag, file] of [
    ['--retail', flags.retail],
    ['--telco', flags.telco],
  ] as const) {
    if (file && !existsSync(file)) {
      throw new InputError(`${flag} ${file}: no such file. The shipped datasets live in data/ of the repository; run from its root or pass ${flag}`);
    }
  }
  const progress = consoleProgress();
  const oltp = await openOltp(oltpUrl(flags.oltp), data);
  try {
    const app = await simulateIntoOltp(config.data, oltp);
    return await buildLakehouse({
      lakeDir: lakeDir(data),
      retail: flags.retail,
      telco: flags.telco,
      app,
      oltp,
      force: flags.force,
      allowEmpty: flags.allowEmpty,
      progress,
    });
  } finally {
    await oltp.close();
  }
}

export function printBuildReport(report: BuildReport): void {
  console.log(`\nlakehouse: ${relative(process.cwd(), report.lake) || '.'} (${report.seconds.toFixed(1)} s)`);
  // `read` carries its unit: a CSV source counts the lines after its header, so read can be checked
  // against `wc -l` and a quote that runs on can no longer hide lost lines inside one record.
  const rows = report.sources.map((s) => [
    s.name,
    `${s.read.toLocaleString('en-US')} ${s.unit}`,
    s.accepted.toLocaleString('en-US'),
    s.quarantined.toLocaleString('en-US'),
    s.accepted + s.quarantined === s.read ? 'yes' : 'NO',
    s.upToDate ? 'up to date' : 'built',
  ]);
  const header = ['source', 'read', 'accepted', 'quarantined', 'accepted + quarantined = read', 'status'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [header, ...rows]) console.log(r.map((c, i) => (i === 0 || i === 5 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
  for (const s of report.sources.filter((x) => x.unit === 'lines' && x.accepted === 0)) {
    const why = s.read === 0 ? 'it has no data lines' : `all ${s.read.toLocaleString('en-US')} of its lines were quarantined`;
    console.log(`\n${s.name} has 0 rows: ${why} (${s.input}; written empty because of --allow-empty)`);
  }
  const quarantined = report.sources.filter((s) => s.quarantined > 0).map((s) => s.name);
  if (quarantined.length > 0) {
    console.log(
      `\nlines that could not be loaded, with the line number and the reason: ${relative(process.cwd(), join(report.lake, 'quarantine')) || '.'}/ (or the quarantine view)`,
    );
  }
}

export function registerLake(program: Command): void {
  const lake = program.command('lake').description('build and inspect the lakehouse (Parquet archive + OLTP replica, queried with DuckDB)');

  addBuildOptions(
    lake
      .command('build')
      .description('build the lakehouse from the shipped data and the simulated app; rebuilding unchanged inputs changes nothing')
      .option('--allow-empty', 'accept a CSV that yields no row (empty, header only, or every line quarantined) and write its table empty; refused by default'),
  ).action(async (flags: LakeBuildFlags) => {
    const report = await runBuild(flags, program.opts().dataDir);
    printBuildReport(report);
  });

  lake
    .command('info')
    .description('what the lakehouse holds: sources, row counts, views, and when it was built')
    .option('--no-verify', 'skip checking files against their checksums')
    .action(async (flags: { verify: boolean }) => {
      const root = lakeDir(program.opts().dataDir);
      const lh = await Lakehouse.open(root, { verify: flags.verify });
      try {
        console.log(`lakehouse: ${root}\nbuilt: ${lh.manifest.built_at}${flags.verify ? ' (all files match their checksums)' : ''}\n`);
        for (const [name, s] of Object.entries(lh.manifest.sources)) {
          const unit = name === 'retail' ? 'lines' : 'events'; // the retail log is a CSV: its counts are lines
          console.log(
            `events/${name}: ${s.accepted.toLocaleString('en-US')} events, ${s.first_time?.slice(0, 10)} .. ${s.last_time?.slice(0, 10)}, ${s.files.length} files, ${s.quarantined.toLocaleString('en-US')} of ${s.read.toLocaleString('en-US')} ${unit} quarantined (from ${s.input})`,
          );
        }
        for (const [name, t] of Object.entries(lh.manifest.tables)) {
          console.log(`table ${name}: ${t.accepted.toLocaleString('en-US')} rows, snapshot ${t.file.sha256.slice(0, 12)} (from ${t.input})`);
        }
        console.log('\nviews:');
        for (const v of lh.views) console.log(`  ${v.name.padEnd(18)} ${v.description}`);
      } finally {
        lh.close();
      }
    });

  lake
    .command('sync')
    .description(
      "bring this machine's copy of the live archive up to the blob store's (instances that share no disk; the blob store is WB_BLOB_STORE, else <data dir>/blobs)",
    )
    .option('--blob-store <spec>', 'a directory, file://<dir> or s3://<bucket>/<prefix/>?endpoint=... (default WB_BLOB_STORE)')
    .option('--schema <name>', "the deployment's OLTP schema, when its service runs with one (its archive is under that namespace)")
    .action(async (flags: { blobStore?: string; schema?: string }) => {
      const dir = program.opts().dataDir as string;
      const blobs = await openBlobStore(flags.blobStore ?? process.env.WB_BLOB_STORE, join(dir, 'blobs'));
      try {
        const built = await new SharedLakehouse(blobs, { namespace: flags.schema }).sync(lakeDir(dir));
        if (built.busy) throw new InputError(`a lakehouse build is running on ${lakeDir(dir)}; sync when it has finished`);
        console.log(
          built.changed
            ? `lakehouse build from ${blobs.location}: fetched ${built.fetched} files (${built.bytes.toLocaleString('en-US')} bytes), each checked against the published manifest; removed ${built.removed} of an earlier build`
            : `lakehouse build: the same as the one published in ${blobs.location} (or none is published)`,
        );
        const synced = await new SharedArchive(blobs, { namespace: flags.schema }).sync(lakeDir(dir));
        console.log(
          `live archive from ${blobs.location}: ${synced.batches.toLocaleString('en-US')} batches up to offset ${synced.end.toLocaleString('en-US')}; fetched ${synced.fetched} files (${synced.bytes.toLocaleString('en-US')} bytes), each checked against its commit record`,
        );
        for (const f of synced.setAside) console.log(`set aside (no commit names it): ${f}`);
      } finally {
        await blobs.close();
      }
    });

  lake
    .command('push')
    .description(
      "publish this lakehouse's build (sources, simulated app, OLTP replica) to the blob store, for the machines of a deployment that share no disk (wb lake sync on each)",
    )
    .option('--blob-store <spec>', 'a directory, file://<dir> or s3://<bucket>/<prefix/>?endpoint=... (default WB_BLOB_STORE)')
    .option('--schema <name>', "the deployment's OLTP schema, when its service runs with one")
    .action(async (flags: { blobStore?: string; schema?: string }) => {
      const dir = program.opts().dataDir as string;
      const blobs = await openBlobStore(flags.blobStore ?? process.env.WB_BLOB_STORE, join(dir, 'blobs'));
      try {
        const pushed = await new SharedLakehouse(blobs, { namespace: flags.schema }).push(lakeDir(dir));
        console.log(
          `published the lakehouse build to ${blobs.location}: ${pushed.put} files put (${pushed.bytes.toLocaleString('en-US')} bytes), ${pushed.kept} already there, then its manifest`,
        );
      } finally {
        await blobs.close();
      }
    });

  lake
    .command('path')
    .description('print the lakehouse directory (for scripts)')
    .action(() => console.log(resolve(lakeDir(program.opts().dataDir))));
}
