import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FileEventLog } from '../../src/serving/pipeline/file-log.js';
import { event, startTestService } from '../helpers/service.js';
import { sleep } from '../helpers/wait.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'wb-stop-'));
  dirs.push(d);
  return d;
};

/** A raw connection: what it received, and when the server closed it (ms after it was opened). */
interface RawClient {
  socket: net.Socket;
  received(): string;
  closed: Promise<number>;
}

async function rawClient(url: string): Promise<RawClient> {
  const { hostname, port } = new URL(url);
  const socket = net.connect({ host: hostname, port: Number(port) });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const opened = Date.now();
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString()));
  socket.on('error', () => undefined); // a reset by the server is what some tests wait for
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - opened)));
  return { socket, received: () => text, closed };
}

const ingestHead = (key: string, bodyBytes: number) =>
  `POST /v1/events HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: ${bodyBytes}\r\n\r\n`;

/** Writes `text` a byte at a time, `everyMs` apart, until it is written or the socket closes. */
async function dribble(socket: net.Socket, text: string, everyMs: number): Promise<void> {
  for (const ch of text) {
    if (socket.destroyed) return;
    socket.write(ch);
    await sleep(everyMs);
  }
}

describe('stopping the service', { timeout: 60_000 }, () => {
  it('ends event streams and idle keep-alive connections at once: they do not hold the stop', async () => {
    const t = await startTestService({ drainMs: 10_000 });
    const stream = await rawClient(t.service.url);
    stream.socket.write(`GET /v1/stream HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer ${t.keys.read}\r\n\r\n`);
    const idle = await rawClient(t.service.url);
    idle.socket.write(`GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n`);
    for (let i = 0; i < 100 && !(stream.received().includes('event: snapshot') && idle.received().includes('"ok"')); i++) await sleep(50);
    assert.match(stream.received(), /text\/event-stream/);
    assert.match(idle.received(), /200 OK/);
    const started = Date.now();
    await t.stop();
    const took = Date.now() - started;
    assert.ok(took < 5_000, `stop took ${took} ms with an event stream and an idle connection open (deadline 10 s)`);
    await Promise.all([stream.closed, idle.closed]);
  });

  it('closes a slow client at the drain deadline, and still acknowledges a request that finishes within it', async () => {
    const dir = tempDir();
    const t = await startTestService({ drainMs: 1_500 }, dir);
    // Never finishes its body: only the deadline ends it.
    const stuck = await rawClient(t.service.url);
    stuck.socket.write(ingestHead(t.keys.ingest, 1000) + '[');
    // Sends the second half of its body after the stop has begun.
    const body = JSON.stringify([event('in-flight')]);
    const late = await rawClient(t.service.url);
    late.socket.write(ingestHead(t.keys.ingest, Buffer.byteLength(body)) + body.slice(0, 20));
    await sleep(200);

    const started = Date.now();
    const stopped = t.service.stop().then(() => Date.now() - started);
    await sleep(300);
    late.socket.write(body.slice(20));
    const took = await stopped;
    assert.ok(took >= 1_400 && took < 5_000, `stop took ${took} ms with a drain deadline of 1.5 s`);
    await stuck.closed;
    assert.doesNotMatch(stuck.received(), /200 OK/, 'the stuck request was never acknowledged');
    assert.match(late.received(), /^HTTP\/1\.1 200 OK/, `the request that finished while draining is acknowledged: ${late.received()}`);
    assert.match(late.received(), /"accepted":1/);

    const log = await FileEventLog.open(join(dir, 'log'));
    try {
      const ids = (await log.read(0, 100)).map((e) => (JSON.parse(Buffer.from(e.payload).toString()) as { event_id: string }).event_id);
      assert.deepEqual(ids, ['in-flight'], 'the acknowledged event is in the log');
    } finally {
      await log.close();
    }
  });
});

describe('slow clients', { timeout: 60_000 }, () => {
  it('cuts a request head sent a byte at a time, and a body dribbled a byte at a time, within the timeouts', async () => {
    const t = await startTestService({ timeouts: { headersMs: 1_000, requestMs: 2_000 } });
    try {
      const head = await rawClient(t.service.url);
      void dribble(head.socket, `GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ${'a'.repeat(100)}\r\n\r\n`, 100);
      const body = await rawClient(t.service.url);
      body.socket.write(ingestHead(t.keys.ingest, 500));
      void dribble(body.socket, JSON.stringify([event('dribbled', { props: { pad: 'x'.repeat(400) } })]).padEnd(500), 100);

      const [headCut, bodyCut] = await Promise.all([head.closed, body.closed]);
      assert.ok(headCut >= 900 && headCut < 2_500, `the slow head was cut after ${headCut} ms (headers timeout 1 s)`);
      assert.ok(bodyCut >= 1_900 && bodyCut < 3_500, `the dribbled body was cut after ${bodyCut} ms (request timeout 2 s)`);
      assert.match(head.received(), /^HTTP\/1\.1 408/);
      assert.match(body.received(), /^HTTP\/1\.1 408/);
      assert.equal(await t.service.log.next(), 0, 'nothing of the cut request reached the log');
      // The service still answers everyone else.
      assert.equal((await t.call('/healthz')).status, 200);
    } finally {
      await t.stop();
    }
  });

  it('refuses timeouts that contradict each other', async () => {
    await assert.rejects(
      startTestService({ timeouts: { headersMs: 5_000, requestMs: 1_000 } }),
      /timeouts\.headersMs \(5000\) must not exceed timeouts\.requestMs \(1000\)/,
    );
  });
});
