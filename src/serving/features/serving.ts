import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Feature, FeatureInput } from '../../workbench/features/definition.js';
import type { FeatureRead } from '../../workbench/features/online.js';
import { wallClock, type Clock } from '../../workbench/clock.js';
import { ConsumerRunner, type RunnerOptions } from '../pipeline/consumer.js';
import type { EventLog } from '../pipeline/event-log.js';
import type { RecentEvents } from '../pipeline/recent-events.js';
import { ServedFeatures } from './served.js';
import type { OnlineStore } from './store.js';
import { FeatureUpdater } from './updater.js';

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
}

/**
 * The online feature store as the service runs it: the served feature set, its store and its
 * consumer. Registering new features never disturbs the features being served: the larger set is
 * built from the start of the log in a store of its own, beside the current one, and replaces it
 * only once it has caught up with the log. Reads go to the current set throughout.
 */
export class FeatureServing {
  readonly served: ServedFeatures;
  private current!: { updater: FeatureUpdater; runner: ConsumerRunner };
  private registering: Promise<unknown> = Promise.resolve();
  private building: ConsumerRunner | undefined;

  private constructor(private readonly o: FeatureServingOptions) {
    this.served = ServedFeatures.open(join(o.dir, 'served.json'));
  }

  static async start(options: FeatureServingOptions): Promise<FeatureServing> {
    const serving = new FeatureServing(options);
    for (const set of options.required ?? []) {
      try {
        serving.served.register(set);
      } catch (err) {
        options.onConflict?.(err);
      }
    }
    serving.removeStaleSnapshots();
    const updater = new FeatureUpdater(await options.openStore(serving.served.version), serving.served.features);
    serving.current = { updater, runner: serving.runner(updater) };
    await serving.current.runner.start();
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
   * Adds definitions to the served set. When some are new, resolves once the larger set has been
   * computed from the whole log and is being served; the current set keeps serving meanwhile.
   */
  register(inputs: readonly (FeatureInput | Feature)[]): Promise<Feature[]> {
    const run = this.registering.then(async () => {
      const added = this.served.register(inputs);
      if (added.length > 0) await this.rebuild();
      return added;
    });
    this.registering = run.catch(() => undefined);
    return run;
  }

  async stop(): Promise<void> {
    await this.building?.stop();
    await this.current.runner.stop();
    await this.current.updater.store.close();
  }

  private runner(updater: FeatureUpdater): ConsumerRunner {
    return new ConsumerRunner(this.o.log, updater, { batchSize: 5_000, maxWaitMs: 0, ...this.o.runner }, this.o.recent);
  }

  private async rebuild(): Promise<void> {
    const features = this.served.features;
    const version = this.served.version;
    const store = await this.o.openStore(version);
    const builder = this.runner(new FeatureUpdater(store, features, 'features-next'));
    this.building = builder;
    try {
      await builder.start();
      const deadline = Date.now() + (this.o.buildTimeoutMs ?? 600_000);
      while (builder.offset < (await this.o.log.next())) {
        if (Date.now() > deadline)
          throw new Error(
            `feature set ${version} is still being computed from the log after ${(this.o.buildTimeoutMs ?? 600_000) / 1000} s; the previous set keeps serving`,
          );
        await new Promise((r) => setTimeout(r, 20));
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
    const updater = new FeatureUpdater(store, features);
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
