import { Redis } from 'ioredis';
import type { UserState } from '../../workbench/features/online.js';
import { StoreMovedError, type OnlineStore, type StorePosition } from './store.js';

/** How long a dropped set's keys stay for the instances still serving it. */
const DROP_GRACE_SECONDS = 600;

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
  ) {}

  /** `url` like redis://127.0.0.1:6379/0; keys start with `prefix` (default `wb:features:`). */
  static async open(url: string, prefix = 'wb:features:'): Promise<RedisOnlineStore> {
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
    return new RedisOnlineStore(redis, prefix);
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
    // One script: Redis runs it whole, so the check of the position and the write are one step.
    const [applied, current] = (await this.redis.eval(
      WRITE_IF_AT,
      2,
      this.usersKey,
      this.positionKey,
      from === undefined ? '' : String(from),
      setVersion,
      JSON.stringify({ setVersion, offset }),
      String(set.length / 2),
      ...set,
      ...gone,
    )) as [number, string | null];
    if (applied !== 1) throw new StoreMovedError(from ?? 0, current ? (JSON.parse(current) as StorePosition) : undefined);
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
