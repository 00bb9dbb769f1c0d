import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { KeyStore } from '../../../src/serving/auth/keys.js';
import { HttpError } from '../../../src/serving/errors.js';
import { fastPredict } from '../../../src/serving/http/fast-predict.js';
import { PREDICT } from '../../../src/serving/http/models.js';
import { Metrics } from '../../../src/serving/observability/metrics.js';
import { tempDir } from '../../helpers/tmp.js';

/**
 * The fast path on a real server, with a `predict` that echoes its input (or throws what the input
 * asks for) and, behind it, a stand-in for the Express app that says it answered. The answers of the
 * real route through either path are compared in test/serving/models/predict.test.ts and the fuzz suite.
 */
describe('POST /v1/predict before Express', () => {
  let server: http.Server;
  let base: string;
  let keys: { read: string; ingest: string };
  const metrics = new Metrics();
  const logged: object[] = [];
  let handedOn = 0;

  before(async () => {
    const store = KeyStore.open(join(tempDir(), 'keys.json'));
    keys = { read: store.create('reader', ['read']).key, ingest: store.create('ingester', ['ingest']).key };
    const predict = async (input: unknown) => {
      const want = (input as { throw?: string }).throw;
      if (want === 'http') throw new HttpError(404, 'not_found', 'no model named nope');
      if (want === 'bug') throw new Error('a secret stack');
      if (want === 'bigint') return { n: 1n };
      return { echo: input };
    };
    const logger = { error: (obj: object) => void logged.push(obj) };
    server = http.createServer(
      fastPredict({ keys: store, metrics, logger, predict }, (req, res) => {
        handedOn++;
        req.resume();
        res.end(`express: ${req.method} ${req.url}`);
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const send = (body: string | Buffer, headers: Record<string, string> = {}, path = '/v1/predict') =>
    fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.read}`, ...headers }, body });

  it('answers a plain request itself, with the JSON, its length and the handler time', async () => {
    const before = handedOn;
    const res = await send('{"model":"app","user_id":"u1"}');
    const text = await res.text();
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(text), { echo: { model: 'app', user_id: 'u1' } });
    assert.equal(res.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(Number(res.headers.get('content-length')), Buffer.byteLength(text));
    assert.match(res.headers.get('server-timing') ?? '', /^predict;dur=\d+\.\d{3}$/);
    assert.equal((await send('\ufeff{"user_id":"é"}')).status, 200, "a byte-order mark is dropped, as Express's parser does");
    assert.equal(handedOn, before);
  });

  it('hands every other form of request to Express untouched', async () => {
    const before = handedOn;
    const others: [string, Promise<Response>][] = [
      ['a query string', send('{}', {}, '/v1/predict?x=1')],
      ['a trailing slash', send('{}', {}, '/v1/predict/')],
      ['another route', send('{}', {}, '/v1/events')],
      ['another charset', send('{}', { 'content-type': 'application/json; charset=latin1' })],
      ['not JSON', send('model=app', { 'content-type': 'application/x-www-form-urlencoded' })],
      ['gzip', send(gzipSync('{"model":"app"}'), { 'content-encoding': 'gzip' })],
      ['an empty body', send('')],
      ['a body over the limit', send(JSON.stringify({ pad: 'x'.repeat(PREDICT.bodyLimit) }))],
      ['GET', fetch(`${base}/v1/predict`)],
    ];
    for (const [why, pending] of others) assert.match(await (await pending).text(), /^express: /, why);
    // A body sent in chunks, without a length.
    const chunked = await new Promise<string>((resolve, reject) => {
      const req = http.request(
        `${base}/v1/predict`,
        { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.read}` } },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve(text));
        },
      );
      req.on('error', reject);
      req.write('{"model":');
      req.end('"app"}');
    });
    assert.match(chunked, /^express: /);
    assert.equal(handedOn, before + others.length + 1);
  });

  it('refuses a missing, unknown or under-scoped key before reading the body, as the Express chain does', async () => {
    const none = await send('{}', { authorization: '' });
    assert.equal(none.status, 401);
    assert.equal(((await none.json()) as { error: { code: string } }).error.code, 'unauthorized');
    assert.equal((await send('{}', { authorization: `Bearer ${keys.read.slice(0, -2)}xx` })).status, 401);
    const ingestOnly = await send('{}', { authorization: `Bearer ${keys.ingest}` });
    assert.equal(ingestOnly.status, 403);
    assert.match(((await ingestOnly.json()) as { error: { message: string } }).error.message, /lacks the read scope/);
    assert.equal((await send('{}', { authorization: '', 'x-api-key': keys.read })).status, 200, 'X-API-Key works too');
  });

  it('answers broken JSON and thrown errors as the app error handler does, logging only the 500s and never leaking them', async () => {
    const broken = await send('{"model": "app",');
    assert.equal(broken.status, 400);
    const error = ((await broken.json()) as { error: { code: string; message: string } }).error;
    assert.equal(error.code, 'malformed_json');
    assert.match(error.message, /^the body is not valid JSON: /);
    const notFound = await send('{"throw":"http"}');
    assert.equal(notFound.status, 404);
    assert.deepEqual(await notFound.json(), { error: { code: 'not_found', message: 'no model named nope' } });
    logged.length = 0;
    const bug = await send('{"throw":"bug"}');
    assert.equal(bug.status, 500);
    assert.deepEqual(await bug.json(), { error: { code: 'internal', message: 'internal error (logged on the server)' } });
    assert.equal(logged.length, 1);
    assert.match(String((logged[0] as { err: Error }).err.message), /a secret stack/);
    // An answer that cannot be written is a 500 too, not an unhandled rejection.
    assert.equal((await send('{"throw":"bigint"}')).status, 500);
    assert.match(String((logged[1] as { err: Error }).err.message), /BigInt/);
  });

  it('counts its requests on /metrics under the route, with their status', async () => {
    const count = async (status: string) =>
      (await metrics.registry.getSingleMetric('wb_http_requests_total')!.get()).values.find(
        (v) => v.labels.route === '/v1/predict' && v.labels.status === status && v.labels.method === 'POST',
      )?.value ?? 0;
    const [ok, refused] = [await count('200'), await count('401')];
    await send('{"model":"app"}');
    await send('{}', { authorization: '' });
    assert.deepEqual([await count('200'), await count('401')], [ok + 1, refused + 1]);
  });
});
