import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import { IntegrityError, InputError, NotFoundError } from '../../workbench/errors.js';
import { writeFileAtomic } from '../../workbench/files.js';

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

export class KeyStore {
  private keys: KeyRecord[];

  private constructor(
    readonly path: string,
    keys: KeyRecord[],
  ) {
    this.keys = keys;
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
  create(name: string, scopes: readonly string[]): { key: string; info: ApiKeyInfo } {
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
    this.keys.push(record);
    this.save();
    return { key: `wb_${id}_${secret}`, info: infoOf(record) };
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
    const m = KEY_FORMAT.exec(key);
    if (!m) return undefined;
    const record = this.keys.find((k) => k.id === m[1]);
    if (!record || record.revoked_at) return undefined;
    const ok = timingSafeEqual(Buffer.from(record.sha256, 'hex'), Buffer.from(sha256(m[2]!), 'hex'));
    return ok ? infoOf(record) : undefined;
  }

  /** Re-reads the file, so keys created or revoked by `wb keys` reach a running service. */
  reload(): void {
    this.keys = KeyStore.open(this.path).keys;
  }

  private save(): void {
    mkdirSync(dirname(this.path), { recursive: true });
    writeFileAtomic(this.path, `${JSON.stringify({ format: 1, keys: this.keys }, null, 2)}\n`, 0o600);
  }
}

export const hasScope = (key: ApiKeyInfo, scope: Scope): boolean => key.scopes.includes(scope) || key.scopes.includes('admin');

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const infoOf = (r: KeyRecord): ApiKeyInfo => ({ id: r.id, name: r.name, scopes: [...r.scopes] });
