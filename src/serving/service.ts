import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { wallClock, type Clock } from '../workbench/clock.js';
import { lakeDir as lakeDirOf } from '../workbench/config.js';
import { openOltp, type OltpStore, type WriteGuard } from '../workbench/oltp/index.js';
import { EmbeddedLeaseStore, Lease, PostgresLeaseStore, type LeaseStore } from './cluster/lease.js';
import { createListener } from './app.js';
import { httpLimits, httpServer } from './http/server.js';
import { reportLogRecovery } from './pipeline/recovery-report.js';
import { openKeyStore } from './auth/keys.js';
import { openChangeFeed } from './cluster/changes.js';
import { followChanges } from './cluster/follow.js';
import { AlertSink } from './observability/alerts.js';
import type { MonitorSettings } from './observability/monitor-settings.js';
import type { Logger } from './observability/logger.js';
import { labelVocabulary } from './observability/label-vocabulary.js';
import { Metrics } from './observability/metrics.js';
import { Monitor } from './observability/monitor.js';
import { DEFAULT_AGGREGATES, LiveAggregates } from './pipeline/aggregates.js';
import { Archiver } from './pipeline/archiver.js';
import { ConsumerRunner } from './pipeline/consumer.js';
import { InstanceOffsets, withInstanceOffsets } from './pipeline/instance-offsets.js';
import { openDeadLetterStore, reportDeadLetters, type DeadLetterStore } from './pipeline/dead-letters.js';
import type { EventLog } from './pipeline/event-log.js';
import { FileEventLog } from './pipeline/file-log.js';
import { Ingest, type IngestSettings } from './pipeline/ingest.js';
import { RecentEvents } from './pipeline/recent-events.js';
import { MemoryOnlineStore } from './features/memory-store.js';
import { featureSetKeyPrefix, parseRedisFeatureStore, RedisOnlineStore } from './features/redis-store.js';
import { FeatureServing } from './features/serving.js';
import type { OnlineStore } from './features/store.js';
import { JobScheduler, type ScheduleEntry } from './jobs/scheduler.js';
import { openJobRuns } from '../workbench/jobs/open-runs.js';
import { DriftMonitor, type DriftOptions } from './models/drift.js';
import { ModelServer } from './models/model-server.js';
import { PredictionLog } from './models/prediction-log.js';
import { Precompute, type PrecomputeRule } from './models/precompute.js';
import { openModelRegistry } from './models/registry-postgres.js';
import { JetStreamEventLog } from './pipeline/jetstream-log.js';
import { SharedArchive } from './cluster/shared-archive.js';
import { SharedLakehouse } from './cluster/shared-lakehouse.js';
import { openBlobStore } from './cluster/blob-store/open.js';
import { AGGREGATES_SNAPSHOT, EXPERIMENTS_SNAPSHOT, featuresSnapshot, SharedSnapshots } from './cluster/shared-snapshots.js';
import { ExperimentPlatform } from './experiments/platform.js';
import type { Metric } from '../workbench/experiments/definition.js';

export interface ServiceConfig {
  /**
   * What the instances of one service share: the registry, the lakehouse (the archive), job runs,
   * reports (and, without PostgreSQL, the OLTP database and the keys).
   */
  dataDir: string;
  /**
   * What is this instance's own (default `dataDir`: a single instance keeps everything there): the
   * read models' snapshots and committed offsets (`consumers/`), the in-memory feature store's
   * snapshots (`features/`), the file event log, the file dead-letter store.
   */
  instanceDir?: string;
  /** 0 picks a free port. */
  port: number;
  host: string;
  /** OLTP URL (postgres://... or a SQLite file); default the data dir's SQLite. */
  oltpUrl?: string;
  /**
   * The PostgreSQL schema of the OLTP tables and of the leases (created if missing); default the
   * connection's search_path. Several instances of one service name the same schema.
   */
  oltpSchema?: string;
  /**
   * This instance's name: the holder of the leases it takes, shown on /healthz. Default
   * `<hostname>:<pid>:<4 random hex>`, unique per start.
   */
  instanceId?: string;
  /**
   * How long a singleton's lease lasts without renewal (ms; renewed every third of it): how long a
   * dead instance's singletons wait for a successor. Default 5000.
   */
  leaseTtlMs?: number;
  /** `file` (default: segment files in the data dir) or a NATS URL `nats://host:4222` for JetStream. */
  eventLog?: string;
  /** `memory` (default: in process, snapshotted in the data dir) or a Redis URL `redis://host:6379`. */
  featureStore?: string;
  /**
   * How a feature registered while the service runs comes online: computed from the lakehouse
   * archive in DuckDB, then the log's tail (true, the default); false: from the whole log.
   */
  featureBootstrap?: boolean;
  /** Ingest's options, the event limits among them (any left out keep their defaults). */
  ingest?: IngestSettings;
  bodyLimitBytes?: number;
  /** Score a user on these events and write the score to the OLTP predictions table. */
  precompute?: PrecomputeRule[];
  /** Training DAGs to run on a schedule, each in its own process. */
  schedule?: ScheduleEntry[];
  /** How often the registry's aliases are re-read (ms); default 5000. */
  modelRefreshMs?: number;
  /** Metrics experiments may name, beside (or replacing, by key) the catalog's. */
  metrics?: Metric[];
  /** How often running experiments are evaluated for automatic decisions (ms); default 2000. */
  decideEveryMs?: number;
  /**
   * The decider's sweep for exposures lost when an instance stopped between assigning a user and
   * logging the exposure: how often (ms, default 15000) and how old a claim must be (ms, default 60000).
   */
  exposureSweep?: { everyMs?: number; graceMs?: number };
  /** URL that receives each alert as a JSON POST. */
  alertWebhook?: string;
  /** The metrics watched for anomalies and their detector settings (a settings file and the CLI's overrides). */
  anomaly?: MonitorSettings;
  /** How served features are compared with each model's training distribution (window, thresholds). */
  drift?: DriftOptions;
  /** How long stop() lets requests in flight finish before it closes the connections left (ms); default 10000. */
  drainMs?: number;
  /**
   * Limits against slow clients (ms): for the request head (default 10000), for the whole request,
   * head and body (default 60000; slower clients get a 408 and the connection is closed), and for an
   * idle keep-alive connection (default 5000).
   */
  timeouts?: { headersMs?: number; requestMs?: number; keepAliveMs?: number };
  /**
   * Cut a corrupt record in the file log's last segment even when intact records follow it (they are
   * lost; kept aside and reported). Without it the service refuses to start in that case.
   */
  repairLog?: boolean;
  logger: Logger;
  version?: string;
  /**
   * The service's "now" (default the wall clock): ingest's time checks, feature reads, prediction,
   * assignment and decision times, the dashboard. A replay in the same process may run it on a
   * `SimulatedClock` (`npm start`); timeouts and intervals stay on the wall clock.
   */
  clock?: Clock;
}

export interface RunningService {
  url: string;
  /** This instance's name (the holder of its leases). */
  instanceId: string;
  /** This instance's own state (see `ServiceConfig.instanceDir`). */
  instanceDir: string;
  /** Where the singletons' leases live: PostgreSQL with a PostgreSQL OLTP, else in this process. */
  leases: LeaseStore;
  /**
   * The singletons' leases by name (`wb:decider`, `wb:scheduler`, `wb:archiver`, `wb:monitor`, and
   * `wb:precompute` when configured); each runs its work only while held.
   */
  singletons: Map<string, Lease>;
  ingest: Ingest;
  server: Server;
  log: EventLog;
  aggregates: LiveAggregates;
  /** Writes to the shared archive only on the holder of `wb:archiver` (its runner is in `runners` while held). */
  archiver: Archiver;
  monitor: Monitor;
  alerts: AlertSink;
  metrics: Metrics;
  runners: ConsumerRunner[];
  /** The read models' snapshots in the blob store (a PostgreSQL OLTP with a shared log), published by the holder of `wb:monitor`. */
  snapshots: SharedSnapshots | undefined;
  /** Records the consumers could not apply, set aside (`wb dlq`). */
  deadLetters: DeadLetterStore;
  features: FeatureServing;
  models: ModelServer;
  /** Served feature values against each model version's training distribution. */
  drift: DriftMonitor;
  jobs: JobScheduler;
  experiments: ExperimentPlatform;
  /** Stops taking requests, finishes the ones in flight, drains the consumers, closes everything. */
  stop(): Promise<void>;
}

/**
 * Two V8 settings for a long-running service, process-wide and set here because the service is what
 * needs them (each only stops something V8 does by default; nothing is compiled or allocated ahead).
 *
 * `--no-flush-bytecode`: V8 drops the bytecode of functions it has not run for a few major
 * collections, and compiles it again on their next call. A service's rare paths are exactly those: a
 * deploy's bundle checks, model loading and feature registration ran at start, were dropped by the
 * time of a publish, and compiling them again (and the garbage of it) fell on the requests of the
 * deploy. Alternating runs of three deploys each, four pairs (`BENCH_NODE_FLAGS=--no-flush-bytecode`):
 * pooled p99 4.9-13.6 ms (median 5.6) against 5.5-21.8 ms (median 11.8).
 *
 * `--no-allocation-site-pretenuring`: V8 allocates the objects of a code site straight into the old
 * generation once they have been seen to survive young collections. Most likely that happens while
 * the service starts and catches up with its log (big batches, held long); this is inferred, not
 * traced. Under a steady 250 predictions a
 * second, per-request objects then showed up among those no young collection reclaimed (a sampling
 * heap profile): each lived on until a major collection, the old generation grew 0.75 MB a second,
 * and every young collection had more to scan. Without it (`--trace-gc`, 60 s of that load, two runs
 * each way) the old generation grows 0.32-0.33 MB a second and the young collections' pauses are p50
 * 2.2-2.7 and p90 3.2-3.5 ms against 4.1-4.4 and 5.4-6.0 ms. In bench:serving's deploys (five
 * alternating pairs of three deploys) 4.5% of the requests were over 5 ms against 6.1%, and the
 * service was resident in 402 against 432 MB (medians); bench:ingest's throughput was within its noise.
 */
function tuneV8ForServing(): void {
  setFlagsFromString('--no-flush-bytecode');
  setFlagsFromString('--no-allocation-site-pretenuring');
}

/** Opens every part of the service from its configuration and starts listening. */
export async function startService(config: ServiceConfig): Promise<RunningService> {
  tuneV8ForServing();
  const { logger } = config;
  const clock = config.clock ?? wallClock;
  const limits = httpLimits(config);
  let notReady: string | undefined = 'starting';
  const instanceId = config.instanceId ?? `${hostname()}:${process.pid}:${randomBytes(2).toString('hex')}`;
  const instanceDir = config.instanceDir ?? config.dataDir;
  const oltp: OltpStore = await openOltp(config.oltpUrl, config.dataDir, config.oltpSchema === undefined ? {} : { schema: config.oltpSchema });
  // Cluster mode is a PostgreSQL OLTP: the leases live beside its tables, and the decider's fence
  // runs in the OLTP's own transactions. Otherwise this process is the whole service.
  const leases: LeaseStore =
    oltp.kind === 'postgres' && config.oltpUrl
      ? new PostgresLeaseStore(config.oltpUrl, {
          ...(config.oltpSchema ? { schema: config.oltpSchema } : {}),
          onError: (err) => logger.warn({ err }, 'lease notifications lost; handovers wait for the next renewal'),
        })
      : new EmbeddedLeaseStore();
  await leases.migrate();
  const singletons = new Map<string, Lease>();
  const singleton = (name: string, events: { onAcquired?: () => void; onLost?: () => void } = {}) => {
    const lease = new Lease(leases, name, {
      holder: instanceId,
      ...(config.leaseTtlMs ? { ttlMs: config.leaseTtlMs } : {}),
      onAcquired: (term) => {
        logger.info({ lease: name, token: String(term.token), instance: instanceId }, `this instance runs ${name}`);
        events.onAcquired?.();
      },
      onLost: (term, reason) => {
        logger.warn({ lease: name, token: String(term.token), reason, instance: instanceId }, `this instance no longer runs ${name}`);
        events.onLost?.();
      },
      onError: (err) => logger.warn({ err, lease: name }, 'cannot renew a lease; the singleton stops when its term runs out'),
    });
    singletons.set(name, lease);
    return lease;
  };
  /** A write guard for a singleton's term: the fence in the write's PostgreSQL transaction, else the store's check. */
  const fence =
    (name: string, token: bigint): WriteGuard =>
    async (tx) => {
      if (leases instanceof PostgresLeaseStore && tx.client) await leases.fence(tx.client, name, token);
      else await leases.check(name, token);
    };
  const log = await openEventLog(config, instanceDir);
  // This instance's read models (dashboard aggregates, experiment statistics, the monitor, the
  // in-memory features) each consume the whole log, with their offsets committed beside their
  // snapshots: a shared log's offsets are one per consumer name, for the singletons. A file log
  // is this instance's own: a consumer with no offset in the file yet takes the log's (an upgrade).
  const offsets = InstanceOffsets.open(join(instanceDir, 'consumers', 'offsets.json'), (message) => logger.warn(message));
  const instanceLog = withInstanceOffsets(log, offsets, { fallback: log.kind === 'file' });
  const keys = await openKeyStore(config.dataDir, config.oltpUrl, { schema: config.oltpSchema, warn: (message) => logger.warn(message) });
  const recent = new RecentEvents();
  // Every instance's monitor raises the same alerts (they are computed from the shared log) and
  // lists them at /v1/alerts; the holder of `wb:monitor` alone posts them, and the dead letters of
  // the per-instance consumers (each instance sets the same record aside). The others are this
  // instance's own (a decision it took as the decider's holder, a singleton's dead letter, drift
  // of its predictions, what its start repaired): it posts them itself. An alert raised during a
  // handover, while no instance holds the lease, is listed but not posted.
  const monitorLease = singleton('wb:monitor');
  const memoryFeatures = (config.featureStore ?? 'memory') === 'memory';
  const perInstance: ReadonlySet<string> = new Set(['aggregates', 'metrics', 'experiments', ...(memoryFeatures ? ['features', 'features-next'] : [])]);
  const alerts = new AlertSink(logger, config.alertWebhook, undefined, (alert) => {
    if (monitorLease.held) return true;
    // An anomaly (from the monitor) is the one alert kind without a `kind`.
    if (!('kind' in alert)) return false;
    return !(alert.kind === 'dead_letter' && perInstance.has(alert.labels.consumer));
  });
  // With a PostgreSQL OLTP the registry's versions and aliases are there, for every instance, and
  // the bundles in the blob store (WB_BLOB_STORE, else <data dir>/blobs), cached in the instance dir.
  const registry = await openModelRegistry({
    dataDir: config.dataDir,
    oltpUrl: oltp.kind === 'postgres' ? config.oltpUrl : undefined,
    schema: config.oltpSchema,
    cacheDir: join(instanceDir, 'cache', 'registry'),
    warn: (message) => logger.warn(message),
  });
  // Models are opened after ingest (they need its prediction log), so the shipping of a model arm reaches them late-bound.
  let models: ModelServer | undefined;
  const experiments = await ExperimentPlatform.open({
    oltp,
    alerts,
    logger,
    instanceDir,
    clock,
    ...(config.metrics ? { metrics: config.metrics } : {}),
    models: {
      versionOf: async (model, alias) => (await models!.resolve({ model, alias })).bundle.version,
      moveAlias: (model, alias, version, meta) => models!.moveAlias(model, alias, version, meta),
    },
  });
  const ingest = await Ingest.open(log, oltp, config.ingest, () => clock.now(), recent, experiments.assigner);
  const metrics = new Metrics({ eventNames: ingest.options.eventNames });
  const aggregates = new LiveAggregates({
    ...DEFAULT_AGGREGATES,
    snapshotPath: join(instanceDir, 'consumers', 'aggregates.json'),
    // The dashboard's cohorts follow /metrics: known values always, the sender's text within limits.
    known: labelVocabulary(ingest.options.eventNames),
    onDropped: (events) => metrics.droppedCohortEvents.inc(events),
    warn: (message) => logger.warn(message),
  });
  // Opened on this instance only while it holds `wb:archiver`; the fence before each batch's files are published.
  const archiverLease: Lease = singleton('wb:archiver', { onAcquired: () => syncArchiver(), onLost: () => syncArchiver() });
  // With a PostgreSQL OLTP the instances may share no disk: the live archive is committed in the
  // blob store, and each instance's lakehouse is a copy of it, brought up to date on start, before a
  // new feature is computed from it, and every 30 s (for the jobs and notebooks on its machine).
  const sharedArchive =
    oltp.kind === 'postgres'
      ? new SharedArchive(await openBlobStore(process.env.WB_BLOB_STORE, join(config.dataDir, 'blobs')), {
          namespace: config.oltpSchema,
          // A malformed commit record is moved aside by the archiver's holder: counted as the archiver's dead letter.
          warn: (message) => logger.warn(message),
          onSetAside: () => metrics.deadLetters.inc({ consumer: 'archiver' }),
        })
      : undefined;
  // The read models' snapshots too, with a shared log (a file log's offsets are this instance's own):
  // the holder of `wb:monitor` publishes its own every minute, and a new instance starts from them.
  const sharedSnapshots =
    sharedArchive && log.kind !== 'file'
      ? new SharedSnapshots(sharedArchive.blobs, instanceDir, { features: memoryFeatures, logger, namespace: config.oltpSchema })
      : undefined;
  await sharedSnapshots?.seed([AGGREGATES_SNAPSHOT, EXPERIMENTS_SNAPSHOT]);
  let seedFeatures = memoryFeatures;
  const sharedLake = sharedArchive ? new SharedLakehouse(sharedArchive.blobs, { namespace: config.oltpSchema }) : undefined;
  // One refresh at a time (the timer's and a feature bootstrap's): the built part takes the lakehouse's lock.
  let refreshing: Promise<void> | undefined;
  const refreshArchive = () =>
    (refreshing ??= (async () => {
      if (!sharedArchive || !sharedLake) return;
      const built = await sharedLake.sync(lakeDirOf(config.dataDir));
      if (built.changed && !built.busy)
        logger.info({ ...built, from: sharedLake.blobs.location }, 'lakehouse build brought up to the one published in the blob store');
      const synced = await sharedArchive.sync(lakeDirOf(config.dataDir));
      if (synced.fetched > 0 || synced.setAside.length > 0)
        logger.info({ ...synced, from: sharedArchive.blobs.location }, 'lakehouse archive brought up to the blob store');
    })().finally(() => (refreshing = undefined)));
  const archiver = Archiver.unopened(lakeDirOf(config.dataDir), {
    beforePublish: () => archiverLease.check(),
    ...(sharedArchive ? { shared: sharedArchive } : {}),
  });
  const monitor = new Monitor(metrics, alerts, () => log.next(), { anomaly: config.anomaly, clock: () => clock.now() });
  const onError = (err: unknown, consumer: string) => logger.error({ err, consumer }, 'consumer failed; retrying the batch');
  // A record a consumer keeps failing on is set aside there, and the consumer goes on.
  const deadLetterStore = await openDeadLetterStore(instanceDir, config.eventLog, { warn: (message) => logger.warn(message) });
  const deadLetterReports = reportDeadLetters({ store: deadLetterStore, alerts, metrics, logger });
  const deadLetters = { store: deadLetterStore, ...deadLetterReports };
  // Each of these finds its own position on start (snapshot, archive file names, rebuild), so the
  // committed offsets only show progress and need not be written after every batch.
  const commitEveryMs = 1_000;
  const runners = [
    new ConsumerRunner(instanceLog, aggregates, { batchSize: 5_000, maxWaitMs: 0, commitEveryMs, onError, deadLetters }, recent),
    new ConsumerRunner(instanceLog, monitor, { batchSize: 2_000, maxWaitMs: 0, commitEveryMs, onError, deadLetters }, recent),
    new ConsumerRunner(instanceLog, experiments.tracker, { batchSize: 5_000, maxWaitMs: 0, commitEveryMs, onError, deadLetters }, recent),
  ];
  // Models saved to the registry outside the service (a notebook, `wb models alias`) are served too.
  const aliased = [...new Set(Object.values(registry.aliasTable()).flatMap((aliases) => Object.values(aliases)))];
  // The in-memory store is this instance's: its offsets are too. Redis keeps its offset with its
  // states, and every instance folds into it: each batch is written once, by compare-and-set on
  // that offset (FeatureUpdater.handle).
  const refreshArchiveLogged = () =>
    refreshArchive().catch((err: unknown) => logger.warn({ err }, `the lakehouse archive cannot be brought up to the blob store (${(err as Error).message})`));
  await refreshArchiveLogged();
  const features = await FeatureServing.start({
    log: memoryFeatures ? instanceLog : log,
    recent,
    dir: join(instanceDir, 'features'),
    openStore: async (setVersion) => {
      // On start only: a set built later is computed here (or from the archive), as before.
      if (seedFeatures) await sharedSnapshots?.seed([featuresSnapshot(setVersion)]);
      return openFeatureStore(config, instanceDir, setVersion);
    },
    runner: { commitEveryMs, onError, deadLetters },
    clock,
    archive: config.featureBootstrap === false ? undefined : lakeDirOf(config.dataDir),
    refreshArchive,
    logger,
    required: aliased.flatMap((version) => {
      try {
        return [registry.get(version).features];
      } catch (err) {
        logger.error({ err, version }, 'a model version in the registry cannot be read; it is not served');
        return [];
      }
    }),
    onConflict: (err) =>
      logger.error({ err }, 'a model in the registry needs a feature defined differently by another; its predictions will fail until one is renamed'),
  });
  seedFeatures = false;
  models = await ModelServer.open(registry, {
    ready: (bundle) => features.register(bundle.features),
    onError: (err) => logger.error({ err }, 'cannot follow a model alias; it keeps answering with the version it had'),
    refreshMs: config.modelRefreshMs,
  });
  const drift = new DriftMonitor({ alerts, metrics, now: () => clock.now() }, config.drift);
  const predictions = new PredictionLog(ingest, (err) => logger.error({ err }, 'cannot log predictions'));
  const precompute = config.precompute?.length
    ? new Precompute(config.precompute, models, features, oltp, () => log.next(), {
        warn: (err, message) => logger.warn({ err }, message),
        scored: (model, count) => metrics.predictions.inc({ model: metrics.label('model', model) }, count),
        observed: (bundle, rows) => drift.observeMany(bundle, rows),
        predicted: (user, scored, at, eventId) => predictions.record(user, scored, [], at, eventId),
      })
    : undefined;
  // Job runs are processes of their own: they are told the service's OLTP (its schema on the URL),
  // so they train on its data, publish to its registry and record their runs where every instance reads them.
  const jobs = new JobScheduler(config.dataDir, config.schedule ?? [], logger, {
    paused: true,
    env: oltp.kind === 'postgres' && config.oltpUrl ? { WB_OLTP_URL: withSearchPath(config.oltpUrl, config.oltpSchema) } : {},
    runs: await openJobRuns(oltp.kind === 'postgres' ? config.oltpUrl : undefined, config.dataDir, { schema: config.oltpSchema }),
  });
  for (const r of runners) await r.start();
  void deadLetterReports.refreshOpen();

  // Singletons: each runs here only while this instance holds its lease. Starting and stopping one
  // goes through one queue, each step doing what the lease's state is when the step runs, so a
  // quick loss and re-acquisition cannot leave two precompute runners or a paused schedule running.
  let singletonSteps: Promise<void> = Promise.resolve();
  const step = (what: string, fn: () => Promise<void>) => {
    singletonSteps = singletonSteps.then(fn).catch((err: unknown) => logger.error({ err }, `${what} failed`));
  };
  const schedulerLease: Lease = singleton('wb:scheduler', {
    onAcquired: () => syncScheduler(),
    onLost: () => syncScheduler(),
  });
  const syncScheduler = () =>
    step('starting or pausing the job schedule', async () => {
      if (schedulerLease.held) jobs.resume();
      else await jobs.pause();
    });
  // The precompute consumer's offset is committed in the log (JetStream: the stream's KV bucket), so
  // a new holder resumes where the last one committed. A holder that lost its lease finishes the
  // batch in hand before it stops: its writes are upserts keyed by (model, user) of the same scores,
  // so that overlap only writes rows again, and needs no fence.
  let precomputeRunner: ConsumerRunner | undefined;
  const precomputeLease: Lease | undefined = precompute
    ? singleton('wb:precompute', { onAcquired: () => syncPrecompute(), onLost: () => syncPrecompute() })
    : undefined;
  const syncPrecompute = () =>
    step('starting or stopping the precompute consumer', async () => {
      if (precomputeLease?.held && precompute && !precomputeRunner) {
        const runner = new ConsumerRunner(log, precompute, { batchSize: 1_000, maxWaitMs: 0, onError, deadLetters }, recent);
        await runner.start();
        precomputeRunner = runner;
        runners.push(runner);
      } else if (!precomputeLease?.held && precomputeRunner) {
        const runner = precomputeRunner;
        precomputeRunner = undefined;
        runners.splice(runners.indexOf(runner), 1);
        await runner.stop();
      }
    });
  // The archiver's position is the archive's file names (shared): a new holder opens the writer
  // afresh and resumes after the last file any holder published. A holder that lost its lease is
  // stopped here; a batch it has in hand is refused at the fence before its files are published
  // (and stays staged, discarded by the next holder's open).
  let archiverRunner: ConsumerRunner | undefined;
  let archiverDone = false;
  const syncArchiver = () =>
    step('starting or stopping the archiver', async () => {
      if (archiverLease.held && !archiverRunner && !archiverDone) {
        const runner = new ConsumerRunner(log, archiver, { batchSize: 50_000, maxWaitMs: 2_000, commitEveryMs, onError, deadLetters }, recent);
        await runner.start();
        archiverRunner = runner;
        runners.push(runner);
      } else if ((!archiverLease.held || archiverDone) && archiverRunner) {
        const runner = archiverRunner;
        archiverRunner = undefined;
        runners.splice(runners.indexOf(runner), 1);
        await runner.stop();
      }
    });
  // Every instance evaluates experiments (for its reports); the holder alone acts, fenced.
  const deciderLease = singleton('wb:decider');
  experiments.start(
    (keys) => ingest.ingest([], { internal: true, expose: keys }),
    config.decideEveryMs,
    { term: () => deciderLease.term, guard: (term) => fence('wb:decider', term.token) },
    // The decider's holder also logs exposures that an instance which stopped mid-assignment never did.
    { logEnd: () => log.next(), onRelogged: (count) => metrics.exposuresRelogged.inc(count), ...config.exposureSweep },
  );
  for (const lease of singletons.values()) lease.start();
  if (leases.kind === 'embedded') {
    // Alone, this instance takes every lease at once: the singletons run before it answers, as before leases.
    await Promise.all([...singletons.values()].map((l) => l.waitUntilHeld(5_000)));
    await singletonSteps;
  }
  // (With several instances, the archiver's rewind after a lost log tail is reported by no start
  // report unless this instance held the lease by now; its holder logs the files it set aside.)
  await reportLogRecovery(log, [...runners, ...features.runners], archiver, { logger, alerts, metrics });
  // Keys, alias moves and experiment changes made by any instance reach this one within a second (the timers stay as the fallback).
  const feed = openChangeFeed(config.oltpUrl, { namespace: config.oltpSchema, onError: (err) => logger.warn({ err }, 'change feed') });
  const changes = followChanges(feed, { keys, models, experiments: experiments.experiments, logger });
  // Changes made before the feed listened were not heard: once it listens, everything is read again.
  let listenTimer: NodeJS.Timeout | undefined;
  const listening = await Promise.race([feed.ready().then(() => true), new Promise<false>((r) => (listenTimer = setTimeout(() => r(false), 5_000)))]);
  clearTimeout(listenTimer);
  if (listening) await changes.resync();
  else logger.warn('the change feed does not listen yet: changes made by other instances are seen at the periodic refreshes until it does');

  const app = createListener({
    keys,
    clock,
    ingest,
    log,
    aggregates,
    metrics,
    alerts,
    logger,
    notReady: () => notReady,
    consumers: async () => [...runners, ...features.runners].map((r) => ({ name: r.consumer.name, committed: r.offset })),
    archiveFreshness: () => archiver.freshness,
    models: { models, features, oltp, predictions, metrics, experiments, drift },
    jobs,
    experiments,
    limits: { bodyBytes: config.bodyLimitBytes },
    version: config.version,
    deadLetters: deadLetterStore,
    dataDir: config.dataDir,
    instance: () => ({ id: instanceId, singletons: Object.fromEntries([...singletons].map(([name, lease]) => [name, lease.held])) }),
  });
  const { server, inFlight } = httpServer(app, limits);
  const { drainMs } = limits;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${port}`;
  // Keys created or revoked by `wb keys` while the service runs take effect within seconds.
  // The ring of recent events keeps only what some consumer has yet to read.
  const releaseRecent = setInterval(() => {
    const positions = [...runners, ...features.runners].map((r) => r.offset);
    if (positions.length > 0) recent.release(Math.min(...positions));
  }, 1_000).unref();
  const reloadKeys = setInterval(async () => {
    try {
      await keys.reload();
    } catch (err) {
      logger.error({ err }, 'cannot reload the keys; keeping the keys already loaded');
    }
  }, 5_000).unref();
  const refreshLake = sharedArchive ? setInterval(() => void refreshArchiveLogged(), 30_000).unref() : undefined;
  sharedSnapshots?.startPublishing(() => monitorLease.held);
  notReady = undefined;
  logger.info(
    { url, instance: instanceId, leases: leases.kind, eventLog: log.kind, oltp: oltp.kind, dataDir: config.dataDir, instanceDir, clock: clock.kind },
    'service started',
  );

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      notReady = 'shutting down';
      // Released first, so another instance takes the singletons over while this one drains; the
      // archiver first finishes the batch in hand (under its lease, which fences its publication).
      archiverDone = true;
      syncArchiver();
      const archived = singletonSteps;
      const released = Promise.all([...singletons.values()].map((l) => (l === archiverLease ? archived.then(() => l.stop()) : l.stop()))).then(async () => {
        for (;;) {
          const pending = singletonSteps;
          await pending;
          if (pending === singletonSteps) return;
        }
      });
      clearInterval(reloadKeys);
      clearInterval(releaseRecent);
      clearInterval(refreshLake);
      // close() stops new connections and resolves once in-flight requests (and their appends) end,
      // or at the drain deadline, when the connections left are closed: a slow client cannot hold the stop.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Event streams never end by themselves; a browser reconnects (to the next instance).
      for (const res of inFlight) if (String(res.getHeader('content-type') ?? '').startsWith('text/event-stream')) res.end();
      // Keep-alive connections whose request ends while draining go idle: they are closed then too.
      const closeIdle = setInterval(() => server.closeIdleConnections(), 50);
      server.closeIdleConnections();
      let deadline: NodeJS.Timeout | undefined;
      const drained = await Promise.race([closed.then(() => true), new Promise<false>((resolve) => (deadline = setTimeout(() => resolve(false), drainMs)))]);
      clearInterval(closeIdle);
      clearTimeout(deadline);
      if (!drained) {
        logger.warn({ drainMs, requests: inFlight.size }, 'requests still in flight at the drain deadline: closing their connections');
        server.closeAllConnections();
        await closed;
      }
      // Everything is closed even when one part fails to stop, so the process can exit.
      const failures: unknown[] = [];
      // The feed first: a key reload it started ends before the key store closes.
      await changes
        .close()
        .then(() => keys.close())
        .catch((err: unknown) => failures.push(err));
      await released;
      await jobs.stop();
      await experiments.stop();
      await predictions.flush();
      models.close();
      for (const r of runners) await r.stop().catch((err: unknown) => failures.push(err));
      await features.stop().catch((err: unknown) => failures.push(err));
      await log.close().catch((err: unknown) => failures.push(err));
      await deadLetterStore.close().catch((err: unknown) => failures.push(err));
      await oltp.close().catch((err: unknown) => failures.push(err));
      await registry.close().catch((err: unknown) => failures.push(err));
      await sharedSnapshots?.close().catch((err: unknown) => failures.push(err));
      await sharedArchive?.blobs.close().catch((err: unknown) => failures.push(err));
      await leases.close().catch((err: unknown) => failures.push(err));
      for (const err of failures) logger.error({ err }, 'a part of the service failed to stop cleanly');
      logger.info('service stopped');
    })());

  return {
    url,
    instanceId,
    instanceDir,
    leases,
    singletons,
    ingest,
    server,
    log,
    aggregates,
    archiver,
    monitor,
    alerts,
    metrics,
    runners,
    snapshots: sharedSnapshots,
    deadLetters: deadLetterStore,
    features,
    models,
    drift,
    jobs,
    experiments,
    stop,
  };
}

/**
 * The online store of one feature set: its own snapshot file, or its own Redis key prefix, within
 * the deployment's namespace (`?prefix=NAME`, else the OLTP schema, else none: the keys as before).
 */
async function openFeatureStore(config: ServiceConfig, instanceDir: string, setVersion: string): Promise<OnlineStore> {
  const spec = config.featureStore ?? 'memory';
  if (spec === 'memory') {
    return MemoryOnlineStore.open(join(instanceDir, 'features', `online-${setVersion}.snapshot`), { warn: (message) => config.logger.warn(message) });
  }
  if (/^rediss?:\/\//.test(spec)) {
    const { url, namespace } = parseRedisFeatureStore(spec, config.oltpSchema);
    return RedisOnlineStore.open(url, featureSetKeyPrefix(namespace, setVersion));
  }
  throw new Error(`unknown feature store ${JSON.stringify(spec)}: use "memory" or redis://host:6379[/db][?prefix=NAME]`);
}

async function openEventLog(config: ServiceConfig, instanceDir: string): Promise<EventLog> {
  const spec = config.eventLog ?? 'file';
  if (spec === 'file') return FileEventLog.open(join(instanceDir, 'log'), { repairTail: config.repairLog });
  if (/^nats:\/\//.test(spec)) {
    const url = new URL(spec);
    const stream = url.searchParams.get('stream') ?? 'WB_EVENTS';
    url.search = '';
    return JetStreamEventLog.open({ servers: url.toString().replace(/\/$/, ''), stream });
  }
  throw new Error(`unknown event log ${JSON.stringify(spec)}: use "file" or nats://host:4222[?stream=NAME]`);
}

/** A PostgreSQL URL that puts `schema` first on the search path of every connection it opens. */
function withSearchPath(url: string, schema: string | undefined): string {
  if (!schema) return url;
  const u = new URL(url);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return u.toString();
}
