import { dict, toDict } from '../../workbench/dict.js';
import { InputError, NonFiniteScoreError, NotFoundError } from '../../workbench/errors.js';
import type { FeatureValue } from '../../workbench/features/definition.js';
import { loadClassifier, verifyBundleAsync, type ModelBundle } from '../../workbench/models/bundle.js';
import type { AliasMove, ModelRegistry } from '../../workbench/models/registry.js';
import type { Classifier } from '../../workbench/models/train.js';

interface Loaded {
  bundle: ModelBundle;
  classifier: Classifier;
}

export interface Scored {
  score: number;
  model: { name: string; version: string; alias?: string };
  /** The feature values the model read (online values, overridden by request-time values). */
  features: Record<string, FeatureValue>;
  /** Features that had no value and used their declared default. */
  defaulted: string[];
}

/**
 * Serves the registry's models: resolves a name and alias (or a version) to a loaded model, kept in
 * memory by version. Publishing loads the new version before the alias moves, so a request is
 * answered by the old version or the new one, never by none (hot swap); rolling back is moving the
 * alias back. Aliases are re-read from the registry every few seconds, so moves made outside the
 * service (a training job, `wb models alias`) take effect too: a version is loaded and made ready
 * (`ready`: its features served) before the alias is followed, and one that cannot be is reported
 * while the alias keeps answering with the version it had.
 */
export class ModelServer {
  private readonly loaded = new Map<string, Promise<Loaded>>();
  private aliasCache = new Map<string, Record<string, string>>();
  private reloadTimer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;

  private constructor(
    readonly registry: ModelRegistry,
    private readonly ready: (bundle: ModelBundle) => Promise<unknown>,
    private readonly onError: (err: unknown) => void,
  ) {}

  static async open(
    registry: ModelRegistry,
    options: { ready?: (bundle: ModelBundle) => Promise<unknown>; onError?: (err: unknown) => void; refreshMs?: number } = {},
  ): Promise<ModelServer> {
    const server = new ModelServer(registry, options.ready ?? (async () => undefined), options.onError ?? (() => undefined));
    await server.refresh();
    server.reloadTimer = setInterval(() => void server.refresh(), options.refreshMs ?? 5_000).unref();
    return server;
  }

  /** Follows the registry's aliases; resolves when done (concurrent calls share one pass). */
  refresh(): Promise<void> {
    return (this.refreshing ??= this.followAliases().finally(() => (this.refreshing = undefined)));
  }

  private async followAliases(): Promise<void> {
    let table: Record<string, Record<string, string>>;
    try {
      await this.registry.reload(); // a shared (PostgreSQL) registry's aliases are re-read; a directory's are read by aliasTable
      table = this.registry.aliasTable();
    } catch (err) {
      return this.onError(err); // keep serving with the aliases already followed
    }
    const next = new Map<string, Record<string, string>>();
    for (const [name, aliases] of Object.entries(table)) {
      const entry = dict<string>();
      for (const [alias, version] of Object.entries(aliases)) {
        const current = this.aliasCache.get(name)?.[alias];
        if (current === version) {
          entry[alias] = version;
          continue;
        }
        try {
          const loaded = await this.load(version);
          await this.ready(loaded.bundle);
          entry[alias] = version;
        } catch (err) {
          this.onError(err);
          if (current) entry[alias] = current;
        }
      }
      next.set(name, entry);
    }
    this.aliasCache = next;
  }

  /** Verifies a bundle and loads its model: a bundle that cannot serve is refused before anything changes. */
  async prepare(input: unknown): Promise<ModelBundle> {
    // Checking the bundle (its shape, its hash, its features) and building its model are a
    // millisecond or more each: in turns of the event loop, so a publish does not hold requests for all at once.
    const bundle = await verifyBundleAsync(input);
    await turn();
    await this.load(bundle.version, bundle);
    return bundle;
  }

  /** Stores a prepared bundle and points the alias at it (the model is already loaded: a hot swap). */
  async activate(bundle: ModelBundle, alias: string, meta: { by?: string; reason?: string } = {}): Promise<AliasMove> {
    await this.load(bundle.version, bundle);
    // The registry's writes without a synchronous fsync (each took the event loop for as long as the
    // disk did), and its checks (a hash each) in turns of their own.
    await this.registry.putAsync(bundle);
    await turn();
    const move = await this.registry.setAliasAsync(bundle.name, alias, bundle.version, meta);
    this.follow(bundle.name, alias, bundle.version);
    return move;
  }

  /** Moves an alias to a stored version (a rollback, a promotion), loading it first. */
  async moveAlias(name: string, alias: string, version: string, meta: { by?: string; reason?: string } = {}): Promise<AliasMove> {
    // Read from disk again even when loaded: a file changed since is refused (409), and the alias stays.
    const bundle = await this.registry.usableVersionAsync(name, alias, version);
    const loaded = await this.load(version, bundle).catch((err: unknown) => {
      throw this.registry.refusal(name, alias, version, err);
    });
    await this.ready(loaded.bundle);
    const move = await this.registry.setAliasAsync(name, alias, version, meta);
    this.follow(name, alias, version);
    return move;
  }

  /** The aliases being followed: model name -> alias -> version. */
  aliases(): Record<string, Record<string, string>> {
    return dict([...this.aliasCache].map(([name, a]) => [name, toDict(a)]));
  }

  private follow(name: string, alias: string, version: string): void {
    // Aliases are the user's (`constructor` is one): a table without a prototype, so `resolve` finds only real ones.
    this.aliasCache.set(name, dict([...Object.entries(this.aliasCache.get(name) ?? {}), [alias, version]]));
  }

  /** The loaded model for a name and alias, or a version. */
  async resolve(target: { model: string; alias?: string; version?: string }): Promise<Loaded & { alias?: string }> {
    if (target.version) {
      const loaded = await this.load(target.version);
      if (loaded.bundle.name !== target.model) throw new InputError(`version ${target.version} is a version of ${loaded.bundle.name}, not of ${target.model}`);
      return loaded;
    }
    const alias = target.alias ?? 'champion';
    const version = this.aliasCache.get(target.model)?.[alias];
    if (!version) {
      const known = Object.keys(this.aliasCache.get(target.model) ?? {});
      throw new NotFoundError(
        known.length > 0
          ? `model ${target.model} has no alias ${alias} (it has: ${known.join(', ')})`
          : `no model named ${target.model} has been published (publish one, or see GET /v1/models)`,
      );
    }
    return { ...(await this.load(version)), alias };
  }

  /** Scores one row of feature values with a loaded model. */
  score(loaded: Loaded & { alias?: string }, features: Record<string, FeatureValue>, defaulted: string[]): Scored {
    const score = loaded.classifier.predict([features])[0]!;
    if (!Number.isFinite(score)) {
      // Never `score: null` in an answer or a prediction event: an error naming the version, logged.
      const err = new NonFiniteScoreError(
        `model ${loaded.bundle.name} version ${loaded.bundle.version} gave a score of ${score} for ${abbreviated(JSON.stringify(features))}`,
      );
      this.onError(err);
      throw err;
    }
    return {
      score,
      model: { name: loaded.bundle.name, version: loaded.bundle.version, ...(loaded.alias ? { alias: loaded.alias } : {}) },
      features,
      defaulted,
    };
  }

  close(): void {
    clearInterval(this.reloadTimer);
    for (const p of this.loaded.values()) void p.then((l) => l.classifier.dispose()).catch(() => undefined);
    this.loaded.clear();
  }

  private load(version: string, bundle?: ModelBundle): Promise<Loaded> {
    let p = this.loaded.get(version);
    if (!p) {
      p = (async () => {
        const b = bundle ?? (await this.registry.getAsync(version));
        return { bundle: b, classifier: await loadClassifier(b) };
      })();
      this.loaded.set(version, p);
      p.catch(() => this.loaded.delete(version));
    }
    return p;
  }
}

/** Lets the event loop answer what is waiting before going on. */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function abbreviated(text: string, max = 300): string {
  return text.length > max ? `${text.slice(0, max)}...` : text;
}
