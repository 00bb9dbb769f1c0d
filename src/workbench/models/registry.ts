import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { dict, toDict } from '../dict.js';
import { AliasRefusedError, InputError, IntegrityError, NotFoundError, WorkbenchError } from '../errors.js';
import { writeFileAtomic, writeFileAtomicAsync } from '../files.js';
import { bundleJson, checkBundle, loadClassifier, verifyBundle, type ModelBundle } from './bundle.js';

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

const ALIAS = /^[a-z][a-z0-9_-]{0,31}$/;
const VERSION = /^[0-9a-f]{16}$/;
const Aliases = z.record(z.string(), z.record(z.string(), z.string().regex(VERSION)));

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
  private constructor(readonly root: string) {}

  static open(root: string): ModelRegistry {
    mkdirSync(join(root, 'bundles'), { recursive: true });
    return new ModelRegistry(root);
  }

  /** Stores a bundle after building its model once (`checkBundle`): what a notebook or a job should call. */
  async save(input: unknown): Promise<ModelBundle> {
    return this.put(await checkBundle(input));
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
    const stored = !this.has(bundle.version);
    this.put(bundle);
    const move = this.setAlias(bundle.name, alias, bundle.version, meta);
    const outcome = { name: bundle.name, version: bundle.version, alias, from: move.from, stored };
    return { ...outcome, unchanged: !stored && move.unchanged === true, message: publishMessage(outcome) };
  }

  /** Stores a bundle (verified first, without building its model); storing the same version again changes nothing. */
  put(input: unknown): ModelBundle {
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
    const bundle = verifyBundle(input);
    const path = this.bundlePath(bundle.version);
    if (!existsSync(path)) await writeFileAtomicAsync(path, bundleJson(bundle));
    return bundle;
  }

  /** A stored bundle, verified against its version (a changed file is refused). */
  get(version: string): ModelBundle {
    if (!VERSION.test(version)) throw new InputError(`${JSON.stringify(version)} is not a model version (16 hex digits)`);
    const path = this.bundlePath(version);
    if (!existsSync(path)) throw new NotFoundError(`no model version ${version} in the registry ${this.root}`);
    const bundle = verifyBundle(readJson(path), path);
    if (bundle.version !== version) throw new IntegrityError(`${path} holds version ${bundle.version}, not ${version}`);
    return bundle;
  }

  has(version: string): boolean {
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
    for (const file of readdirSync(join(this.root, 'bundles'))) {
      if (!file.endsWith('.json') || file.startsWith('.')) continue;
      const version = file.slice(0, -'.json'.length);
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
    let name: string | undefined;
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

  /** The move `setAlias` records and the alias table it writes (none when the alias is already there: `unchanged`). */
  private planMove(name: string, alias: string, version: string, meta: { by?: string; reason?: string }): { move: AliasMove; table?: string } {
    if (!ALIAS.test(alias)) throw new InputError(`alias ${JSON.stringify(alias)}: use lower-case letters, digits, _ and -, up to 32`);
    this.usableVersion(name, alias, version);
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
    const bundle = this.usableVersion(name, alias, version);
    const model = await loadClassifier(bundle).catch((err: unknown) => {
      throw this.refusal(name, alias, version, err);
    });
    model.dispose();
    return this.setAlias(name, alias, version, meta);
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
      if (err instanceof NotFoundError || !VERSION.test(version)) throw err;
      throw this.refusal(name, alias, version, err);
    }
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

  private readAliases(): Record<string, Record<string, string>> {
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
  const text = readFileSync(path, 'utf8');
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
