import aws4 from 'aws4';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { IntegrityError } from '../../../workbench/errors.js';
import { blobKey, blobPrefix, BlobStoreError, collect, sha256Hex, type BlobBody, type BlobStore } from './store.js';

/** The settings of an S3-compatible bucket (AWS S3, MinIO, Garage, s3rver...), checked before any request. */
export const s3BlobStoreConfig = z.object({
  /** Scheme, host and port only, e.g. `http://127.0.0.1:9000` or `https://s3.eu-west-1.amazonaws.com`. */
  endpoint: z
    .url({ protocol: /^https?$/ })
    .refine((u) => new URL(u).pathname === '/' && !new URL(u).search, 'the endpoint is scheme://host[:port] with no path'),
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name: 3-63 of a-z 0-9 . -'),
  region: z.string().min(1).default('us-east-1'),
  accessKeyId: z.string().min(1),
  secretAccessKey: z.string().min(1),
  sessionToken: z.string().min(1).optional(),
  /** Prepended to every key, so several deployments can share a bucket: '' or segments ending in '/'. */
  prefix: z
    .string()
    .default('')
    .refine((p) => p === '' || p.endsWith('/'), 'a key prefix ends with /')
    .refine((p) => {
      try {
        blobPrefix(p);
        return true;
      } catch {
        return false;
      }
    }, 'a key prefix is made of valid key segments'),
  /** One PUT carries a whole object, held in memory to hash it first: bigger bodies are refused. */
  maxObjectBytes: z
    .number()
    .int()
    .positive()
    .default(256 * 1024 * 1024),
  timeoutMs: z.number().int().positive().default(30_000),
  /** Create the bucket if it does not exist (for a local test server; production buckets are made by their owner). */
  createBucket: z.boolean().default(false),
});
export type S3BlobStoreConfig = z.input<typeof s3BlobStoreConfig>;

const META_SHA256 = 'x-amz-meta-sha256';
const EMPTY = Buffer.alloc(0);

/** One page of ListObjectsV2, as read from its XML. */
const listPage = z
  .object({ keys: z.array(z.string()), truncated: z.boolean(), next: z.string().min(1).optional() })
  .refine((p) => !p.truncated || p.next !== undefined, 'a truncated listing without a NextContinuationToken');

/**
 * The blob store on an S3-compatible bucket, speaking the S3 REST API with `fetch` and SigV4
 * signatures (`aws4`), path-style (`endpoint/bucket/key`, which every S3-compatible server accepts).
 * An S3 PUT replaces an object atomically, so readers never see part of one. The SHA-256 travels as
 * `x-amz-content-sha256` (the server checks the upload against it) and is kept as the object's
 * metadata `x-amz-meta-sha256`, which `get` checks the bytes against. A body is held in memory to
 * hash it before the PUT (up to `maxObjectBytes`); multipart upload is not needed for the objects
 * this project stores (bundles, snapshots, Parquet files of a partition).
 */
export class S3BlobStore implements BlobStore {
  readonly kind = 's3';
  readonly location: string;
  private readonly endpoint: URL;

  private constructor(private readonly config: z.output<typeof s3BlobStoreConfig>) {
    this.endpoint = new URL(config.endpoint);
    this.location = `${this.endpoint.origin}/${config.bucket}/${config.prefix}`;
  }

  /** Checks the settings, then the bucket (creating it if asked), so a wrong endpoint or key fails here and not at the first write. */
  static async open(config: S3BlobStoreConfig): Promise<S3BlobStore> {
    const parsed = s3BlobStoreConfig.safeParse(config);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new BlobStoreError(`S3 blob store settings: ${issue.path.join('.')}: ${issue.message}`);
    }
    const store = new S3BlobStore(parsed.data);
    await store.checkBucket();
    return store;
  }

  async put(key: string, body: BlobBody): Promise<void> {
    const name = this.objectName(key);
    const bytes = await collect(body, this.config.maxObjectBytes, key);
    const res = await this.request('PUT', name, { body: bytes, headers: { [META_SHA256]: sha256Hex(bytes), 'Content-Type': 'application/octet-stream' } });
    if (!res.ok) throw await this.failure(res, `PUT ${key}`);
    await res.arrayBuffer();
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const res = await this.request('GET', this.objectName(key));
    if (res.status === 404) {
      const text = await res.text();
      if (errorCode(text) === 'NoSuchBucket')
        throw new BlobStoreError(`GET ${key}: the bucket ${this.config.bucket} does not exist at ${this.endpoint.origin}`);
      return undefined;
    }
    if (!res.ok) throw await this.failure(res, `GET ${key}`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    const expected = res.headers.get(META_SHA256);
    if (!expected) throw new IntegrityError(`blob ${key} (${this.location}${key}): the object has no ${META_SHA256}; it was not written by this store`);
    const actual = sha256Hex(bytes);
    if (actual !== expected)
      throw new IntegrityError(
        `blob ${key} (${this.location}${key}): SHA-256 ${actual} differs from ${expected} stored with it; it was changed after it was written`,
      );
    return bytes;
  }

  async list(prefix?: string): Promise<string[]> {
    const full = this.config.prefix + blobPrefix(prefix);
    const keys: string[] = [];
    let next: string | undefined;
    do {
      const query: Record<string, string> = { 'list-type': '2', prefix: full };
      if (next) query['continuation-token'] = next;
      const res = await this.request('GET', undefined, { query });
      if (!res.ok) throw await this.failure(res, `LIST ${prefix ?? ''}`);
      const page = parseListPage(await res.text());
      for (const name of page.keys) {
        if (!name.startsWith(this.config.prefix)) continue;
        const key = name.slice(this.config.prefix.length);
        // An object some other tool put under the prefix, with a name no key can have, is not ours to list.
        if (isKey(key)) keys.push(key);
      }
      next = page.truncated ? page.next : undefined;
    } while (next);
    return keys.sort();
  }

  async delete(key: string): Promise<void> {
    const res = await this.request('DELETE', this.objectName(key));
    if (!res.ok && res.status !== 404) throw await this.failure(res, `DELETE ${key}`);
    await res.arrayBuffer();
  }

  async close(): Promise<void> {}

  private async checkBucket(): Promise<void> {
    const res = await this.request('HEAD', undefined);
    await res.arrayBuffer();
    if (res.ok) return;
    if (res.status === 404 && this.config.createBucket) {
      const made = await this.request('PUT', undefined);
      if (!made.ok) throw await this.failure(made, `creating bucket ${this.config.bucket}`);
      await made.arrayBuffer();
      return;
    }
    const why =
      res.status === 404
        ? 'does not exist'
        : res.status === 403
          ? 'refuses these credentials (check the access key and secret)'
          : `answered HTTP ${res.status}`;
    throw new BlobStoreError(`the bucket ${this.config.bucket} at ${this.endpoint.origin} ${why}`);
  }

  private objectName(key: string): string {
    return this.config.prefix + blobKey(key);
  }

  /** One signed request; network errors and 5xx answers are retried twice (every request here is idempotent). */
  private async request(
    method: string,
    object: string | undefined,
    opts: { query?: Record<string, string>; body?: Buffer; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    let path = `/${this.config.bucket}`;
    if (object !== undefined) path += `/${object.split('/').map(encodeURIComponent).join('/')}`;
    const qs = opts.query ? new URLSearchParams(opts.query).toString() : '';
    if (qs) path += `?${qs}`;
    const signed = aws4.sign(
      {
        host: this.endpoint.hostname,
        port: this.endpoint.port ? Number(this.endpoint.port) : undefined,
        method,
        path,
        service: 's3',
        region: this.config.region,
        headers: { 'X-Amz-Content-Sha256': sha256Hex(opts.body ?? EMPTY), ...opts.headers },
      },
      { accessKeyId: this.config.accessKeyId, secretAccessKey: this.config.secretAccessKey, sessionToken: this.config.sessionToken },
    );
    // fetch sets Host itself, to the same host:port that was signed.
    const { Host: _host, ...headers } = signed.headers;
    const url = `${this.endpoint.origin}${signed.path ?? path}`;
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await fetch(url, { method, headers, body: opts.body, signal: AbortSignal.timeout(this.config.timeoutMs) });
        if (res.status < 500 || attempt >= 2) return res;
        await res.arrayBuffer();
      } catch (err) {
        if (attempt >= 2) throw new BlobStoreError(`${method} ${url}: ${(err as Error).message}`, { cause: err });
      }
      await sleep(100 * 4 ** attempt);
    }
  }

  private async failure(res: Response, what: string): Promise<BlobStoreError> {
    const text = await res.text().catch(() => '');
    const code = errorCode(text);
    const message = /<Message>([\s\S]*?)<\/Message>/.exec(text)?.[1];
    return new BlobStoreError(`${what} at ${this.location}: HTTP ${res.status}${code ? ` ${code}` : ''}${message ? `: ${decodeXml(message)}` : ''}`);
  }
}

function isKey(key: string): boolean {
  try {
    blobKey(key);
    return true;
  } catch {
    return false;
  }
}

function errorCode(xml: string): string | undefined {
  return /<Code>([\s\S]*?)<\/Code>/.exec(xml)?.[1];
}

/** The keys and the continuation of a ListObjectsV2 answer. Its XML is regular enough for three patterns. */
function parseListPage(xml: string): z.infer<typeof listPage> {
  const keys = [...xml.matchAll(/<Contents>[\s\S]*?<Key>([\s\S]*?)<\/Key>[\s\S]*?<\/Contents>/g)].map((m) => decodeXml(m[1] ?? ''));
  const truncated = /<IsTruncated>\s*true\s*<\/IsTruncated>/.test(xml);
  const next = /<NextContinuationToken>([\s\S]*?)<\/NextContinuationToken>/.exec(xml)?.[1];
  const parsed = listPage.safeParse({ keys, truncated, next: next === undefined ? undefined : decodeXml(next) });
  if (!parsed.success) throw new BlobStoreError(`an S3 listing that cannot be read: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

const ENTITIES = new Map([
  ['amp', '&'],
  ['lt', '<'],
  ['gt', '>'],
  ['quot', '"'],
  ['apos', "'"],
]);

function decodeXml(text: string): string {
  return text.replace(/&(amp|lt|gt|quot|apos|#\d{1,7}|#x[0-9a-fA-F]{1,6});/g, (whole, e: string) => {
    if (e[0] !== '#') return ENTITIES.get(e) ?? whole;
    const code = e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return code <= 0x10ffff ? String.fromCodePoint(code) : whole;
  });
}
