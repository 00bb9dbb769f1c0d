import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { BlobStoreError, DirectoryBlobStore, S3BlobStore, type S3BlobStoreConfig } from '../../../src/serving/cluster/blob-store/index.js';
import { tempDir } from '../../helpers/tmp.js';
import { blobStoreConformance } from './blob-store.conformance.js';
import { verifySigV4 } from './sigv4.js';

/** Flips one byte in the middle of a file: the bit rot a checksum is for. */
function flipByte(path: string): void {
  const bytes = readFileSync(path);
  const at = bytes.length - Math.floor(bytes.length / 3);
  bytes[at] = bytes[at]! ^ 0xff;
  writeFileSync(path, bytes);
}

blobStoreConformance('directory', async () => {
  const root = tempDir('wb-blobs-');
  return { store: new DirectoryBlobStore(root), corrupt: async (key) => flipByte(join(root, ...key.split('/'))) };
});

// s3rver (an S3-compatible server from npm) in a child process on a free port over a temp
// directory, behind a front that checks SigV4 signatures independently of aws4 (./sigv4.ts).
const s3dir = tempDir('wb-s3rver-');
let s3: Promise<{ port: number; child: ChildProcess }> | undefined;
function s3Server(): Promise<number> {
  s3 ??= new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--openssl-legacy-provider', '--import', 'tsx', join(__dirname, 's3rver-child.ts'), s3dir], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the s3rver child exited (${code}) before it listened`)));
    createInterface({ input: child.stdout! }).once('line', (line) => resolve({ port: (JSON.parse(line) as { port: number }).port, child }));
  });
  return s3.then((s) => s.port);
}
after(async () => {
  const server = await s3?.catch(() => undefined);
  if (server && server.child.exitCode === null) {
    const exited = once(server.child, 'exit');
    server.child.kill('SIGTERM');
    await exited;
  }
});
const s3Config = async (over: Partial<S3BlobStoreConfig> = {}): Promise<S3BlobStoreConfig> => ({
  endpoint: `http://127.0.0.1:${await s3Server()}`,
  bucket: 'wb-test',
  accessKeyId: 'S3RVER',
  secretAccessKey: 'S3RVER',
  ...over,
});

let run = 0;
blobStoreConformance(
  'S3 (s3rver)',
  async () => {
    const prefix = `run${++run}/`;
    const store = await S3BlobStore.open(await s3Config({ prefix }));
    return {
      store,
      corrupt: async (key) => flipByte(join(s3dir, 'wb-test', prefix, ...`${key}._S3rver_object`.split('/'))),
    };
    // AWS S3 (and MinIO, Garage) swap whole objects; s3rver streams a PUT into the object's file.
  },
  { tornReplace: true },
);

describe('DirectoryBlobStore', () => {
  it('writes nothing outside its root whatever the key, and leaves no temporary file behind', async () => {
    const parent = tempDir('wb-blobs-jail-');
    const store = new DirectoryBlobStore(join(parent, 'root'));
    for (const key of ['../escaped', '../../escaped', 'a/../../escaped', '/tmp/escaped', 'a\\..\\..\\escaped']) {
      await assert.rejects(store.put(key, Buffer.from('x')));
    }
    assert.deepEqual(readdirSync(parent), ['root']);
    await store.put('a/b', Buffer.from('x'));
    assert.deepEqual(readdirSync(join(parent, 'root', 'a')), ['b']);
  });

  it('says so when one key would be the directory of another', async () => {
    const store = new DirectoryBlobStore(tempDir('wb-blobs-conflict-'));
    await store.put('a', Buffer.from('file'));
    await assert.rejects(store.put('a/b', Buffer.from('x')), (err: unknown) => err instanceof BlobStoreError && /a prefix of it an object/.test(err.message));
    await store.put('c/d', Buffer.from('x'));
    await assert.rejects(store.put('c', Buffer.from('x')), (err: unknown) => err instanceof BlobStoreError && /directory of other keys/.test(err.message));
    assert.equal(await store.get('c'), undefined, 'a directory is not an object');
    assert.deepEqual(await store.list(), ['a', 'c/d']);
  });

  it('names a truncated file and a damaged header as integrity failures', async () => {
    const root = tempDir('wb-blobs-trunc-');
    const store = new DirectoryBlobStore(root);
    await store.put('t', Buffer.from('0123456789'));
    writeFileSync(join(root, 't'), readFileSync(join(root, 't')).subarray(0, -3));
    await assert.rejects(store.get('t'), /7 bytes where 10 were written/);
    writeFileSync(join(root, 't'), 'not a blob at all');
    await assert.rejects(store.get('t'), /header is missing or damaged/);
    assert.ok(existsSync(join(root, 't')));
  });
});

describe('S3BlobStore', () => {
  it('signs as AWS does: the test server checker passes the example of the AWS docs, and fails it when changed', () => {
    // The GET Object example of AWS's "Signature Calculations for the Authorization Header" page.
    const example = {
      method: 'GET',
      url: '/test.txt',
      headers: {
        host: 'examplebucket.s3.amazonaws.com',
        range: 'bytes=0-9',
        'x-amz-content-sha256': 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
        'x-amz-date': '20130524T000000Z',
        authorization:
          'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
      },
      body: new Uint8Array(0),
    };
    const secrets = new Map([['AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY']]);
    const at = Date.UTC(2013, 4, 24);
    assert.equal(verifySigV4(example, secrets, at), undefined);
    assert.match(verifySigV4({ ...example, url: '/test.txt2' }, secrets, at)!, /signature does not match/);
    assert.match(verifySigV4({ ...example, headers: { ...example.headers, range: 'bytes=0-10' } }, secrets, at)!, /signature does not match/);
    assert.match(verifySigV4({ ...example, body: new Uint8Array(1) }, secrets, at)!, /body does not match/);
    assert.match(verifySigV4(example, secrets, at + 3_600_000)!, /15 minutes/);
  });

  it('fails at open with a clear reason: wrong secret, missing bucket, bad settings', async () => {
    await assert.rejects(S3BlobStore.open(await s3Config({ secretAccessKey: 'wrong' })), /wb-test .* refuses these credentials/);
    await assert.rejects(S3BlobStore.open(await s3Config({ accessKeyId: 'NOBODY' })), /wb-test .* refuses these credentials/);
    await assert.rejects(S3BlobStore.open(await s3Config({ bucket: 'no-such-bucket' })), /no-such-bucket .* does not exist/);
    await assert.rejects(S3BlobStore.open(await s3Config({ endpoint: 'ftp://127.0.0.1' })));
    await assert.rejects(S3BlobStore.open(await s3Config({ prefix: 'no-slash' })), /ends with \//);
    await assert.rejects(S3BlobStore.open(await s3Config({ prefix: '../x/' })), /valid key segments/);
  });

  it('creates its bucket when asked to', async () => {
    const store = await S3BlobStore.open(await s3Config({ bucket: 'made-by-open', createBucket: true }));
    await store.put('x', Buffer.from('y'));
    assert.equal(Buffer.from((await store.get('x'))!).toString(), 'y');
  });

  it('keeps each prefix to itself, so deployments can share a bucket', async () => {
    const a = await S3BlobStore.open(await s3Config({ prefix: 'iso-a/' }));
    const b = await S3BlobStore.open(await s3Config({ prefix: 'iso-b/' }));
    await a.put('k', Buffer.from('a'));
    assert.equal(await b.get('k'), undefined);
    assert.deepEqual(await b.list(), []);
    assert.deepEqual(await a.list(), ['k']);
  });

  it('refuses an object that carries no SHA-256 (written by some other tool)', async () => {
    const store = await S3BlobStore.open(await s3Config({ prefix: 'foreign/' }));
    await store.put('k', Buffer.from('ours'));
    // Drop the metadata s3rver keeps beside the object, as an upload by another client would have none.
    const meta = join(s3dir, 'wb-test', 'foreign', 'k._S3rver_metadata.json');
    const json = JSON.parse(readFileSync(meta, 'utf8')) as Record<string, string>;
    delete json['x-amz-meta-sha256'];
    writeFileSync(meta, JSON.stringify(json));
    await assert.rejects(store.get('k'), /has no x-amz-meta-sha256/);
  });

  it('refuses a body larger than its limit before sending it', async () => {
    const store = await S3BlobStore.open(await s3Config({ prefix: 'limit/', maxObjectBytes: 1000 }));
    await assert.rejects(store.put('k', Buffer.alloc(1001)), /more than the limit of 1000/);
    await assert.rejects(
      store.put(
        'k',
        (async function* () {
          for (let i = 0; i < 5; i++) yield Buffer.alloc(300);
        })(),
      ),
      /more than the limit of 1000/,
    );
    assert.equal(await store.get('k'), undefined);
  });
});
