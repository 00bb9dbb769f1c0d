import { mkdir, open, readdir, readFile, realpath, rename, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { EventLog, LogEntry, LogRecovery, Payload, TailCut } from './event-log.js';
import { IntegrityError } from '../../workbench/errors.js';
import { processAlive } from '../../workbench/files.js';

/**
 * Record layout: CRC32 (u32 LE), payload length (u32 LE), payload. The CRC covers the length field
 * too, so a zero-filled tail (which some filesystems leave after a crash) fails the check instead of
 * reading as empty records: the CRC32 of nothing is 0.
 */
const HEADER = 8;
const SEGMENT_NAME = /^\d{20}\.log$/;
const CONSUMER_NAME = /^[a-z0-9_.-]{1,64}$/i;
const SCAN_CHUNK = 1 << 20;
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Where the bytes cut from a damaged tail are kept, inside the log directory. */
const DAMAGED_DIR = 'damaged';

/** Directories opened by a FileEventLog in this process: the LOCK file cannot tell them apart. */
const openDirs = new Set<string>();

interface Segment {
  readonly base: number;
  readonly file: string;
  /** Byte position of each durable record; record i has offset base + i. */
  readonly positions: number[];
  /** Durable bytes: reads never look past them while a write is in flight. */
  size: number;
  reader?: Promise<FileHandle>;
}

interface Pending {
  readonly first: number;
  readonly next: number;
  readonly data: Buffer;
  /** Where each record starts within `data`. */
  readonly starts: number[];
  resolve(value: { first: number; next: number }): void;
  reject(reason: unknown): void;
}

/**
 * The embedded event log: segment files in one directory, named by their first offset, each record
 * CRC-checked. Concurrent appends are group-committed: one write and one fsync per group.
 */
export class FileEventLog implements EventLog {
  readonly kind = 'file';
  private readonly counters = { fsyncs: 0, appends: 0 };
  private readonly queue: Pending[] = [];
  private readonly waiters = new Map<() => void, number>();
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly offsets = new Map<string, number>();
  private readonly commits = new Map<string, Promise<unknown>>();
  private durableNext: number;
  private reservedNext: number;
  private writing?: Promise<void>;
  private closing?: Promise<void>;
  private failure?: Error;

  private constructor(
    readonly dir: string,
    private readonly segmentBytes: number,
    private readonly segments: Segment[],
    private writer: FileHandle,
    /** What opening had to repair: a torn or corrupt tail cut, committed offsets past the end rewritten. */
    readonly recovered: LogRecovery,
  ) {
    const last = segments[segments.length - 1]!;
    this.durableNext = this.reservedNext = last.base + last.positions.length;
  }

  /** Group commit counters: `fsyncs` of appended data and `appends` (batches) written. */
  get stats(): { readonly fsyncs: number; readonly appends: number } {
    return { ...this.counters };
  }

  /**
   * `repairTail`: also cut a corrupt record of the last segment that intact records follow (they are
   * lost, kept aside and reported); without it opening refuses, since a crash cannot cause that.
   */
  static async open(dir: string, options: { segmentBytes?: number; repairTail?: boolean } = {}): Promise<FileEventLog> {
    const segmentBytes = options.segmentBytes ?? 64 * 1024 * 1024;
    if (!Number.isSafeInteger(segmentBytes) || segmentBytes <= 0) {
      throw new RangeError(`segmentBytes must be a positive integer, got ${segmentBytes}`);
    }
    await mkdir(join(dir, 'consumers'), { recursive: true });
    // The real path, so that a second open through a symlink is caught here and not mistaken by
    // acquireLock for a stale LOCK of this pid.
    const root = await realpath(dir);
    if (openDirs.has(root)) throw new Error(`event log ${root} is already open in this process`);
    openDirs.add(root);
    let locked = false;
    try {
      await acquireLock(root);
      locked = true;
      const { segments, writer, cut } = await recover(root, options.repairTail ?? false);
      const last = segments[segments.length - 1]!;
      const end = last.base + last.positions.length;
      let rewound: LogRecovery['rewound'];
      try {
        rewound = await rewindCommitted(root, end);
      } catch (err) {
        await writer.close();
        throw err;
      }
      return new FileEventLog(root, segmentBytes, segments, writer, { end, truncatedBytes: cut?.bytes ?? 0, ...(cut ? { cut } : {}), rewound });
    } catch (err) {
      if (locked) await releaseLock(root);
      openDirs.delete(root);
      throw err;
    }
  }

  /** `ids` are checked and otherwise ignored: one writer, whose ingest dedupes event ids (see EventLog). */
  async append(payloads: readonly Payload[], ids?: readonly string[]): Promise<{ first: number; next: number }> {
    if (ids && ids.length !== payloads.length) throw new Error(`append: ${ids.length} ids for ${payloads.length} records`);
    this.assertOpen();
    if (this.failure) throw this.failure;
    if (payloads.length === 0) return { first: this.durableNext, next: this.durableNext };
    const { data, starts } = encode(payloads);
    const first = this.reservedNext;
    const next = (this.reservedNext += payloads.length);
    return new Promise((resolve, reject) => {
      this.queue.push({ first, next, data, starts, resolve, reject });
      // Start on a microtask so that every append made in the same tick joins the first group.
      this.writing ??= Promise.resolve().then(() => this.drain());
    });
  }

  async read(from: number, max: number): Promise<LogEntry[]> {
    this.assertOpen();
    if (!Number.isSafeInteger(from) || from < 0) throw new RangeError(`read: invalid offset ${from}`);
    return this.track(this.readRange(from, Math.min(from + max, this.durableNext)));
  }

  async next(): Promise<number> {
    this.assertOpen();
    return this.durableNext;
  }

  async waitFor(offset: number, timeoutMs: number): Promise<void> {
    this.assertOpen();
    if (offset < this.durableNext || !(timeoutMs > 0)) return;
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.min(timeoutMs, MAX_TIMER_MS));
      this.waiters.set(done, offset);
    });
  }

  async commit(consumer: string, offset: number): Promise<void> {
    this.assertOpen();
    checkConsumer(consumer);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`commit: invalid offset ${offset}`);
    // Serialised per consumer so that the last commit called is the one that stays on disk.
    const done = (this.commits.get(consumer) ?? Promise.resolve()).then(() => this.writeCommitted(consumer, offset));
    this.commits.set(
      consumer,
      done.catch(() => undefined),
    );
    return this.track(done);
  }

  async committed(consumer: string): Promise<number> {
    this.assertOpen();
    checkConsumer(consumer);
    const known = this.offsets.get(consumer);
    if (known !== undefined) return known;
    const file = this.offsetFile(consumer);
    const text = await this.track(readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? '0' : Promise.reject(err))));
    const offset = Number(text.trim());
    if (!Number.isSafeInteger(offset) || offset < 0) throw new Error(`corrupt consumer offset file ${file}: ${JSON.stringify(text)}`);
    this.offsets.set(consumer, offset);
    return offset;
  }

  /** Waits for in-flight appends, reads and commits, then releases the files and the lock. */
  close(): Promise<void> {
    return (this.closing ??= this.shutdown());
  }

  private async shutdown(): Promise<void> {
    await this.writing;
    await Promise.allSettled(this.inflight);
    for (const done of this.waiters.keys()) done();
    await Promise.allSettled([this.writer.close(), ...this.segments.map(async (s) => (await s.reader)?.close())]);
    await releaseLock(this.dir);
    openDirs.delete(this.dir);
  }

  private assertOpen(): void {
    if (this.closing) throw new Error(`event log ${this.dir} is closed`);
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.inflight.add(promise);
    const forget = () => this.inflight.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const group = this.queue.splice(0);
      try {
        await this.writeGroup(group);
      } catch (err) {
        // After a failed write or fsync the file's state is unknown (Linux may drop the dirty pages),
        // so refuse further appends rather than acknowledge records behind a hole.
        this.failure = new Error(`event log ${this.dir}: write failed, no further appends are accepted`, { cause: err });
        for (const p of [...group, ...this.queue.splice(0)]) p.reject(this.failure);
        break;
      }
      for (const p of group) p.resolve({ first: p.first, next: p.next });
    }
    this.writing = undefined;
  }

  private async writeGroup(group: Pending[]): Promise<void> {
    const data = group.length === 1 ? group[0]!.data : Buffer.concat(group.map((p) => p.data));
    if (this.active.size > 0 && this.active.size + data.length > this.segmentBytes) await this.roll();
    const segment = this.active;
    await writeAt(this.writer, data, segment.size);
    await this.writer.datasync();
    this.counters.fsyncs++;
    this.counters.appends += group.length;
    let at = segment.size;
    for (const p of group) {
      for (const start of p.starts) segment.positions.push(at + start);
      at += p.data.length;
    }
    segment.size = at;
    this.durableNext = group[group.length - 1]!.next;
    for (const [done, offset] of this.waiters) if (offset < this.durableNext) done();
  }

  private async roll(): Promise<void> {
    const file = join(this.dir, segmentName(this.durableNext));
    const writer = await open(file, 'wx+');
    await syncDir(this.dir);
    this.active.reader = Promise.resolve(this.writer);
    this.segments.push({ base: this.durableNext, file, positions: [], size: 0 });
    this.writer = writer;
  }

  private get active(): Segment {
    return this.segments[this.segments.length - 1]!;
  }

  private async readRange(from: number, end: number): Promise<LogEntry[]> {
    const entries: LogEntry[] = [];
    for (let offset = from; offset < end;) {
      const segment = this.segmentOf(offset);
      const count = Math.min(end - segment.base, segment.positions.length) - (offset - segment.base);
      const start = segment.positions[offset - segment.base]!;
      const stop = segment.positions[offset - segment.base + count] ?? segment.size;
      const handle = segment === this.active ? this.writer : await (segment.reader ??= open(segment.file, 'r'));
      const buf = await readAt(handle, start, stop - start);
      for (let at = 0; at < buf.length; offset++) {
        const length = at + HEADER <= buf.length ? buf.readUInt32LE(at + 4) : -1;
        const endAt = at + HEADER + length;
        if (length < 0 || endAt > buf.length || buf.readUInt32LE(at) !== crc32(buf.subarray(at + 4, endAt))) {
          throw new Error(`corrupt record in ${segment.file} at byte ${start + at} (offset ${offset})`);
        }
        entries.push({ offset, payload: buf.subarray(at + HEADER, endAt) });
        at = endAt;
      }
    }
    return entries;
  }

  private segmentOf(offset: number): Segment {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.segments[mid]!.base <= offset) lo = mid;
      else hi = mid - 1;
    }
    return this.segments[lo]!;
  }

  private offsetFile(consumer: string): string {
    return offsetFile(this.dir, consumer);
  }

  private async writeCommitted(consumer: string, offset: number): Promise<void> {
    await writeOffsetFile(this.dir, consumer, offset);
    this.offsets.set(consumer, offset);
  }
}

const offsetFile = (dir: string, consumer: string): string => join(dir, 'consumers', `${consumer}.offset`);

async function writeOffsetFile(dir: string, consumer: string, offset: number): Promise<void> {
  const file = offsetFile(dir, consumer);
  const tmp = `${file}.tmp`;
  const handle = await open(tmp, 'w');
  try {
    await handle.writeFile(`${offset}\n`);
    await handle.datasync();
  } finally {
    await handle.close();
  }
  await rename(tmp, file);
  await syncDir(join(dir, 'consumers'));
}

/**
 * Rewrites every committed offset past `end` to `end`: the records before it were lost (a cut tail,
 * a missing last segment), and a consumer standing past the end would skip the records that take
 * those offsets next. Returns the consumers rewound, with the offset each had committed.
 */
async function rewindCommitted(dir: string, end: number): Promise<{ consumer: string; committed: number }[]> {
  const rewound: { consumer: string; committed: number }[] = [];
  for (const name of (await readdir(join(dir, 'consumers'))).sort()) {
    const consumer = name.endsWith('.offset') ? name.slice(0, -'.offset'.length) : '';
    if (!CONSUMER_NAME.test(consumer)) continue;
    // An unreadable file is reported by committed(), with its name, when its consumer starts.
    const committed = Number((await readFile(offsetFile(dir, consumer), 'utf8')).trim());
    if (!Number.isSafeInteger(committed) || committed <= end) continue;
    await writeOffsetFile(dir, consumer, end);
    rewound.push({ consumer, committed });
  }
  return rewound;
}

function segmentName(base: number): string {
  return `${String(base).padStart(20, '0')}.log`;
}

function checkConsumer(name: string): void {
  if (!CONSUMER_NAME.test(name)) {
    throw new Error(`invalid consumer name ${JSON.stringify(name)}: use 1 to 64 letters, digits, '_', '.' or '-'`);
  }
}

/** Frames the records into one buffer; text is written straight into it as UTF-8 (no copy per record). */
function encode(payloads: readonly Payload[]): { data: Buffer; starts: number[] } {
  let total = 0;
  for (const p of payloads) total += HEADER + (typeof p === 'string' ? Buffer.byteLength(p) : p.length);
  const data = Buffer.allocUnsafe(total);
  const starts: number[] = [];
  let at = 0;
  for (const p of payloads) {
    starts.push(at);
    let length: number;
    if (typeof p === 'string') length = data.write(p, at + HEADER);
    else {
      data.set(p, at + HEADER);
      length = p.length;
    }
    data.writeUInt32LE(length, at + 4);
    data.writeUInt32LE(crc32(data.subarray(at + 4, at + HEADER + length)), at);
    at += HEADER + length;
  }
  return { data, starts };
}

/**
 * Scans every segment, refusing (with the file, byte and offset) any damage that cutting would turn
 * into a silent loss of records after it: a bad record in an older segment, a segment missing
 * between others, a bad record in the last segment that intact records follow (unless
 * `repairTail`). A bad record with nothing intact after it is the tail: a write torn by a crash, or
 * bytes damaged at the end. It is cut, its bytes kept aside and reported.
 */
async function recover(dir: string, repairTail: boolean): Promise<{ segments: Segment[]; writer: FileHandle; cut?: TailCut }> {
  const names = (await readdir(dir)).filter((n) => SEGMENT_NAME.test(n)).sort();
  const segments: Segment[] = [];
  let cut: TailCut | undefined;
  let writer: FileHandle | undefined;
  try {
    for (const [i, name] of names.entries()) {
      const file = join(dir, name);
      const base = Number(name.slice(0, 20));
      const previous = segments[segments.length - 1];
      const expected = previous ? previous.base + previous.positions.length : 0;
      if (base > expected) {
        throw new IntegrityError(
          `event log ${dir}: offsets ${expected} to ${base - 1} are missing: there is no segment file ${segmentName(expected)} ` +
            `${previous ? `between ${names[i - 1]} and ${name}` : `before ${name}`}; restore it from a backup (the log refuses to start rather than lose the records after the gap)`,
        );
      }
      if (base < expected) {
        throw new IntegrityError(
          `event log ${dir}: segment ${name} starts at offset ${base}, but ${names[i - 1]} before it holds records up to offset ${expected - 1}; one of them does not belong to this log`,
        );
      }
      const last = i === names.length - 1;
      const handle = await open(file, last ? 'r+' : 'r');
      if (last) writer = handle;
      try {
        const size = (await handle.stat()).size;
        const { positions, valid } = await scan(handle, size);
        if (valid < size) {
          const offset = base + positions.length;
          const where = `${file} at byte ${valid} (offset ${offset})`;
          const tail = inspectTail(await readAt(handle, valid, size - valid));
          if (!last) {
            throw new IntegrityError(
              `corrupt record in ${where}: ${size - valid} bytes of this segment (${tail.intact} intact records) and ${names.length - 1 - i} later segment(s) follow it, ` +
                `which cutting would lose; restore ${name} from a backup (the log refuses to start)`,
            );
          }
          if (tail.intact > 0 && !repairTail) {
            throw new IntegrityError(
              `corrupt record in ${where}, followed by ${tail.intact} intact record(s) that cutting the tail would lose; ` +
                `restore ${name} from a backup, or start with --repair-log to cut them (their bytes are then kept in ${join(dir, DAMAGED_DIR)})`,
            );
          }
          const savedAs = await keepAside(dir, name, valid, tail.bytes);
          await handle.truncate(valid);
          await handle.datasync();
          cut = { file, byte: valid, bytes: size - valid, offset, records: tail.records, intactRecords: tail.intact, savedAs };
        }
        segments.push({ base, file, positions, size: valid });
      } finally {
        if (!last) await handle.close();
      }
    }
    if (!writer) {
      const file = join(dir, segmentName(0));
      writer = await open(file, 'wx+');
      await syncDir(dir);
      segments.push({ base: 0, file, positions: [], size: 0 });
    }
    return { segments, writer, ...(cut ? { cut } : {}) };
  } catch (err) {
    await writer?.close();
    throw err;
  }
}

/**
 * What the bytes from a bad record on hold: how many whole records their length fields frame (null
 * when they do not lead exactly to the end: torn or garbled), and how many records in them still
 * pass their CRC, searched at every byte since a damaged length field hides where the next starts.
 */
function inspectTail(bytes: Buffer): { bytes: Buffer; records: number | null; intact: number } {
  let records: number | null = 0;
  for (let at = 0; at < bytes.length; records++) {
    const length = at + HEADER <= bytes.length ? bytes.readUInt32LE(at + 4) : -1;
    // An all-zero header is a zero-filled tail, not an empty record.
    if (length < 0 || at + HEADER + length > bytes.length || (length === 0 && bytes.readUInt32LE(at) === 0)) {
      records = null;
      break;
    }
    at += HEADER + length;
  }
  let intact = 0;
  for (let at = 1; at + HEADER <= bytes.length;) {
    const end = at + HEADER + bytes.readUInt32LE(at + 4);
    if (end <= bytes.length && bytes.readUInt32LE(at) === crc32(bytes.subarray(at + 4, end))) {
      intact++;
      at = end;
    } else at++;
  }
  return { bytes, records, intact };
}

/** Copies the bytes about to be cut to `damaged/<segment>@<byte>.<ms>` (durably) for an operator to look at. */
async function keepAside(dir: string, segment: string, byte: number, bytes: Buffer): Promise<string> {
  const damaged = join(dir, DAMAGED_DIR);
  await mkdir(damaged, { recursive: true });
  // The time keeps an earlier cut at the same byte (the log grew and was damaged again) from being overwritten.
  const file = join(damaged, `${segment}@${byte}.${Date.now()}`);
  const handle = await open(file, 'w');
  try {
    await writeAt(handle, bytes, 0);
    await handle.datasync();
  } finally {
    await handle.close();
  }
  await syncDir(damaged);
  await syncDir(dir);
  return file;
}

/** Positions of the valid records from the start of a segment, and where the first bad one starts. */
async function scan(handle: FileHandle, size: number): Promise<{ positions: number[]; valid: number }> {
  const positions: number[] = [];
  let at = 0;
  while (at + HEADER <= size) {
    const chunkAt = at;
    let chunk = await readAt(handle, chunkAt, Math.min(SCAN_CHUNK, size - chunkAt));
    const firstEnd = HEADER + chunk.readUInt32LE(4);
    if (firstEnd > chunk.length && chunkAt + firstEnd <= size) chunk = await readAt(handle, chunkAt, firstEnd);
    for (let i = 0; i + HEADER <= chunk.length;) {
      const end = i + HEADER + chunk.readUInt32LE(i + 4);
      if (chunkAt + end > size) return { positions, valid: at };
      if (end > chunk.length) break;
      if (chunk.readUInt32LE(i) !== crc32(chunk.subarray(i + 4, end))) return { positions, valid: at };
      positions.push(at);
      at = chunkAt + end;
      i = end;
    }
  }
  return { positions, valid: at };
}

async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  for (let done = 0; done < length;) {
    const { bytesRead } = await handle.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
  return buf;
}

async function writeAt(handle: FileHandle, data: Buffer, position: number): Promise<void> {
  for (let done = 0; done < data.length;) {
    done += (await handle.write(data, done, data.length - done, position + done)).bytesWritten;
  }
}

/** A new or renamed file survives a crash only once its directory entry is on disk too. */
async function syncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return; // directories cannot be opened for fsync there
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Takes `dir/LOCK` by creating it exclusively with this pid. A LOCK naming a dead process (or this
 * one, since openDirs already rules out a live handle here: a restarted container often reuses a
 * pid) is left over from a crash and is taken over.
 */
async function acquireLock(dir: string): Promise<void> {
  const path = join(dir, 'LOCK');
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: 'wx' });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 2) throw err;
    }
    const text = await readFile(path, 'utf8').catch(() => '');
    const pid = Number(text.trim());
    if (!Number.isSafeInteger(pid) || pid <= 0) {
      // Either a crash right after creating it, or another process writing its pid at this moment:
      // taking it over could give the log two writers, so a person has to decide.
      throw new Error(`event log ${dir} has a LOCK file without a pid (${path}); remove it if no process is using the log`);
    }
    if (pid !== process.pid && processAlive(pid)) throw new Error(`event log ${dir} is locked by running process ${pid} (${path})`);
    await unlink(path).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
  }
}

async function releaseLock(dir: string): Promise<void> {
  const path = join(dir, 'LOCK');
  const text = await readFile(path, 'utf8').catch(() => '');
  if (Number(text.trim()) === process.pid) await unlink(path).catch(() => undefined);
}
