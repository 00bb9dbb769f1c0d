// An S3-compatible test server in its own process: s3rver over a directory (argv[2]), behind a front
// that refuses any request whose SigV4 signature is wrong (s3rver itself checks only the key id).
// Run with --openssl-legacy-provider: s3rver makes ListObjectsV2 continuation tokens with DES, which
// Node 20's OpenSSL 3 offers only from its legacy provider (without it, the second page is a 500).
// Prints {"port": N} on stdout once both listen.
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { dirname } from 'node:path';
import S3rver from 's3rver';
import FilesystemStore from 's3rver/lib/stores/filesystem.js';
import { verifySigV4 } from './sigv4.js';

// s3rver's putObject answers before its write stream has reached the file (it resolves right after
// `end(buffer)`), so a GET just after a PUT can read an empty or short object: S3 is read-after-write
// consistent, s3rver is not. This one answers once the bytes are written. Still in place, not atomic.
FilesystemStore.prototype.putObject = async function putObject(object) {
  const path = this.getResourcePath(object.bucket, object.key, 'object');
  await mkdir(dirname(path), { recursive: true });
  let content: Buffer;
  if (Buffer.isBuffer(object.content)) content = object.content;
  else {
    const chunks: Buffer[] = [];
    for await (const c of object.content) chunks.push(c as Buffer);
    content = Buffer.concat(chunks);
  }
  await writeFile(path, content);
  const md5 = createHash('md5').update(content).digest('hex');
  await this.putMetadata(object.bucket, object.key, object.metadata, md5);
  return { size: content.length, md5 };
};

async function main(directory: string): Promise<void> {
  const s3 = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory, configureBuckets: [{ name: 'wb-test' }] });
  const { port: s3port } = await s3.run();
  serve(s3port);
}

const secrets = new Map([['S3RVER', 'S3RVER']]);

function serve(s3port: number): void {
  const front = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const problem = verifySigV4({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body }, secrets);
    if (problem) {
      res.writeHead(403, { 'content-type': 'application/xml' });
      res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code><Message>${problem}</Message></Error>`);
      return;
    }
    const upstream = http.request({ host: '127.0.0.1', port: s3port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    upstream.on('error', (err) => {
      res.writeHead(502);
      res.end(String(err));
    });
    upstream.end(body);
  });
  front.listen(0, '127.0.0.1', () => {
    const address = front.address();
    process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 })}\n`);
  });
}

const directory = process.argv[2];
if (!directory) throw new Error('usage: s3rver-child.ts DIRECTORY');
void main(directory);
process.on('SIGTERM', () => process.exit(0));
