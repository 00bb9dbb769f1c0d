import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { InputError } from '../../workbench/errors.js';
import type { UserState } from '../../workbench/features/online.js';
import { StoreMovedError, type OnlineStore, type StorePosition } from './store.js';

/** How long a dropped set's keys stay for the instances still serving it. */
const DROP_GRACE_SECONDS = 600;

/**
 * Users per script of a large write: each script blocks Redis while it runs, and one script per
 * write past ~100k users also meets the limits on a command's arguments.
 */
const WRITE_CHUNK_USERS = 5_000;

/** How long a large write's staged copy lives unless committed: a writer that died leaves nothing lasting. */
const STAGE_TTL_SECONDS = 3_600;

/** A deployment's namespace of keys: what a key segment can hold without quoting, and short. */
const NAMESPACE = /^[A-Za-z0-9_.-]{1,64}$/;

/** Where a `redis://` feature store spec points: the URL to connect to, and the deployment's namespace of keys. */
export interface RedisFeatureStoreSpec {
  url: string;
  /** undefined: no namespace, the keys as before namespaces (`wb:features:<set>:...`). */
  namespace: string | undefined;
}

/**
 * Reads `redis://host:6379[/db][?prefix=NAME]`: `prefix` (taken off the URL, which Redis would not
 * understand) names the deployment's namespace, so that several deployments share one database
 * without sharing keys; without it, `defaultNamespace` (the service's OLTP schema, which already
 * tells deployments apart) or none.
 */
export function parseRedisFeatureStore(spec: string, defaultNamespace?: string): RedisFeatureStoreSpec {
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    throw new InputError(`feature store ${JSON.stringify(spec)} is not a URL: use redis://host:6379[/db][?prefix=NAME]`);
  }
  const given = url.searchParams.getAll('prefix');
  url.searchParams.delete('prefix');
  // The URL is shown without its password: it goes to logs and errors.
  const shown = () => {
    const u = new URL(spec);
    if (u.password) u.password = '***';
    return u.toString();
  };
  if (given.length > 1) throw new InputError(`feature store ${shown()}: give ?prefix= once`);
  const namespace = given[0] ?? defaultNamespace;
  if (namespace !== undefined && !NAMESPACE.test(namespace)) {
    throw new InputError(
      given.length > 0
        ? `feature store ${shown()}: the prefix ${JSON.stringify(namespace)} must be 1 to 64 letters, digits, '_', '-' or '.'`
        : `the OLTP schema ${JSON.stringify(namespace)} cannot name the Redis keys' namespace (1 to 64 letters, digits, '_', '-' or '.'): add ?prefix=NAME to ${shown()}`,
    );
  }
  return { url: url.toString(), namespace };
}

/** The key prefix of one feature set: `wb:<namespace>:features:<set>:`, or `wb:features:<set>:` without a namespace. */
export function featureSetKeyPrefix(namespace: string | undefined, setVersion: string): string {
  return namespace === undefined ? `wb:features:${setVersion}:` : `wb:${namespace}:features:${setVersion}:`;
}

/**
 * Stores a batch's states and the position after it, unless the position stands elsewhere than
 * where the batch was read (ARGV[1], '' for no check) or holds another set. Returns {1} when
 * written, else {0, the position as it is}. KEYS: users hash, position. ARGV: from, set version,
 * new position, number of users to set, then user/state pairs, then users to delete.
 */
const WRITE_IF_AT = `
local current = redis.call('GET', KEYS[2])
if ARGV[1] ~= '' then
  if not current then return {0, false} end
  local p = cjson.decode(current)
  if p.setVersion ~= ARGV[2] or p.offset ~= tonumber(ARGV[1]) then return {0, current} end
end
local n = tonumber(ARGV[4])
for i = 5, 4 + 2 * n, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
for i = 5 + 2 * n, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
redis.call('SET', KEYS[2], ARGV[3])
return {1, false}
`;

/**
 * Starts a large write: checks the position as WRITE_IF_AT does, then copies the users hash to the
 * stage (COPY runs in C, far faster than a script's loop) and marks the stage live. Returns {1, the
 * position as it is (false: none)} to compare at the commit, else {0, the position as it is}.
 * KEYS: users, position, stage, marker. ARGV: from ('' for no check), set version, TTL (s).
 */
const STAGE_BEGIN = `
local current = redis.call('GET', KEYS[2])
if ARGV[1] ~= '' then
  if not current then return {0, false} end
  local p = cjson.decode(current)
  if p.setVersion ~= ARGV[2] or p.offset ~= tonumber(ARGV[1]) then return {0, current} end
end
redis.call('DEL', KEYS[3])
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('COPY', KEYS[1], KEYS[3]) end
redis.call('SET', KEYS[4], '1', 'EX', ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
return {1, current}
`;

/**
 * One chunk of a large write, into the stage only (nothing a reader or another writer uses). Returns
 * 0 when the stage is gone (expired). KEYS: stage, marker. ARGV: TTL (s), number of users to set,
 * then user/state pairs, then users to delete.
 */
const STAGE_CHUNK = `
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local n = tonumber(ARGV[2])
for i = 3, 2 + 2 * n, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
for i = 3 + 2 * n, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
`;

/**
 * Ends a large write: unless the position changed since STAGE_BEGIN (any write or reset changes
 * it), the stage becomes the users hash and the position moves, in one step; either way the stage
 * goes. The old hash is UNLINKed (freed off the main thread) and the RENAME is O(1): the script is
 * short however many users. Returns {1} when committed, {0, the position as it is} when another
 * writer moved it, {-1} when the stage expired. KEYS: users, position, stage, marker. ARGV: the
 * position at the begin ('' for none), the new position.
 */
const STAGE_COMMIT = `
if redis.call('EXISTS', KEYS[4]) == 0 then redis.call('DEL', KEYS[3]) return {-1, false} end
redis.call('DEL', KEYS[4])
local current = redis.call('GET', KEYS[2])
if (current or '') ~= ARGV[1] then
  redis.call('DEL', KEYS[3])
  return {0, current}
end
redis.call('UNLINK', KEYS[1])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('PERSIST', KEYS[3])
  redis.call('RENAME', KEYS[3], KEYS[1])
end
redis.call('SET', KEYS[2], ARGV[2])
return {1, false}
`;

/**
 * The scale-out online store: one Redis hash of user -> state (JSON) and one key with the position,
 * both changed in one script per batch, so the states and the offset never disagree. Several
 * service instances read it and fold into it; a write names the position its batch was read at and
 * is refused when another instance has applied the batch first (see FeatureUpdater).
 */
export class RedisOnlineStore implements OnlineStore {
  readonly kind = 'redis';
  /** The feature set of the states, known after reset() or position(): saves a read per write. */
  private setVersion: string | undefined;

  private constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly chunkUsers: number,
  ) {}

  /**
   * `url` like redis://127.0.0.1:6379/0; keys start with `prefix` (default `wb:features:`; see
   * featureSetKeyPrefix). A write of more than `chunkUsers` users goes in chunks of that many.
   */
  static async open(url: string, prefix = 'wb:features:', options: { chunkUsers?: number } = {}): Promise<RedisOnlineStore> {
    const chunkUsers = options.chunkUsers ?? WRITE_CHUNK_USERS;
    if (!Number.isInteger(chunkUsers) || chunkUsers < 1) throw new RangeError(`chunkUsers must be a positive integer, not ${chunkUsers}`);
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2, connectTimeout: 5_000 });
    try {
      await redis.connect();
    } catch (err) {
      redis.disconnect();
      throw new Error(
        `Cannot reach Redis at ${url} (${(err as Error).message}); start it, e.g. \`redis-server --daemonize yes --port 6379 --save "" --appendonly no\``,
        { cause: err },
      );
    }
    return new RedisOnlineStore(redis, prefix, chunkUsers);
  }

  private get usersKey(): string {
    return `${this.prefix}users`;
  }

  private get positionKey(): string {
    return `${this.prefix}position`;
  }

  async position(): Promise<StorePosition | undefined> {
    const text = await this.redis.get(this.positionKey);
    const position = text ? (JSON.parse(text) as StorePosition) : undefined;
    this.setVersion = position?.setVersion;
    return position;
  }

  async reset(setVersion: string): Promise<void> {
    await this.redis
      .multi()
      .del(this.usersKey)
      .set(this.positionKey, JSON.stringify({ setVersion, offset: 0 }))
      .exec();
    this.setVersion = setVersion;
  }

  async get(users: readonly string[]): Promise<Map<string, UserState>> {
    const out = new Map<string, UserState>();
    if (users.length === 0) return out;
    const values = await this.redis.hmget(this.usersKey, ...users);
    values.forEach((v, i) => {
      if (v !== null) out.set(users[i]!, JSON.parse(v) as UserState);
    });
    return out;
  }

  async peek(user: string): Promise<UserState | undefined> {
    const v = await this.redis.hget(this.usersKey, user);
    return v === null ? undefined : (JSON.parse(v) as UserState);
  }

  async write(states: ReadonlyMap<string, UserState | undefined>, offset: number, from?: number): Promise<void> {
    const setVersion = this.setVersion ?? (await this.position())?.setVersion;
    if (!setVersion) throw new Error('the online store was written before reset() chose its feature set');
    const set: string[] = [];
    const gone: string[] = [];
    for (const [user, state] of states) {
      if (state) set.push(user, JSON.stringify(state));
      else gone.push(user);
    }
    const position = JSON.stringify({ setVersion, offset });
    if (set.length / 2 + gone.length > this.chunkUsers) return this.writeStaged(set, gone, setVersion, position, from);
    // One script: Redis runs it whole, so the check of the position and the write are one step.
    const [applied, current] = (await this.redis.eval(
      WRITE_IF_AT,
      2,
      this.usersKey,
      this.positionKey,
      from === undefined ? '' : String(from),
      setVersion,
      position,
      String(set.length / 2),
      ...set,
      ...gone,
    )) as [number, string | null];
    if (applied !== 1) throw new StoreMovedError(from ?? 0, current ? (JSON.parse(current) as StorePosition) : undefined);
  }

  /**
   * A write too large for one script (a set coming online writes every user): the states go in
   * chunks into a copy of the users hash (the stage), which replaces the hash and moves the position
   * in one final compare-and-set. Until then readers and other writers see the store as it was, at
   * its old position; a write that loses the race (the position moved since the copy) only drops
   * its stage. Without `from` the write is refused too when the position moved meanwhile: the copy
   * would otherwise undo the other write.
   */
  private async writeStaged(set: readonly string[], gone: readonly string[], setVersion: string, position: string, from: number | undefined): Promise<void> {
    const token = randomBytes(8).toString('hex');
    const stage = `${this.prefix}stage:${token}`;
    const marker = `${stage}:live`;
    const moved = (current: string | null) => new StoreMovedError(from ?? 0, current ? (JSON.parse(current) as StorePosition) : undefined);
    const [begun, base] = (await this.redis.eval(
      STAGE_BEGIN,
      4,
      this.usersKey,
      this.positionKey,
      stage,
      marker,
      from === undefined ? '' : String(from),
      setVersion,
      String(STAGE_TTL_SECONDS),
    )) as [number, string | null];
    if (begun !== 1) throw moved(base);
    try {
      const chunk = this.chunkUsers;
      for (let i = 0; i < set.length; i += 2 * chunk) {
        const pairs = set.slice(i, i + 2 * chunk);
        await this.stageChunk(stage, marker, pairs, []);
      }
      for (let i = 0; i < gone.length; i += chunk) await this.stageChunk(stage, marker, [], gone.slice(i, i + chunk));
    } catch (err) {
      await this.redis.del(stage, marker).catch(() => undefined);
      throw err;
    }
    const [committed, current] = (await this.redis.eval(STAGE_COMMIT, 4, this.usersKey, this.positionKey, stage, marker, base ?? '', position)) as [
      number,
      string | null,
    ];
    if (committed === -1)
      throw new Error(`a large write to the online store took longer than ${STAGE_TTL_SECONDS} s: its staged states expired, nothing was written`);
    if (committed !== 1) throw moved(current);
  }

  private async stageChunk(stage: string, marker: string, pairs: readonly string[], gone: readonly string[]): Promise<void> {
    const live = await this.redis.eval(STAGE_CHUNK, 2, stage, marker, String(STAGE_TTL_SECONDS), String(pairs.length / 2), ...pairs, ...gone);
    if (live !== 1)
      throw new Error(`a large write to the online store took longer than ${STAGE_TTL_SECONDS} s: its staged states expired, nothing was written`);
  }

  async flush(): Promise<void> {
    // Every write is already in Redis; how durable it is, is Redis's configuration (appendonly).
  }

  async size(): Promise<number> {
    return this.redis.hlen(this.usersKey);
  }

  /**
   * The set's keys expire after DROP_GRACE_SECONDS rather than going at once: other instances may
   * still serve this set until they move to the next one (they learn of it within a second or two).
   */
  async drop(): Promise<void> {
    await this.redis.multi().expire(this.usersKey, DROP_GRACE_SECONDS).expire(this.positionKey, DROP_GRACE_SECONDS).exec();
    this.setVersion = undefined;
    await this.close();
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
