import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { z } from 'zod';
import { dict } from '../../workbench/dict.js';
import { AliasRefusedError, InputError, IntegrityError, NotFoundError } from '../../workbench/errors.js';
import type { ModelBundle } from '../../workbench/models/bundle.js';
import { ModelRegistry, type AliasMove, type RegistrySnapshot, type SharedRegistryStore } from '../../workbench/models/registry.js';
import { createIfAbsent } from '../../workbench/oltp/postgres.js';
import { ident, sql, type Identifier, type Sql } from '../../workbench/sql.js';
import { openBlobStore, type BlobStore } from '../cluster/blob-store/index.js';
import { registryDir } from '../../workbench/config.js';
import { migrateOrClose, openPgPool, shownUrl } from '../../workbench/oltp/pg-pool.js';

/**
 * The model registry of several service instances: versions, aliases and the history of every
 * alias move in PostgreSQL (tables `wb_model_versions`, `wb_model_aliases` and
 * `wb_model_alias_history` of the OLTP's schema), the bundles in a blob store (a directory of the
 * shared data dir, or S3), under `registry/bundles/<version>.json`. A version's row records the
 * SHA-256 of its bundle's bytes: a blob that differs (changed in the store, or replaced by a
 * consistent-looking one) is refused when fetched, whatever the blob store's own checksum says.
 */
export class PostgresRegistryStore implements SharedRegistryStore {
  readonly location: string;
  private readonly pool: pg.Pool;
  private readonly versions: Identifier;
  private readonly aliases: Identifier;
  private readonly history: Identifier;

  private constructor(
    connectionString: string,
    private readonly schema: string | undefined,
    readonly blobs: BlobStore,
  ) {
    this.location = `${shownUrl(connectionString)}${schema ? ` (schema ${schema})` : ''} with bundles in ${blobs.location}`;
    this.pool = openPgPool(connectionString);
    const table = (name: string) => (schema ? ident(schema, name) : ident(name));
    this.versions = table('wb_model_versions');
    this.aliases = table('wb_model_aliases');
    this.history = table('wb_model_alias_history');
  }

  /** Creates the tables if needed. `schema` (created if needed) is the OLTP's. The store owns `blobs` (closes it). */
  static async open(connectionString: string, blobs: BlobStore, options: { schema?: string | undefined } = {}): Promise<PostgresRegistryStore> {
    return migrateOrClose(new PostgresRegistryStore(connectionString, options.schema, blobs), (store) => store.migrate());
  }

  async read(): Promise<RegistrySnapshot> {
    // One snapshot of the three tables (REPEATABLE READ): an alias never points at a version the read missed.
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const versions = await query(client, sql`SELECT version, name, sha256 FROM ${this.versions} ORDER BY version`);
      const aliases = await query(client, sql`SELECT name, alias, version FROM ${this.aliases} ORDER BY name, alias`);
      const history = await query(client, sql`SELECT at, name, alias, from_version, to_version, moved_by, reason FROM ${this.history} ORDER BY id`);
      await client.query('COMMIT');
      const snapshot: RegistrySnapshot = { versions: new Map(), aliases: dict(), history: [] };
      for (const row of versions.rows) {
        const r = this.row(VersionRow, row, 'wb_model_versions');
        snapshot.versions.set(r.version, { name: r.name, sha256: r.sha256 });
      }
      for (const row of aliases.rows) {
        const r = this.row(AliasRow, row, 'wb_model_aliases');
        (snapshot.aliases[r.name] ??= dict())[r.alias] = r.version;
      }
      for (const row of history.rows) snapshot.history.push(moveOf(this.row(HistoryRow, row, 'wb_model_alias_history')));
      return snapshot;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async version(version: string): Promise<{ name: string; sha256: string } | undefined> {
    const { rows } = await this.query(sql`SELECT version, name, sha256 FROM ${this.versions} WHERE version = ${version}`);
    if (rows.length === 0) return undefined;
    const r = this.row(VersionRow, rows[0], 'wb_model_versions');
    return { name: r.name, sha256: r.sha256 };
  }

  async fetch(version: string, sha256: string): Promise<Uint8Array> {
    const key = blobKeyOf(version);
    // The blob store checks the bytes against the hash stored beside them (bit rot, a cut write) ...
    const bytes = await this.blobs.get(key);
    if (!bytes)
      throw new IntegrityError(
        `model version ${version}: its bundle ${key} is missing from ${this.blobs.location}; the registry in ${this.location} records it`,
      );
    // ... and the registry against the hash it recorded when the version was stored, which a blob rewritten whole would not match.
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== sha256)
      throw new IntegrityError(
        `model version ${version}: its bundle ${key} in ${this.blobs.location} has SHA-256 ${actual}, not the ${sha256} the registry recorded; it was changed after it was stored, and is not served`,
      );
    return bytes;
  }

  async put(bundle: ModelBundle, bytes: Uint8Array): Promise<boolean> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const existing = await this.version(bundle.version);
    if (existing) return false;
    // The blob first, then the row: a row never names a bundle that is not there. Two instances
    // storing one version write the same bytes (the version is their hash), and one row.
    await this.blobs.put(blobKeyOf(bundle.version), bytes);
    const { rowCount } = await this.query(sql`INSERT INTO ${this.versions} (version, name, sha256, size, created_at, stored_at)
      VALUES (${bundle.version}, ${bundle.name}, ${sha256}, ${bytes.byteLength}, ${bundle.lineage.createdAt}, ${new Date().toISOString()})
      ON CONFLICT (version) DO NOTHING`);
    return rowCount === 1;
  }

  async move(name: string, alias: string, version: string, meta: { by?: string; reason?: string }): Promise<AliasMove> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const { rows } = await query(client, sql`SELECT name FROM ${this.versions} WHERE version = ${version}`);
      const owner = rows[0] as { name?: unknown } | undefined;
      if (!owner) throw new NotFoundError(`no model version ${version} in the registry ${this.location}`);
      if (owner.name !== name)
        throw new AliasRefusedError(`cannot point ${name} ${alias} at ${version}: it is a version of ${String(owner.name)}, not of ${name}`);
      const at = new Date().toISOString();
      let from: string | null | undefined;
      // The alias's row is locked for the rest of the transaction, so concurrent moves of one alias
      // follow each other and each history row's `from` is the previous one's `to`. An alias without
      // a row yet: the insert decides, and the loser (ON CONFLICT waits for the winner) reads its row.
      for (let attempt = 0; from === undefined && attempt < 3; attempt++) {
        const current = await query(client, sql`SELECT version FROM ${this.aliases} WHERE name = ${name} AND alias = ${alias} FOR UPDATE`);
        const row = current.rows[0] as { version: string } | undefined;
        if (row) {
          if (row.version === version) {
            await client.query('COMMIT');
            return { at, name, alias, from: version, to: version, ...meta, unchanged: true };
          }
          await query(client, sql`UPDATE ${this.aliases} SET version = ${version}, moved_at = ${at} WHERE name = ${name} AND alias = ${alias}`);
          from = row.version;
          break;
        }
        const inserted = await query(
          client,
          sql`INSERT INTO ${this.aliases} (name, alias, version, moved_at) VALUES (${name}, ${alias}, ${version}, ${at}) ON CONFLICT (name, alias) DO NOTHING`,
        );
        if (inserted.rowCount === 1) from = null;
      }
      if (from === undefined) throw new Error(`alias ${name} ${alias}: could not insert nor lock its row`);
      const move: AliasMove = { at, name, alias, from, to: version, ...meta };
      await query(
        client,
        sql`INSERT INTO ${this.history} (at, name, alias, from_version, to_version, moved_by, reason)
          VALUES (${at}, ${name}, ${alias}, ${from}, ${version}, ${meta.by ?? null}, ${meta.reason ?? null})`,
      );
      await client.query('COMMIT');
      return move;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => undefined);
    await this.blobs.close();
  }

  private row<T>(schema: z.ZodType<T>, row: unknown, table: string): T {
    const parsed = schema.safeParse(row);
    if (!parsed.success)
      throw new IntegrityError(
        `${this.location}: a row of ${table} is not what this code writes (${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message})`,
      );
    return parsed.data;
  }

  private async migrate(): Promise<void> {
    // Instances starting together race on IF NOT EXISTS; the loser's work is done.
    const create = (q: Sql) => createIfAbsent((s) => this.query(s), q);
    if (this.schema) await create(sql`CREATE SCHEMA IF NOT EXISTS ${ident(this.schema)}`);
    // Times as ISO text, as in the directory registry: they are shown and ordered, never computed with.
    await create(sql`CREATE TABLE IF NOT EXISTS ${this.versions} (
      version    TEXT PRIMARY KEY,
      name       TEXT NOT NULL,
      sha256     TEXT NOT NULL,
      size       BIGINT NOT NULL,
      created_at TEXT NOT NULL,
      stored_at  TEXT NOT NULL
    )`);
    await create(sql`CREATE TABLE IF NOT EXISTS ${this.aliases} (
      name     TEXT NOT NULL,
      alias    TEXT NOT NULL,
      version  TEXT NOT NULL REFERENCES ${this.versions} (version),
      moved_at TEXT NOT NULL,
      PRIMARY KEY (name, alias)
    )`);
    await create(sql`CREATE TABLE IF NOT EXISTS ${this.history} (
      id           BIGSERIAL PRIMARY KEY,
      at           TEXT NOT NULL,
      name         TEXT NOT NULL,
      alias        TEXT NOT NULL,
      from_version TEXT,
      to_version   TEXT NOT NULL REFERENCES ${this.versions} (version),
      moved_by     TEXT,
      reason       TEXT
    )`);
  }

  private query(q: Sql): Promise<pg.QueryResult> {
    const { text, params } = q.toParameterized('dollar');
    return this.pool.query(text, params);
  }
}

const VERSION = z.string().regex(/^[0-9a-f]{16}$/);
const VersionRow = z.object({ version: VERSION, name: z.string().min(1), sha256: z.string().regex(/^[0-9a-f]{64}$/) });
const AliasRow = z.object({ name: z.string().min(1), alias: z.string().min(1), version: VERSION });
const HistoryRow = z.object({
  at: z.string(),
  name: z.string().min(1),
  alias: z.string().min(1),
  from_version: VERSION.nullable(),
  to_version: VERSION,
  moved_by: z.string().nullable(),
  reason: z.string().nullable(),
});

function moveOf(r: z.infer<typeof HistoryRow>): AliasMove {
  return {
    at: r.at,
    name: r.name,
    alias: r.alias,
    from: r.from_version,
    to: r.to_version,
    ...(r.moved_by !== null ? { by: r.moved_by } : {}),
    ...(r.reason !== null ? { reason: r.reason } : {}),
  };
}

const blobKeyOf = (version: string) => `registry/bundles/${version}.json`;

function query(client: pg.PoolClient, q: Sql): Promise<pg.QueryResult> {
  const { text, params } = q.toParameterized('dollar');
  return client.query(text, params);
}

export const isPostgresUrl = (url: string | undefined): url is string => url !== undefined && /^postgres(ql)?:\/\//.test(url);

/**
 * The model registry of a data dir and OLTP: with a PostgreSQL OLTP, the shared one (versions and
 * aliases in its schema, bundles in the blob store `blobStore` names, by default `<data dir>/blobs`,
 * fetched bundles cached in `cacheDir`); else the data dir's directory registry, as before.
 */
export async function openModelRegistry(options: {
  dataDir: string;
  oltpUrl: string | undefined;
  schema?: string | undefined;
  /** Where fetched bundles are kept (an instance's own disk); default `<data dir>/cache/registry`. */
  cacheDir?: string;
  /** A blob store setting (`openBlobStore`); default env `WB_BLOB_STORE`, else `<data dir>/blobs`. */
  blobStore?: string | undefined;
  /** Hears of a directory registry in the data dir that the shared one leaves unused. */
  warn?: (message: string) => void;
}): Promise<ModelRegistry> {
  const dir = registryDir(options.dataDir);
  if (!isPostgresUrl(options.oltpUrl)) return ModelRegistry.open(dir);
  const blobs = await openBlobStore(options.blobStore ?? process.env.WB_BLOB_STORE, join(options.dataDir, 'blobs'));
  const store = await PostgresRegistryStore.open(options.oltpUrl, blobs, { schema: options.schema });
  let registry: ModelRegistry;
  try {
    registry = await ModelRegistry.openShared(store, options.cacheDir ?? join(options.dataDir, 'cache', 'registry'));
  } catch (err) {
    await store.close();
    throw err;
  }
  if (options.warn && existsSync(join(dir, 'aliases.json')))
    options.warn(
      `${dir} holds a directory registry that is not used: with a PostgreSQL OLTP the registry is in ${registry.location} (publish through the service, or open it with openModelRegistry)`,
    );
  return registry;
}

/** What `importDirectoryRegistry` did. */
export interface RegistryImport {
  /** Versions stored in the shared registry (those it held already are not counted). */
  versions: string[];
  /** Aliases set in the shared registry, `name/alias`. */
  aliases: string[];
  /** Aliases the shared registry already had, left where they are, `name/alias`. */
  kept: string[];
  /** Versions that cannot be read, left behind with why. */
  skipped: { version: string; error: string }[];
}

/**
 * Copies a directory registry into a shared one (`wb models import`): every readable version, and
 * each alias the shared registry does not have yet (one it has is left as it is). The moves are
 * recorded in the shared history as made by the import; the directory's own history stays in its
 * `alias-history.jsonl`. Running it again copies nothing new.
 */
export async function importDirectoryRegistry(from: ModelRegistry, to: ModelRegistry, by = 'wb models import'): Promise<RegistryImport> {
  if (from.isShared || !to.isShared) throw new InputError('an import copies a directory registry into a shared (PostgreSQL) one');
  await to.reload();
  const out: RegistryImport = { versions: [], aliases: [], kept: [], skipped: [] };
  for (const entry of from.list()) {
    if ('error' in entry) {
      out.skipped.push({ version: entry.version, error: entry.error });
      continue;
    }
    if (to.has(entry.version)) continue;
    await to.putAsync(from.get(entry.version));
    out.versions.push(entry.version);
  }
  for (const [name, aliases] of Object.entries(from.aliasTable())) {
    for (const [alias, version] of Object.entries(aliases)) {
      if (to.resolve(name, alias) !== undefined) {
        out.kept.push(`${name}/${alias}`);
        continue;
      }
      if (!to.has(version)) continue; // its version could not be read: listed in skipped
      await to.setAliasAsync(name, alias, version, { by, reason: `imported from ${from.root}` });
      out.aliases.push(`${name}/${alias}`);
    }
  }
  return out;
}
