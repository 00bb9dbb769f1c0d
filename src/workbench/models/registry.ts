import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { appendFile, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { dict, toDict } from '../dict.js';
import { AliasRefusedError, InputError, IntegrityError, NotFoundError, WorkbenchError } from '../errors.js';
import { writeFileAtomic, writeFileAtomicAsync } from '../files.js';
import { bundleJson, checkBundle, loadClassifier, verifyBundle, verifyBundleAsync, type ModelBundle } from './bundle.js';

/**
 * The model registry over a folder: immutable bundles named by version, and per model name a set
 * of aliases (`champion`, `challenger`, any name) pointing at versions, with the history of every
 * move. Only whole-file writes and appends, so the same layout works on object storage:
 *
 *   bundles/<version>.json   aliases.json   alias-history.jsonl
 */
export interface VersionInfo {
  name: string;
  version: string;
  kind: string;
  label: string;
  createdAt: string;
  source?: string;
  parent?: string;
  metrics: Record<string, number>;
  aliases: string[];
}

/** A stored version that cannot be read: listed with why, so one damaged file never hides the others. */
export interface UnreadableVersion {
  version: string;
  /** The model's name, when the file still says it or one of that model's aliases points at it. */
  name?: string;
  aliases: string[];
  /** Why, prefixed by the error's code: `integrity: ...` (changed after it was written), `unreadable: ...` (not JSON). */
  error: string;
}

export type VersionEntry = VersionInfo | UnreadableVersion;

/** One move of a model alias in the registry's history: when, from which version to which, by whom and why. */
export interface AliasMove {
  at: string;
  name: string;
  alias: string;
  from: string | null;
  to: string;
  by?: string;
  reason?: string;
  /**
   * Only in what `setAlias` returns, never in the history: the alias already pointed at the version,
   * so nothing was written and no move recorded (`from` and `to` are that version).
   */
  unchanged?: true;
}

/**
 * What publishing a bundle did (`ModelRegistry.publish`, and the service's `POST /v1/models`): the
 * version, where the alias was before, whether anything changed and a line saying so.
 */
export interface PublishOutcome {
  name: string;
  version: string;
  alias: string;
  /** The version the alias pointed at before (null: unset); `version` itself when it did not move. */
  from: string | null;
  /** False when the registry already held this version (the same model: same hash): the bundle was not written again. */
  stored: boolean;
  /** Nothing was written: the registry held the version and the alias already pointed at it. */
  unchanged: boolean;
  /** One line: `unchanged: version <v> of <name> is already <alias>`, or what was stored and how the alias moved. */
  message: string;
}

/**
 * The line a publication is reported with (`PublishOutcome.message`).
 *
 * @example
 * ```ts
 * console.log(publishMessage({ name: 'app-churn', version: 'c0ffee0123456789', alias: 'champion', from: 'c0ffee0123456789', stored: false }));
 * // unchanged: version c0ffee0123456789 of app-churn is already champion
 * ```
 */
export function publishMessage(o: Omit<PublishOutcome, 'unchanged' | 'message'>): string {
  if (!o.stored && o.from === o.version) return `unchanged: version ${o.version} of ${o.name} is already ${o.alias}`;
  const stored = o.stored ? `stored ${o.name} ${o.version}` : `${o.name} ${o.version} was already stored (the same model), not written again`;
  return o.from === o.version ? `${stored}; ${o.alias} already pointed at it` : `${stored}; ${o.alias}: ${o.from ?? '(none)'} -> ${o.version}`;
}

/**
 * The registry's versions, aliases and history as a shared store last said (`SharedRegistryStore.read`):
 * what the synchronous reads of a shared registry answer from.
 */
export interface RegistrySnapshot {
  /** Every stored version: its model's name and the SHA-256 of its bundle's bytes. */
  versions: Map<string, { name: string; sha256: string }>;
  /** name -> alias -> version (tables without a prototype). */
  aliases: Record<string, Record<string, string>>;
  /** Every alias move, oldest first. */
  history: AliasMove[];
}

/**
 * Where a shared registry keeps its versions and aliases (PostgreSQL, `registry-postgres.ts`) and
 * its bundles (a blob store), for several service instances. The registry keeps what it read in
 * memory and the bundles it fetched in a local cache directory, so its reads stay synchronous.
 */
export interface SharedRegistryStore {
  /** Where it is, for messages (the database, without a password, and the blob store). */
  readonly location: string;
  /** Versions, aliases and history. */
  read(): Promise<RegistrySnapshot>;
  /** One version's row, or undefined (a version another instance stored since the last read). */
  version(version: string): Promise<{ name: string; sha256: string } | undefined>;
  /** A bundle's bytes, checked against the SHA-256 the registry recorded (IntegrityError when they differ). */
  fetch(version: string, sha256: string): Promise<Uint8Array>;
  /** Stores a bundle's bytes, then its row; false when the registry already held the version. */
  put(bundle: ModelBundle, bytes: Uint8Array): Promise<boolean>;
  /**
   * Points the alias at the version and records the move, atomically (the history row in the same
   * transaction); a move to where the alias already is writes nothing and has `unchanged`.
   */
  move(name: string, alias: string, version: string, meta: { by?: string; reason?: string }): Promise<AliasMove>;
  close(): Promise<void>;
}

const ALIAS = /^[a-z][a-z0-9_-]{0,31}$/;
const VERSION = /^[0-9a-f]{16}$/;
const Aliases = z.record(z.string(), z.record(z.string(), z.string().regex(VERSION)));

function checkAlias(alias: string): void {
  if (!ALIAS.test(alias)) throw new InputError(`alias ${JSON.stringify(alias)}: use lower-case letters, digits, _ and -, up to 32`);
}

/**
 * The model registry on disk: immutable bundles by version, and aliases (`champion`, `challenger`) with their history.
 *
 * @example
 * ```ts
 * const registry = ModelRegistry.open(registryDir());
 * registry.put(bundle);
 * registry.setAlias(bundle.name, 'challenger', bundle.version, { by: 'my notebook' });
 * show(registry.list(bundle.name));
 * ```
 */
export class ModelRegistry {
  private readonly aliasListeners = new Set<(move: AliasMove) => void>();
  /** The async alias moves of this object, one after the other (each reads, then writes, the table). */
  private aliasWrites: Promise<unknown> = Promise.resolve();
  /** A shared registry's state as last read (undefined for a directory registry). */
  private snapshot: RegistrySnapshot | undefined;
  /** Versions of a shared registry whose bundle could not be fetched into the cache, and why. */
  private readonly fetchErrors = new Map<string, unknown>();
  private reloading: Promise<void> | undefined;
  /** Writes this object made to a shared store, counted so that a reload overlapping one reads again. */
  private sharedWrites = 0;
  /** Where messages say the registry is: its directory, or the shared store's location. */
  readonly location: string;

  /**
   * `root` is the registry's directory, or for a shared registry the local cache of the bundles it
   * fetched (`bundles/<version>.json`, verified on every read like a directory registry's).
   */
  private constructor(
    readonly root: string,
    private readonly shared?: SharedRegistryStore,
  ) {
    this.location = shared ? shared.location : root;
  }

  static open(root: string): ModelRegistry {
    mkdirSync(join(root, 'bundles'), { recursive: true });
    return new ModelRegistry(root);
  }

  /**
   * A registry whose versions and aliases are in `store` (shared by several instances), with the
   * bundles it fetches cached in `cacheDir`. Reads what the store holds before it returns; `reload`
   * reads again (the service does on a change notification and every few seconds). Writes go
   * through the async methods (`putAsync`, `setAliasAsync`, `publish`, `save`, `moveAlias`).
   */
  static async openShared(store: SharedRegistryStore, cacheDir: string): Promise<ModelRegistry> {
    mkdirSync(join(cacheDir, 'bundles'), { recursive: true });
    const registry = new ModelRegistry(cacheDir, store);
    await registry.reload();
    return registry;
  }

  /** Whether the versions and aliases are in a shared store (PostgreSQL) rather than the directory. */
  get isShared(): boolean {
    return this.shared !== undefined;
  }

  /**
   * Re-reads a shared registry's versions, aliases and history, and fetches the bundles not yet in
   * the cache (a bundle that cannot be fetched is listed with why, and not served); nothing for a
   * directory registry, whose reads go to the files. Concurrent calls share one pass.
   */
  reload(): Promise<void> {
    const shared = this.shared;
    if (!shared) return Promise.resolve();
    return (this.reloading ??= (async () => {
      // A write of this object during the read: read again (up to twice), so a reload never undoes it in memory.
      for (let attempt = 0; ; attempt++) {
        const writes = this.sharedWrites;
        const snapshot = await shared.read();
        for (const [version, row] of snapshot.versions) {
          if (existsSync(this.bundlePath(version))) continue;
          try {
            await this.fetchIntoCache(shared, version, row);
          } catch (err) {
            this.fetchErrors.set(version, err);
          }
        }
        if (this.sharedWrites === writes || attempt === 2) {
          this.snapshot = snapshot;
          return;
        }
      }
    })().finally(() => (this.reloading = undefined)));
  }

  /** Closes a shared registry's connections (nothing to close for a directory). */
  async close(): Promise<void> {
    await this.shared?.close();
  }

  /** Stores a bundle after building its model once (`checkBundle`): what a notebook or a job should call. */
  async save(input: unknown): Promise<ModelBundle> {
    const bundle = await checkBundle(input);
    return this.shared ? this.putAsync(bundle) : this.put(bundle);
  }

  /**
   * Stores a bundle and points an alias at it, building its model once first (`checkBundle`): what a
   * notebook or a job publishing without the service calls. A version the registry already holds
   * (the same hash: the same weights, features, metrics and lineage) is not written again, and an
   * alias already on it does not move: publishing the same model twice changes nothing, and the
   * outcome says so (`unchanged`, `message`).
   *
   * @example
   * ```ts
   * const outcome = await ModelRegistry.open(registryDir()).publish(bundle, 'challenger', { by: 'notebook 02' });
   * console.log(outcome.message); // e.g. "unchanged: version 5d0c... of purchase-propensity is already challenger"
   * ```
   */
  async publish(input: unknown, alias: string, meta: { by?: string; reason?: string } = {}): Promise<PublishOutcome> {
    const bundle = await checkBundle(input);
    let stored: boolean;
    let move: AliasMove;
    if (this.shared) {
      // The store says whether it held the version: another instance may have stored it since the last reload.
      stored = await this.putShared(this.shared, bundle);
      move = await this.setAliasAsync(bundle.name, alias, bundle.version, meta);
    } else {
      stored = !this.has(bundle.version);
      this.put(bundle);
      move = this.setAlias(bundle.name, alias, bundle.version, meta);
    }
    const outcome = { name: bundle.name, version: bundle.version, alias, from: move.from, stored };
    return { ...outcome, unchanged: !stored && move.unchanged === true, message: publishMessage(outcome) };
  }

  /** Stores a bundle (verified first, without building its model); storing the same version again changes nothing. */
  put(input: unknown): ModelBundle {
    this.directoryOnly('put', 'putAsync');
    const bundle = verifyBundle(input);
    const path = this.bundlePath(bundle.version);
    if (!existsSync(path)) writeFileAtomic(path, bundleJson(bundle));
    return bundle;
  }

  /**
   * `put` for a server answering requests: the same checks, and the file written without holding
   * the event loop (`writeFileAtomicAsync`: no synchronous fsync).
   */
  async putAsync(input: unknown): Promise<ModelBundle> {
    const bundle = await verifyBundleAsync(input);
    const path = this.bundlePath(bundle.version);
    if (this.shared) {
      await this.putShared(this.shared, bundle);
      return bundle;
    }
    if (!existsSync(path)) await writeFileAtomicAsync(path, bundleJson(bundle));
    return bundle;
  }

  /** A stored bundle, verified against its version (a changed file is refused). */
  get(version: string): ModelBundle {
    const path = this.storedPath(version);
    return this.storedAs(version, path, verifyBundle(readJson(path), path));
  }

  /** `get` that reads the file and checks it without holding the event loop for long (a server's). */
  private async getStored(version: string): Promise<ModelBundle> {
    const path = this.storedPath(version);
    return this.storedAs(version, path, await verifyBundleAsync(parseJson(await readFile(path, 'utf8'), path), path));
  }

  /** Where a stored version's bundle is; NotFoundError (or why it could not be fetched) when it is not there. */
  private storedPath(version: string): string {
    if (!VERSION.test(version)) throw new InputError(`${JSON.stringify(version)} is not a model version (16 hex digits)`);
    const path = this.bundlePath(version);
    if (!existsSync(path)) {
      // A shared registry's version whose bundle could not be fetched: why (a changed blob, say), not "absent".
      const failed = this.fetchErrors.get(version);
      if (failed !== undefined && this.snapshot?.versions.has(version)) throw failed;
      throw new NotFoundError(`no model version ${version} in the registry ${this.location}`);
    }
    return path;
  }

  private storedAs(version: string, path: string, bundle: ModelBundle): ModelBundle {
    if (bundle.version !== version) throw new IntegrityError(`${path} holds version ${bundle.version}, not ${version}`);
    return bundle;
  }

  /**
   * `get` that also finds, in a shared registry, a version stored by another instance since the
   * last `reload` (fetching its bundle from the blob store, its hash checked).
   */
  async getAsync(version: string): Promise<ModelBundle> {
    const shared = this.shared;
    if (!shared || !VERSION.test(version)) return this.getStored(version);
    if (existsSync(this.bundlePath(version))) {
      try {
        return await this.getStored(version);
      } catch (err) {
        // The cache is this instance's copy (a crash may have cut a write): damaged, it is fetched again from the store, checked there.
        if (!(err instanceof IntegrityError || err instanceof InputError)) throw err;
        await rm(this.bundlePath(version), { force: true });
      }
    }
    const row = await shared.version(version);
    if (!row) throw new NotFoundError(`no model version ${version} in the registry ${this.location}`);
    try {
      await this.fetchIntoCache(shared, version, row);
    } catch (err) {
      this.fetchErrors.set(version, err);
      throw err;
    }
    this.snapshot?.versions.set(version, row);
    return this.getStored(version);
  }

  has(version: string): boolean {
    if (this.shared) return VERSION.test(version) && (this.snapshot?.versions.has(version) ?? false);
    return VERSION.test(version) && existsSync(this.bundlePath(version));
  }

  /**
   * Versions, newest first, optionally of one model name; each verified as `get` does. A version
   * that cannot be read (damaged, changed, not a bundle) is an entry with its `error`, after the
   * others: one bad file never hides the rest.
   */
  list(name?: string): VersionEntry[] {
    const aliases = this.readAliases();
    const out: VersionInfo[] = [];
    const unreadable: UnreadableVersion[] = [];
    for (const version of this.storedVersions()) {
      let b: ModelBundle;
      try {
        b = this.get(version);
      } catch (err) {
        const entry = this.unreadable(version, err, aliases);
        if (name === undefined || entry.name === name) unreadable.push(entry);
        continue;
      }
      if (name !== undefined && b.name !== name) continue;
      const named = aliases[b.name] ?? {};
      out.push({
        name: b.name,
        version: b.version,
        kind: b.kind,
        label: b.label,
        createdAt: b.lineage.createdAt,
        source: b.lineage.source,
        parent: b.lineage.parent,
        metrics: Object.fromEntries(Object.entries(b.metrics).filter((e): e is [string, number] => typeof e[1] === 'number')),
        aliases: Object.keys(named)
          .filter((a) => named[a] === b.version)
          .sort(),
      });
    }
    out.sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
    return [...out, ...unreadable.sort((a, b) => (a.version < b.version ? -1 : 1))];
  }

  /** A version that cannot be read, with what can still be said about it: its name, the aliases on it. */
  private unreadable(version: string, err: unknown, aliases: Record<string, Record<string, string>>): UnreadableVersion {
    let name: string | undefined = this.snapshot?.versions.get(version)?.name;
    if (name === undefined)
      try {
        const claimed = (JSON.parse(readFileSync(this.bundlePath(version), 'utf8')) as { name?: unknown } | null)?.name;
        if (typeof claimed === 'string' && NAME.test(claimed)) name = claimed;
      } catch {
        // not JSON: the aliases may still say whose it is
      }
    const pointing = Object.entries(aliases).flatMap(([model, named]) =>
      Object.keys(named)
        .filter((a) => named[a] === version)
        .map((alias) => ({ model, alias })),
    );
    name ??= pointing[0]?.model;
    return {
      version,
      ...(name ? { name } : {}),
      aliases: pointing
        .filter((p) => p.model === name)
        .map((p) => p.alias)
        .sort(),
      error: describeFailure(err),
    };
  }

  /** The version an alias of a model points at, or undefined. */
  resolve(name: string, alias: string): string | undefined {
    return this.readAliases()[name]?.[alias];
  }

  aliases(name: string): Record<string, string> {
    return toDict(this.readAliases()[name]);
  }

  /** Every model's aliases: name -> alias -> version. */
  aliasTable(): Record<string, Record<string, string>> {
    return this.readAliases();
  }

  /**
   * Points an alias of a model at a version of that model, and records the move. An alias already
   * on that version stays as it is: nothing is written or recorded, and the answer has `unchanged`.
   */
  setAlias(name: string, alias: string, version: string, meta: { by?: string; reason?: string } = {}): AliasMove {
    this.directoryOnly('setAlias', 'setAliasAsync');
    checkAlias(alias);
    this.usableVersion(name, alias, version);
    const planned = this.planMove(name, alias, version, meta);
    if (!planned.table) return planned.move;
    writeFileAtomic(join(this.root, 'aliases.json'), planned.table);
    appendFileSync(join(this.root, 'alias-history.jsonl'), `${JSON.stringify(planned.move)}\n`);
    for (const l of this.aliasListeners) l(planned.move);
    return planned.move;
  }

  /**
   * `setAlias` for a server answering requests: the same checks and records, written without holding
   * the event loop (no synchronous fsync). The moves made through it by this object are made one
   * after the other; a synchronous `setAlias` on the same registry meanwhile could be overwritten.
   */
  setAliasAsync(name: string, alias: string, version: string, meta: { by?: string; reason?: string } = {}): Promise<AliasMove> {
    const run = this.aliasWrites.then(async () => {
      if (this.shared) return this.moveShared(this.shared, name, alias, version, meta);
      checkAlias(alias);
      await this.usableVersionAsync(name, alias, version);
      const planned = this.planMove(name, alias, version, meta);
      if (!planned.table) return planned.move;
      await writeFileAtomicAsync(join(this.root, 'aliases.json'), planned.table);
      await appendFile(join(this.root, 'alias-history.jsonl'), `${JSON.stringify(planned.move)}\n`);
      for (const l of this.aliasListeners) l(planned.move);
      return planned.move;
    });
    this.aliasWrites = run.catch(() => undefined);
    return run;
  }

  /** Stores a verified bundle in the shared store and the cache; false when the store already held it. */
  private async putShared(shared: SharedRegistryStore, bundle: ModelBundle): Promise<boolean> {
    const text = bundleJson(bundle);
    const stored = await shared.put(bundle, Buffer.from(text, 'utf8'));
    this.sharedWrites++;
    const path = this.bundlePath(bundle.version);
    if (!existsSync(path)) await writeFileAtomicAsync(path, text);
    this.snapshot?.versions.set(bundle.version, { name: bundle.name, sha256: sha256Hex(text) });
    this.fetchErrors.delete(bundle.version);
    return stored;
  }

  /** A shared registry's move: checked here, made (with its history row) in one transaction of the store. */
  private async moveShared(
    shared: SharedRegistryStore,
    name: string,
    alias: string,
    version: string,
    meta: { by?: string; reason?: string },
  ): Promise<AliasMove> {
    checkAlias(alias);
    await this.usableVersionAsync(name, alias, version);
    const move = await shared.move(name, alias, version, meta);
    if (move.unchanged) return move;
    this.sharedWrites++;
    if (this.snapshot) {
      (this.snapshot.aliases[name] ??= dict())[alias] = version;
      this.snapshot.history.push(move);
    }
    for (const l of this.aliasListeners) l(move);
    return move;
  }

  /**
   * The move `setAlias` records and the alias table it writes (none when the alias is already there:
   * `unchanged`), for an alias and a version already checked (`checkAlias`, `usableVersion`).
   */
  private planMove(name: string, alias: string, version: string, meta: { by?: string; reason?: string }): { move: AliasMove; table?: string } {
    const all = this.readAliases();
    if (all[name]?.[alias] === version) return { move: { at: new Date().toISOString(), name, alias, from: version, to: version, ...meta, unchanged: true } };
    const named = (all[name] ??= dict());
    const move: AliasMove = { at: new Date().toISOString(), name, alias, from: named[alias] ?? null, to: version, ...meta };
    named[alias] = version;
    return { move, table: `${JSON.stringify(all, null, 2)}\n` };
  }

  /**
   * Calls `listener` after each alias move made through this registry object (a service tells its
   * other instances with it). Returns the unsubscribe function.
   */
  onAliasMoved(listener: (move: AliasMove) => void): () => void {
    this.aliasListeners.add(listener);
    return () => {
      this.aliasListeners.delete(listener);
    };
  }

  /** `setAlias` after building the version's model once: what `wb models alias` runs (the service builds it itself). */
  async moveAlias(name: string, alias: string, version: string, meta: { by?: string; reason?: string } = {}): Promise<AliasMove> {
    const bundle = await this.usableVersionAsync(name, alias, version);
    const model = await loadClassifier(bundle).catch((err: unknown) => {
      throw this.refusal(name, alias, version, err);
    });
    model.dispose();
    return this.shared ? this.setAliasAsync(name, alias, version, meta) : this.setAlias(name, alias, version, meta);
  }

  /**
   * The stored bundle an alias of `name` may point at. A version that is changed, unreadable or of
   * another model is refused with AliasRefusedError (409) saying why; an absent one is a NotFoundError.
   */
  usableVersion(name: string, alias: string, version: string): ModelBundle {
    let bundle: ModelBundle;
    try {
      bundle = this.get(version);
    } catch (err) {
      throw this.unusable(name, alias, version, err);
    }
    return this.ofModel(name, alias, version, bundle);
  }

  /**
   * `usableVersion` for a server: the file read and checked without holding the event loop for
   * long, and in a shared registry a version another instance stored since the last `reload` found too (`getAsync`).
   */
  async usableVersionAsync(name: string, alias: string, version: string): Promise<ModelBundle> {
    let bundle: ModelBundle;
    try {
      bundle = await this.getAsync(version);
    } catch (err) {
      throw this.unusable(name, alias, version, err);
    }
    return this.ofModel(name, alias, version, bundle);
  }

  /** An absent version stays a NotFoundError; one that cannot be read is refused, saying why. */
  private unusable(name: string, alias: string, version: string, err: unknown): unknown {
    return err instanceof NotFoundError || !VERSION.test(version) ? err : this.refusal(name, alias, version, err);
  }

  private ofModel(name: string, alias: string, version: string, bundle: ModelBundle): ModelBundle {
    if (bundle.name !== name) throw this.refusal(name, alias, version, `it is a version of ${bundle.name}, not of ${name}`);
    return bundle;
  }

  /** Why an alias does not move, and where it stays. */
  refusal(name: string, alias: string, version: string, why: unknown): AliasRefusedError {
    let current: string | undefined;
    try {
      current = this.resolve(name, alias);
    } catch {
      // an unreadable alias table: the refusal still says why the version cannot be used
    }
    const reason = typeof why === 'string' ? why : describeFailure(why);
    return new AliasRefusedError(`cannot point ${name} ${alias} at ${version}: ${reason}; ${alias} stays ${current ? `at ${current}` : 'unset'}`);
  }

  /** Every alias move, oldest first, optionally of one model. */
  history(name?: string): AliasMove[] {
    if (this.snapshot) return this.snapshot.history.filter((m) => name === undefined || m.name === name).map((m) => ({ ...m }));
    const path = join(this.root, 'alias-history.jsonl');
    if (!existsSync(path)) return [];
    const lines = readFileSync(path, 'utf8').split('\n');
    const moves: AliasMove[] = [];
    lines.forEach((line, i) => {
      if (line.trim() === '') return;
      try {
        moves.push(JSON.parse(line) as AliasMove);
      } catch (err) {
        // A last line cut short is an append a crash interrupted: the move itself is in aliases.json
        // (written first, atomically), only its record is incomplete. Anything else is damage.
        if (i === lines.length - 1) return;
        throw new IntegrityError(`${path}:${i + 1} is not a JSON alias move (${(err as Error).message}): the file was damaged after it was written`);
      }
    });
    return moves.filter((m) => name === undefined || m.name === name);
  }

  private bundlePath(version: string): string {
    return join(this.root, 'bundles', `${version}.json`);
  }

  /** The stored versions: a shared registry's rows, or the directory's bundle files. */
  private storedVersions(): string[] {
    if (this.snapshot) return [...this.snapshot.versions.keys()];
    return readdirSync(join(this.root, 'bundles'))
      .filter((file) => file.endsWith('.json') && !file.startsWith('.'))
      .map((file) => file.slice(0, -'.json'.length));
  }

  /** Fetches a shared registry's bundle into the cache: its bytes checked against the recorded SHA-256, then as a bundle of that version. */
  private async fetchIntoCache(shared: SharedRegistryStore, version: string, row: { name: string; sha256: string }): Promise<void> {
    const bytes = await shared.fetch(version, row.sha256);
    const where = `bundle ${version} of ${row.name} in ${shared.location}`;
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(bytes).toString('utf8'));
    } catch (err) {
      throw new IntegrityError(`${where} is not valid JSON (${(err as Error).message})`);
    }
    const bundle = verifyBundle(parsed, where);
    if (bundle.version !== version) throw new IntegrityError(`${where} holds version ${bundle.version}`);
    await writeFileAtomicAsync(this.bundlePath(version), bytes);
    this.fetchErrors.delete(version);
  }

  private directoryOnly(method: string, instead: string): void {
    if (this.shared)
      throw new InputError(
        `ModelRegistry.${method} writes a directory registry; this one is in ${this.location}: use ${instead} (or publish, save, moveAlias)`,
      );
  }

  private readAliases(): Record<string, Record<string, string>> {
    if (this.snapshot) return dict(Object.entries(this.snapshot.aliases).map(([model, aliases]) => [model, toDict(aliases)]));
    const path = join(this.root, 'aliases.json');
    if (!existsSync(path)) return dict();
    const parsed = Aliases.safeParse(JSON.parse(readFileSync(path, 'utf8')));
    if (!parsed.success) throw new InputError(`${path} is not an alias table: ${parsed.error.issues[0]!.message}`);
    // Model names and aliases are the user's (`constructor` is one): tables without a prototype, so a lookup finds only what is there.
    return dict(Object.entries(parsed.data).map(([model, aliases]) => [model, toDict(aliases)]));
  }
}

const NAME = /^[a-z][a-z0-9-]{0,63}$/;

/** A stored file's JSON; a file that is not JSON (cut short, overwritten) was damaged after it was written. */
function readJson(path: string): unknown {
  return parseJson(readFileSync(path, 'utf8'), path);
}

function parseJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new IntegrityError(`${path} is not valid JSON (${(err as Error).message}): the file was damaged after it was written`);
  }
}

/** An error as `code: message`, the form listings and refusals show. */
function describeFailure(err: unknown): string {
  return err instanceof WorkbenchError ? `${err.code}: ${err.message}` : `unreadable: ${err instanceof Error ? err.message : String(err)}`;
}

const sha256Hex = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');
