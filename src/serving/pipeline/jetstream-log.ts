import { createHash } from 'node:crypto';
import {
  AckPolicy,
  ConsumerEvents,
  connect,
  DeliverPolicy,
  createInbox,
  headers,
  nanos,
  RetentionPolicy,
  StorageType,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type KV,
  type Msg,
  type NatsConnection,
  type StreamInfo,
} from 'nats';
import type { Appended, EventLog, LogEntry, Payload } from './event-log.js';

export interface JetStreamEventLogOptions {
  /** Default `nats://127.0.0.1:4222`. */
  servers?: string;
  /** The stream name; consumer offsets live in the KV bucket `<stream>_offsets`. */
  stream: string;
  /** Default `<stream>.events`. */
  subject?: string;
  /** How long to try to reach the server when opening; default 5000. */
  connectTimeoutMs?: number;
  /**
   * How long the stream recognises a record id (its `duplicate_window`), in ms; default 120000 (two
   * minutes, the server's default). A retry later than that is stored again. Set on the stream when
   * the log opens; the server keeps every id of the window in memory.
   */
  duplicateWindowMs?: number;
  /** How long an append waits for the server to acknowledge each record; default 10000. */
  ackTimeoutMs?: number;
}

const START_NATS =
  'start NATS with JetStream, e.g. `nats-server -js`, or as a daemon: ' +
  '`start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- ' +
  '-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log`';
const CONSUMER_NAME = /^[a-z0-9_.-]{1,64}$/i;
/** Up to this many records, parallel single-message gets (one round trip) beat creating a consumer. */
const SMALL_READ = 16;
const FETCH_CHUNK = 1000;
const DEFAULT_DUPLICATE_WINDOW_MS = 120_000;
/**
 * Headers-only records the watcher asks for at a time; it asks again at three quarters. Each is a
 * few hundred bytes, so a large window costs little and saves pull requests under load.
 */
const WATCH_WINDOW = 1000;
const WATCH_INACTIVE_MS = 5 * 60_000;
/**
 * How long each of the watcher's pulls lasts; the server sends a heartbeat every half of it, and
 * two missed end the watcher. So reads trust a watcher that died silently for at most this long.
 */
const WATCH_EXPIRES_MS = 10_000;
/** Ids used as they are for `Nats-Msg-Id`; any other (up to 128 characters, any Unicode) is hashed. */
const PLAIN_ID = /^[\w.:-]{1,64}$/;
/** In an acknowledgement (the server writes `"duplicate": true`, with a space). */
const DUPLICATE = /"duplicate":\s*true/;

/** A batch whose records' acknowledgements are awaited: `seqs[i]` is record i's stream sequence once acked. */
interface InFlight {
  /** The reply number of record 0: record i's acknowledgement comes to `<inbox>.<base + i>`. */
  readonly base: number;
  readonly seqs: number[];
  duplicates?: number[];
  left: number;
  timer?: NodeJS.Timeout;
  resolve(r: Appended): void;
  reject(e: unknown): void;
}

/**
 * The scale-out event log: one JetStream stream with one subject, offset = stream sequence - 1.
 * Offsets stay dense because the stream is created with deletes and purges denied and unlimited
 * retention. A PubAck means the server has written the record to its file store, which survives a
 * crash of either process; JetStream fsyncs on an interval (2 min by default, `sync_interval` on
 * newer servers), so surviving power loss on a single server needs `sync_interval: always` or a
 * replicated stream.
 *
 * Several writers (service instances) may append to one stream: see `append`. Each record is
 * published with its id as `Nats-Msg-Id`, so a batch appended again (this process retrying after a
 * failed append, or a client resending to another instance after the first died) stores nothing
 * twice within the stream's duplicate window, and the acknowledgement of each record gives its
 * sequence, so the offsets returned are exact however the writers' batches interleave.
 *
 * Waits share one consumer that watches the end of the stream (see `watch`), so an idle instance's
 * consumers cost next to no CPU and no requests.
 */
export class JetStreamEventLog implements EventLog {
  readonly kind = 'jetstream';
  /** Highest stream sequence known to exist, which is also the next offset. */
  private tail: number;
  /** Each pending wait's `stop`, with the offset it awaits. */
  private readonly waiters = new Map<() => void, number>();
  /** The watcher while it starts or runs (see `watch`); null when there is none. */
  private watcher: Promise<void> | null = null;
  private watching: { name: string; msgs: ConsumerMessages } | null = null;
  private closing = false;
  /** Acknowledgements awaited, by reply number (several entries share one batch). */
  private readonly acks = new Map<number, InFlight>();
  private readonly appending = new Set<Promise<unknown>>();
  private replies = 0;
  private readonly inbox = createInbox();
  private readonly decoder = new TextDecoder();

  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly kv: KV,
    readonly stream: string,
    readonly subject: string,
    lastSeq: number,
    readonly duplicateWindowMs: number,
    private readonly ackTimeoutMs: number,
  ) {
    this.tail = lastSeq;
    // One subscription for every acknowledgement: a request per record (js.publish) costs a timer
    // and a promise each, ten times the CPU of the write (measured: 63 against 6 µs per record).
    nc.subscribe(`${this.inbox}.*`, { callback: (_err, msg) => this.acknowledged(msg) });
    void nc.closed().then(() => {
      this.failAll(new Error(`the connection to NATS closed`));
      this.wakeAll();
    });
  }

  static async open(options: JetStreamEventLogOptions): Promise<JetStreamEventLog> {
    const servers = options.servers ?? 'nats://127.0.0.1:4222';
    const { stream } = options;
    const subject = options.subject ?? `${stream}.events`;
    // The KV bucket name is derived from the stream name and allows only these characters.
    if (!/^[\w-]{1,200}$/.test(stream)) {
      throw new Error(`JetStream stream name must be letters, digits, '_' or '-': ${JSON.stringify(stream)}`);
    }
    let nc: NatsConnection;
    try {
      nc = await connect({ servers, timeout: options.connectTimeoutMs ?? 5000, name: 'plg-workbench event log' });
    } catch (err) {
      throw new Error(`Cannot reach NATS at ${servers} (${(err as Error).message}); ${START_NATS}`, { cause: err });
    }
    try {
      let jsm: JetStreamManager;
      try {
        jsm = await nc.jetstreamManager();
      } catch (err) {
        throw new Error(`NATS at ${servers} answered but JetStream is not available (${(err as Error).message}); ${START_NATS}`, { cause: err });
      }
      const duplicateWindowMs = options.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS;
      if (!Number.isSafeInteger(duplicateWindowMs) || duplicateWindowMs < 1000) {
        throw new Error(`JetStream duplicate window must be a whole number of ms, at least 1000: ${duplicateWindowMs}`);
      }
      const info = await ensureStream(jsm, stream, subject, duplicateWindowMs);
      const js = nc.jetstream();
      const kv = await js.views.kv(`${stream}_offsets`, { history: 1, storage: StorageType.File });
      return new JetStreamEventLog(nc, js, jsm, kv, stream, subject, info.state.last_seq, duplicateWindowMs, options.ackTimeoutMs ?? 10_000);
    } catch (err) {
      await nc.close();
      throw err;
    }
  }

  /**
   * Publishes every record at once, each with its id as `Nats-Msg-Id` and a reply subject of its own,
   * then awaits all the acknowledgements. NATS delivers one connection's publishes in order and
   * JetStream stores them in arrival order, so a batch keeps its order, and with no other writer it
   * is contiguous (its records are published in one synchronous loop). Another writer's records may
   * fall between; each acknowledgement says where a record went, and a duplicate's (an id stored
   * within the window) where the original is. A batch that fails (a record refused, no
   * acknowledgement in time, the connection lost) may be partly stored: appended again with the same
   * ids, only what is missing is stored.
   */
  append(payloads: readonly Payload[], ids?: readonly string[]): Promise<Appended> {
    if (ids && ids.length !== payloads.length) return Promise.reject(new Error(`append: ${ids.length} ids for ${payloads.length} records`));
    if (payloads.length === 0) return this.next().then((end) => ({ first: end, next: end }));
    const n = payloads.length;
    const base = this.replies;
    this.replies += n;
    const appended = new Promise<Appended>((resolve, reject) => {
      const batch: InFlight = { base, seqs: new Array<number>(n), left: n, resolve, reject };
      for (let i = 0; i < n; i++) this.acks.set(base + i, batch);
      try {
        for (let i = 0; i < n; i++) {
          const id = ids?.[i];
          const options: { reply: string; headers?: ReturnType<typeof headers> } = { reply: `${this.inbox}.${base + i}` };
          if (id !== undefined) {
            const h = headers();
            h.set('Nats-Msg-Id', msgId(id));
            options.headers = h;
          }
          this.nc.publish(this.subject, payloads[i]!, options);
        }
      } catch (err) {
        this.fail(batch, err);
        return;
      }
      batch.timer = setTimeout(() => this.fail(batch, new Error(`no acknowledgement from the server within ${this.ackTimeoutMs} ms`)), this.ackTimeoutMs);
    });
    const tracked = appended.finally(() => this.appending.delete(tracked)).catch(() => undefined);
    this.appending.add(tracked);
    return appended;
  }

  /** One record's acknowledgement: `{"stream":"..", "seq":..[,"duplicate": true]}`, or an error. */
  private acknowledged(msg: Msg): void {
    const reply = Number(msg.subject.slice(this.inbox.length + 1));
    const batch = this.acks.get(reply);
    if (!batch) return; // its batch failed already
    this.acks.delete(reply);
    // No responders (no stream for the subject) comes as a status message without a body.
    if (msg.headers?.hasError) return this.fail(batch, new Error(`the server answered ${msg.headers.code} ${msg.headers.description}`));
    const text = this.decoder.decode(msg.data);
    const at = text.indexOf('"seq":');
    if (at < 0 || text.includes('"error"')) {
      let reason = text;
      try {
        reason = (JSON.parse(text) as { error?: { description?: string } }).error?.description ?? text;
      } catch {
        /* the text itself says it */
      }
      return this.fail(batch, new Error(`the server refused record ${reply - batch.base}: ${reason}`));
    }
    const seq = parseInt(text.slice(at + 6), 10);
    const index = reply - batch.base;
    batch.seqs[index] = seq;
    this.raise(seq);
    if (DUPLICATE.test(text)) (batch.duplicates ??= []).push(index);
    if (--batch.left === 0) this.settle(batch);
  }

  private settle(batch: InFlight): void {
    clearTimeout(batch.timer);
    const { seqs, duplicates } = batch;
    let low = seqs[0]!;
    let high = low;
    let contiguous = duplicates === undefined;
    for (let i = 1; i < seqs.length; i++) {
      const s = seqs[i]!;
      if (s !== low + i) contiguous = false;
      if (s < low) low = s;
      if (s > high) high = s;
    }
    const range = { first: low - 1, next: high };
    if (contiguous) return batch.resolve(range);
    batch.resolve({ ...range, offsets: seqs.map((s) => s - 1), ...(duplicates ? { duplicates: duplicates.sort((a, b) => a - b) } : {}) });
  }

  private fail(batch: InFlight, cause: unknown): void {
    if (batch.left <= 0) return; // settled (0) or failed (-1) already
    batch.left = -1;
    clearTimeout(batch.timer);
    const n = batch.seqs.length;
    for (let i = 0; i < n; i++) this.acks.delete(batch.base + i);
    const confirmed = batch.seqs.filter((s) => s !== undefined).length;
    batch.reject(
      new Error(
        `Append to JetStream stream ${this.stream} failed (${confirmed} of ${n} records confirmed, the others may or may not be stored; ` +
          `appending the batch again with the same ids within ${this.duplicateWindowMs / 1000} s stores only what is missing): ${(cause as Error).message}`,
        { cause },
      ),
    );
  }

  private failAll(cause: Error): void {
    for (const batch of new Set(this.acks.values())) this.fail(batch, cause);
  }

  async read(from: number, max: number): Promise<LogEntry[]> {
    if (!Number.isSafeInteger(from) || from < 0) throw new Error(`Offset must be a non-negative integer: ${from}`);
    // While the watcher runs, the tail is the end (but for records on their way to it, a few ms):
    // asking the server at every read at the end cost six idle consumers 10 ms of CPU a second,
    // against 2 for the rest of their waiting (`npm run bench:jetstream-idle`).
    const end = from < this.tail || this.watching ? this.tail : await this.next();
    const count = Math.min(max, end - from);
    if (count <= 0) return [];
    if (count <= SMALL_READ) {
      const msgs = await Promise.all(Array.from({ length: count }, (_, i) => this.jsm.streams.getMessage(this.stream, { seq: from + 1 + i })));
      return msgs.map((m) => ({ offset: m.seq - 1, payload: m.data }));
    }
    // An ordered consumer re-creates itself on any gap in delivery, so records come in sequence order.
    const consumer = await this.js.consumers.get(this.stream, { opt_start_seq: from + 1 });
    const entries: LogEntry[] = [];
    try {
      while (entries.length < count) {
        const before = entries.length;
        // `count` records are known to exist, so the fetch ends when they arrive, not at `expires`.
        const msgs = await consumer.fetch({ max_messages: Math.min(FETCH_CHUNK, count - before), expires: 5000 });
        for await (const m of msgs) {
          if (m.seq !== from + 1 + entries.length) {
            throw new Error(`JetStream stream ${this.stream} has a gap at sequence ${from + 1 + entries.length}: offsets are no longer dense`);
          }
          entries.push({ offset: m.seq - 1, payload: m.data });
        }
        if (entries.length === before) {
          throw new Error(`JetStream stream ${this.stream} returned no records from offset ${from + before} although ${end} exist`);
        }
      }
    } finally {
      await consumer.delete().catch(() => undefined);
    }
    return entries;
  }

  async next(): Promise<number> {
    // Read this.tail only after the await: an append may have moved it on meanwhile, and
    // `Math.max(this.tail, await ...)` would write the stale value back over it.
    this.raise(await this.lastSeq());
    return this.tail;
  }

  /** Records that sequence `seq` exists, and wakes the waits it satisfies. */
  private raise(seq: number): void {
    if (seq <= this.tail) return;
    this.tail = seq;
    if (this.waiters.size === 0) return;
    for (const [stop, offset] of this.waiters) if (offset < seq) stop();
  }

  private wakeAll(): void {
    for (const stop of [...this.waiters.keys()]) stop();
  }

  /**
   * Waits on the log's one watcher (see `watch`), which raises the tail as records are stored; so
   * does an acknowledgement of this handle's own append. A wait costs a timer: no request to the
   * server, however many consumers wait or how often.
   */
  waitFor(offset: number, timeoutMs: number): Promise<void> {
    if (offset < this.tail || timeoutMs <= 0 || this.nc.isClosed() || this.closing) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const stop = () => {
        clearTimeout(timer);
        this.waiters.delete(stop);
        resolve();
      };
      const timer = setTimeout(stop, timeoutMs);
      this.waiters.set(stop, offset);
      this.watch();
    });
  }

  /**
   * Starts the watcher unless it runs: one headers-only consumer from the end of the stream, kept
   * open while the log is, whose every delivery raises the tail. The server delivers a record the
   * moment it is stored (by any writer), so there is no polling and no race between a notification
   * and the store. Waiting with a consumer per wait instead (created, fetched from and deleted every
   * 250 ms by each of an instance's consumers) cost six idle consumers 35-70 ms of CPU a second,
   * against 3-7 now (`npm run bench:jetstream-idle`).
   *
   * Under load each stored record costs every watching handle one small message, 11-16 µs of CPU
   * (measured: 540-780 ms while another process appended 50,000 records in batches of 100).
   *
   * Only the highest sequence delivered matters, so a record lost on the way costs nothing but an
   * earlier wake. The log makes and ends this consumer itself, not as a nats.js ordered consumer:
   * that one, when it cannot re-create itself, retries every few seconds for ever, also once the
   * log is closed. When the watcher fails instead (its consumer or stream gone, heartbeats missed,
   * the connection closed), every wait ends, so its caller reads and asks the server, and the next
   * wait starts another watcher.
   */
  private watch(): void {
    if (this.watcher || this.closing) return;
    const watcher = this.startWatcher().catch(() => {
      // The waits end, and the caller's next read reports the error.
      if (this.watcher === watcher) this.watcher = null;
      this.wakeAll();
    });
    this.watcher = watcher;
  }

  private async startWatcher(): Promise<void> {
    // From the end as the server has it, not where this handle last looked: a handle that has not
    // read for a while would otherwise be sent the headers of every record since.
    await this.next();
    const { name } = await this.jsm.consumers.add(this.stream, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: this.tail + 1,
      ack_policy: AckPolicy.None,
      headers_only: true,
      mem_storage: true,
      num_replicas: 1,
      // Removed by the server once no pull has come for this long (the process died).
      inactive_threshold: nanos(WATCH_INACTIVE_MS),
    });
    let msgs: ConsumerMessages | undefined;
    try {
      if (this.closing) return;
      const consumer = await this.js.consumers.get(this.stream, name);
      msgs = await consumer.consume({
        max_messages: WATCH_WINDOW,
        expires: WATCH_EXPIRES_MS,
        abort_on_missing_resource: true,
        callback: (m) => this.raise(m.seq),
      });
    } finally {
      if (!msgs || this.closing) {
        msgs?.stop();
        await this.jsm.consumers.delete(this.stream, name).catch(() => undefined);
      }
    }
    if (this.closing) return;
    const watching = { name, msgs };
    this.watching = watching;
    const ended = () => {
      if (this.watching !== watching) return;
      this.watching = null;
      this.watcher = null;
      msgs.stop();
      void this.jsm.consumers.delete(this.stream, name).catch(() => undefined);
      this.wakeAll();
    };
    void msgs.closed().then(ended, ended);
    void (async () => {
      for await (const s of await msgs.status()) {
        const missed = s.type === ConsumerEvents.HeartbeatsMissed && (s.data as number) >= 2;
        if (missed || s.type === ConsumerEvents.ConsumerNotFound || s.type === ConsumerEvents.StreamNotFound || s.type === ConsumerEvents.ConsumerDeleted) {
          return ended();
        }
      }
    })().catch(ended);
  }

  async commit(consumer: string, offset: number): Promise<void> {
    checkConsumer(consumer);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new Error(`Offset must be a non-negative integer: ${offset}`);
    await this.kv.put(consumer, String(offset));
  }

  async committed(consumer: string): Promise<number> {
    checkConsumer(consumer);
    const entry = await this.kv.get(consumer);
    return entry && entry.operation === 'PUT' ? Number(entry.string()) : 0;
  }

  async close(): Promise<void> {
    this.closing = true;
    this.wakeAll();
    await this.watcher;
    const watching = this.watching;
    this.watching = null;
    if (watching) {
      watching.msgs.stop();
      // Not left on the server until its inactivity threshold.
      if (!this.nc.isClosed()) await this.jsm.consumers.delete(this.stream, watching.name).catch(() => undefined);
    }
    await Promise.all(this.appending);
    if (!this.nc.isClosed()) await this.nc.drain();
  }

  private async lastSeq(): Promise<number> {
    return (await this.jsm.streams.info(this.stream)).state.last_seq;
  }
}

/**
 * The record's `Nats-Msg-Id`: a short plain id as it is, anything else (any Unicode, up to 128
 * characters; header values cannot hold CR or LF) as `#` and 128 bits of its SHA-256, which no
 * plain id can equal and no client can make collide with another's. Short either way: the server
 * holds every id of the window in memory.
 */
function msgId(id: string): string {
  return PLAIN_ID.test(id) ? id : `#${createHash('sha256').update(id).digest('base64url').slice(0, 22)}`;
}

async function ensureStream(jsm: JetStreamManager, stream: string, subject: string, duplicateWindowMs: number): Promise<StreamInfo> {
  let info: StreamInfo;
  try {
    info = await jsm.streams.info(stream);
  } catch (err) {
    if ((err as { api_error?: { err_code?: number } }).api_error?.err_code !== 10059) throw err; // 10059: stream not found
    info = await jsm.streams.add({
      name: stream,
      subjects: [subject],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      deny_delete: true,
      deny_purge: true,
      duplicate_window: nanos(duplicateWindowMs),
    });
  }
  if (info.config.duplicate_window !== nanos(duplicateWindowMs)) {
    info = await jsm.streams.update(stream, { ...info.config, duplicate_window: nanos(duplicateWindowMs) });
  }
  if (!info.config.subjects?.includes(subject)) {
    throw new Error(`JetStream stream ${stream} exists with subjects ${JSON.stringify(info.config.subjects)}, not ${subject}`);
  }
  if (info.state.messages !== info.state.last_seq) {
    throw new Error(
      `JetStream stream ${stream} has ${info.state.messages} records up to sequence ${info.state.last_seq}: some were deleted, so offsets are not dense`,
    );
  }
  return info;
}

function checkConsumer(name: string): void {
  // The name is a KV key: no leading, trailing or doubled dot (an empty subject token).
  if (!CONSUMER_NAME.test(name) || name.startsWith('.') || name.endsWith('.') || name.includes('..')) {
    throw new Error(
      `Invalid consumer name ${JSON.stringify(name)}: use 1-64 letters, digits, '_', '-' or '.', not starting or ending with '.' nor containing '..'`,
    );
  }
}
