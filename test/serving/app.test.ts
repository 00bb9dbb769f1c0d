import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { allRoutes } from '../../src/serving/app.js';
import { event, startTestService, type TestService } from '../helpers/service.js';

describe('the service over HTTP', () => {
  let t: TestService;
  before(async () => {
    t = await startTestService({ ingest: { maxEvents: 100 }, bodyLimitBytes: 64 * 1024 });
  });
  after(async () => {
    await t?.stop();
  });

  it('answers health and readiness without a key', async () => {
    // Alone, the instance runs every singleton (embedded leases, taken at start).
    assert.deepEqual(await (await t.call('/healthz')).json(), {
      status: 'ok',
      instance: t.service.instanceId,
      singletons: { 'wb:scheduler': true, 'wb:decider': true, 'wb:archiver': true, 'wb:monitor': true },
    });
    assert.match(t.service.instanceId, /^.+:\d+:[0-9a-f]{4}$/);
    assert.deepEqual(await (await t.call('/readyz')).json(), { status: 'ready' });
  });

  it('refuses a missing, wrong or under-scoped key with 401 or 403 and a reason', async () => {
    const none = await t.post('/v1/events', [event('a1')], '');
    assert.equal(none.status, 401);
    assert.equal(((await none.json()) as { error: { code: string } }).error.code, 'unauthorized');
    const wrong = await t.post('/v1/events', [event('a1')], `${t.keys.ingest.slice(0, -2)}xx`);
    assert.equal(wrong.status, 401);
    const readOnly = await t.post('/v1/events', [event('a1')], t.keys.read);
    assert.equal(readOnly.status, 403);
    assert.match(((await readOnly.json()) as { error: { message: string } }).error.message, /lacks the ingest scope/);
    const viaHeader = await t.call('/v1/log', { headers: { 'x-api-key': t.keys.read } });
    assert.equal(viaHeader.status, 200);
    assert.equal((await t.post('/v1/events', [event('a0')], t.keys.admin)).status, 200, 'admin includes ingest');
  });

  it('accepts the good events of a batch and reports each bad one by index', async () => {
    const res = await t.post('/v1/events', [
      event('b1'),
      event('b2', { time: 'yesterday' }),
      event('b3', { event: 'Not Snake' }),
      event('b4', { time: new Date(Date.now() + 3_600_000).toISOString() }),
      event('b5', { time: '2001-01-01T00:00:00Z' }),
      { nonsense: true },
      event('b6', { user_id: 'u-new', props: { country: 'DE', device: 'android' } }),
    ]);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { accepted: number; rejected: { index: number; reason: string }[] };
    assert.equal(body.accepted, 2);
    assert.deepEqual(
      body.rejected.map((r) => r.index),
      [1, 2, 3, 4, 5],
    );
    assert.match(body.rejected[0]!.reason, /^time: Invalid ISO datetime/);
    assert.match(body.rejected[1]!.reason, /^event: event names are lower_snake_case/);
    assert.match(body.rejected[2]!.reason, /is in the future/);
    assert.match(body.rejected[3]!.reason, /is older than 30 days/);
    assert.match(body.rejected[4]!.reason, /^event_id: /);
  });

  it('takes NDJSON, rejecting a broken line by its index', async () => {
    const ndjson = `${JSON.stringify(event('n1'))}\n{broken\n\n${JSON.stringify(event('n2'))}\n`;
    const res = await t.call('/v1/events', { method: 'POST', key: t.keys.ingest, body: ndjson, headers: { 'content-type': 'application/x-ndjson' } });
    const body = (await res.json()) as { accepted: number; rejected: { index: number; reason: string }[] };
    assert.equal(body.accepted, 2);
    assert.deepEqual(body.rejected, [{ index: 1, reason: body.rejected[0]!.reason }]);
    assert.match(body.rejected[0]!.reason, /^line 2 is not valid JSON/);
  });

  it('makes retries idempotent: an event sent twice is appended once', async () => {
    const before = await t.service.log.next();
    const first = (await (await t.post('/v1/events', [event('r1'), event('r2')])).json()) as { accepted: number };
    const again = (await (await t.post('/v1/events', [event('r1'), event('r2'), event('r3'), event('r3')])).json()) as { accepted: number; duplicates: number };
    assert.equal(first.accepted, 2);
    assert.deepEqual([again.accepted, again.duplicates], [1, 3]);
    const concurrent = await Promise.all([t.post('/v1/events', [event('r4')]), t.post('/v1/events', [event('r4')])]);
    const bodies = (await Promise.all(concurrent.map((r) => r.json()))) as { accepted: number }[];
    assert.equal(
      bodies.reduce((s, b) => s + b.accepted, 0),
      1,
      'two concurrent sends of one event append it once',
    );
    assert.equal((await t.service.log.next()) - before, 4);
  });

  it('enriches events with the user dimensions, creating unknown users on their first event', async () => {
    await t.post('/v1/events', [event('d1', { user_id: 'u-dims', props: { country: 'FR', device: 'web' } })]);
    await t.post('/v1/events', [event('d2', { user_id: 'u-dims', props: { country: 'US', device: 'ios' } })]);
    const entries = await t.service.log.read(0, 10_000);
    const mine = entries.map((e) => JSON.parse(new TextDecoder().decode(e.payload))).filter((e) => e.user_id === 'u-dims');
    assert.equal(mine.length, 2);
    for (const e of mine) {
      assert.deepEqual(
        { ...e.dims, first_seen: undefined },
        { country: 'FR', device: 'web', tier: 'free', first_seen: undefined },
        'dims come from the user, not the event',
      );
      assert.ok(Date.parse(e.received_at) > 0);
      assert.deepEqual(e.experiments, {});
    }
  });

  it('answers malformed bodies, oversized batches and bodies, and other media types with a clear 4xx', async () => {
    const malformed = await t.call('/v1/events', {
      method: 'POST',
      key: t.keys.ingest,
      body: '[{"event_id":',
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(malformed.status, 400);
    assert.equal(((await malformed.json()) as { error: { code: string } }).error.code, 'malformed_json');
    const tooMany = await t.post(
      '/v1/events',
      Array.from({ length: 101 }, (_, i) => event(`m${i}`)),
    );
    assert.equal(tooMany.status, 400);
    assert.match(((await tooMany.json()) as { error: { message: string } }).error.message, /holds 101 events; the limit is 100/);
    const huge = await t.post('/v1/events', [event('h1', { props: { blob: 'x'.repeat(70 * 1024) } })]);
    assert.equal(huge.status, 413);
    const text = await t.call('/v1/events', { method: 'POST', key: t.keys.ingest, body: 'hello', headers: { 'content-type': 'text/plain' } });
    assert.equal(text.status, 415);
    const empty = await t.call('/v1/events', { method: 'POST', key: t.keys.ingest, headers: { 'content-type': 'application/json' } });
    assert.equal(empty.status, 400);
    assert.equal((await t.call('/nowhere')).status, 404);
    assert.equal(((await (await t.call('/healthz')).json()) as { status: string }).status, 'ok', 'the service is still up');
  });

  it('describes every route it serves in its OpenAPI document, and no other', async () => {
    const doc = (await (await t.call('/v1/openapi.json')).json()) as { openapi: string; paths: Record<string, Record<string, unknown>> };
    assert.equal(doc.openapi, '3.1.0');
    const documented = Object.entries(doc.paths)
      .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`))
      .sort();
    // The server's listener serves POST /v1/predict itself and hands the rest to the Express app.
    const { app } = (
      t.service.server as unknown as { _events: { request: { app: { router: { stack: { route?: { path: string; methods: Record<string, boolean> } }[] } } } } }
    )._events.request;
    const served = app.router.stack
      .filter((l) => l.route)
      .flatMap((l) => Object.keys(l.route!.methods).map((m) => `${m.toUpperCase()} ${l.route!.path.replace(/:([A-Za-z_]+)/g, '{$1}')}`))
      .sort();
    assert.deepEqual(documented, served);
    assert.ok(served.length >= 5);
    const post = doc.paths['/v1/events']!.post as { 'x-required-scope': string; requestBody: { content: Record<string, unknown> } };
    assert.equal(post['x-required-scope'], 'ingest');
    assert.deepEqual(Object.keys(post.requestBody.content), ['application/json', 'application/x-ndjson']);
    void allRoutes;
  });

  it('exposes low-cardinality Prometheus metrics to a read key', async () => {
    assert.equal((await t.call('/metrics')).status, 401);
    await t.post('/v1/events', [event('metric-1', { user_id: 'u-metrics-secret', props: { country: 'NL', device: 'web' } })]);
    const deadline = Date.now() + 10_000;
    let text = '';
    while (Date.now() < deadline) {
      text = await (await t.call('/metrics', { key: t.keys.read })).text();
      if (/wb_events_total\{event="login",country="NL",device="web"\} 1/.test(text)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(text, /wb_events_total\{event="login",country="NL",device="web"\} 1/);
    assert.match(text, /wb_ingest_seconds_bucket\{le="0.005"\}/);
    assert.match(text, /wb_ingest_batch_events_count \d+/);
    assert.match(text, /wb_consumer_lag_events\{consumer="archiver"\} \d+/);
    assert.match(text, /wb_http_requests_total\{method="POST",route="\/v1\/events",status="200"\} \d+/);
    assert.match(text, /wb_http_requests_total\{method="GET",route="unmatched",status="404"\} \d+/);
    assert.doesNotMatch(text, /u-metrics-secret|user_id/, 'user ids never become labels');
  });

  it('answers a bad query parameter with a 400 naming it', async () => {
    const res = await t.call('/v1/aggregates?window=5m', { key: t.keys.read });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'bad_query');
    assert.match(body.error.message, /^query parameter window: /);
    assert.equal((await t.call('/v1/alerts?since=yesterday', { key: t.keys.read })).status, 400);
  });

  it('shows the log and each consumer with its lag', async () => {
    const res = (await (await t.call('/v1/log', { key: t.keys.read })).json()) as { kind: string; next: number; consumers: { name: string; lag: number }[] };
    assert.equal(res.kind, 'file');
    assert.deepEqual(res.consumers.map((c) => c.name).sort(), ['aggregates', 'archiver', 'experiments', 'features', 'metrics']);
    for (const c of res.consumers) assert.ok(c.lag >= 0 && c.lag <= res.next);
  });
});
