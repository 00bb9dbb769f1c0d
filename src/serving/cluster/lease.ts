import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { z } from 'zod';
import { WorkbenchError } from '../../workbench/errors.js';
import { createIfAbsent } from '../../workbench/oltp/postgres.js';
import { ident, sql, type Identifier, type Sql } from '../../workbench/sql.js';
import { openPgPool, shownUrl } from '../../workbench/oltp/pg-pool.js';

/**
 * Leases: how a singleton (the decider, the scheduler, precompute, the archiver) runs on one instance
 * at a time. A lease has a name, a holder and a token; the token grows every time the lease starts a
 * new term (another holder, or the same holder after it had expired), so a write stamped with an old
 * token can be refused by the store it writes to. That refusal, not the holder's own belief that it
 * still holds the lease, is what keeps a holder that was paused past its expiry from doing harm
 * (fencing): a paused process cannot know it was paused.
 */

/**
 * A singleton's write carried an old token: another term of the lease has begun (or the lease
 * expired) since the writer acquired it. The write must not happen; the writer stops its work.
 */
export class FencedError extends WorkbenchError {
  override readonly code: string = 'fenced';
  override readonly status: number = 409;
  constructor(
    readonly lease: string,
    readonly token: bigint,
    reason: string,
  ) {
    super(`lease ${JSON.stringify(lease)}: token ${token} is no longer current (${reason}); the write was refused`);
  }
}

/** A lease name: short and printable, since it is a primary key and shows up in logs and NOTIFY payloads. */
export const leaseName = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9._:-]+$/, 'a lease name is letters, digits and . _ : -');

/** What `acquire` hands back when the caller holds the lease after the call. */
export interface LeaseGrant {
  /** The term's fencing token: the same on a renewal, larger on every new term. */
  readonly token: bigint;
}

/**
 * Where leases live. `acquire` is the only way to take or renew a lease, and it is one atomic step in
 * the store, so two callers can never both hold a name. Expiry is judged by the store's clock alone.
 */
export interface LeaseStore {
  readonly kind: 'embedded' | 'postgres';
  /** Creates what the store needs (idempotent, safe for several instances at once). */
  migrate(): Promise<void>;
  /**
   * Takes `name` for `holder` if it is free or expired, or renews it if `holder` has it: either way
   * it then expires `ttlMs` later by the store's clock. Undefined when another holder has it.
   */
  acquire(name: string, holder: string, ttlMs: number): Promise<LeaseGrant | undefined>;
  /** Ends the term at once (if `holder` still has it with `token`), so a waiting instance can take over without waiting for the expiry. True if it was released. */
  release(name: string, holder: string, token: bigint): Promise<boolean>;
  /** Throws `FencedError` unless `token` is the current token of `name` and the term has not expired. */
  check(name: string, token: bigint): Promise<void>;
  /** Calls `listener(name)` when a lease is released anywhere, so a waiting runner can take over at once. Returns the unsubscribe function. */
  onRelease(listener: (name: string) => void): () => void;
  close(): Promise<void>;
}

/**
 * The one-process store, the default: a single `wb serve` takes every lease at once and keeps it, so
 * it behaves as before leases existed. It has the same semantics as the PostgreSQL store (several
 * runners in one process still exclude each other), with the process's monotonic clock.
 */
export class EmbeddedLeaseStore implements LeaseStore {
  readonly kind = 'embedded';
  private readonly leases = new Map<string, { holder: string; token: bigint; expiresAt: number }>();
  private readonly listeners = new Set<(name: string) => void>();

  async migrate(): Promise<void> {}

  async acquire(name: string, holder: string, ttlMs: number): Promise<LeaseGrant | undefined> {
    leaseName.parse(name);
    const now = performance.now();
    const lease = this.leases.get(name);
    const live = lease !== undefined && lease.expiresAt > now;
    if (live && lease.holder !== holder) return undefined;
    const token = live ? lease.token : (lease?.token ?? 0n) + 1n;
    this.leases.set(name, { holder, token, expiresAt: now + ttlMs });
    return { token };
  }

  async release(name: string, holder: string, token: bigint): Promise<boolean> {
    const lease = this.leases.get(name);
    if (!lease || lease.holder !== holder || lease.token !== token) return false;
    lease.expiresAt = performance.now();
    for (const l of this.listeners) queueMicrotask(() => l(name));
    return true;
  }

  async check(name: string, token: bigint): Promise<void> {
    const lease = this.leases.get(name);
    if (!lease || lease.token !== token) throw new FencedError(name, token, `the current token is ${lease?.token ?? 'none'}`);
    if (lease.expiresAt <= performance.now()) throw new FencedError(name, token, 'the term has expired');
  }

  onRelease(listener: (name: string) => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}

const CHANNEL = 'wb_leases';

/**
 * Leases in PostgreSQL, for several instances: one row per name in `wb_leases`. Every expiry is
 * computed and compared by the database (`now()`, `clock_timestamp()`), so the instances' clocks
 * never matter. `fence` checks a token inside the caller's own transaction and holds a share lock on
 * the lease row until that transaction ends, so a takeover cannot slip in between the check and the
 * commit of the write it guards.
 */
export class PostgresLeaseStore implements LeaseStore {
  readonly kind = 'postgres';
  /** The connection string with any password masked, for logs. */
  readonly location: string;
  private readonly pool: pg.Pool;
  private readonly table: Identifier;
  private readonly listeners = new Set<(name: string) => void>();
  private listenClient: pg.Client | undefined;
  private closed = false;

  /**
   * `schema` (created by `migrate`) keeps a test run's table apart; the table is always named with
   * its schema, so a `fence` on a client with another search_path still finds it. `onError` hears
   * about a lost LISTEN connection (the runners then fall back to polling at their renewal interval).
   */
  constructor(
    private readonly connectionString: string,
    private readonly options: { schema?: string; onError?: (err: Error) => void } = {},
  ) {
    this.location = shownUrl(connectionString);
    this.pool = openPgPool(connectionString);
    this.table = options.schema ? ident(options.schema, 'wb_leases') : ident('wb_leases');
  }

  async migrate(): Promise<void> {
    // Instances starting together race on IF NOT EXISTS; the loser's work is done.
    const create = (q: Sql) => createIfAbsent((s) => this.pool.query(s.toString()), q);
    if (this.options.schema) await create(sql`CREATE SCHEMA IF NOT EXISTS ${ident(this.options.schema)}`);
    await create(sql`CREATE TABLE IF NOT EXISTS ${this.table} (
      name        TEXT PRIMARY KEY,
      holder      TEXT NOT NULL,
      token       BIGINT NOT NULL CHECK (token > 0),
      acquired_at TIMESTAMPTZ NOT NULL,
      expires_at  TIMESTAMPTZ NOT NULL
    )`);
  }

  async acquire(name: string, holder: string, ttlMs: number): Promise<LeaseGrant | undefined> {
    leaseName.parse(name);
    // One statement: insert, renew (same holder, live: same token) or take over (expired: token + 1).
    // now() is the statement's start, so a wait on a fencing share lock only makes the check more cautious.
    const { rows } = await this.query(sql`
      INSERT INTO ${this.table} AS l (name, holder, token, acquired_at, expires_at)
      VALUES (${name}, ${holder}, 1, now(), now() + ${ttlMs} * interval '1 millisecond')
      ON CONFLICT (name) DO UPDATE SET
        holder = excluded.holder,
        token = CASE WHEN l.holder = excluded.holder AND l.expires_at > now() THEN l.token ELSE l.token + 1 END,
        acquired_at = CASE WHEN l.holder = excluded.holder AND l.expires_at > now() THEN l.acquired_at ELSE now() END,
        expires_at = excluded.expires_at
      WHERE l.holder = excluded.holder OR l.expires_at <= now()
      RETURNING token::text AS token`);
    const row = rows[0];
    return row ? { token: BigInt(String(row.token)) } : undefined;
  }

  async release(name: string, holder: string, token: bigint): Promise<boolean> {
    // The notification is delivered when this statement commits, so a listener never sees the old row.
    const { rows } = await this.query(sql`
      WITH released AS (
        UPDATE ${this.table} SET expires_at = now()
        WHERE name = ${name} AND holder = ${holder} AND token = ${token.toString()}::bigint
        RETURNING name
      )
      SELECT pg_notify(${CHANNEL}, name) FROM released`);
    return rows.length > 0;
  }

  async check(name: string, token: bigint): Promise<void> {
    const client = await this.pool.connect();
    try {
      await this.fence(client, name, token);
    } finally {
      client.release();
    }
  }

  /**
   * The fencing check for a write in PostgreSQL: call it inside the write's transaction (after BEGIN,
   * before COMMIT) on that transaction's client. It throws `FencedError` unless `token` is current and
   * live, and otherwise locks the lease row FOR SHARE until the transaction ends, so the lease cannot
   * change hands before the write commits. Roll the transaction back on the error. Keep fenced
   * transactions short (well under the ttl): while one is open, renewals and takeovers of the lease wait.
   */
  async fence(client: pg.ClientBase, name: string, token: bigint): Promise<void> {
    // clock_timestamp(), not now(): the caller's transaction may have started long ago.
    const q = sql`SELECT token::text AS token, expires_at > clock_timestamp() AS live FROM ${this.table} WHERE name = ${name} FOR SHARE`;
    const { text, params } = q.toParameterized('dollar');
    const row = (await client.query(text, params)).rows[0] as { token: string; live: boolean } | undefined;
    if (!row) throw new FencedError(name, token, 'no such lease');
    if (BigInt(row.token) !== token) throw new FencedError(name, token, `the current token is ${row.token}`);
    if (!row.live) throw new FencedError(name, token, 'the term has expired');
  }

  onRelease(listener: (name: string) => void): () => void {
    this.listeners.add(listener);
    if (!this.listenClient) this.listen();
    return () => void this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
    const client = this.listenClient;
    this.listenClient = undefined;
    await client?.end().catch(() => undefined);
    await this.pool.end();
  }

  /** One connection per store listens for releases; losing it only slows a handover to the polling interval. */
  private listen(): void {
    const client = new pg.Client({ connectionString: this.connectionString });
    this.listenClient = client;
    const fail = (err: Error) => {
      if (this.listenClient === client) this.listenClient = undefined;
      void client.end().catch(() => undefined);
      if (!this.closed) (this.options.onError ?? warn)(new Error(`lease release notifications stopped: ${err.message}`, { cause: err }));
    };
    client.on('error', fail);
    client.on('notification', (m) => {
      if (m.channel !== CHANNEL || !m.payload) return;
      for (const l of this.listeners) l(m.payload);
    });
    client
      .connect()
      .then(() => client.query(`LISTEN ${CHANNEL}`))
      .catch(fail);
  }

  private async query(q: Sql): Promise<pg.QueryResult> {
    const { text, params } = q.toParameterized('dollar');
    return this.pool.query(text, params);
  }
}

function warn(err: Error): void {
  process.emitWarning(err.message, 'LeaseWarning');
}

/** One term of a lease, as its holder sees it. */
export interface LeaseTerm {
  readonly name: string;
  /** The fencing token to check with each write of this term. */
  readonly token: bigint;
  /** Aborted when the term ends (lost, expired, released): long work should stop when it fires. */
  readonly signal: AbortSignal;
}

/** Why a term ended, for the log. */
export type LeaseLossReason = 'taken' | 'expired' | 'released';

const leaseOptions = z
  .object({
    ttlMs: z.number().int().min(100).max(600_000).default(5_000),
    renewEveryMs: z.number().int().min(10).optional(),
    holder: z.string().min(1).max(200).optional(),
  })
  .refine((o) => o.renewEveryMs === undefined || o.renewEveryMs < o.ttlMs, 'renewEveryMs must be less than ttlMs');

export interface LeaseOptions {
  /** How long a term lasts without renewal: how long a dead holder blocks its successor. Default 5 s. */
  ttlMs?: number;
  /** How often the holder renews and a waiting runner tries to take over. Default ttlMs / 3. */
  renewEveryMs?: number;
  /** Who holds the lease, for the table and the log. Default host:pid:random, unique per runner. */
  holder?: string;
  onAcquired?: (term: LeaseTerm) => void;
  onLost?: (term: LeaseTerm, reason: LeaseLossReason) => void;
  /** A failed renewal (the store is unreachable). The term ends by itself when its time runs out. */
  onError?: (err: unknown) => void;
}

/**
 * Keeps one named lease: renews it every `renewEveryMs` while held, tries to take it as often while
 * not, and takes it at once when its holder releases it. The runner believes it holds the lease only
 * until `ttl` after it *sent* its last successful renewal (by its own monotonic clock), which is never
 * later than the store's expiry; after a pause it therefore notices the loss as soon as it runs. That
 * belief is for stopping work early; what makes a stale write harmless is `check` / the store's fence.
 */
export class Lease {
  readonly name: string;
  readonly holder: string;
  readonly ttlMs: number;
  readonly renewEveryMs: number;
  private current: { term: LeaseTerm; controller: AbortController; validUntil: number } | undefined;
  private running = false;
  private inFlight: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private readonly waiters = new Set<(term: LeaseTerm) => void>();

  constructor(
    private readonly store: LeaseStore,
    name: string,
    private readonly options: LeaseOptions = {},
  ) {
    this.name = leaseName.parse(name);
    const parsed = leaseOptions.parse({ ttlMs: options.ttlMs, renewEveryMs: options.renewEveryMs, holder: options.holder });
    this.ttlMs = parsed.ttlMs;
    this.renewEveryMs = parsed.renewEveryMs ?? Math.max(10, Math.floor(parsed.ttlMs / 3));
    this.holder = parsed.holder ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  }

  /** Starts trying to take and keep the lease. Timers are unref'd: a runner never keeps a process alive. */
  start(): this {
    if (this.running) return this;
    this.running = true;
    this.unsubscribe = this.store.onRelease((name) => {
      if (name === this.name && !this.held) this.kick();
    });
    this.kick();
    return this;
  }

  /** Whether this runner holds the lease now, by its own conservative reckoning. */
  get held(): boolean {
    return this.current !== undefined && performance.now() < this.current.validUntil;
  }

  /** The current term's fencing token, while held. */
  get token(): bigint | undefined {
    return this.held ? this.current?.term.token : undefined;
  }

  /** The current term, while held. */
  get term(): LeaseTerm | undefined {
    return this.held ? this.current?.term : undefined;
  }

  /**
   * Runs a singleton's work only while the lease is held: `work(term)` if held, else nothing
   * (undefined). Writes inside should be fenced with `term.token`; long work should watch `term.signal`.
   */
  async ifHeld<T>(work: (term: LeaseTerm) => Promise<T> | T): Promise<T | undefined> {
    const term = this.term;
    return term ? work(term) : undefined;
  }

  /** Throws `FencedError` unless this runner's term is still current in the store (for writes outside PostgreSQL). */
  async check(): Promise<void> {
    const term = this.current?.term;
    if (!term) throw new FencedError(this.name, 0n, 'this runner does not hold the lease');
    if (!this.held) throw new FencedError(this.name, term.token, 'the term ran out before it was renewed');
    await this.store.check(this.name, term.token);
  }

  /** Resolves with the term once the lease is held (at once if it is), or rejects after `timeoutMs`. */
  waitUntilHeld(timeoutMs = 60_000): Promise<LeaseTerm> {
    const term = this.term;
    if (term) return Promise.resolve(term);
    return new Promise((resolve, reject) => {
      const timeout = setTimeout(() => {
        this.waiters.delete(done);
        reject(new Error(`lease ${this.name}: not acquired within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (t: LeaseTerm) => {
        clearTimeout(timeout);
        resolve(t);
      };
      this.waiters.add(done);
    });
  }

  /** Stops renewing and releases the lease if held, so another instance takes over at once. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    await this.inFlight;
    const current = this.current;
    if (!current) return;
    this.end('released');
    await this.store.release(this.name, this.holder, current.term.token).catch((err: unknown) => this.report(err));
  }

  private kick(): void {
    if (!this.running) return;
    if (this.inFlight) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.inFlight = this.tick().finally(() => {
      this.inFlight = undefined;
      if (!this.running) return;
      if (this.again) {
        this.again = false;
        this.kick();
      } else {
        this.timer = setTimeout(() => this.kick(), this.renewEveryMs).unref();
      }
    });
  }

  private async tick(): Promise<void> {
    const sentAt = performance.now();
    let grant: LeaseGrant | undefined;
    try {
      grant = await this.store.acquire(this.name, this.holder, this.ttlMs);
    } catch (err) {
      this.report(err);
      if (this.current && !this.held) this.end('expired');
      return;
    }
    if (!this.running) {
      // stop() ran while this renewal was on the wire: give back what it may just have taken.
      if (grant && !this.current) await this.store.release(this.name, this.holder, grant.token).catch((err: unknown) => this.report(err));
      return;
    }
    const validUntil = sentAt + this.ttlMs;
    if (!grant) {
      if (this.current) this.end('taken');
      return;
    }
    if (performance.now() >= validUntil) {
      // The answer came back later than the term it granted: treat it as not held; the next renewal decides.
      if (this.current) this.end('expired');
      return;
    }
    if (this.current && this.current.term.token === grant.token && this.held) {
      this.current.validUntil = validUntil;
    } else {
      if (this.current) this.end(this.current.term.token === grant.token ? 'expired' : 'taken');
      const controller = new AbortController();
      const term: LeaseTerm = { name: this.name, token: grant.token, signal: controller.signal };
      this.current = { term, controller, validUntil };
      this.call(() => this.options.onAcquired?.(term));
      for (const w of this.waiters) w(term);
      this.waiters.clear();
    }
    this.armWatchdog();
  }

  private armWatchdog(): void {
    clearTimeout(this.watchdog);
    const current = this.current;
    if (!current) return;
    this.watchdog = setTimeout(
      () => {
        if (this.current !== current) return;
        // A timer may fire a little before performance.now() reaches its time (libuv's loop clock
        // lags): still held by that clock, it waits again, or the term would end with no onLost.
        if (this.held) this.armWatchdog();
        else this.end('expired');
      },
      Math.max(0, current.validUntil - performance.now()) + 1,
    ).unref();
  }

  private end(reason: LeaseLossReason): void {
    const current = this.current;
    if (!current) return;
    this.current = undefined;
    clearTimeout(this.watchdog);
    current.controller.abort(new FencedError(this.name, current.term.token, `the term ended: ${reason}`));
    this.call(() => this.options.onLost?.(current.term, reason));
  }

  private call(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.report(err);
    }
  }

  private report(err: unknown): void {
    if (this.options.onError) this.options.onError(err);
    else process.emitWarning(`lease ${this.name}: ${err instanceof Error ? err.message : String(err)}`, 'LeaseWarning');
  }
}
