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
import type { EventLog, LogEntry } from './event-log.js';

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
  private appending: Promise<unknown> = Promise.resolve();
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

  append(payloads: readonly Uint8Array[]): Promise<{ first: number; next: number }> {
    const batch = this.appending.then(() => this.publishBatch(payloads));
    this.appending = batch.catch(() => undefined);
    return batch;
  }

  /**
   * What keeps a batch contiguous: appends run one batch at a time (the `appending` chain), NATS
   * delivers one connection's publishes in order and JetStream stores them in arrival order, so a
   * batch lands on consecutive sequences. Record i also expects the stream's last sequence to be
   * `tail + i`, so if another writer got in between, the server rejects the record instead of
   * letting the batch be split, and the append fails loudly. The first record goes alone: were it
   * rejected while the rest are in flight, a later one could match the other writer's sequence and
   * be stored without it.
   */
  private async publishBatch(payloads: readonly Uint8Array[]): Promise<{ first: number; next: number }> {
    const base = this.tail;
    if (payloads.length === 0) return { first: base, next: base };
    const publish = (i: number) => this.js.publish(this.subject, payloads[i]!, { expect: { lastSequence: base + i } });
    const head = await Promise.allSettled([publish(0)]);
    const acks = head[0]!.status === 'rejected'
      ? head
      : head.concat(await Promise.allSettled(payloads.slice(1).map((_, i) => publish(i + 1))));
    const failed = acks.find((a): a is PromiseRejectedResult => a.status === 'rejected');
    if (failed) {
      // Some records may be stored, and the server is the only one who knows which.
      this.tail = await this.lastSeq().catch(() => this.tail);
      const acked = acks.filter((a) => a.status === 'fulfilled').length;
      const reason = (failed.reason as { api_error?: { err_code?: number } }).api_error?.err_code === WRONG_LAST_SEQUENCE
        ? 'another writer appended to the stream at the same time (one writer per stream is supported)'
        : (failed.reason as Error).message;
      throw new Error(`Append to JetStream stream ${this.stream} failed (${acked} of ${payloads.length} records acknowledged, expected the stream to end at ${base}): ${reason}`, {
        cause: failed.reason,
      });
    }
    const seqs = acks.map((a) => (a as PromiseFulfilledResult<{ seq: number }>).value.seq);
    this.tail = Math.max(this.tail, seqs[seqs.length - 1]!);
    return { first: seqs[0]! - 1, next: seqs[seqs.length - 1]! };
  }

  async read(from: number, max: number): Promise<LogEntry[]> {
    if (!Number.isSafeInteger(from) || from < 0) throw new Error(`Offset must be a non-negative integer: ${from}`);
    const end = from < this.tail ? this.tail : await this.next();
    const count = Math.min(max, end - from);
    if (count <= 0) return [];
    if (count <= SMALL_READ) {
      const msgs = await Promise.all(
        Array.from({ length: count }, (_, i) => this.jsm.streams.getMessage(this.stream, { seq: from + 1 + i })),
      );
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
    await this.appending;
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
    throw new Error(`JetStream stream ${stream} has ${info.state.messages} records up to sequence ${info.state.last_seq}: some were deleted, so offsets are not dense`);
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
