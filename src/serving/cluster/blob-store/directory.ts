import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { IntegrityError } from '../../../workbench/errors.js';
import { blobKey, blobPrefix, BlobStoreError, chunksOf, type BlobBody, type BlobStore } from './store.js';

// Each file starts with a fixed-length header line carrying the SHA-256 and the size: the hash and the
// bytes are then replaced together by one rename, which a separate checksum file could not be.
const MAGIC = 'wb-blob/1';
const HEADER_LENGTH = `${MAGIC} sha256=${'0'.repeat(64)} size=${'0'.repeat(15)}\n`.length;
const HEADER = /^wb-blob\/1 sha256=([0-9a-f]{64}) size=(\d{15})\n$/;

const header = (sha256: string, size: number) => Buffer.from(`${MAGIC} sha256=${sha256} size=${String(size).padStart(15, '0')}\n`, 'latin1');

/**
 * The default blob store: one file per key under a root directory, the key's segments as
 * subdirectories. A put writes a hidden temporary file beside the target, fsyncs it, renames it over
 * the target and fsyncs the directory, so a reader (which opens the file once) gets the old object or
 * the new one, and a crash leaves one of them. Files hold a one-line header before the bytes, so read
 * them through the store. Hidden (dot) files are never keys: they are temporary files, and a crashed
 * put's leftover is one of them. A directory cannot also be a file, so one key cannot be a
 * directory of another (`a` and `a/b`): that put fails with a `BlobStoreError`.
 */
export class DirectoryBlobStore implements BlobStore {
  readonly kind = 'directory';
  readonly location: string;
  private readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
    this.location = this.root;
    mkdirSync(this.root, { recursive: true });
  }

  async put(key: string, body: BlobBody): Promise<void> {
    const path = this.pathOf(key);
    const dir = dirname(path);
    try {
      await mkdir(dir, { recursive: true });
    } catch (err) {
      throw this.failure(key, 'cannot create its directory (is a prefix of it an object?)', err);
    }
    const temp = join(dir, `.${randomBytes(8).toString('hex')}.tmp`);
    let file: FileHandle | undefined;
    try {
      file = await open(temp, 'wx');
      // Room for the header, written once the hash is known: the body is streamed to disk, not held in memory.
      await file.write(Buffer.alloc(HEADER_LENGTH, ' '), 0, HEADER_LENGTH, 0);
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of chunksOf(body)) {
        hash.update(chunk);
        await file.write(chunk, 0, chunk.byteLength, HEADER_LENGTH + size);
        size += chunk.byteLength;
      }
      await file.write(header(hash.digest('hex'), size), 0, HEADER_LENGTH, 0);
      await file.sync();
      await file.close();
      file = undefined;
      await rename(temp, path);
    } catch (err) {
      await file?.close().catch(() => undefined);
      await unlink(temp).catch(() => undefined);
      if ((err as NodeJS.ErrnoException).code === 'EISDIR') throw this.failure(key, 'is a directory of other keys', err);
      throw err;
    }
    await syncDir(dir);
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const path = this.pathOf(key);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (err) {
      if (['ENOENT', 'ENOTDIR', 'EISDIR'].includes((err as NodeJS.ErrnoException).code ?? '')) return undefined;
      throw err;
    }
    const m = HEADER.exec(bytes.subarray(0, HEADER_LENGTH).toString('latin1'));
    if (!m) throw new IntegrityError(`blob ${key} (${path}): the header is missing or damaged`);
    const [, expected, sizeText] = m;
    const data = bytes.subarray(HEADER_LENGTH);
    if (data.byteLength !== Number(sizeText)) {
      throw new IntegrityError(`blob ${key} (${path}): ${data.byteLength} bytes where ${Number(sizeText)} were written (truncated or appended to)`);
    }
    const actual = createHash('sha256').update(data).digest('hex');
    if (actual !== expected)
      throw new IntegrityError(`blob ${key} (${path}): SHA-256 ${actual} differs from ${expected} stored with it; it was changed after it was written`);
    return data;
  }

  async list(prefix?: string): Promise<string[]> {
    const p = blobPrefix(prefix);
    // Walk only the deepest directory the prefix names in full, then compare the rest as strings.
    const base = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '';
    const keys: string[] = [];
    const walk = async (dir: string, keyDir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '')) return;
        throw err;
      }
      for (const e of entries) {
        if (e.name.startsWith('.')) continue;
        const key = keyDir ? `${keyDir}/${e.name}` : e.name;
        if (e.isDirectory()) {
          if (p.startsWith(`${key}/`) || key.startsWith(p)) await walk(join(dir, e.name), key);
        } else if (e.isFile() && key.startsWith(p)) keys.push(key);
      }
    };
    await walk(base ? join(this.root, ...base.split('/')) : this.root, base);
    // Keys are ASCII, so code-unit order is byte order: the order S3 lists in.
    return keys.sort();
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.pathOf(key));
    } catch (err) {
      if (['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '')) return;
      if ((err as NodeJS.ErrnoException).code === 'EISDIR') return; // a directory of other keys, not an object
      throw err;
    }
    // Empty directories are left: removing them would race with a put creating a file in them.
  }

  async close(): Promise<void> {}

  private pathOf(key: string): string {
    const path = join(this.root, ...blobKey(key).split('/'));
    // blobKey already rules out every way out of the root; this guards the guard.
    if (!path.startsWith(this.root + sep)) throw new BlobStoreError(`blob ${key}: resolves outside the store's root`);
    return path;
  }

  private failure(key: string, what: string, err: unknown): BlobStoreError {
    return new BlobStoreError(`blob ${key} in ${this.root}: ${what} (${(err as Error).message})`, { cause: err });
  }
}

/** Makes a rename durable: the directory entry is on disk once this returns. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
