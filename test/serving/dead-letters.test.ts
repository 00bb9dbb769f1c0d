import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { connect } from 'nats';
import { openDeadLetterStore } from '../../src/serving/pipeline/dead-letters.js';
import { FileEventLog } from '../../src/serving/pipeline/file-log.js';
import { serverAvailable } from '../helpers/servers.js';
import { event, startTestService } from '../helpers/service.js';
import { tempDir } from '../helpers/tmp.js';
import { until } from '../helpers/wait.js';

const record = (id: string, note = 'ok') =>
  JSON.stringify({
    event_id: id,
    time: new Date(Date.now() - 60_000).toISOString(),
    user_id: 'u1',
    event: 'login',
    props: { note },
    dims: { tier: 'free', country: 'GB', device: 'ios', first_seen: '2024-01-01' },
    experiments: {},
    received_at: new Date().toISOString(),
  });

describe('dead letters in the service', () => {
  it('sets a poison record aside, alerts, counts it, serves it over HTTP and keeps every consumer going', async (t) => {
    const dir = tempDir('wb-dlq-http-');
    // Straight into the log, bypassing ingest (which now refuses a lone surrogate): the archiver cannot store it.
    const log = await FileEventLog.open(join(dir, 'log'));
    await log.append([record('e0'), record('e1', 'bad \ud800'), record('e2')]);
    await log.close();
    const svc = await startTestService({}, dir);
    t.after(() => svc.stop());
    const get = async (path: string, key = svc.keys.read) => {
      const res = await svc.call(path, { key });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };

    const letters = await until(
      'the dead letters',
      async () => {
        const { body } = await get('/v1/dead-letters');
        const ids = (body.letters as { id: string }[]).map((l) => l.id).sort();
        return ids.includes('archiver@1') ? ids : undefined;
      },
      30_000,
    );
    assert.deepEqual(letters, ['archiver@1'], 'only the archiver refuses it, and only it');

    // Every consumer went on, and goes on with new events.
    assert.equal((await svc.post('/v1/events', [event('e4')])).status, 200);
    await until(
      'every consumer at the end of the log',
      async () => {
        const { body } = await get('/v1/log');
        return (body.consumers as { lag: number }[]).every((c) => c.lag === 0) ? true : undefined;
      },
      30_000,
    );

    const one = await get('/v1/dead-letters/archiver@1');
    assert.equal(one.status, 200);
    assert.equal(one.body.offset, 1);
    assert.match(one.body.payload as string, /"event_id":"e1".*\\ud800/);
    assert.match((one.body.error as { message: string }).message, /surrogate/);
    assert.equal((await get('/v1/dead-letters/archiver@99')).status, 404);
    const badId = await get('/v1/dead-letters/not%20an%20id');
    assert.equal(badId.status, 400);
    assert.match(JSON.stringify(badId.body), /consumer>@<offset>/);
    const filtered = await get('/v1/dead-letters?consumer=archiver&state=open');
    assert.deepEqual(
      (filtered.body.letters as { id: string }[]).map((l) => l.id),
      ['archiver@1'],
    );
    assert.deepEqual((await get('/v1/dead-letters?consumer=monitor')).body.letters, []);
    assert.equal((await get('/v1/dead-letters?state=closed')).status, 400);

    const alerts = (await get('/v1/alerts')).body.alerts as { kind?: string; id?: string; labels: { consumer?: string } }[];
    assert.ok(alerts.some((a) => a.kind === 'dead_letter' && a.id === 'archiver@1' && a.labels.consumer === 'archiver'));
    const metrics = await (await svc.call('/metrics', { key: svc.keys.read })).text();
    assert.match(metrics, /^wb_dead_letters_total\{consumer="archiver"\} 1$/m);
    assert.match(metrics, /^wb_dead_letters_open\{consumer="archiver"\} 1$/m);

    // Retry: admin only; the archiver's runner hands the record over again, and DuckDB still refuses it.
    const retry = (id: string, key = svc.keys.admin) => svc.call(`/v1/dead-letters/${id}/retry`, { method: 'POST', key });
    assert.equal((await retry('archiver@1', svc.keys.read)).status, 403);
    assert.equal((await retry('archiver@99')).status, 404);
    assert.equal((await retry('archiver%201')).status, 400);
    const accepted = await retry('archiver@1');
    assert.equal(accepted.status, 202);
    assert.equal(((await accepted.json()) as { letter: { state: string } }).letter.state, 'retry-requested');
    const after = await until('the retry outcome', async () => {
      const { body } = await get('/v1/dead-letters/archiver@1');
      return body.state === 'retry-requested' ? undefined : body;
    });
    assert.equal(after.state, 'retry-failed');
    assert.equal(after.attempts, 4);
    // The aggregates keep their position with their state: a retry is refused with the reason.
    await svc.service.deadLetters.add({
      consumer: 'aggregates',
      offset: 2,
      payload: new TextEncoder().encode(record('e2')),
      error: new Error('say it failed'),
      attempts: 3,
    });
    assert.equal((await retry('aggregates@2')).status, 202);
    const refused = await until('the refusal', async () => {
      const { body } = await get('/v1/dead-letters/aggregates@2');
      return body.state === 'retry-requested' ? undefined : body;
    });
    assert.match((refused.error as { message: string }).message, /cannot apply a record out of order/);
    assert.deepEqual(readdirSync(join(dir, 'lake', '.staging-live')), [], 'no staging folder left');

    const doc = (await get('/v1/openapi.json')).body as { paths: Record<string, unknown> };
    for (const path of ['/v1/dead-letters', '/v1/dead-letters/{id}', '/v1/dead-letters/{id}/retry']) assert.ok(path in doc.paths, path);
  });

  it('keeps them in a JetStream stream beside the JetStream event log, where the CLI finds them too', async (t) => {
    const servers = 'nats://127.0.0.1:4222';
    const ok = await serverAvailable('NATS JetStream', servers);
    if (ok !== true) return t.skip(ok);
    const stream = `WB_TEST_SVC_DLQ_${process.pid}_${Date.now()}`;
    const eventLog = `${servers}?stream=${stream}`;
    const svc = await startTestService({ eventLog });
    const cli = await openDeadLetterStore(svc.dataDir, eventLog);
    t.after(async () => {
      await cli.close();
      await svc.stop();
      const nc = await connect({ servers });
      const jsm = await nc.jetstreamManager();
      for (const name of [stream, `KV_${stream}_offsets`, `${stream}_DLQ`]) await jsm.streams.delete(name).catch(() => undefined);
      await nc.close();
    });
    assert.equal(svc.service.deadLetters.kind, 'jetstream');
    await svc.service.deadLetters.add({ consumer: 'archiver', offset: 0, payload: new TextEncoder().encode('{}'), error: new Error('x'), attempts: 3 });
    assert.deepEqual(
      (await cli.list()).map((l) => l.id),
      ['archiver@0'],
    );
    const res = await svc.call('/v1/dead-letters', { key: svc.keys.read });
    assert.equal(((await res.json()) as { store: string }).store, 'jetstream');
  });
});
