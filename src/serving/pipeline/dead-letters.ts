import { mkdir, open, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { connect, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager, type NatsConnection } from 'nats';
import { z } from 'zod';
import { ConflictError, NotFoundError } from '../../workbench/errors.js';
import type { AlertSink } from '../observability/alerts.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';

/**
 * The dead-letter store: records a consumer could not apply, set aside with the reason so that the
 * consumer goes on (issue 10: a poison record never freezes a consumer). An operator lists, reads
 * and retries them (`wb dlq`, `/v1/dead-letters`); the running service's runner of that consumer
 * picks a requested retry up, applies the record alone and records the outcome.
 *
 * Both implementations keep an append-only journal of changes (a letter failed, a retry was
 * requested, a retry ran) and fold it into the letters: writers never read-modify-write, so the CLI
 * and the service can change the same store at the same time without losing either's change. The
 * embedded journal is a JSONL file in the data dir; with the JetStream event log it is a stream.
 */
export const DEAD_LETTER_STATES = ['open', 'retry-requested', 'retried-ok', 'retry-failed'] as const;
export type DeadLetterState = (typeof DEAD_LETTER_STATES)[number];

export interface ErrorInfo {
  message: string;
  stack?: string;
}

export interface DeadLetter {
  /** `<consumer>@<offset>`: one letter per record and consumer, however often it fails. */
  id: string;
  consumer: string;
  /** The record's offset in the event log. */
  offset: number;
  /** The record as stored in the log: its text (an enriched event's JSON), or base64 when it is not UTF-8. */
  payload: string;
  encoding: 'utf8' | 'base64';
  /** The last failure. */
  error: ErrorInfo;
  firstFailedAt: string;
  lastFailedAt: string;
  /** Times the consumer was handed the record and failed, plus retries. */
  attempts: number;
  state: DeadLetterState;
  retryRequestedAt?: string;
  retriedAt?: string;
}

/** A letter without its payload and stack, for lists. */
export type DeadLetterSummary = Omit<DeadLetter, 'payload' | 'error'> & { payloadBytes: number; error: string };

export interface NewDeadLetter {
  consumer: string;
  offset: number;
  payload: Uint8Array;
  error: unknown;
  /** Tries made before setting it aside. */
  attempts: number;
}

export type RetryOutcome = { ok: true } | { ok: false; error: unknown };

export interface DeadLetterStore {
  /** `file` or `jetstream`. */
  readonly kind: string;
  /**
   * Sets a record aside; durable when it resolves. A letter of the same consumer and offset is
   * updated (a consumer that replays from its snapshot meets the record again), and `isNew` tells
   * whether it is news: a letter not seen before, or one failing again after a successful retry.
   */
  add(letter: NewDeadLetter): Promise<{ letter: DeadLetter; isNew: boolean }>;
  get(id: string): Promise<DeadLetter | undefined>;
  /** Newest failure first. */
  list(filter?: { consumer?: string; state?: DeadLetterState }): Promise<DeadLetter[]>;
  /** Marks a letter for retry by its consumer's runner. NotFoundError, or ConflictError once it was retried successfully. */
  requestRetry(id: string): Promise<DeadLetter>;
  /** Records how a retry went. */
  recordRetry(id: string, outcome: RetryOutcome): Promise<DeadLetter>;
  /** Journal entries that could not be read and were skipped (each also reported through `warn`). */
  readonly skipped: number;
  close(): Promise<void>;
}

export interface DeadLetterStoreOptions {
  /** Told about each unreadable journal entry, which is skipped. */
  warn?: (message: string) => void;
}

/** What an id looks like: a consumer name (as the event logs allow them), `@`, an offset. */
export const DeadLetterId = z.string().regex(/^[A-Za-z0-9_.-]{1,64}@\d{1,16}$/, 'a dead-letter id is <consumer>@<offset>, e.g. archiver@1234');

export const deadLetterId = (consumer: string, offset: number): string => `${consumer}@${offset}`;

/** The record's bytes, as they were in the log. */
export function payloadBytes(letter: DeadLetter): Uint8Array {
  return letter.encoding === 'utf8' ? new TextEncoder().encode(letter.payload) : Buffer.from(letter.payload, 'base64');
}

export function summarize(letter: DeadLetter): DeadLetterSummary {
  const { payload: _payload, error, ...rest } = letter;
  return { ...rest, payloadBytes: payloadBytes(letter).length, error: error.message };
}

export function errorInfo(err: unknown): ErrorInfo {
  if (err instanceof Error) return err.stack ? { message: err.message, stack: err.stack } : { message: err.message };
  return { message: String(err) };
}

/**
 * The store for a service configuration: beside the JetStream event log (`nats://...`) a stream
 * `<stream>_DLQ`, else files in `<data-dir>/dead-letters/`.
 */
export async function openDeadLetterStore(dataDir: string, eventLog: string | undefined, options: DeadLetterStoreOptions = {}): Promise<DeadLetterStore> {
  const spec = eventLog ?? 'file';
  if (/^nats:\/\//.test(spec)) {
    const url = new URL(spec);
    const stream = url.searchParams.get('stream') ?? 'WB_EVENTS';
    url.search = '';
    return JetStreamDeadLetterStore.open({ servers: url.toString().replace(/\/$/, ''), stream: `${stream}_DLQ` }, options);
  }
  return FileDeadLetterStore.open(join(dataDir, 'dead-letters'), options);
}

/**
 * How the service makes a dead letter heard: an alert, an error log line, `wb_dead_letters_total`,
 * and the `wb_dead_letters_open` gauge (letters not retried successfully, per consumer), which
 * `refreshOpen` recomputes from the store (on start, and after each change the runners make).
 */
export function reportDeadLetters(deps: { store: DeadLetterStore; alerts: AlertSink; metrics: Metrics; logger: Logger }) {
  const { store, alerts, metrics, logger } = deps;
  let refreshing: Promise<void> = Promise.resolve();
  const refreshOpen = (): Promise<void> =>
    (refreshing = refreshing
      .then(async () => {
        const open = new Map<string, number>();
        for (const l of await store.list()) open.set(l.consumer, (open.get(l.consumer) ?? 0) + (l.state === 'retried-ok' ? 0 : 1));
        metrics.openDeadLetters.reset();
        for (const [consumer, n] of open) metrics.openDeadLetters.set({ consumer }, n);
      })
      .catch((err: unknown) => logger.error({ err }, 'cannot read the dead-letter store to count open letters')));
  return {
    refreshOpen,
    onDeadLetter(letter: DeadLetter, err: unknown): void {
      metrics.deadLetters.inc({ consumer: letter.consumer });
      logger.error(
        { err, consumer: letter.consumer, offset: letter.offset, deadLetter: letter.id },
        `consumer ${letter.consumer} cannot apply record ${letter.offset}: set aside as dead letter ${letter.id} (see \`wb dlq show ${letter.id}\`)`,
      );
      alerts.raise({
        kind: 'dead_letter',
        series: `dead_letters:${letter.consumer}`,
        labels: { consumer: letter.consumer },
        id: letter.id,
        offset: letter.offset,
        reason: letter.error.message,
        detectedAt: letter.lastFailedAt,
      });
      void refreshOpen();
    },
    onRetried(letter: DeadLetter): void {
      if (letter.state === 'retried-ok') logger.info({ consumer: letter.consumer, deadLetter: letter.id }, `dead letter ${letter.id} retried: applied`);
      else logger.error({ consumer: letter.consumer, deadLetter: letter.id, error: letter.error.message }, `dead letter ${letter.id} retried: failed again`);
      void refreshOpen();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The journal and its fold, shared by both implementations.

const ErrorShape = z.object({ message: z.string(), stack: z.string().optional() });
const Stamp = z.iso.datetime();
const Op = z.discriminatedUnion('op', [
  z.object({
    op: z.literal('failed'),
    id: DeadLetterId,
    consumer: z.string(),
    offset: z.number().int().nonnegative(),
    payload: z.string(),
    encoding: z.enum(['utf8', 'base64']),
    error: ErrorShape,
    attempts: z.number().int().positive(),
    at: Stamp,
  }),
  z.object({ op: z.literal('retry'), id: DeadLetterId, at: Stamp }),
  z.object({ op: z.literal('retried'), id: DeadLetterId, ok: z.boolean(), error: ErrorShape.optional(), at: Stamp }),
]);
type Op = z.infer<typeof Op>;

/** Where the journal lives: appends are durable when they resolve; reads return what was appended since the last read, by anyone. */
interface Journal {
  readonly kind: string;
  append(entry: string): Promise<void>;
  /** Entries appended since the previous call, in order; `where` names each for reports. */
  readNew(): Promise<{ entry: string; where: string }[]>;
  close(): Promise<void>;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

class JournaledStore implements DeadLetterStore {
  private readonly letters = new Map<string, DeadLetter>();
  /** Every operation runs alone, in order, so the fold sees the journal's order. */
  private chain: Promise<unknown> = Promise.resolve();
  private skippedEntries = 0;
  /** News of the last `failed` op folded, per letter id: read back by `add`. */
  private readonly news = new Map<string, boolean>();

  constructor(
    private readonly journal: Journal,
    private readonly options: DeadLetterStoreOptions,
  ) {}

  get kind(): string {
    return this.journal.kind;
  }

  get skipped(): number {
    return this.skippedEntries;
  }

  add(input: NewDeadLetter): Promise<{ letter: DeadLetter; isNew: boolean }> {
    return this.serial(async () => {
      const id = deadLetterId(input.consumer, input.offset);
      DeadLetterId.parse(id);
      let text: string | undefined;
      try {
        text = utf8.decode(input.payload);
      } catch {
        text = undefined;
      }
      const payload =
        text === undefined
          ? { payload: Buffer.from(input.payload).toString('base64'), encoding: 'base64' as const }
          : { payload: text, encoding: 'utf8' as const };
      await this.write({
        op: 'failed',
        id,
        consumer: input.consumer,
        offset: input.offset,
        ...payload,
        error: errorInfo(input.error),
        attempts: input.attempts,
        at: now(),
      });
      return { letter: this.letter(id), isNew: this.news.get(id) ?? true };
    });
  }

  get(id: string): Promise<DeadLetter | undefined> {
    return this.serial(async () => {
      await this.refresh();
      const letter = this.letters.get(id);
      return letter && { ...letter };
    });
  }

  list(filter: { consumer?: string; state?: DeadLetterState } = {}): Promise<DeadLetter[]> {
    return this.serial(async () => {
      await this.refresh();
      return [...this.letters.values()]
        .filter((l) => (filter.consumer === undefined || l.consumer === filter.consumer) && (filter.state === undefined || l.state === filter.state))
        .sort((a, b) => b.lastFailedAt.localeCompare(a.lastFailedAt) || a.id.localeCompare(b.id))
        .map((l) => ({ ...l }));
    });
  }

  requestRetry(id: string): Promise<DeadLetter> {
    return this.serial(async () => {
      await this.refresh();
      const letter = this.letters.get(id);
      if (!letter) throw new NotFoundError(`no dead letter ${id} (see \`wb dlq list\`)`);
      if (letter.state === 'retried-ok')
        throw new ConflictError(`dead letter ${id} was already retried successfully at ${letter.retriedAt}; applying it again would apply the record twice`);
      await this.write({ op: 'retry', id, at: now() });
      return this.letter(id);
    });
  }

  recordRetry(id: string, outcome: RetryOutcome): Promise<DeadLetter> {
    return this.serial(async () => {
      // `in`, not `.ok`: tslab's TypeScript runs without strictNullChecks, where a boolean discriminant does not narrow.
      const op: Op =
        'error' in outcome ? { op: 'retried', id, ok: false, error: errorInfo(outcome.error), at: now() } : { op: 'retried', id, ok: true, at: now() };
      await this.write(op);
      return this.letter(id);
    });
  }

  async close(): Promise<void> {
    await this.chain.catch(() => undefined);
    await this.journal.close();
  }

  private serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.chain.then(task);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Appends an op, then reads the journal up to it: the letters reflect every writer's ops in journal order. */
  private async write(op: Op): Promise<void> {
    await this.journal.append(JSON.stringify(op));
    await this.refresh();
  }

  private letter(id: string): DeadLetter {
    const letter = this.letters.get(id);
    if (!letter) throw new NotFoundError(`no dead letter ${id}`);
    return { ...letter };
  }

  private async refresh(): Promise<void> {
    for (const { entry, where } of await this.journal.readNew()) {
      let op: Op;
      try {
        if (entry === '') throw new Error('the entry is empty (removed from the stream?)');
        const parsed = Op.safeParse(JSON.parse(entry));
        if (!parsed.success) throw new Error(`${parsed.error.issues[0]!.path.join('.') || 'entry'}: ${parsed.error.issues[0]!.message}`);
        op = parsed.data;
      } catch (err) {
        this.skippedEntries++;
        this.options.warn?.(`dead-letter journal ${where} cannot be read and is skipped: ${(err as Error).message}`);
        continue;
      }
      this.fold(op);
    }
  }

  private fold(op: Op): void {
    const letter = this.letters.get(op.id);
    if (op.op === 'failed') {
      this.news.set(op.id, !letter || letter.state === 'retried-ok');
      if (!letter) {
        const { op: _op, at, ...rest } = op;
        this.letters.set(op.id, { ...rest, firstFailedAt: at, lastFailedAt: at, state: 'open' });
        return;
      }
      letter.attempts += op.attempts;
      letter.lastFailedAt = op.at;
      letter.error = op.error;
      // A retry already asked for still stands: the runner applies it once the consumer is past the record.
      if (letter.state !== 'retry-requested') letter.state = 'open';
      return;
    }
    if (!letter) return; // an op about a letter whose own entry was unreadable: reported with that entry
    if (op.op === 'retry') {
      if (letter.state === 'retried-ok') return;
      letter.state = 'retry-requested';
      letter.retryRequestedAt = op.at;
      return;
    }
    letter.attempts++;
    letter.retriedAt = op.at;
    if (op.ok) letter.state = 'retried-ok';
    else {
      letter.state = 'retry-failed';
      letter.error = op.error ?? { message: 'unknown error' };
      letter.lastFailedAt = op.at;
    }
  }
}

const now = () => new Date().toISOString();

// ---------------------------------------------------------------------------------------------
// Embedded: one JSONL file, appended and fsynced.

const NEWLINE = 0x0a;

class FileJournal implements Journal {
  readonly kind = 'file';
  /** Bytes of the file already read; always just after a newline. */
  private readAt = 0;
  private line = 0;

  private constructor(
    readonly path: string,
    private readonly writer: FileHandle,
  ) {}

  static async open(dir: string): Promise<FileJournal> {
    await mkdir(dir, { recursive: true });
    const path = join(dir, 'letters.jsonl');
    const existed = await stat(path).then(
      (s) => s.size,
      () => undefined,
    );
    const writer = await open(path, 'a+');
    try {
      if (existed === undefined) await syncDir(dirname(path));
      else if (existed > 0) {
        // A write cut short by a crash leaves a line without its newline: end it, so that the next
        // entry starts a line of its own (the torn one is then skipped as unreadable).
        const last = Buffer.alloc(1);
        await writer.read(last, 0, 1, existed - 1);
        if (last[0] !== NEWLINE) {
          await writer.write('\n');
          await writer.datasync();
        }
      }
    } catch (err) {
      await writer.close();
      throw err;
    }
    return new FileJournal(path, writer);
  }

  async append(entry: string): Promise<void> {
    // One write per entry (O_APPEND): entries of the CLI and the service never interleave.
    await this.writer.write(`${entry}\n`);
    await this.writer.datasync();
  }

  async readNew(): Promise<{ entry: string; where: string }[]> {
    const { size } = await this.writer.stat();
    if (size <= this.readAt) return [];
    const buffer = Buffer.alloc(size - this.readAt);
    const { bytesRead } = await this.writer.read(buffer, 0, buffer.length, this.readAt);
    // Only whole lines: another process may be writing the last one right now.
    const end = buffer.subarray(0, bytesRead).lastIndexOf(NEWLINE);
    if (end < 0) return [];
    this.readAt += end + 1;
    const out: { entry: string; where: string }[] = [];
    for (const text of buffer.subarray(0, end).toString('utf8').split('\n')) {
      this.line++;
      if (text.length > 0) out.push({ entry: text, where: `${this.path}:${this.line}` });
    }
    return out;
  }

  async close(): Promise<void> {
    await this.writer.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Dead letters in `<dir>/letters.jsonl`. */
export class FileDeadLetterStore extends JournaledStore {
  static async open(dir: string, options: DeadLetterStoreOptions = {}): Promise<DeadLetterStore> {
    return new FileDeadLetterStore(await FileJournal.open(dir), options);
  }
}

// ---------------------------------------------------------------------------------------------
// Beside the JetStream event log: a stream of its own.

/** Parallel single-message reads per round. */
const READ_CHUNK = 64;

class StreamJournal implements Journal {
  readonly kind = 'jetstream';
  private readSeq = 0;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
    private readonly subject: string,
  ) {}

  static async open(servers: string, stream: string): Promise<StreamJournal> {
    if (!/^[\w-]{1,200}$/.test(stream)) throw new Error(`JetStream stream name must be letters, digits, '_' or '-': ${JSON.stringify(stream)}`);
    let nc: NatsConnection;
    try {
      nc = await connect({ servers, timeout: 5000, name: 'plg-workbench dead letters' });
    } catch (err) {
      throw new Error(`Cannot reach NATS at ${servers} for the dead-letter stream ${stream} (${(err as Error).message})`, { cause: err });
    }
    try {
      const jsm = await nc.jetstreamManager();
      const subject = `${stream}.letters`;
      try {
        await jsm.streams.info(stream);
      } catch (err) {
        if ((err as { api_error?: { err_code?: number } }).api_error?.err_code !== 10059) throw err; // 10059: stream not found
        await jsm.streams.add({ name: stream, subjects: [subject], storage: StorageType.File, retention: RetentionPolicy.Limits });
      }
      return new StreamJournal(nc, nc.jetstream(), jsm, stream, subject);
    } catch (err) {
      await nc.close();
      throw err;
    }
  }

  async append(entry: string): Promise<void> {
    // The PubAck means the server stored it.
    await this.js.publish(this.subject, entry);
  }

  async readNew(): Promise<{ entry: string; where: string }[]> {
    const last = (await this.jsm.streams.info(this.stream)).state.last_seq;
    const out: { entry: string; where: string }[] = [];
    while (this.readSeq < last) {
      const seqs = Array.from({ length: Math.min(READ_CHUNK, last - this.readSeq) }, (_, i) => this.readSeq + 1 + i);
      const messages = await Promise.all(seqs.map((seq) => this.jsm.streams.getMessage(this.stream, { seq }).catch((err: unknown) => err as Error)));
      for (const [i, m] of messages.entries()) {
        const where = `${this.stream}#${seqs[i]}`;
        // A message removed from the stream is reported like an unreadable line.
        out.push(m instanceof Error ? { entry: '', where } : { entry: m.string(), where });
      }
      this.readSeq += seqs.length;
    }
    return out;
  }

  async close(): Promise<void> {
    if (!this.nc.isClosed()) await this.nc.drain();
  }
}

/** Dead letters in a JetStream stream (`<event stream>_DLQ` beside the event log). */
export class JetStreamDeadLetterStore extends JournaledStore {
  static async open(options: { servers: string; stream: string }, storeOptions: DeadLetterStoreOptions = {}): Promise<DeadLetterStore> {
    return new JetStreamDeadLetterStore(await StreamJournal.open(options.servers, options.stream), storeOptions);
  }
}
