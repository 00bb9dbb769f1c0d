import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command } from 'commander';
import { appSource, retailSource } from '../../src/app/replay.js';
import { simulateHistory } from '../../src/app/simulator.js';
import { registerReplay, ReplayError, runReplay, type RunReplayOptions } from '../../src/cli/replay.js';
import type { EnrichedEvent } from '../../src/workbench/event.js';
import { countryCode } from '../../src/workbench/countries.js';
import { InputError } from '../../src/workbench/errors.js';
import { startTestService, type TestService } from '../helpers/service.js';

const FIXTURE = join(__dirname, '..', 'fixtures', 'retail-small.csv');
const SIM = { users: 30, days: 3, seed: 5 };
const RETAIL_EVENTS = 5; // the fixture's loadable lines
const TOTAL = RETAIL_EVENTS + simulateHistory(SIM).events.length;

const sources = () => [retailSource({ file: FIXTURE }), appSource(SIM)];

async function logEntries(t: TestService, from: number): Promise<EnrichedEvent[]> {
  const out: EnrichedEvent[] = [];
  const decoder = new TextDecoder();
  for (let offset = from; ;) {
    const entries = await t.service.log.read(offset, 1000);
    if (entries.length === 0) return out;
    for (const e of entries) out.push(JSON.parse(decoder.decode(e.payload)) as EnrichedEvent);
    offset = entries.at(-1)!.offset + 1;
  }
}

/** A fake service that answers each request with the next of `statuses` (then 200). */
async function flakyServer(statuses: number[]): Promise<{ url: string; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const status = statuses[hits++] ?? 200;
      res.writeHead(status, { 'content-type': 'application/json' });
      const n = body.split('\n').filter((l) => l.trim()).length;
      res.end(JSON.stringify(status === 200 ? { accepted: n, duplicates: 0, rejected: [] } : { error: { code: 'unavailable', message: 'try later' } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, hits: () => hits, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe('wb replay against a running service', () => {
  let t: TestService;
  before(async () => {
    t = await startTestService();
  });
  after(async () => {
    await t.stop();
  });
  const replay = (over: Partial<RunReplayOptions> = {}) =>
    runReplay({ url: t.service.url, key: t.keys.ingest, sources: sources(), speed: 5_000_000, batch: 50, ...over });

  it('sends the retail log and the app through ingest: the log grows by exactly the events accepted', async () => {
    const start = await t.service.log.next();
    const summary = await replay();
    assert.equal(summary.accepted, TOTAL);
    assert.deepEqual([summary.sent, summary.duplicates, summary.rejected, summary.interrupted], [TOTAL, 0, 0, false]);
    assert.equal(summary.dates.retail, '2010-12-03');
    assert.equal(summary.dates.app, '2025-01-03');
    assert.equal((await t.service.log.next()) - start, summary.accepted);

    const logged = await logEntries(t, start);
    const shop = logged.find((e) => e.event_id === 'retail-536373-1')!;
    assert.equal(shop.user_id, 'retail-12583');
    assert.equal(shop.props.original_time, '2010-12-02T10:00:00.000Z');
    assert.ok(Math.abs(Date.parse(shop.time) - Date.now()) < 60_000, 'stamped with the wall clock');
    assert.equal(shop.dims.country, 'IE', "the user is created with the shop's country, as its ISO code");
    assert.equal(new Set(logged.map((e) => e.event_id)).size, TOTAL);
  });

  it('adds nothing when the same replay runs again (all duplicates), and adds everything again under a --run tag', async () => {
    const start = await t.service.log.next();
    const again = await replay();
    assert.deepEqual([again.sent, again.accepted, again.duplicates], [TOTAL, 0, TOTAL]);
    assert.equal(await t.service.log.next(), start);

    const tagged = await replay({ run: 'second' });
    assert.deepEqual([tagged.accepted, tagged.duplicates], [TOTAL, 0]);
    assert.equal((await t.service.log.next()) - start, TOTAL);
    const logged = await logEntries(t, start);
    assert.ok(logged.every((e) => e.event_id.startsWith('second-') && e.user_id.startsWith('second-')));
  });

  it('gives the dashboard one series per country: the retail log and the app both speak ISO codes', async () => {
    await replay({ run: 'dims' });
    const end = await t.service.log.next();
    let body: { position: number; points: { event: string; value: string }[] } = { position: 0, points: [] };
    for (let i = 0; i < 200 && body.position < end; i++) {
      await sleep(50);
      body = (await (await t.call('/v1/aggregates?window=1h&dimension=country', { key: t.keys.read })).json()) as typeof body;
    }
    assert.ok(body.position >= end, `the aggregates reached ${body.position} of ${end}`);
    const countries = [...new Set(body.points.map((p) => p.value))].sort();
    assert.deepEqual(
      countries.filter((c) => countryCode(c) !== c),
      [],
      'every series is an ISO code, none a name',
    );
    for (const c of ['GB', 'IE', 'US', 'DE']) assert.ok(countries.includes(c), `${c} in ${countries.join(', ')}`);
    const gb = new Set(body.points.filter((p) => p.value === 'GB').map((p) => p.event));
    assert.ok(gb.has('purchase') && gb.has('login'), 'the shop and the app both count under GB');
  });

  it('stops at --max-events', async () => {
    const summary = await replay({ run: 'capped', maxEvents: 42, concurrency: 3, batch: 10 });
    assert.equal(summary.accepted, 42);
  });

  it('says what is wrong with a bad key, a key without the ingest scope, or no key', async () => {
    const start = await t.service.log.next();
    await assert.rejects(replay({ key: 'wb_not-a-key', run: 'bad' }), (err: unknown) => {
      assert.ok(err instanceof ReplayError);
      assert.equal(err.httpStatus, 401);
      assert.equal(err.serverCode, 'unauthorized');
      assert.match(
        err.message,
        /refused the replay \(401 unauthorized\): the API key is not valid.*--key or WB_KEY.*wb keys create --name replay --scope ingest/,
      );
      return true;
    });
    await assert.rejects(
      replay({ key: t.keys.read, run: 'bad' }),
      (err: unknown) => err instanceof ReplayError && err.httpStatus === 403 && /lacks the ingest scope/.test(err.message),
    );
    await assert.rejects(
      replay({ key: '' }),
      (err: unknown) => err instanceof InputError && /no API key: pass --key <key> or set WB_KEY.*keys create --name replay --scope ingest/.test(err.message),
    );
    assert.equal(await t.service.log.next(), start);
  });

  it('runs as `wb replay` with its flags', async () => {
    const start = await t.service.log.next();
    const program = new Command('wb').exitOverride();
    registerReplay(program);
    const saved = process.env.WB_KEY;
    process.env.WB_KEY = t.keys.ingest;
    try {
      await program.parseAsync([
        'node',
        'wb',
        'replay',
        '--url',
        t.service.url,
        '--source',
        'retail',
        '--retail-file',
        FIXTURE,
        '--speed',
        'max',
        '--run',
        'cli',
      ]);
    } finally {
      if (saved === undefined) delete process.env.WB_KEY;
      else process.env.WB_KEY = saved;
    }
    assert.equal((await t.service.log.next()) - start, RETAIL_EVENTS);

    const noKey = new Command('wb').exitOverride();
    registerReplay(noKey);
    delete process.env.WB_KEY;
    try {
      await assert.rejects(
        noKey.parseAsync(['node', 'wb', 'replay', '--url', t.service.url]),
        (err: unknown) => err instanceof InputError && /no API key/.test(err.message),
      );
    } finally {
      if (saved !== undefined) process.env.WB_KEY = saved;
    }
  });
});

describe('wb replay ordering', () => {
  it("applies each user's events in order, with requests in flight at once (a user is created from its first event)", async () => {
    // The service applies requests in the order they finish: the first one is held, so a later
    // request overtakes it, as two requests on two connections may.
    const applied: { user_id: string; props: { original_time: string } }[] = [];
    let requests = 0;
    let concurrent = 0;
    let mostConcurrent = 0;
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        const events = body
          .split('\n')
          .filter((l) => l.trim())
          .map((l) => JSON.parse(l) as (typeof applied)[number]);
        mostConcurrent = Math.max(mostConcurrent, ++concurrent);
        setTimeout(
          () => {
            concurrent--;
            applied.push(...events);
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ accepted: events.length, duplicates: 0, rejected: [] }));
          },
          requests++ === 0 ? 300 : 5,
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const summary = await runReplay({ url, key: 'k', sources: [appSource(SIM)], speed: Infinity, batch: 20, concurrency: 3 });
      assert.equal(summary.accepted, simulateHistory(SIM).events.length);
      assert.equal(applied.length, summary.accepted);
      assert.ok(mostConcurrent > 1, `requests were in flight together (at most ${mostConcurrent})`);
      const byUser = new Map<string, string[]>();
      for (const e of applied) byUser.set(e.user_id, [...(byUser.get(e.user_id) ?? []), e.props.original_time]);
      const outOfOrder = [...byUser].filter(([, times]) => times.some((t, i) => i > 0 && t < times[i - 1]!)).map(([u]) => u);
      assert.deepEqual(outOfOrder, [], 'no user has an event applied before an earlier one');
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('wb replay retries', () => {
  it('retries a 5xx with backoff and succeeds', async () => {
    const fake = await flakyServer([503, 500]);
    try {
      const summary = await runReplay({ url: fake.url, key: 'k', sources: [retailSource({ file: FIXTURE })], speed: Infinity, backoffMs: 1, concurrency: 1 });
      assert.deepEqual([summary.accepted, summary.retries, summary.requests, fake.hits()], [RETAIL_EVENTS, 2, 3, 3]);
    } finally {
      await fake.close();
    }
  });

  it('gives up after 5 retries with the last answer', async () => {
    const fake = await flakyServer([503, 503, 503, 503, 503, 503, 503]);
    try {
      await assert.rejects(
        runReplay({ url: fake.url, key: 'k', sources: [retailSource({ file: FIXTURE })], speed: Infinity, backoffMs: 1 }),
        (err: unknown) => err instanceof ReplayError && /503 unavailable: try later \(gave up after 6 attempts\)/.test(err.message),
      );
      assert.equal(fake.hits(), 6);
    } finally {
      await fake.close();
    }
  });

  it('names an unreachable service', async () => {
    const fake = await flakyServer([]);
    await fake.close();
    await assert.rejects(
      runReplay({ url: fake.url, key: 'k', sources: [retailSource({ file: FIXTURE })], speed: Infinity, backoffMs: 1, retries: 1 }),
      (err: unknown) => err instanceof ReplayError && /cannot reach the service at .*ECONNREFUSED.*wb serve.*after 2 attempts/.test(err.message),
    );
  });
});
