import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { InputError, NotFoundError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import { bundleJson, verifyBundle, type ModelBundle } from './bundle.js';

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

export interface AliasMove {
  at: string;
  name: string;
  alias: string;
  from: string | null;
  to: string;
  by?: string;
  reason?: string;
}

const ALIAS = /^[a-z][a-z0-9_-]{0,31}$/;
const VERSION = /^[0-9a-f]{16}$/;
const Aliases = z.record(z.string(), z.record(z.string(), z.string().regex(VERSION)));

export class ModelRegistry {
  private constructor(readonly root: string) {}

  static open(root: string): ModelRegistry {
    mkdirSync(join(root, 'bundles'), { recursive: true });
    return new ModelRegistry(root);
  }

  /** Stores a bundle (verified first); storing the same version again changes nothing. */
  put(input: unknown): ModelBundle {
    const bundle = verifyBundle(input);
    const path = this.bundlePath(bundle.version);
    if (!existsSync(path)) writeFileAtomic(path, bundleJson(bundle));
    return bundle;
  }

  /** A stored bundle, verified against its version (a changed file is refused). */
  get(version: string): ModelBundle {
    if (!VERSION.test(version)) throw new InputError(`${JSON.stringify(version)} is not a model version (16 hex digits)`);
    const path = this.bundlePath(version);
    if (!existsSync(path)) throw new NotFoundError(`no model version ${version} in the registry ${this.root}`);
    const bundle = verifyBundle(JSON.parse(readFileSync(path, 'utf8')), path);
    if (bundle.version !== version) throw new InputError(`${path} holds version ${bundle.version}, not ${version}`);
    return bundle;
  }

  has(version: string): boolean {
    return VERSION.test(version) && existsSync(this.bundlePath(version));
  }

  /** Versions, newest first, optionally of one model name. */
  list(name?: string): VersionInfo[] {
    const aliases = this.readAliases();
    const out: VersionInfo[] = [];
    for (const file of readdirSync(join(this.root, 'bundles'))) {
      if (!file.endsWith('.json')) continue;
      const b = JSON.parse(readFileSync(join(this.root, 'bundles', file), 'utf8')) as ModelBundle;
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
        aliases: Object.keys(named).filter((a) => named[a] === b.version).sort(),
      });
    }
    return out.sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
  }

  /** The version an alias of a model points at, or undefined. */
  resolve(name: string, alias: string): string | undefined {
    return this.readAliases()[name]?.[alias];
  }

  aliases(name: string): Record<string, string> {
    return { ...(this.readAliases()[name] ?? {}) };
  }

  /** Every model's aliases: name -> alias -> version. */
  aliasTable(): Record<string, Record<string, string>> {
    return this.readAliases();
  }

  /** Points an alias of a model at a version of that model, and records the move. */
  setAlias(name: string, alias: string, version: string, meta: { by?: string; reason?: string } = {}): AliasMove {
    if (!ALIAS.test(alias)) throw new InputError(`alias ${JSON.stringify(alias)}: use lower-case letters, digits, _ and -, up to 32`);
    const bundle = this.get(version);
    if (bundle.name !== name) throw new InputError(`version ${version} is a version of ${bundle.name}, not of ${name}`);
    const all = this.readAliases();
    const named = (all[name] ??= {});
    const move: AliasMove = { at: new Date().toISOString(), name, alias, from: named[alias] ?? null, to: version, ...meta };
    named[alias] = version;
    writeFileAtomic(join(this.root, 'aliases.json'), `${JSON.stringify(all, null, 2)}\n`);
    appendFileSync(join(this.root, 'alias-history.jsonl'), `${JSON.stringify(move)}\n`);
    return move;
  }

  /** Every alias move, oldest first, optionally of one model. */
  history(name?: string): AliasMove[] {
    const path = join(this.root, 'alias-history.jsonl');
    if (!existsSync(path)) return [];
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as AliasMove)
      .filter((m) => name === undefined || m.name === name);
  }

  private bundlePath(version: string): string {
    return join(this.root, 'bundles', `${version}.json`);
  }

  private readAliases(): Record<string, Record<string, string>> {
    const path = join(this.root, 'aliases.json');
    if (!existsSync(path)) return {};
    const parsed = Aliases.safeParse(JSON.parse(readFileSync(path, 'utf8')));
    if (!parsed.success) throw new InputError(`${path} is not an alias table: ${parsed.error.issues[0]!.message}`);
    return parsed.data;
  }
}
