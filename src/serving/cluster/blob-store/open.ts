import { resolve } from 'node:path';
import { BlobStoreError, type BlobStore } from './store.js';
import { DirectoryBlobStore } from './directory.js';
import { S3BlobStore } from './s3.js';

/**
 * The blob store a setting names (`--blob-store`, env `WB_BLOB_STORE`): nothing, a directory
 * (`defaultDir`, in the shared data dir); a path or `file://` URL, that directory;
 * `s3://<bucket>/<prefix/>?endpoint=<scheme://host:port>&region=<r>`, an S3-compatible bucket with
 * the credentials of `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), never
 * from the URL, so that it can be logged.
 *
 * @example
 * ```ts
 * const blobs = await openBlobStore(process.env.WB_BLOB_STORE, join(dataDir(), 'blobs'));
 * ```
 */
export async function openBlobStore(spec: string | undefined, defaultDir: string, env: NodeJS.ProcessEnv = process.env): Promise<BlobStore> {
  if (spec === undefined || spec.trim() === '') return new DirectoryBlobStore(defaultDir);
  if (spec.startsWith('file://')) return new DirectoryBlobStore(new URL(spec).pathname);
  if (!spec.startsWith('s3://')) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec))
      throw new BlobStoreError(`blob store ${JSON.stringify(spec)}: use a directory, file://<dir> or s3://<bucket>/<prefix/>?endpoint=...`);
    return new DirectoryBlobStore(resolve(spec));
  }
  const url = new URL(spec);
  if (url.username || url.password)
    throw new BlobStoreError('blob store: put the S3 credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, not in the URL');
  const endpoint = url.searchParams.get('endpoint');
  if (!endpoint) throw new BlobStoreError(`blob store ${spec}: say where the S3 service is (?endpoint=https://s3.<region>.amazonaws.com or http://host:port)`);
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) throw new BlobStoreError(`blob store ${spec}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`);
  const prefix = url.pathname.replace(/^\/+/, '');
  return S3BlobStore.open({
    endpoint,
    bucket: url.hostname,
    region: url.searchParams.get('region') ?? env.AWS_REGION ?? 'us-east-1',
    accessKeyId,
    secretAccessKey,
    ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
    prefix: prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`,
  });
}
