import {
  connect,
  RetentionPolicy,
  StorageType,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type KV,
  type NatsConnection,
  type StreamInfo,
} from 'nats';
import type { EventLog, LogEntry, Payload } from './event-log.js';

export interface JetStreamEventLogOptions {
  /** Default `nats://127.0.0.1:4222`. */
  servers?: string;
  /** The stream name; consumer offsets live in the KV bucket `<stream>_offsets`. */
  stream: string;
  /** Default `<stream>.events`. */
  subject?: string;
  /** How long to try to reach the server when opening; default 5000. */
  connectTimeoutMs?: number;
}

const START_NATS =
  'start NATS with JetStream, e.g. `nats-server -js`, or as a daemon: ' +
  '`start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- ' +
  '-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log`';
const CONSUMER_NAME = /^[a-z0-9_.-]{1,64}$/i;
/** Up to this many records, parallel single-message gets (one round trip) beat creating a consumer. */
const SMALL_READ = 16;
const FETCH_CHUNK = 1000;
/** The server's "wrong last sequence" error: another writer appended in between. */
const WRONG_LAST_SEQUENCE = 10071;

/**
 * The scale-out event log: one JetStream stream with one subject, offset = stream sequence - 1.
 * Offsets stay dense because the stream is created with deletes and purges denied and unlimited
 * retention. A PubAck means the server has written the record to its file store, which survives a
 * crash of either process; JetStream fsyncs on an interval (2 min by default, `sync_interval` on
 * newer servers), so surviving power loss on a single server needs `sync_interval: always` or a
 * replicated stream. One writer per stream: see `publishBatch`.
 */
export class JetStreamEventLog implements EventLog {
  readonly kind = 'jetstream';
  /** Highest stream sequence known to exist, which is also the next offset. */
  private tail: number;
  private readonly queue: { payloads: readonly Payload[]; resolve(r: { first: number; next: number }): void; reject(e: unknown): void }[] = [];
  private draining?: Promise<void>;
  private readonly waiters = new Set<() => void>();

  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly kv: KV,
    readonly stream: string,
    readonly subject: string,
    lastSeq: number,
  ) {
    this.tail = lastSeq;
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
      const info = await ensureStream(jsm, stream, subject);
      const js = nc.jetstream();
      const kv = await js.views.kv(`${stream}_offsets`, { history: 1, storage: StorageType.File });
      return new JetStreamEventLog(nc, js, jsm, kv, stream, subject, info.state.last_seq);
    } catch (err) {
      await nc.close();
      throw err;
    }
  }

  append(payloads: readonly Payload[]): Promise<{ first: number; next: number }> {
    return new Promise((resolve, reject) => {
      this.queue.push({ payloads, resolve, reject });
      this.draining ??= this.drain();
    });
  }

  /**
   * Group append: batches that arrive while one is being published go out together as the next
   * one, so concurrent callers share the round trips. Each caller gets its own contiguous range.
   */
  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const group = this.queue.splice(0);
        try {
          const { first } = await this.publishBatch(group.flatMap((g) => g.payloads));
          let at = first;
          for (const g of group) g.resolve({ first: at, next: (at += g.payloads.length) });
        } catch (err) {
          for (const g of group) g.reject(err);
        }
      }
    } finally {
      this.draining = undefined;
    }
  }

  /**
   * What keeps a batch contiguous and durable: appends run one group at a time (`drain`), NATS
   * delivers one connection's publishes in order and JetStream stores them in arrival order. The
   * first record goes alone and expects the stream to end at `tail`, so another writer that got in
   * before it fails the append loudly. The records in between are published without waiting for
   * an acknowledgement each (a request per record costs more than the write); the last one expects
   * the stream to end just before it, so its acknowledgement proves that every record of the batch
   * was stored, in order, with nothing in between. If a record in between was refused, the last one
   * is refused too and the append fails.
   */
  private async publishBatch(payloads: readonly Payload[]): Promise<{ first: number; next: number }> {
    const base = this.tail;
    const n = payloads.length;
    if (n === 0) return { first: base, next: base };
    let acked = 0;
    try {
      await this.js.publish(this.subject, payloads[0]!, { expect: { lastSequence: base } });
      acked = 1;
      if (n > 1) {
        for (let i = 1; i < n - 1; i++) this.nc.publish(this.subject, payloads[i]!);
        await this.js.publish(this.subject, payloads[n - 1]!, { expect: { lastSequence: base + n - 1 } });
        acked = n;
      }
    } catch (err) {
      // Some records may be stored, and the server is the only one who knows which.
      this.tail = await this.lastSeq().catch(() => this.tail);
      const reason =
        (err as { api_error?: { err_code?: number } }).api_error?.err_code === WRONG_LAST_SEQUENCE
          ? acked === 0
            ? 'another writer appended to the stream at the same time (one writer per stream is supported)'
            : 'the stream did not store every record of the batch in order (another writer, or a record refused by the server)'
          : (err as Error).message;
      throw new Error(
        `Append to JetStream stream ${this.stream} failed (${acked} of ${n} records confirmed, expected the stream to end at ${base}): ${reason}`,
        {
          cause: err,
        },
      );
    }
    this.tail = base + n;
    return { first: base, next: base + n };
  }

  async read(from: number, max: number): Promise<LogEntry[]> {
    if (!Number.isSafeInteger(from) || from < 0) throw new Error(`Offset must be a non-negative integer: ${from}`);
    const end = from < this.tail ? this.tail : await this.next();
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
    const last = await this.lastSeq();
    this.tail = Math.max(this.tail, last);
    return this.tail;
  }

  /**
   * A headers-only consumer starting at the awaited sequence: the server delivers to it the moment
   * that record is stored, so there is no polling, and no race between a notification and the store.
   */
  waitFor(offset: number, timeoutMs: number): Promise<void> {
    if (offset < this.tail || timeoutMs <= 0 || this.nc.isClosed()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const deadline = Date.now() + timeoutMs;
      let msgs: ConsumerMessages | undefined;
      const stop = () => {
        clearTimeout(timer);
        this.waiters.delete(stop);
        msgs?.stop();
        resolve();
      };
      const timer = setTimeout(stop, timeoutMs);
      this.waiters.add(stop);
      const waiting = () => this.waiters.has(stop);
      void (async () => {
        const consumer = await this.js.consumers.get(this.stream, { opt_start_seq: offset + 1, headers_only: true });
        try {
          while (waiting()) {
            // nats.js requires `expires` >= 1 s; the timer above ends shorter waits.
            const expires = Math.min(30_000, Math.max(1000, deadline - Date.now()));
            msgs = await consumer.fetch({ max_messages: 1, expires });
            if (!waiting()) msgs.stop();
            for await (const m of msgs) {
              this.tail = Math.max(this.tail, m.seq);
              stop();
            }
          }
        } finally {
          await consumer.delete().catch(() => undefined);
        }
      })().catch(stop); // the caller's next read reports the error
    });
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
    for (const stop of [...this.waiters]) stop();
    await this.draining;
    if (!this.nc.isClosed()) await this.nc.drain();
  }

  private async lastSeq(): Promise<number> {
    return (await this.jsm.streams.info(this.stream)).state.last_seq;
  }
}

async function ensureStream(jsm: JetStreamManager, stream: string, subject: string): Promise<StreamInfo> {
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
    });
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
