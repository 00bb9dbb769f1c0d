import { Redis } from 'ioredis';
import type { UserState } from '../../workbench/features/online.js';
import type { OnlineStore, StorePosition } from './store.js';

/**
 * The scale-out online store: one Redis hash of user -> state (JSON) and one key with the position,
 * both changed in one MULTI/EXEC per batch, so the states and the offset never disagree. Several
 * service processes can read it; one features consumer writes it.
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

  async write(states: ReadonlyMap<string, UserState | undefined>, offset: number): Promise<void> {
    const setVersion = this.setVersion ?? (await this.position())?.setVersion;
    if (!setVersion) throw new Error('the online store was written before reset() chose its feature set');
    const tx = this.redis.multi();
    const set: string[] = [];
    const gone: string[] = [];
    for (const [user, state] of states) {
      if (state) set.push(user, JSON.stringify(state));
      else gone.push(user);
    }
    if (set.length > 0) tx.hset(this.usersKey, ...set);
    if (gone.length > 0) tx.hdel(this.usersKey, ...gone);
    tx.set(this.positionKey, JSON.stringify({ setVersion, offset }));
    const results = await tx.exec();
    const failed = results?.find(([err]) => err);
    if (!results || failed) throw new Error(`Redis refused a feature state write: ${failed?.[0]?.message ?? 'transaction aborted'}`);
  }

  async flush(): Promise<void> {
    // Every write is already in Redis; how durable it is, is Redis's configuration (appendonly).
  }

  async size(): Promise<number> {
    return this.redis.hlen(this.usersKey);
  }

  async drop(): Promise<void> {
    await this.redis.del(this.usersKey, this.positionKey);
    this.setVersion = undefined;
    await this.close();
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
