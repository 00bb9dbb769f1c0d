import type { Command } from 'commander';
import { registryDir } from '../workbench/config.js';
import { ModelRegistry, type UnreadableVersion } from '../workbench/models/registry.js';
import { registerModelCard } from './runs.js';

/** `wb models`: the registry in the data dir (the service re-reads aliases within seconds). */
export function registerModels(program: Command): void {
  const models = program.command('models').description('the model registry: versions, metrics, aliases and their history');
  const registry = () => ModelRegistry.open(registryDir(program.opts().dataDir));

  models
    .command('list')
    .description('model versions, newest first, with their metrics and aliases; a version that cannot be read is listed marked with ! and why')
    .option('--name <model>', 'only this model')
    .option('--json', 'print JSON (an unreadable version is { version, name?, aliases, error })')
    .option('--strict', 'exit 1 when a version cannot be read (by default the listing exits 0 and says so on stderr)')
    .action((flags: { name?: string; json?: boolean; strict?: boolean }) => {
      const list = registry().list(flags.name);
      const unreadable = list.filter((v): v is UnreadableVersion => 'error' in v);
      if (flags.strict && unreadable.length > 0) process.exitCode = 1;
      if (flags.json) return void console.log(JSON.stringify(list, null, 2));
      if (list.length === 0) return void console.log('no models in the registry yet: publish one from a notebook or `wb jobs run`');
      for (const v of list) {
        if ('error' in v) {
          // One line, whatever the error holds: a listing stays one row per version.
          console.log(
            `! ${(v.name ?? '?').padEnd(22)} ${v.version}  ${'UNREADABLE'.padEnd(29)} ${(v.aliases.join(',') || '-').padEnd(20)} ${v.error.replace(/\s+/g, ' ')}`,
          );
          continue;
        }
        const metrics = Object.entries(v.metrics)
          .map(([k, x]) => `${k} ${Number.isInteger(x) ? x : x.toFixed(4)}`)
          .join(', ');
        console.log(
          `${v.name.padEnd(24)} ${v.version}  ${v.createdAt.slice(0, 19)}  ${v.kind.padEnd(8)} ${(v.aliases.join(',') || '-').padEnd(20)} ${metrics}`,
        );
      }
      if (unreadable.length > 0) {
        console.error(
          `${unreadable.length} version${unreadable.length === 1 ? '' : 's'} in ${registryDir(program.opts().dataDir)} cannot be read (marked !): the service does not load ${unreadable.length === 1 ? 'it' : 'them'} and \`wb models alias\` refuses ${unreadable.length === 1 ? 'it' : 'them'}`,
        );
      }
    });

  models
    .command('history <name>')
    .description('every alias move of a model')
    .action((name: string) => {
      for (const m of registry().history(name))
        console.log(`${m.at}  ${m.alias.padEnd(12)} ${m.from ?? '(none)'} -> ${m.to}${m.by ? `  by ${m.by}` : ''}${m.reason ? `  (${m.reason})` : ''}`);
    });

  models
    .command('alias <name> <alias> <version>')
    .description('point an alias at a version (promote, or roll back by moving it to the previous version)')
    .option('--reason <text>', 'why, kept in the history')
    .action(async (name: string, alias: string, version: string, flags: { reason?: string }) => {
      // The version's model is built first: a changed, unreadable or unloadable version is refused and the alias stays.
      const move = await registry().moveAlias(name, alias, version, { by: process.env.USER ?? 'wb', reason: flags.reason });
      console.log(move.unchanged ? `unchanged: version ${version} of ${name} is already ${alias}` : `${name} ${alias}: ${move.from ?? '(none)'} -> ${move.to}`);
    });

  registerModelCard(models, () => program.opts().dataDir);
}
