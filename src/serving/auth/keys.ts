import { createHash, hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { z } from 'zod';
import { IntegrityError, InputError, NotFoundError } from '../../workbench/errors.js';
import { writeFileAtomic } from '../../workbench/files.js';
import { createIfAbsent } from '../../workbench/oltp/postgres.js';
import { ident, sql, type Identifier, type Sql } from '../../workbench/sql.js';
import { migrateOrClose, openPgPool, shownUrl } from '../../workbench/oltp/pg-pool.js';

/**
 * API keys with scopes. A key is shown once, when created (`wb_<id>_<secret>`); the store keeps
 * only the SHA-256 of its secret (a 256-bit random secret needs no slow hash), so the file on disk
 * cannot be used to call the API. `admin` includes every other scope.
 */
export const SCOPES = ['ingest', 'read', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

const KeyRecord = z.object({
  id: z.string().regex(/^[0-9a-f]{12}$/),
  name: z.string().min(1).max(100),
  scopes: z.array(z.enum(SCOPES)).min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  created_at: z.string(),
  revoked_at: z.string().nullable(),
});
const KeyFile = z.object({ format: z.literal(1), keys: z.array(KeyRecord) });
export type KeyRecord = z.infer<typeof KeyRecord>;

export interface ApiKeyInfo {
  id: string;
  name: string;
  scopes: Scope[];
}

const KEY_FORMAT = /^wb_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

/** A new key with its secret: the only time the secret is seen. */
export interface CreatedKey {
  key: string;
  info: ApiKeyInfo;
}

/**
 * Where the keys are kept: a file in the data dir (one instance), or PostgreSQL (several). Either
 * way the service verifies against an in-memory copy, synchronously, so a request never waits on
 * storage; `reload` refreshes the copy (on a `keys` change notification, and periodically). Writes
 * are synchronous for the file and asynchronous for the database: `await` them either way.
 */
export interface ApiKeyStore {
  readonly kind: 'file' | 'postgres';
  /** The file, or the database URL with any password masked, for messages. */
  readonly location: string;
  create(name: string, scopes: readonly string[]): CreatedKey | Promise<CreatedKey>;
  revoke(id: string): void | Promise<void>;
  /** The keys as last loaded (never their secrets). */
  list(): KeyRecord[];
  /** The key's identity if it is well-formed, known, not revoked and its secret matches; else undefined. From memory. */
  verify(key: string): ApiKeyInfo | undefined;
  reload(): void | Promise<void>;
  close(): void | Promise<void>;
}

/** The key file, `<data dir>/keys.json` (the default). */
export class KeyStore implements ApiKeyStore {
  readonly kind = 'file';
  private keys: KeyRecord[];

  private constructor(
    readonly path: string,
    keys: KeyRecord[],
  ) {
    this.keys = keys;
  }

  get location(): string {
    return this.path;
  }

  /** Opens the key file (`<data dir>/keys.json`), refusing one that is not what this code wrote. */
  static open(path: string): KeyStore {
    if (!existsSync(path)) return new KeyStore(path, []);
    let parsed: z.infer<typeof KeyFile>;
    try {
      parsed = KeyFile.parse(JSON.parse(readFileSync(path, 'utf8')));
    } catch (err) {
      throw new IntegrityError(
        `${path} is not a valid key file (${(err as Error).message.split('\n')[0]}); fix or remove it, then create keys with \`wb keys create\``,
      );
    }
    return new KeyStore(path, parsed.keys);
  }

  /** Creates a key and returns it with its secret: the only time the secret is seen. */
  create(name: string, scopes: readonly string[]): CreatedKey {
    const { key, record } = newKey(name, scopes);
    this.keys.push(record);
    this.save();
    return { key, info: infoOf(record) };
  }

  revoke(id: string): void {
    const record = this.keys.find((k) => k.id === id);
    if (!record) throw new NotFoundError(`no key with id ${JSON.stringify(id)} (see \`wb keys list\`)`);
    record.revoked_at ??= new Date().toISOString();
    this.save();
  }

  list(): KeyRecord[] {
    return this.keys.map((k) => ({ ...k }));
  }

  /** The key's identity if it is well-formed, known, not revoked and its secret matches; else undefined. */
  verify(key: string): ApiKeyInfo | undefined {
    return verifyAgainst(this.keys, key);
  }

  /** Re-reads the file, so keys created or revoked by `wb keys` reach a running service. */
  reload(): void {
    this.keys = KeyStore.open(this.path).keys;
  }

  close(): void {}

  private save(): void {
    mkdirSync(dirname(this.path), { recursive: true });
    writeFileAtomic(this.path, `${JSON.stringify({ format: 1, keys: this.keys }, null, 2)}\n`, 0o600);
  }
}

/**
 * The keys in PostgreSQL, table `wb_keys` (the same fields as the file: hashes, never secrets), for
 * several instances: `wb keys` writes there and publishes a `keys` change, and each instance reloads
 * its in-memory copy when it hears it (and every few seconds anyway).
 */
export class PostgresKeyStore implements ApiKeyStore {
  readonly kind = 'postgres';
  readonly location: string;
  private keys: KeyRecord[] = [];
  private readonly pool: pg.Pool;
  private readonly table: Identifier;

  private constructor(
    connectionString: string,
    private readonly schema: string | undefined,
  ) {
    this.location = shownUrl(connectionString);
    this.pool = openPgPool(connectionString);
    this.table = schema ? ident(schema, 'wb_keys') : ident('wb_keys');
  }

  /** Creates the table if needed and loads the keys. `schema` (created if needed) keeps a test run's table apart. */
  static async open(connectionString: string, options: { schema?: string | undefined } = {}): Promise<PostgresKeyStore> {
    return migrateOrClose(new PostgresKeyStore(connectionString, options.schema), async (store) => {
      await store.migrate();
      await store.reload();
    });
  }

  async create(name: string, scopes: readonly string[]): Promise<CreatedKey> {
    const { key, record: r } = newKey(name, scopes);
    await this.query(sql`INSERT INTO ${this.table} (id, name, scopes, sha256, created_at, revoked_at)
      VALUES (${r.id}, ${r.name}, ${r.scopes.join(',')}, ${r.sha256}, ${r.created_at}, NULL)`);
    this.keys = [...this.keys, r];
    return { key, info: infoOf(r) };
  }

  async revoke(id: string): Promise<void> {
    // A revocation keeps the first time it was revoked, like the file's.
    const { rows } = await this.query(
      sql`UPDATE ${this.table} SET revoked_at = COALESCE(revoked_at, ${new Date().toISOString()}) WHERE id = ${id} RETURNING revoked_at`,
    );
    const row = rows[0] as { revoked_at: string } | undefined;
    if (!row) throw new NotFoundError(`no key with id ${JSON.stringify(id)} (see \`wb keys list\`)`);
    this.keys = this.keys.map((k) => (k.id === id ? { ...k, revoked_at: row.revoked_at } : k));
  }

  list(): KeyRecord[] {
    return this.keys.map((k) => ({ ...k, scopes: [...k.scopes] }));
  }

  verify(key: string): ApiKeyInfo | undefined {
    return verifyAgainst(this.keys, key);
  }

  /** Re-reads the table; refuses (keeping the keys it had) if a row is not what this code writes. */
  async reload(): Promise<void> {
    const { rows } = await this.query(sql`SELECT id, name, scopes, sha256, created_at, revoked_at FROM ${this.table} ORDER BY created_at, id`);
    const keys: KeyRecord[] = [];
    for (const row of rows as Record<string, unknown>[]) {
      const parsed = KeyRecord.safeParse({ ...row, scopes: String(row.scopes ?? '').split(',') });
      if (!parsed.success)
        throw new IntegrityError(
          `${this.location} ${this.table.toString()}: the row of key ${JSON.stringify(row.id)} is not valid (${parsed.error.issues[0]?.message}); fix or delete it`,
        );
      keys.push(parsed.data);
    }
    this.keys = keys;
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => undefined);
  }

  private async migrate(): Promise<void> {
    // Instances starting together race on IF NOT EXISTS; the loser's work is done.
    const create = (q: Sql) => createIfAbsent((s) => this.query(s), q);
    if (this.schema) await create(sql`CREATE SCHEMA IF NOT EXISTS ${ident(this.schema)}`);
    // Times as ISO text, as in the file: they are shown, never computed with.
    await create(sql`CREATE TABLE IF NOT EXISTS ${this.table} (
      id         TEXT PRIMARY KEY,
      name       TEXT NOT NULL,
      scopes     TEXT NOT NULL,
      sha256     TEXT NOT NULL,
      created_at TEXT NOT NULL,
      revoked_at TEXT
    )`);
  }

  private query(q: Sql): Promise<pg.QueryResult> {
    const { text, params } = q.toParameterized('dollar');
    return this.pool.query(text, params);
  }
}

/**
 * The key store of a data dir and OLTP: PostgreSQL's when the OLTP is PostgreSQL (several instances
 * share it; `schema` as the OLTP's), else the data dir's file. `warn` hears of a key file left unused
 * beside a PostgreSQL OLTP.
 */
export async function openKeyStore(
  dataDir: string,
  oltpUrl: string | undefined,
  options: { schema?: string | undefined; warn?: (message: string) => void } = {},
): Promise<ApiKeyStore> {
  const file = join(dataDir, 'keys.json');
  if (!oltpUrl || !/^postgres(ql)?:\/\//.test(oltpUrl)) return KeyStore.open(file);
  const store = await PostgresKeyStore.open(oltpUrl, { schema: options.schema });
  const warn = options.warn ?? (() => undefined);
  if (existsSync(file)) {
    try {
      const active = KeyStore.open(file)
        .list()
        .filter((k) => !k.revoked_at).length;
      if (active > 0)
        warn(
          `${file} holds ${active} active keys that are not used: with a PostgreSQL OLTP the keys are in ${store.location} (create them with \`wb keys create --oltp ...\`)`,
        );
    } catch {
      // an unreadable file is not used either; nothing to add
    }
  }
  return store;
}

export const hasScope = (key: ApiKeyInfo, scope: Scope): boolean => key.scopes.includes(scope) || key.scopes.includes('admin');

function newKey(name: string, scopes: readonly string[]): { key: string; record: KeyRecord } {
  const bad = scopes.find((s) => !(SCOPES as readonly string[]).includes(s));
  if (bad !== undefined) throw new InputError(`unknown scope ${JSON.stringify(bad)}: use ${SCOPES.join(', ')}`);
  if (scopes.length === 0) throw new InputError(`a key needs at least one scope (${SCOPES.join(', ')})`);
  if (!name.trim()) throw new InputError('a key needs a name (who or what uses it)');
  const id = randomBytes(6).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  const record: KeyRecord = {
    id,
    name: name.trim(),
    scopes: [...new Set(scopes)] as Scope[],
    sha256: sha256(secret),
    created_at: new Date().toISOString(),
    revoked_at: null,
  };
  return { key: `wb_${id}_${secret}`, record };
}

function verifyAgainst(keys: readonly KeyRecord[], key: string): ApiKeyInfo | undefined {
  const m = KEY_FORMAT.exec(key);
  if (!m) return undefined;
  const record = keys.find((k) => k.id === m[1]);
  if (!record || record.revoked_at) return undefined;
  const ok = timingSafeEqual(digestOf(record), hash('sha256', m[2]!, 'buffer'));
  return ok ? infoOf(record) : undefined;
}

/** Each record's stored hash as bytes, decoded once: every authenticated request compares against it. */
const digests = new WeakMap<KeyRecord, Buffer>();
function digestOf(record: KeyRecord): Buffer {
  let digest = digests.get(record);
  if (!digest) digests.set(record, (digest = Buffer.from(record.sha256, 'hex')));
  return digest;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const infoOf = (r: KeyRecord): ApiKeyInfo => ({ id: r.id, name: r.name, scopes: [...r.scopes] });
