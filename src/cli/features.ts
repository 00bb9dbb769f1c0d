import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { InputError } from '../workbench/errors.js';
import { appFeatures, retailFeatures } from '../workbench/features/catalog.js';
import { featureSet, type Feature } from '../workbench/features/definition.js';
import { featureParity } from '../workbench/features/parity.js';
import { skewReport } from '../workbench/features/skew.js';
import { openModelRegistry } from '../serving/models/registry-postgres.js';
import { dataDir, oltpUrl } from '../workbench/config.js';
import { consoleProgress, lakeDir, Lakehouse } from '../workbench/index.js';
import { intOption } from './main.js';

const SETS: Record<string, Feature[]> = { retail: retailFeatures, app: appFeatures };

/** A built-in feature set by name, or a JSON file holding an array of definitions (or `{ features: [...] }`). */
function loadSet(spec: string): Feature[] {
  const builtIn = SETS[spec];
  if (builtIn) return builtIn;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(spec, 'utf8'));
  } catch (err) {
    throw new InputError(`--features ${spec}: neither a built-in set (${Object.keys(SETS).join(', ')}) nor a readable JSON file (${(err as Error).message})`);
  }
  const list = Array.isArray(parsed) ? parsed : (parsed as { features?: unknown }).features;
  if (!Array.isArray(list)) throw new InputError(`${spec}: expected an array of feature definitions, or { "features": [...] }`);
  return featureSet(list);
}

export function registerFeatures(program: Command): void {
  const features = program.command('features').description('feature definitions: list them, check offline/online parity');

  features
    .command('list')
    .description('the definitions of a feature set, with their versions')
    .option('--features <set>', `a built-in set (${Object.keys(SETS).join(', ')}) or a JSON file`, 'retail')
    .action((flags: { features: string }) => {
      for (const f of loadSet(flags.features)) {
        const what = `${f.aggregation}${f.prop ? `(${f.prop})` : ''}${f.n ? ` n=${f.n}` : ''} of ${f.source.event}${f.source.where ? ` where ${JSON.stringify(f.source.where)}` : ''} over ${f.window}`;
        console.log(`${f.name.padEnd(24)} ${f.version}  ${what}${f.description ? `  - ${f.description}` : ''}`);
      }
    });

  features
    .command('parity')
    .description('replay a source of the lakehouse through the online compiler and compare with the offline compiler at sampled times; exits 1 on any mismatch')
    .option('--source <source>', 'the events to replay: retail, app or live', 'retail')
    .option('--features <set>', `a built-in set (${Object.keys(SETS).join(', ')}) or a JSON file; default the set named like the source`)
    .option('--samples <n>', 'how many (user, time) samples', intOption('--samples', 1), 500)
    .option('--seed <n>', 'sampling seed', intOption('--seed', 0), 1)
    .option('--json', 'print the report as JSON')
    .action(async (flags: { source: string; features?: string; samples: number; seed: number; json?: boolean }) => {
      const set = loadSet(flags.features ?? flags.source);
      const lake = await Lakehouse.open(lakeDir(program.opts().dataDir));
      try {
        const started = Date.now();
        const report = await featureParity(lake, set, {
          source: flags.source,
          samples: flags.samples,
          seed: flags.seed,
          progress: flags.json ? undefined : consoleProgress(),
        });
        if (flags.json) console.log(JSON.stringify(report));
        else {
          console.log(`\n${'feature'.padEnd(24)} ${'compared'.padStart(8)} ${'mismatches'.padStart(10)} largest difference`);
          for (const f of report.features) {
            console.log(
              `${f.name.padEnd(24)} ${String(f.compared).padStart(8)} ${String(f.mismatches).padStart(10)} ${f.largestDifference}${f.example ? `  e.g. ${f.example.user_id} at ${f.example.as_of}: offline ${JSON.stringify(f.example.offline)}, online ${JSON.stringify(f.example.online)}` : ''}`,
            );
          }
          console.log(
            `\n${report.source}: ${report.samples} samples x ${report.features.length} features over ${report.events.toLocaleString('en-US')} events: ${report.mismatches} mismatches (${((Date.now() - started) / 1000).toFixed(1)} s)`,
          );
        }
        if (report.mismatches > 0) process.exitCode = 1;
      } finally {
        lake.close();
      }
    });

  features
    .command('skew')
    .description(
      "training/serving skew: the feature values served with a model's logged predictions against the offline values at the same times; exits 1 on any difference",
    )
    .requiredOption('--model <name>', 'the model whose predictions to check')
    .option('--limit <n>', 'the most recent predictions to check', intOption('--limit', 1), 1000)
    .option('--json', 'print the report as JSON')
    .option('--oltp <url>', 'OLTP database: with postgres://... the model registry the service instances share there (env WB_OLTP_URL)')
    .action(async (flags: { model: string; limit: number; json?: boolean; oltp?: string }) => {
      const dir = dataDir(program.opts().dataDir);
      // The versions the predictions name are in the registry the service read: with PostgreSQL, the shared one.
      const registry = await openModelRegistry({ dataDir: dir, oltpUrl: oltpUrl(flags.oltp), warn: (message) => console.error(`warning: ${message}`) });
      const lake = await Lakehouse.open(lakeDir(dir)).catch(async (err: unknown) => {
        await registry.close();
        throw err;
      });
      try {
        const report = await skewReport(lake, registry, { model: flags.model, limit: flags.limit });
        if (flags.json) console.log(JSON.stringify(report));
        else {
          for (const f of report.features) {
            console.log(
              `${f.name.padEnd(24)} ${String(f.compared).padStart(8)} compared ${String(f.mismatches).padStart(6)} differ, largest ${f.largestDifference}${f.example ? `  e.g. ${f.example.user_id} at ${f.example.as_of}: served ${JSON.stringify(f.example.online)}, offline ${JSON.stringify(f.example.offline)}` : ''}`,
            );
          }
          console.log(`${report.model}: ${report.predictions} predictions, ${report.mismatches} served values differ from the offline recomputation`);
        }
        if (report.mismatches > 0) process.exitCode = 1;
      } finally {
        lake.close();
        await registry.close();
      }
    });
}
