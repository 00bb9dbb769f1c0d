import { InvalidArgumentError, type Command } from 'commander';
import { readFileSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import { openKeyStore, type ApiKeyStore } from '../serving/auth/keys.js';
import { openChangeFeed } from '../serving/cluster/changes.js';
import { parseSchedule } from '../serving/jobs/scheduler.js';
import { parsePrecompute } from '../serving/models/precompute.js';
import { LEVELS, searchLogs, type LevelName } from '../serving/observability/log-search.js';
import { createLogger } from '../serving/observability/logger.js';
import { loadAnomalySettings, resolveMetrics, type MonitorSettings } from '../serving/observability/monitor-settings.js';
import type { SeriesOverrides } from '../serving/observability/series-detector.js';
import { startService } from '../serving/service.js';
import { dataDir, oltpUrl } from '../workbench/config.js';
import { InputError } from '../workbench/errors.js';
import { collect, intOption } from './main.js';

const version = (): string => (JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;

/** `wb serve` and `wb keys`: the service and its API keys. */
export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('start the service: event ingest, the event log and its consumers (Ctrl-C stops it gracefully)')
    .option('--port <n>', 'port to listen on (env WB_PORT)', intOption('--port', 0), Number(process.env.WB_PORT ?? 8080))
    .option('--host <host>', 'address to listen on (env WB_HOST)', process.env.WB_HOST ?? '127.0.0.1')
    .option(
      '--event-log <spec>',
      'file (embedded, default) or nats://host:4222[?stream=NAME] for JetStream (env WB_EVENT_LOG)',
      process.env.WB_EVENT_LOG ?? 'file',
    )
    .option(
      '--precompute <spec>',
      'on an event, score its user and write the score to OLTP predictions, e.g. login=app-churn (env WB_PRECOMPUTE)',
      process.env.WB_PRECOMPUTE ?? '',
    )
    .option('--schedule <spec>', 'training DAGs to run on a schedule, e.g. retail-propensity=24h,app-churn=6h (env WB_SCHEDULE)', process.env.WB_SCHEDULE ?? '')
    .option(
      '--feature-store <spec>',
      'memory (embedded, default) or redis://host:6379[/db][?prefix=name] for the online feature store (env WB_FEATURE_STORE; keys namespaced by the prefix, else the OLTP schema)',
      process.env.WB_FEATURE_STORE ?? 'memory',
    )
    .option('--oltp <url>', 'OLTP database: postgres://... or a SQLite file (env WB_OLTP_URL)')
    .option('--event-names <names>', 'accept only these event names, comma-separated (env WB_EVENT_NAMES; default: any)', process.env.WB_EVENT_NAMES)
    .option('--alert-webhook <url>', 'POST each anomaly alert as JSON to this URL (env WB_ALERT_WEBHOOK)', process.env.WB_ALERT_WEBHOOK)
    .option(
      '--anomaly-settings <file>',
      'JSON file of the metrics watched for anomalies and their detector settings (env WB_ANOMALY_SETTINGS; README: Observability)',
      process.env.WB_ANOMALY_SETTINGS,
    )
    .option(
      '--anomaly-step <minutes>',
      'interval the anomaly detectors judge, for every metric; must divide a day (env WB_ANOMALY_STEP_MINUTES; default 15)',
      process.env.WB_ANOMALY_STEP_MINUTES,
    )
    .option(
      '--anomaly-time-zone <zone>',
      "IANA time zone of the metrics' daily and weekly seasons, e.g. Europe/London (env WB_ANOMALY_TIME_ZONE; default UTC)",
      process.env.WB_ANOMALY_TIME_ZONE,
    )
    .option(
      '--drain-seconds <s>',
      'on stop, how long requests in flight may finish before their connections are closed (env WB_DRAIN_SECONDS)',
      secondsOption('--drain-seconds'),
    )
    .option(
      '--headers-timeout-seconds <s>',
      'a client must send its request head within this time (env WB_HEADERS_TIMEOUT_SECONDS)',
      secondsOption('--headers-timeout-seconds'),
    )
    .option(
      '--request-timeout-seconds <s>',
      'a client must send its whole request, head and body, within this time (env WB_REQUEST_TIMEOUT_SECONDS)',
      secondsOption('--request-timeout-seconds'),
    )
    .option('--repair-log', 'start even when a corrupt record in the event log is followed by intact records: cut them (kept aside, reported)')
    .option(
      '--instance-dir <dir>',
      "this instance's own state: read models' snapshots and offsets, in-memory features, file event log and dead letters, logs; several instances share the data dir, each with its own instance dir (env WB_INSTANCE_DIR; default the data dir)",
      process.env.WB_INSTANCE_DIR,
    )
    .option('--quiet', 'log to the files in <instance-dir>/logs only, not to standard output')
    .action(
      async (flags: {
        port: number;
        host: string;
        eventLog: string;
        featureStore: string;
        schedule: string;
        precompute: string;
        oltp?: string;
        eventNames?: string;
        alertWebhook?: string;
        anomalySettings?: string;
        anomalyStep?: string;
        anomalyTimeZone?: string;
        drainSeconds?: number;
        headersTimeoutSeconds?: number;
        requestTimeoutSeconds?: number;
        repairLog?: boolean;
        instanceDir?: string;
        quiet?: boolean;
      }) => {
        const data = dataDir(program.opts().dataDir);
        const instanceDir = flags.instanceDir ? resolvePath(flags.instanceDir) : data;
        const logger = createLogger(instanceDir, { quiet: flags.quiet });
        const eventNames = flags.eventNames
          ? new Set(
              flags.eventNames
                .split(',')
                .map((s) => s.trim())
                .filter(Boolean),
            )
          : undefined;
        const service = await startService({
          dataDir: data,
          instanceDir,
          port: flags.port,
          host: flags.host,
          oltpUrl: oltpUrl(flags.oltp),
          eventLog: flags.eventLog,
          featureStore: flags.featureStore,
          schedule: parseSchedule(flags.schedule),
          precompute: parsePrecompute(flags.precompute),
          ingest: eventNames ? { eventNames } : {},
          alertWebhook: flags.alertWebhook,
          anomaly: anomalySettings(flags),
          drainMs: (flags.drainSeconds ?? seconds('WB_DRAIN_SECONDS', 10)) * 1000,
          timeouts: {
            headersMs: (flags.headersTimeoutSeconds ?? seconds('WB_HEADERS_TIMEOUT_SECONDS', 10)) * 1000,
            requestMs: (flags.requestTimeoutSeconds ?? seconds('WB_REQUEST_TIMEOUT_SECONDS', 60)) * 1000,
          },
          repairLog: flags.repairLog === true,
          logger,
          version: version(),
        }).catch((err: unknown) => {
          // What started before the failure (consumers, leases, connections) would keep the process
          // running without a service (a port in use did): it exits once the error is printed.
          setTimeout(() => process.exit(1), 200).unref();
          throw err;
        });
        const keyStore = await openKeyStore(data, oltpUrl(flags.oltp));
        const noKey = keyStore.list().every((k) => k.revoked_at);
        await keyStore.close();
        if (noKey) {
          console.error('no API key yet: create one with `npx wb keys create --name me --scope admin` (the service picks it up within seconds)');
        }
        console.error(`plg-workbench service on ${service.url} (event log: ${service.log.kind}); Ctrl-C to stop`);
        await new Promise<void>((resolve) => {
          const shutdown = (signal: string) => {
            logger.info({ signal }, 'stopping');
            void service.stop().then(resolve);
          };
          process.once('SIGINT', () => shutdown('SIGINT'));
          process.once('SIGTERM', () => shutdown('SIGTERM'));
        });
        logger.flush();
      },
    );

  const keys = program.command('keys').description('API keys of the service (kept hashed in <data-dir>/keys.json)');
  const oltpOption = ['--oltp <url>', 'OLTP database: with postgres://... the keys are kept there, for every instance (env WB_OLTP_URL)'] as const;
  // With PostgreSQL the running instances are told at once (they also re-read the keys every few seconds).
  const withStore = async (flags: { oltp?: string }, fn: (store: ApiKeyStore) => Promise<string | undefined>) => {
    const url = oltpUrl(flags.oltp);
    const store = await openKeyStore(dataDir(program.opts().dataDir), url, { warn: (message) => console.error(`warning: ${message}`) });
    try {
      const changed = await fn(store);
      if (changed !== undefined && store.kind === 'postgres') {
        const feed = openChangeFeed(url);
        await feed
          .publish('keys', changed)
          .catch((err: unknown) =>
            console.error(`warning: the running instances were not told (${(err as Error).message}); they see the change within seconds`),
          )
          .finally(() => feed.close());
      }
    } finally {
      await store.close();
    }
  };
  keys
    .command('create')
    .description('create a key; it is printed once and cannot be shown again')
    .requiredOption('--name <name>', 'who or what uses the key')
    .option('--scope <scope>', 'ingest, read or admin (repeatable; admin includes the others)', collect, [])
    .option(...oltpOption)
    .action((flags: { name: string; scope: string[]; oltp?: string }) =>
      withStore(flags, async (store) => {
        if (flags.scope.length === 0) throw new InputError('give at least one --scope (ingest, read, admin)');
        const { key, info } = await store.create(flags.name, flags.scope);
        console.error(`created key ${info.id} "${info.name}" with scopes ${info.scopes.join(', ')}; store it now, it is not kept:`);
        console.log(key);
        return info.id;
      }),
    );
  keys
    .command('list')
    .description('list keys (ids, names, scopes; never secrets)')
    .option(...oltpOption)
    .action((flags: { oltp?: string }) =>
      withStore(flags, async (store) => {
        for (const k of store.list())
          console.log(
            `${k.id}  ${k.name.padEnd(20)} ${k.scopes.join(',').padEnd(18)} created ${k.created_at}${k.revoked_at ? `  REVOKED ${k.revoked_at}` : ''}`,
          );
        return undefined;
      }),
    );
  keys
    .command('revoke')
    .description('revoke a key by id; a running service stops accepting it within seconds (within a second with PostgreSQL)')
    .argument('<id>', 'the key id (from `wb keys list`)')
    .option(...oltpOption)
    .action((id: string, flags: { oltp?: string }) =>
      withStore(flags, async (store) => {
        await store.revoke(id);
        console.log(`revoked ${id}`);
        return id;
      }),
    );
}

/** `wb logs`: search the service's JSON logs by level, time range and text. */
export function registerLogs(program: Command): void {
  program
    .command('logs')
    .description("search the service's logs (<data-dir>/logs) by level, time range and text")
    .option('--level <level>', `lowest level: ${Object.keys(LEVELS).join(', ')}`, 'info')
    .option('--since <time>', 'from this time: ISO 8601, or a duration back from now like 15m, 2h, 3d')
    .option('--until <time>', 'up to this time (same forms)')
    .option('--grep <text>', 'only records containing this text (case-insensitive)')
    .option('--limit <n>', 'at most this many records, the newest', intOption('--limit', 1), 100)
    .option('--json', 'print the records as JSON lines')
    .action(async (flags: { level: string; since?: string; until?: string; grep?: string; limit: number; json?: boolean }) => {
      if (!(flags.level in LEVELS)) throw new InputError(`--level ${JSON.stringify(flags.level)}: use one of ${Object.keys(LEVELS).join(', ')}`);
      const { records, files, unreadable } = await searchLogs(dataDir(program.opts().dataDir), {
        level: flags.level as LevelName,
        since: flags.since === undefined ? undefined : parseWhen('--since', flags.since),
        until: flags.until === undefined ? undefined : parseWhen('--until', flags.until),
        text: flags.grep,
        limit: flags.limit,
      });
      const names = Object.fromEntries(Object.entries(LEVELS).map(([k, v]) => [v, k.toUpperCase()]));
      for (const r of records) {
        if (flags.json) console.log(JSON.stringify(r));
        else {
          const { level, time, msg, service: _service, pid: _pid, hostname: _host, ...rest } = r;
          const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
          console.log(`${time} ${(names[level] ?? String(level)).padEnd(5)} ${msg ?? ''}${extra}`);
        }
      }
      console.error(`${records.length} records from ${files} log files${unreadable ? ` (${unreadable} lines were not JSON and were skipped)` : ''}`);
    });
}

/** The anomaly settings file and the CLI's overrides, checked before the service starts. */
function anomalySettings(flags: { anomalySettings?: string; anomalyStep?: string; anomalyTimeZone?: string }): MonitorSettings {
  const overrides: SeriesOverrides = {};
  if (flags.anomalyStep !== undefined) {
    const minutes = Number(flags.anomalyStep);
    if (!(Number.isFinite(minutes) && minutes > 0))
      throw new InputError(`--anomaly-step must be a number of minutes, got ${JSON.stringify(flags.anomalyStep)}`);
    overrides.stepMs = Math.round(minutes * 60_000);
  }
  if (flags.anomalyTimeZone !== undefined) overrides.timeZone = flags.anomalyTimeZone;
  const settings: MonitorSettings = { file: flags.anomalySettings ? loadAnomalySettings(flags.anomalySettings) : undefined, overrides };
  resolveMetrics(settings); // an invalid step or zone is an InputError now, not a failed start later
  return settings;
}

/** A non-negative number of seconds (fractions allowed). */
const isSeconds = (text: string): boolean => text.trim() !== '' && Number.isFinite(Number(text)) && Number(text) >= 0;

function secondsOption(name: string) {
  return (value: string): number => {
    if (!isSeconds(value)) throw new InvalidArgumentError(`${name} must be a number of seconds of at least 0, got ${JSON.stringify(value)}`);
    return Number(value);
  };
}

/** A seconds setting from the environment (when its option is not given). */
function seconds(env: string, fallback: number): number {
  const text = process.env[env];
  if (text === undefined) return fallback;
  if (!isSeconds(text)) throw new InputError(`${env} must be a number of seconds of at least 0, got ${JSON.stringify(text)}`);
  return Number(text);
}

/** An ISO instant, or a duration back from now (`90s`, `15m`, `2h`, `3d`). */
export function parseWhen(flag: string, text: string): number {
  const m = /^(\d+)([smhd])$/.exec(text.trim());
  if (m) return Date.now() - Number(m[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[m[2] as 's' | 'm' | 'h' | 'd'];
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new InputError(`${flag} ${JSON.stringify(text)}: give an ISO time (2026-11-27T10:00:00Z) or a duration like 15m, 2h, 3d`);
  return t;
}
