import { createHash } from 'node:crypto';
import { z } from 'zod';
import { WorkbenchError } from '../../../workbench/errors.js';

/**
 * The blob store: where bundles, snapshots and the Parquet archive live so that every instance sees
 * the same files. A directory by default, an S3-compatible bucket when instances share no disk. The
 * interface is small on purpose (whole objects, no partial reads, no rename): it is what both
 * a directory and S3 do atomically, so neither implementation has to pretend.
 */

/** What `put` accepts: the bytes, or a stream of chunks (a Node Readable is one). */
export type BlobBody = Uint8Array | AsyncIterable<Uint8Array>;

export interface BlobStore {
  readonly kind: 'directory' | 's3';
  /** Where the objects are (a directory, or endpoint/bucket/prefix), for logs. */
  readonly location: string;
  /**
   * Writes the object whole, replacing any object of the same key. Readers see the old object or
   * the new one, never a part: on failure (or a stream that throws) the old object is left as it was.
   * A SHA-256 of the bytes is stored with it.
   */
  put(key: string, body: BlobBody): Promise<void>;
  /** The object's bytes after checking them against their SHA-256 (`IntegrityError` if they differ), or undefined if there is none. */
  get(key: string): Promise<Uint8Array | undefined>;
  /** The keys that start with `prefix` (a string prefix, as in S3: `a/b` matches `a/b/c` and `a/bc`), sorted. */
  list(prefix?: string): Promise<string[]>;
  /** Removes the object; removing an absent key is not an error. */
  delete(key: string): Promise<void>;
  close(): Promise<void>;
}

/** A key (or list prefix) that is not allowed: path traversal, an absolute path, a character outside the set. */
export class BlobKeyError extends WorkbenchError {
  override readonly code: string = 'bad_blob_key';
  override readonly status: number = 400;
  constructor(
    readonly key: string,
    reason: string,
  ) {
    super(`blob key ${JSON.stringify(key.length > 80 ? `${key.slice(0, 80)}…` : key)}: ${reason}`);
  }
}

/** The storage itself failed or refused (an S3 error answer, a directory it cannot write). */
export class BlobStoreError extends WorkbenchError {
  override readonly code: string = 'blob_store';
  override readonly status: number = 502;
}

export const MAX_KEY_LENGTH = 512;
const MAX_SEGMENT_LENGTH = 200;
const SEGMENT = /^[A-Za-z0-9_=-][A-Za-z0-9._=-]*$/;

/**
 * Checks a key and returns it. Keys are `/`-separated segments of letters, digits and `. _ = -`
 * (hive partitions such as `date=2025-01-01` fit), no segment empty or starting with `.`. The set is
 * narrow so that a key means the same path on every filesystem and the same object name in S3 (no
 * case of encoding, no Unicode normalisation), and so that a key can never leave the store's root.
 */
export function blobKey(key: unknown): string {
  return checkKey(key, false);
}

/** Checks a list prefix: like a key, but it may be empty, end with `/`, or end inside a segment. */
export function blobPrefix(prefix: unknown): string {
  return prefix === undefined || prefix === '' ? '' : checkKey(prefix, true);
}

function checkKey(key: unknown, prefix: boolean): string {
  if (typeof key !== 'string') throw new BlobKeyError(String(key), 'is not a string');
  if (key.length === 0) throw new BlobKeyError(key, 'is empty');
  if (key.length > MAX_KEY_LENGTH) throw new BlobKeyError(key, `is ${key.length} characters long; the limit is ${MAX_KEY_LENGTH}`);
  if (key.includes('\0')) throw new BlobKeyError(key, 'contains a NUL character');
  if (key.includes('\\')) throw new BlobKeyError(key, 'contains a backslash; separate segments with /');
  if (key.startsWith('/') || /^[A-Za-z]:/.test(key)) throw new BlobKeyError(key, 'is an absolute path; keys are relative to the store');
  const segments = key.split('/');
  if (prefix && segments[segments.length - 1] === '') segments.pop();
  for (const s of segments) {
    if (s === '..') throw new BlobKeyError(key, "contains '..' (path traversal)");
    if (s === '.') throw new BlobKeyError(key, "contains a '.' segment");
    if (s === '') throw new BlobKeyError(key, 'has an empty segment (// or a trailing /)');
    if (s.length > MAX_SEGMENT_LENGTH) throw new BlobKeyError(key, `has a segment longer than ${MAX_SEGMENT_LENGTH} characters`);
    if (!SEGMENT.test(s)) throw new BlobKeyError(key, `segment ${JSON.stringify(s)}: use letters, digits and . _ = - (not starting with .)`);
  }
  return key;
}

/** The zod form of a key, for schemas that take one from outside. */
export const blobKeySchema = z.string().superRefine((key, ctx) => {
  try {
    blobKey(key);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The chunks of a body, checked to be bytes (a Readable in object mode or of strings would store garbage). */
export async function* chunksOf(body: BlobBody): AsyncIterable<Uint8Array> {
  if (body instanceof Uint8Array) {
    yield body;
    return;
  }
  for await (const chunk of body) {
    if (!(chunk instanceof Uint8Array)) throw new TypeError(`a blob body yields bytes (Uint8Array), not ${typeof chunk}`);
    yield chunk;
  }
}

/** A body as one buffer, refusing more than `limit` bytes (so a runaway stream fails instead of exhausting memory). */
export async function collect(body: BlobBody, limit: number, key: string): Promise<Buffer> {
  if (body instanceof Uint8Array) {
    if (body.byteLength > limit) throw new BlobStoreError(`blob ${key}: ${body.byteLength} bytes is more than the limit of ${limit}`);
    return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  }
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of chunksOf(body)) {
    size += chunk.byteLength;
    if (size > limit) throw new BlobStoreError(`blob ${key}: the body is more than the limit of ${limit} bytes`);
    parts.push(chunk);
  }
  return Buffer.concat(parts, size);
}
