import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { openChangeFeed } from '../serving/cluster/changes.js';
import { importDirectoryRegistry, isPostgresUrl, openModelRegistry } from '../serving/models/registry-postgres.js';
import { dataDir, oltpUrl, registryDir } from '../workbench/config.js';
import { InputError } from '../workbench/errors.js';
import { cardHtml, cardMarkdown, loadModelCard, type ModelCard } from '../workbench/models/card.js';
import { ModelRegistry, type UnreadableVersion } from '../workbench/models/registry.js';
import { openTracking } from '../workbench/runs/index.js';

/**
 * `wb models`: the registry in the data dir, or with a PostgreSQL OLTP (`--oltp`, env WB_OLTP_URL)
 * the one the service instances share (the service re-reads aliases within seconds; at once, told
 * by a notification, with PostgreSQL).
 */
export function registerModels(program: Command): void {
  const models = program.command('models').description('the model registry: versions, metrics, aliases and their history');
  const oltpOption = ['--oltp <url>', 'OLTP database: with postgres://... the registry the service instances share there (env WB_OLTP_URL)'] as const;
  const withRegistry = async <T>(flags: { oltp?: string }, fn: (registry: ModelRegistry) => Promise<T> | T, warnUnused = true): Promise<T> => {
    const registry = await openModelRegistry({
      dataDir: dataDir(program.opts().dataDir),
      oltpUrl: oltpUrl(flags.oltp),
      ...(warnUnused ? { warn: (message: string) => console.error(`warning: ${message}`) } : {}),
    });
    try {
      return await fn(registry);
    } finally {
      await registry.close();
    }
  };

  models
    .command('list')
    .description('model versions, newest first, with their metrics and aliases; a version that cannot be read is listed marked with ! and why')
    .option('--name <model>', 'only this model')
    .option('--json', 'print JSON (an unreadable version is { version, name?, aliases, error })')
    .option('--strict', 'exit 1 when a version cannot be read (by default the listing exits 0 and says so on stderr)')
    .option(...oltpOption)
    .action(async (flags: { name?: string; json?: boolean; strict?: boolean; oltp?: string }) => {
      const [list, location] = await withRegistry(flags, (registry) => [registry.list(flags.name), registry.location] as const);
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
          `${unreadable.length} version${unreadable.length === 1 ? '' : 's'} in ${location} cannot be read (marked !): the service does not load ${unreadable.length === 1 ? 'it' : 'them'} and \`wb models alias\` refuses ${unreadable.length === 1 ? 'it' : 'them'}`,
        );
      }
    });

  models
    .command('history <name>')
    .description('every alias move of a model')
    .option(...oltpOption)
    .action(async (name: string, flags: { oltp?: string }) => {
      for (const m of await withRegistry(flags, (registry) => registry.history(name)))
        console.log(`${m.at}  ${m.alias.padEnd(12)} ${m.from ?? '(none)'} -> ${m.to}${m.by ? `  by ${m.by}` : ''}${m.reason ? `  (${m.reason})` : ''}`);
    });

  models
    .command('alias <name> <alias> <version>')
    .description('point an alias at a version (promote, or roll back by moving it to the previous version)')
    .option('--reason <text>', 'why, kept in the history')
    .option(...oltpOption)
    .action(async (name: string, alias: string, version: string, flags: { reason?: string; oltp?: string }) => {
      const [move, shared] = await withRegistry(flags, async (registry) => {
        // The version's model is built first: a changed, unreadable or unloadable version is refused and the alias stays.
        const moved = await registry.moveAlias(name, alias, version, { by: process.env.USER ?? 'wb', reason: flags.reason });
        return [moved, registry.isShared] as const;
      });
      // With PostgreSQL the running instances are told at once (they also re-read the aliases every few seconds).
      if (shared && !move.unchanged) {
        const feed = openChangeFeed(oltpUrl(flags.oltp));
        await feed
          .publish('aliases', `${name}/${alias}`)
          .catch((err: unknown) =>
            console.error(`warning: the running instances were not told (${(err as Error).message}); they follow the alias within seconds`),
          )
          .finally(() => feed.close());
      }
      console.log(move.unchanged ? `unchanged: version ${version} of ${name} is already ${alias}` : `${name} ${alias}: ${move.from ?? '(none)'} -> ${move.to}`);
    });

  models
    .command('import')
    .description(
      "copy the data dir's directory registry into the PostgreSQL one the service instances share (its versions, and the aliases it does not have yet)",
    )
    .option(...oltpOption)
    .action(async (flags: { oltp?: string }) => {
      const url = oltpUrl(flags.oltp);
      if (!isPostgresUrl(url))
        throw new InputError('wb models import copies into the registry of a PostgreSQL OLTP: give --oltp postgres://... (or WB_OLTP_URL)');
      const data = dataDir(program.opts().dataDir);
      const done = await withRegistry(flags, (shared) => importDirectoryRegistry(ModelRegistry.open(registryDir(data)), shared), false);
      for (const s of done.skipped) console.error(`skipped ${s.version}: ${s.error}`);
      console.log(
        `imported ${done.versions.length} version${done.versions.length === 1 ? '' : 's'} and ${done.aliases.length} alias${done.aliases.length === 1 ? '' : 'es'}` +
          (done.kept.length > 0 ? `; kept ${done.kept.join(', ')} as the shared registry has them` : ''),
      );
      if (done.aliases.length > 0) {
        const feed = openChangeFeed(url);
        await feed
          .publish('aliases', 'import')
          .catch(() => undefined)
          .finally(() => feed.close());
      }
    });

  models
    .command('card <name> [version]')
    .description(
      "a version's model card (version or alias; default the champion, else the newest): purpose, data and lineage, features' training distribution, metrics with intervals, calibration, the gate, the champion comparison",
    )
    .option('--out <file>', 'write it to a file: HTML when the name ends in .html, Markdown otherwise')
    .option('--json', 'print the card as JSON')
    .option(...oltpOption)
    .action(async (name: string, version: string | undefined, flags: { out?: string; json?: boolean; oltp?: string }) => {
      // The registry and the training runs of the same OLTP: with PostgreSQL, the ones the instances share.
      const store = await openTracking(oltpUrl(flags.oltp), dataDir(program.opts().dataDir));
      let card: ModelCard;
      try {
        card = await withRegistry(flags, (registry) => loadModelCard(registry, name, version, store));
      } finally {
        await store.close();
      }
      if (flags.json) return void console.log(JSON.stringify(card, null, 2));
      if (!flags.out) return void process.stdout.write(cardMarkdown(card));
      writeFileSync(flags.out, /\.html?$/i.test(flags.out) ? cardHtml(card) : cardMarkdown(card));
      console.log(`wrote the card of ${card.name} ${card.version} to ${flags.out}`);
    });
}
