import pg from 'pg';
import { z } from 'zod';
import { InputError } from '../../workbench/errors.js';
import { openPgPool, shownUrl } from '../../workbench/oltp/pg-pool.js';

/**
 * Change notifications between service instances: an instance that changes shared state (a key, an
 * alias, an experiment) publishes its topic, and every instance subscribed to it re-reads that state
 * at once instead of at its next periodic refresh. A notification only says *what kind* of state
 * changed; the state itself is read from where it lives, so a lost or duplicated notification costs
 * at most a refresh interval or an extra read, never a wrong answer. The periodic refreshes stay as
 * the fallback.
 */
export const CHANGE_TOPICS = ['keys', 'aliases', 'experiments'] as const;
export type ChangeTopic = (typeof CHANGE_TOPICS)[number];

/** A notification's detail is a hint for the log (an id, a key), never state: PostgreSQL caps a NOTIFY payload at 8000 bytes. */
export const MAX_DETAIL_CHARS = 500;

/** What a subscriber hears. */
export interface Change {
  topic: ChangeTopic;
  /** What changed (a key id, `model/alias`, an experiment key), when the publisher said. */
  detail?: string;
  /**
   * True when notifications may have been missed (the feed's connection was lost and is back): the
   * subscriber should re-read everything of its topic.
   */
  resync: boolean;
}

export type ChangeListener = (change: Change) => void | Promise<void>;

export interface ChangeFeed {
  readonly kind: 'embedded' | 'postgres';
  /** Tells every subscribed instance (this one included) that state of `topic` changed. */
  publish(topic: ChangeTopic, detail?: string): Promise<void>;
  /** Calls `listener` on each change of `topic`; returns the unsubscribe function. */
  subscribe(topic: ChangeTopic, listener: ChangeListener): () => void;
  /** Resolves once a change published from now on is heard (the PostgreSQL feed listens). */
  ready(): Promise<void>;
  close(): Promise<void>;
}

const topic = z.enum(CHANGE_TOPICS);
const detail = z.string().max(MAX_DETAIL_CHARS).optional();

/** The NOTIFY payload. Other fields are ignored (a newer instance may add some). */
const Payload = z.object({ v: z.literal(1), ns: z.string().max(200), topic, detail });

/** A change as published: built once, not on every publish (a zod object is costly to make). */
const Change = z.object({ topic, detail });

function checked(t: ChangeTopic, d: string | undefined): { topic: ChangeTopic; detail?: string } {
  const parsed = Change.safeParse({ topic: t, detail: d });
  if (!parsed.success)
    throw new InputError(`change notification: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'value'}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** Feeds that hear each other: the instances of one process (tests, `npm start`). */
export class ChangeHub {
  readonly feeds = new Set<EmbeddedChangeFeed>();
}

/**
 * The in-process feed (the default, with a SQLite OLTP): delivers to the subscribers of every feed
 * on the same hub, asynchronously like the database would. Each feed gets its own hub unless one is
 * given, so two services in one process only hear each other when a test says so.
 */
export class EmbeddedChangeFeed implements ChangeFeed {
  readonly kind = 'embedded';
  private readonly listeners = new Map<ChangeTopic, Set<ChangeListener>>();
  private closed = false;

  constructor(
    private readonly hub: ChangeHub = new ChangeHub(),
    private readonly onError: (err: Error) => void = warn,
  ) {
    hub.feeds.add(this);
  }

  async publish(t: ChangeTopic, d?: string): Promise<void> {
    const change = checked(t, d);
    for (const feed of this.hub.feeds) setImmediate(() => feed.deliver({ ...change, resync: false }));
  }

  subscribe(t: ChangeTopic, listener: ChangeListener): () => void {
    return addListener(this.listeners, topic.parse(t), listener);
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.hub.feeds.delete(this);
    this.listeners.clear();
  }

  private deliver(change: Change): void {
    if (!this.closed) dispatch(this.listeners, change, this.onError);
  }
}

const CHANNEL = 'wb_changes';

export interface PostgresChangeFeedOptions {
  /**
   * The namespace notifications are scoped to, within the database (NOTIFY channels are
   * database-wide): default the connection's current schema, so deployments (or test runs) on
   * different schemas of one database do not hear each other.
   */
  namespace?: string | undefined;
  /** Hears about a lost connection, a failed reconnect, a malformed notification, a failing listener. Default: a process warning. */
  onError?: (err: Error) => void;
  /** First delay before reconnecting after the LISTEN connection drops (doubling up to 5 s); default 200 ms. */
  reconnectMs?: number;
  /** How often the LISTEN connection is checked with a query, so a silently dead one is replaced; default 10 s. */
  heartbeatMs?: number;
}

/**
 * The feed on PostgreSQL: NOTIFY on channel `wb_changes` with a small JSON payload, heard through one
 * dedicated LISTEN connection per feed, opened on the first subscription. When that connection drops
 * it is reopened (with backoff), and once it listens again every subscriber is told to resync, since
 * whatever was published meanwhile is gone: NOTIFY is not stored for absent listeners.
 */
export class PostgresChangeFeed implements ChangeFeed {
  readonly kind = 'postgres';
  /** The connection string with any password masked, for logs. */
  readonly location: string;
  /** Notifications on the channel that were not ours to read (not JSON, or not the payload this code writes): counted and reported, never delivered. */
  malformed = 0;
  /** How many times the LISTEN connection was re-established after a drop. */
  reconnects = 0;
  private readonly pool: pg.Pool;
  private readonly listeners = new Map<ChangeTopic, Set<ChangeListener>>();
  private readonly onError: (err: Error) => void;
  private namespace: Promise<string> | undefined;
  private client: pg.Client | undefined;
  private listening = false;
  private missed = false;
  private failures = 0;
  private retry: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private waiters: (() => void)[] = [];
  private closed = false;

  constructor(
    private readonly connectionString: string,
    private readonly options: PostgresChangeFeedOptions = {},
  ) {
    this.location = shownUrl(connectionString);
    this.onError = options.onError ?? warn;
    this.pool = openPgPool(connectionString);
    if (options.namespace !== undefined) this.namespace = Promise.resolve(options.namespace);
  }

  async publish(t: ChangeTopic, d?: string): Promise<void> {
    const change = checked(t, d);
    const payload = JSON.stringify({ v: 1, ns: await this.ns(), ...change });
    await this.pool.query('SELECT pg_notify($1, $2)', [CHANNEL, payload]);
  }

  subscribe(t: ChangeTopic, listener: ChangeListener): () => void {
    const unsubscribe = addListener(this.listeners, topic.parse(t), listener);
    this.connect();
    return unsubscribe;
  }

  /** Resolves once the feed listens (starting to if it did not): a notification published after this is heard. */
  ready(): Promise<void> {
    if (this.listening) return Promise.resolve();
    const waiting = new Promise<void>((resolve) => this.waiters.push(resolve));
    this.connect();
    return waiting;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    clearInterval(this.heartbeat);
    this.listeners.clear();
    const client = this.client;
    this.client = undefined;
    this.listening = false;
    await client?.end().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }

  private ns(): Promise<string> {
    this.namespace ??= this.pool.query('SELECT current_schema() AS ns').then(
      (r) => String((r.rows[0] as { ns: string | null } | undefined)?.ns ?? ''),
      (err: unknown) => {
        this.namespace = undefined; // asked again next time
        throw err;
      },
    );
    return this.namespace;
  }

  private connect(): void {
    if (this.closed || this.client) return;
    const client = new pg.Client({ connectionString: this.connectionString, keepAlive: true, connectionTimeoutMillis: 5_000, query_timeout: 10_000 });
    this.client = client;
    let failed = false;
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      if (this.client === client) this.client = undefined;
      this.listening = false;
      this.missed = true;
      clearInterval(this.heartbeat);
      void client.end().catch(() => undefined);
      if (this.closed) return;
      this.onError(new Error(`change notifications interrupted, reconnecting: ${err.message}`, { cause: err }));
      const delay = Math.min(5_000, (this.options.reconnectMs ?? 200) * 2 ** Math.min(this.failures++, 5));
      this.retry = setTimeout(() => this.connect(), delay).unref();
    };
    client.on('error', fail);
    client.on('end', () => fail(new Error('the LISTEN connection ended')));
    client.on('notification', (m) => {
      if (m.channel === CHANNEL) void this.ns().then((ns) => this.receive(ns, m.payload), fail);
    });
    void (async () => {
      try {
        await this.ns();
        await client.connect();
        await client.query(`LISTEN ${CHANNEL}`);
      } catch (err) {
        return fail(err instanceof Error ? err : new Error(String(err)));
      }
      if (failed || this.closed) return;
      this.listening = true;
      this.failures = 0;
      // A query now and then: a connection that died without a word (a cut network) fails it and is replaced.
      this.heartbeat = setInterval(() => void client.query('SELECT 1').catch(fail), this.options.heartbeatMs ?? 10_000).unref();
      for (const w of this.waiters.splice(0)) w();
      if (this.missed) {
        this.missed = false;
        this.reconnects++;
        for (const t of this.listeners.keys()) dispatch(this.listeners, { topic: t, resync: true }, this.onError);
      }
    })();
  }

  private receive(ns: string, text: string | undefined): void {
    let json: unknown;
    try {
      json = JSON.parse(text ?? '');
    } catch {
      json = undefined;
    }
    const parsed = Payload.safeParse(json);
    if (!parsed.success) {
      this.malformed++;
      this.onError(new Error(`ignored a malformed change notification (${this.malformed} so far): ${JSON.stringify((text ?? '').slice(0, 200))}`));
      return;
    }
    if (parsed.data.ns !== ns) return; // another deployment's (or test's) schema
    const { topic: t, detail: d } = parsed.data;
    dispatch(this.listeners, { topic: t, ...(d === undefined ? {} : { detail: d }), resync: false }, this.onError);
  }
}

/** The feed for a service or a CLI: PostgreSQL's when the OLTP is PostgreSQL (cluster mode), else in-process. */
export function openChangeFeed(oltpUrl: string | undefined, options: PostgresChangeFeedOptions = {}): ChangeFeed {
  if (oltpUrl && /^postgres(ql)?:\/\//.test(oltpUrl)) return new PostgresChangeFeed(oltpUrl, options);
  return new EmbeddedChangeFeed(undefined, options.onError);
}

function addListener(listeners: Map<ChangeTopic, Set<ChangeListener>>, t: ChangeTopic, listener: ChangeListener): () => void {
  let set = listeners.get(t);
  if (!set) listeners.set(t, (set = new Set()));
  set.add(listener);
  return () => void listeners.get(t)?.delete(listener);
}

/** One failing listener neither stops the others nor the feed. */
function dispatch(listeners: Map<ChangeTopic, Set<ChangeListener>>, change: Change, onError: (err: Error) => void): void {
  const report = (err: unknown) =>
    onError(new Error(`a ${change.topic} change listener failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
  for (const l of [...(listeners.get(change.topic) ?? [])]) {
    try {
      const done = l(change);
      if (done) done.catch(report);
    } catch (err) {
      report(err);
    }
  }
}

function warn(err: Error): void {
  process.emitWarning(err.message, 'ChangeFeedWarning');
}
