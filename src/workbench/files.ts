import { createHash, randomBytes } from 'node:crypto';
import { closeSync, createReadStream, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { SLICE_MS, TimeSlices } from './time-slices.js';

/**
 * Writes a file so that readers see either the old content or the new, never half of it:
 * write a temporary sibling, fsync it, rename it over the target.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): void {
  const tmp = temporarySibling(path);
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * `writeFileAtomic` without holding the event loop: the write, the fsync and the rename run on
 * libuv's threads, then the directory is synced so that the rename itself survives a crash. What a
 * server calls while it answers requests (a synchronous fsync there stalls every request for as
 * long as the disk takes, tens of milliseconds on a busy one). `data` may be given in pieces (what
 * `renderInSlices` makes), written one after the other.
 */
export async function writeFileAtomicAsync(path: string, data: string | Uint8Array | readonly string[], mode = 0o644): Promise<void> {
  await writeThroughTemporary(path, mode, async (file) => {
    if (typeof data === 'string' || data instanceof Uint8Array) await file.writeFile(data);
    else for (const piece of data) await file.write(piece);
  });
}

/**
 * The tail every asynchronous atomic write shares: `fill` writes a temporary sibling, which is then
 * fsynced, closed and renamed over `path` (removed instead if anything fails), and the directory is
 * synced so that the rename itself survives a crash. Every step runs on libuv's threads.
 */
async function writeThroughTemporary(path: string, mode: number, fill: (file: FileHandle) => Promise<void>): Promise<void> {
  const tmp = temporarySibling(path);
  const file = await open(tmp, 'w', mode);
  try {
    await fill(file);
    await file.sync();
  } catch (err) {
    await file.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
  await file.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDirectory(dirname(path));
}

/** fsyncs a directory (its entries: a rename into it); a file system that cannot is left as it is. */
async function syncDirectory(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (err) {
    // Some file systems refuse to open or sync a directory (EISDIR, EINVAL, EPERM): the rename stands.
    if (!['EISDIR', 'EINVAL', 'EPERM', 'EACCES', 'ENOTSUP'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
  } finally {
    await handle?.close();
  }
}

/** A name beside `path` that no other writer uses, hidden from globs by its leading dot. */
export function temporarySibling(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Whether a process with this pid exists (a lock file's owner may have died). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A snapshot file: the text, then its SHA-256 on the last line, written atomically. Reading gives
 * the text, `undefined` when there is no file, or `corrupt` (the file is set aside beside itself and
 * its new name returned) when the check fails, so the caller rebuilds instead of trusting it.
 */
export function writeCheckedSnapshot(path: string, body: string): void {
  writeFileAtomic(path, `${body}\n${createHash('sha256').update(body).digest('hex')}\n`);
}

/**
 * `writeCheckedSnapshot` for a large body given as pieces, without holding the event loop: the
 * pieces are produced, hashed and written a few milliseconds at a time (`sliceMs`), then the file
 * is synced and renamed into place, so a reader sees the old snapshot or the whole new one. The
 * pieces are read while the file is written: a caller whose state changes meanwhile passes what
 * `renderInSlices` made of it instead.
 */
export async function writeCheckedSnapshotInSlices(path: string, pieces: Iterable<string>, sliceMs = SLICE_MS): Promise<void> {
  await writeThroughTemporary(path, 0o644, async (file) => {
    const hash = createHash('sha256');
    const slices = new TimeSlices(sliceMs);
    let pending: string[] = [];
    let pendingLength = 0;
    const drain = async () => {
      const chunk = Buffer.from(pending.join(''));
      pending = [];
      pendingLength = 0;
      hash.update(chunk);
      await file.write(chunk);
    };
    for (const piece of pieces) {
      pending.push(piece);
      pendingLength += piece.length;
      // Hashing is about 5 ms a MB on a slow core: a chunk stays well inside a slice.
      if (pendingLength >= CHUNK_CHARS) await drain();
      const pause = slices.pause();
      if (pause) await pause;
    }
    await drain();
    await file.write(`\n${hash.digest('hex')}\n`);
  });
}

/**
 * The pieces of a snapshot joined into a few large strings, a few milliseconds at a time
 * (`sliceMs`): what a caller whose state changes after it resumes hands to
 * `writeCheckedSnapshotInSlices`, so the state is read at one moment and written while it changes.
 */
export async function renderInSlices(pieces: Iterable<string>, sliceMs = SLICE_MS): Promise<string[]> {
  const out: string[] = [];
  const slices = new TimeSlices(sliceMs);
  let pending: string[] = [];
  let pendingLength = 0;
  for (const piece of pieces) {
    pending.push(piece);
    pendingLength += piece.length;
    if (pendingLength >= CHUNK_CHARS) {
      out.push(pending.join(''));
      pending = [];
      pendingLength = 0;
    }
    const pause = slices.pause();
    if (pause) await pause;
  }
  out.push(pending.join(''));
  return out;
}

/** Characters of JSON hashed and written at once (a quarter of a MB: about 1 ms of SHA-256). */
const CHUNK_CHARS = 1 << 18;

export function readCheckedSnapshot(path: string): { body: string } | { corrupt: string } | undefined {
  if (!existsSync(path)) return undefined;
  const text = readFileSync(path, 'utf8');
  const cut = text.trimEnd().lastIndexOf('\n');
  const body = text.slice(0, cut);
  if (cut >= 0 && createHash('sha256').update(body).digest('hex') === text.slice(cut + 1).trim()) return { body };
  const aside = `${path}.corrupt-${Date.now()}`;
  writeFileAtomic(aside, text);
  return { corrupt: aside };
}
