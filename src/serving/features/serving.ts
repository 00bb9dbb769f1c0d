import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Feature, FeatureInput } from '../../workbench/features/definition.js';
import { OnlineFeatures, type FeatureRead, type UserState } from '../../workbench/features/online.js';
import { wallClock, type Clock } from '../../workbench/clock.js';
import { ConsumerRunner, type RunnerOptions } from '../pipeline/consumer.js';
import type { EventLog } from '../pipeline/event-log.js';
import type { RecentEvents } from '../pipeline/recent-events.js';
import { BootstrapWorkers, bootstrapFromArchive, foldFromLog } from './bootstrap.js';
import { ServedFeatures } from './served.js';
import type { OnlineStore } from './store.js';
import { FeatureUpdater, type CapturedRead } from './updater.js';
import { MemoryOnlineStore } from './memory-store.js';
import { TimeSlices } from '../../workbench/time-slices.js';

export interface FeatureServingOptions {
  log: EventLog;
  recent?: RecentEvents;
  /** The data dir's features folder: the served definitions and the embedded store's snapshots. */
  dir: string;
  /** Opens the store of one feature set version (states of different sets never mix). */
  openStore(setVersion: string): Promise<OnlineStore>;
  runner: Omit<RunnerOptions, 'batchSize' | 'maxWaitMs'>;
  /** How long registering waits for new features to be computed from the log before giving up. */
  buildTimeoutMs?: number;
  /** Feature sets that must be served from the start: those of the models the registry's aliases point at. */
  required?: readonly (readonly Feature[])[];
  /** Told about a required set that cannot be served (a name defined differently by another model). */
  onConflict?: (err: unknown) => void;
  /** What "now" is for a read without a time (default the wall clock). */
  clock?: Clock;
  /**
   * The lakehouse the service's archiver writes the log to: new features are computed from its
   * archive in DuckDB, then from the log's tail. Without it (or when the archive cannot be used,
   * logged with the reason) they are computed from the whole log.
   */
  archive?: string;
  /**
   * Brings the local archive up to date first (an instance whose lakehouse is a copy of the blob
   * store's); a failure is logged and the copy used as it is (a stale copy costs more of the log).
   */
  refreshArchive?: () => Promise<void>;
  /** DuckDB's threads for that, in the bootstrap's worker process (default 1: the other core stays with requests). */
  archiveThreads?: number;
  /** Told how each new set came online (info) and why the archive could not be used (warn). */
  logger?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

/**
 * Events per batch while a set is computed from the log: each batch is folded on the event loop in
 * one piece (its users' states copied out of the store and back), so it is kept small.
 */
const CATCH_UP_BATCH = 200;
/** Users a remote store is read for in one round trip while a deploy joins the sets. */
const JOIN_BATCH = 500;
/** How long the join runs before it gives the event loop back: predictions wait on it meanwhile. */
const JOIN_SLICE_MS = 1;

/** What extending the served set from the archive did, for the log. */
interface ExtendReport {
  archive_end: number;
  archive_files: number;
  archive_gap_records: number;
  /**
   * Time starting the bootstrap's worker process, checking the archive against the log, computing
   * the states in DuckDB, listing its users (in the worker), handing them to the main thread, folding its gaps from the log.
   */
  archive_ms: { start: number; check: number; states: number; users: number; transfer: number; gaps: number };
  /** Records folded from the log for the added features: the archive's gaps, and from its end to the current set's offset. */
  tail_records: number;
  /** Of those, the records the current set had folded past the added features when it stopped, folded during the pause. */
  pause_records: number;
  users: number;
  log_end: number;
  /** How long the current set's consumer stood still (reads are answered throughout). */
  paused_ms: number;
}

/**
 * The features consumer as FeatureServing runs it: stopping it does not write the embedded store's
 * snapshot (serialising every user's state holds the event loop for as long as that takes: a
 * swap would stall requests), since the store is either dropped or closed, which writes it, next.
 */
class ServedUpdater extends FeatureUpdater {
  override async close(): Promise<void> {}
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The online feature store as the service runs it: the served feature set, its store and its
 * consumer. Registering new features never disturbs the features being served, and reads go to the
 * current set throughout. Only the added features are computed: from the lakehouse archive
 * (bootstrap.ts: DuckDB aggregates the archived records in a worker process), then from the log's
 * tail in slices, and joined with the served states into the larger set's store (`extend`).
 * Without a usable archive the larger set is computed from the start of the log in a store of its
 * own, beside the current one, which it replaces once caught up.
 */
export class FeatureServing {
  readonly served: ServedFeatures;
  private current!: { updater: FeatureUpdater; runner: ConsumerRunner };
  private registering: Promise<unknown> = Promise.resolve();
  private building: ConsumerRunner | undefined;
  private stopping = false;
  /** With an archive: the bootstrap's worker process, started ahead so that a deploy does not wait for one. */
  private readonly workers: BootstrapWorkers | undefined;
  private captureEvents: ReadonlySet<string> = new Set();

  private constructor(private readonly o: FeatureServingOptions) {
    this.served = ServedFeatures.open(join(o.dir, 'served.json'));
    if (o.archive) this.workers = new BootstrapWorkers();
  }

  static async start(options: FeatureServingOptions): Promise<FeatureServing> {
    const serving = new FeatureServing(options);
    for (const set of options.required ?? []) {
      try {
        await serving.served.register(set);
      } catch (err) {
        options.onConflict?.(err);
      }
    }
    serving.removeStaleSnapshots();
    const warming = serving.workers?.warm();
    const updater = new ServedUpdater(await options.openStore(serving.served.version), serving.served.features);
    serving.current = { updater, runner: serving.runner(updater) };
    await serving.current.runner.start();
    await warming;
    return serving;
  }

  get features(): readonly Feature[] {
    return this.current.updater.features;
  }

  get version(): string {
    return this.current.updater.setVersion;
  }

  get store(): OnlineStore {
    return this.current.updater.store;
  }

  /** The consumers to show with their offsets: the current set's, and a set being built. */
  get runners(): ConsumerRunner[] {
    return this.building ? [this.current.runner, this.building] : [this.current.runner];
  }

  /**
   * Reads the user of each of these events as of 1 ms after it, while the event is folded, for
   * `captured()`: the precompute scores a login as of the login, not as of when it gets to it.
   */
  capture(events: Iterable<string>): void {
    this.captureEvents = new Set(events);
    this.current.updater.capture(this.captureEvents);
  }

  /** The read taken when the event at this log offset was folded (see `capture`); undefined when none was (before `capture`, or the set was swapped since). */
  captured(offset: number): CapturedRead | undefined {
    return this.current.updater.captured.get(offset);
  }

  /** Forgets the reads of events before `offset`; returns how many triggers were not kept because too many reads were waiting. */
  releaseCaptured(offset: number): number {
    const updater = this.current.updater;
    updater.releaseCaptured(offset);
    const dropped = updater.capturedDropped;
    updater.capturedDropped = 0;
    return dropped;
  }

  /** A user's feature values at `at` (default the service clock's now). */
  read(userId: string, at: number = this.now()): Promise<FeatureRead> {
    return this.current.updater.read(userId, at);
  }

  /** The service clock's now: the time a read without a time is made at. */
  now(): number {
    return (this.o.clock ?? wallClock).now();
  }

  /** The log offset the served state has reached. */
  get offset(): number {
    return this.current.runner.offset;
  }

  /** Events in the log not yet folded into the served state. */
  async lag(): Promise<number> {
    return (await this.o.log.next()) - this.offset;
  }

  /**
   * Adds definitions to the served set. When some are new, resolves once the larger set is being
   * served (computed from the archive and the log's tail, or from the whole log); the current set
   * keeps serving meanwhile.
   */
  register(inputs: readonly (FeatureInput | Feature)[]): Promise<Feature[]> {
    const run = this.registering.then(async () => {
      const added = await this.served.register(inputs);
      if (added.length > 0) await this.rebuild();
      return added;
    });
    this.registering = run.catch(() => undefined);
    return run;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    // A set being built gives up; one being joined finishes first, so the current set is whole when it stops.
    await this.building?.stop();
    await this.registering;
    await this.current.runner.stop();
    await this.current.updater.store.close();
    this.workers?.close();
  }

  private runner(updater: FeatureUpdater, batchSize = 5_000): ConsumerRunner {
    return new ConsumerRunner(this.o.log, updater, { batchSize, maxWaitMs: 0, ...this.o.runner }, this.o.recent);
  }

  /** Serves the registered set, the current one and the features added to it. */
  private async rebuild(): Promise<void> {
    const started = performance.now();
    const current = this.current.updater.features;
    const features = this.served.features;
    // The served list only grows, so the current set is its start; anything else is built from the log.
    const prefix = current.every((f, i) => features[i]?.version === f.version);
    if (this.stopping) throw new Error('the service is stopping: new features are not computed');
    if (await this.adopt(features)) {
      this.o.logger?.info(
        { feature_set: this.served.version, from: 'shared store', offset: this.offset, ms: Math.round(performance.now() - started) },
        'new features are served',
      );
      return;
    }
    if (this.o.archive && prefix) {
      try {
        await this.o.refreshArchive?.();
      } catch (err) {
        this.o.logger?.warn({ err }, `the lakehouse archive cannot be brought up to date (${(err as Error).message}); computing from the copy on this machine`);
      }
      try {
        const report = await this.extend(features, this.o.archive);
        this.o.logger?.info(
          {
            feature_set: this.served.version,
            added: features.length - current.length,
            from: 'archive',
            ...report,
            ms: Math.round(performance.now() - started),
          },
          'new features are served',
        );
        return;
      } catch (err) {
        // Whatever went wrong (the archive unusable, a DuckDB error), the current set serves as before.
        this.o.logger?.warn(
          { err, feature_set: this.served.version },
          `new features cannot start from the lakehouse archive (${(err as Error).message}); computing the set from the whole event log`,
        );
      }
    }
    await this.rebuildFromLog(features);
    this.o.logger?.info(
      { feature_set: this.served.version, from: 'log', log_end: this.offset, ms: Math.round(performance.now() - started) },
      'new features are served',
    );
  }

  /**
   * Serves a set another instance has already built in a shared store (Redis): its states are
   * taken as they are and this instance's consumer joins in from the store's position. The instance
   * that built it drops the previous set. False when there is nothing to take.
   */
  private async adopt(features: readonly Feature[]): Promise<boolean> {
    if (this.store.kind === 'memory') return false;
    const store = await this.o.openStore(this.served.version);
    const position = await store.position().catch(() => undefined);
    if (position?.setVersion !== this.served.version || position.offset === 0) {
      await store.close();
      return false;
    }
    const old = this.current;
    await old.runner.stop();
    const updater = new ServedUpdater(store, features);
    updater.capture(this.captureEvents);
    const runner = this.runner(updater);
    try {
      await runner.start();
    } catch (err) {
      await store.close().catch(() => undefined);
      const resumed = this.runner(old.updater);
      await resumed.start();
      this.current = { updater: old.updater, runner: resumed };
      throw err;
    }
    this.current = { updater, runner };
    await old.updater.store.close();
    return true;
  }

  /**
   * The set served so far, extended by the added features without computing it again: the added
   * features' states come from the archive (DuckDB in a worker process), then from the log up to
   * where the current set's consumer stands, in slices. That consumer then stops for a moment (reads
   * keep being answered from its store), the added features catch up with it, each user's states
   * are joined into the larger set's store at that offset, and its consumer takes over from there.
   * Throws ArchiveUnusable (or DuckDB's error) before anything has changed when the archive cannot serve.
   */
  private async extend(features: readonly Feature[], lakeDir: string): Promise<ExtendReport> {
    const old = this.current;
    const added = features.slice(old.updater.features.length);
    const boot = await bootstrapFromArchive({ features: added, lakeDir, log: this.o.log, threads: this.o.archiveThreads ?? 1, workers: this.workers });
    const compiled = new OnlineFeatures(added);
    const users = boot.users;
    for (const u of boot.states.keys()) users.add(u);
    // The added features are folded up to where the current set stands (it may still be behind the archive's end, on start).
    const deadline = Date.now() + (this.o.buildTimeoutMs ?? 600_000);
    while (old.runner.offset < boot.offset) {
      if (this.stopping) throw new Error('the service is stopping');
      if (Date.now() > deadline) throw new Error(`the served features are still behind the archive's end (${boot.offset}); the previous set keeps serving`);
      await sleep(20);
    }
    let at = boot.offset;
    let tail = 0;
    // Twice: the second pass takes what came in during the first, so the pause below is short.
    for (let pass = 0; pass < 2; pass++) {
      const to = old.runner.offset;
      tail += await foldFromLog(this.o.log, compiled, boot.states, at, to, users);
      at = to;
    }
    if (this.stopping) throw new Error('the service is stopping');
    const store = await this.o.openStore(this.served.version);
    // The pause: the current set's consumer stops where it stands; its store answers reads meanwhile.
    const paused = performance.now();
    try {
      await old.runner.stop();
      const offset = old.runner.offset;
      const caughtUp = await foldFromLog(this.o.log, compiled, boot.states, at, offset, users);
      const joined = await this.join(old.updater, boot.states, users, added);
      // One write, with the offset: a crash leaves all of it or none (the set is then built from the log on start).
      await store.reset(this.served.version);
      await store.write(joined, offset);
      const updater = new ServedUpdater(store, features);
      updater.capture(this.captureEvents);
      const runner = this.runner(updater);
      await runner.start();
      this.current = { updater, runner };
      const pausedMs = performance.now() - paused;
      await old.updater.store.drop().catch((err: unknown) => this.o.logger?.warn({ err }, 'the previous feature set could not be removed from its store'));
      return {
        archive_end: boot.offset,
        archive_files: boot.files,
        archive_gap_records: boot.gapRecords,
        archive_ms: {
          start: Math.round(boot.ms.start),
          check: Math.round(boot.ms.check),
          states: Math.round(boot.ms.states),
          users: Math.round(boot.ms.users),
          transfer: Math.round(boot.ms.transfer),
          gaps: Math.round(boot.ms.gaps),
        },
        tail_records: tail + caughtUp,
        pause_records: caughtUp,
        users: joined.size,
        log_end: offset,
        paused_ms: Math.round(pausedMs),
      };
    } catch (err) {
      // The current set resumes as it was; the larger set is not served.
      if (this.current === old) {
        const runner = this.runner(old.updater);
        await runner.start();
        this.current = { updater: old.updater, runner };
        await store.drop().catch(() => undefined);
      }
      throw err;
    }
  }

  /**
   * Each user's states of the current set (its store, which nothing writes while paused) followed
   * by those of the added features: the larger set's states, in its order. In slices, so the event
   * loop is never held for long however many users there are.
   */
  private async join(
    current: FeatureUpdater,
    added: ReadonlyMap<string, UserState>,
    users: ReadonlySet<string>,
    addedFeatures: readonly Feature[],
  ): Promise<Map<string, UserState>> {
    const emptyCurrent = new OnlineFeatures(current.features);
    const emptyAdded = new OnlineFeatures(addedFeatures);
    const joined = new Map<string, UserState>();
    const list = [...users];
    // The embedded store's states are never changed once written (readers get them as they are,
    // writers a copy): they are shared, read without a copy or a promise. Another store is read in
    // one round trip per batch. Slices by time, not by count: on a loaded machine 500 users took
    // 8-18 ms, and every prediction arriving meanwhile waited.
    const embedded = current.store instanceof MemoryOnlineStore ? current.store : undefined;
    const slices = new TimeSlices(JOIN_SLICE_MS);
    for (let i = 0; i < list.length; i += JOIN_BATCH) {
      const batch = list.slice(i, i + JOIN_BATCH);
      const states = embedded ? undefined : await current.store.get(batch);
      for (const user of batch) {
        const a = embedded ? embedded.peekNow(user) : states!.get(user);
        const b = added.get(user);
        if (a || b) joined.set(user, [...(a ?? emptyCurrent.emptyState()), ...(b ?? emptyAdded.emptyState())]);
        const pause = slices.pause();
        if (pause) await pause;
      }
    }
    return joined;
  }

  /** Today's path, without a usable archive: the larger set computed from the start of the log, beside the current one. */
  private async rebuildFromLog(features: readonly Feature[]): Promise<void> {
    if (this.stopping) throw new Error('the service is stopping: new features are not computed');
    const version = this.served.version;
    const store = await this.o.openStore(version);
    const builder = this.runner(new ServedUpdater(store, features, 'features-next'), CATCH_UP_BATCH);
    this.building = builder;
    try {
      await builder.start();
      // Caught up once it has what the log held when it started: what comes after is ordinary lag,
      // which the set being served has too (an end read again on every turn may never be met under load).
      const target = await this.o.log.next();
      const deadline = Date.now() + (this.o.buildTimeoutMs ?? 600_000);
      while (builder.offset < target) {
        if (this.stopping) throw new Error('the service is stopping: new features are not computed');
        if (Date.now() > deadline)
          throw new Error(
            `feature set ${version} is still being computed from the log after ${(this.o.buildTimeoutMs ?? 600_000) / 1000} s; the previous set keeps serving`,
          );
        await sleep(20);
      }
      await builder.stop();
    } catch (err) {
      await builder.stop().catch(() => undefined);
      await store.close().catch(() => undefined);
      throw err;
    } finally {
      this.building = undefined;
    }
    // Swap: the new set's consumer takes over the name `features` and resumes where it stands.
    const old = this.current;
    const updater = new ServedUpdater(store, features);
    updater.capture(this.captureEvents);
    const runner = this.runner(updater);
    await runner.start();
    this.current = { updater, runner };
    await old.runner.stop();
    await old.updater.store.drop();
  }

  /** Removes the embedded store's snapshots of sets no longer served (left by a build cut short). */
  private removeStaleSnapshots(): void {
    if (!existsSync(this.o.dir)) return;
    for (const f of readdirSync(this.o.dir)) {
      const m = /^online-([0-9a-f]{16})\.snapshot$/.exec(f);
      if (m && m[1] !== this.served.version) rmSync(join(this.o.dir, f), { force: true });
    }
  }
}
