import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { connect } from 'nats';
import type { EnrichedEvent } from '../../../src/workbench/event.js';
import { DuckDb } from '../../../src/workbench/duckdb.js';
import { ConflictError, NotFoundError } from '../../../src/workbench/errors.js';
import { sql } from '../../../src/workbench/sql.js';
import { Archiver } from '../../../src/serving/pipeline/archiver.js';
import { ConsumerRunner, type EventConsumer } from '../../../src/serving/pipeline/consumer.js';
import {
  FileDeadLetterStore,
  JetStreamDeadLetterStore,
  payloadBytes,
  type DeadLetter,
  type DeadLetterStore,
} from '../../../src/serving/pipeline/dead-letters.js';
import { FileEventLog } from '../../../src/serving/pipeline/file-log.js';
import { serverAvailable } from '../../helpers/servers.js';
import { tempDir } from '../../helpers/tmp.js';
import { until } from '../../helpers/wait.js';

const enc = (s: string) => new TextEncoder().encode(s);

/**
 * The behaviour every DeadLetterStore must have. `open(name)` opens a handle on the store `name`
 * (the same store each time for the same name, several handles at once allowed, like the CLI beside
 * the service), or returns a string: the reason to skip.
 */
function deadLetterStoreConformance(kind: string, open: (name: string) => Promise<DeadLetterStore | string>): void {
  describe(`DeadLetterStore conformance: ${kind}`, () => {
    const handles: DeadLetterStore[] = [];
    const opened = async (t: TestContext, name: string): Promise<DeadLetterStore | undefined> => {
      const store = await open(name);
      if (typeof store === 'string') {
        t.skip(store);
        return undefined;
      }
      handles.push(store);
      return store;
    };
    after(async () => {
      for (const h of handles) await h.close().catch(() => undefined);
    });

    it('sets a record aside with its consumer, offset, payload and error', async (t) => {
      const store = await opened(t, 'basic');
      if (!store) return;
      assert.deepEqual(await store.list(), []);
      const before = Date.now();
      const { letter, isNew } = await store.add({
        consumer: 'archiver',
        offset: 42,
        payload: enc('{"event_id":"e1","props":{"x":"\\ud800"}}'),
        error: new Error('Malformed JSON: no low surrogate'),
        attempts: 3,
      });
      assert.equal(isNew, true);
      assert.equal(letter.id, 'archiver@42');
      assert.equal(letter.consumer, 'archiver');
      assert.equal(letter.offset, 42);
      assert.equal(letter.payload, '{"event_id":"e1","props":{"x":"\\ud800"}}');
      assert.equal(letter.encoding, 'utf8');
      assert.equal(letter.error.message, 'Malformed JSON: no low surrogate');
      assert.match(letter.error.stack ?? '', /dead-letters\.test/);
      assert.equal(letter.attempts, 3);
      assert.equal(letter.state, 'open');
      assert.ok(Date.parse(letter.firstFailedAt) >= before - 1000 && letter.firstFailedAt === letter.lastFailedAt);
      assert.deepEqual(await store.get('archiver@42'), letter);
      assert.equal(await store.get('archiver@43'), undefined);
      await store.add({ consumer: 'experiments', offset: 7, payload: enc('{}'), error: 'plain string error', attempts: 1 });
      assert.deepEqual(
        (await store.list({ consumer: 'archiver' })).map((l) => l.id),
        ['archiver@42'],
      );
      assert.deepEqual((await store.list({ state: 'open' })).map((l) => l.id).sort(), ['archiver@42', 'experiments@7']);
      assert.equal((await store.get('experiments@7'))!.error.message, 'plain string error');
    });

    it('keeps one letter per consumer and offset, and bytes that are not UTF-8 exactly', async (t) => {
      const store = await opened(t, 'dedupe');
      if (!store) return;
      const bytes = Uint8Array.from([0xff, 0xfe, 0x00, 0x7b]);
      await store.add({ consumer: 'monitor', offset: 5, payload: bytes, error: new Error('first'), attempts: 3 });
      const again = await store.add({ consumer: 'monitor', offset: 5, payload: bytes, error: new Error('second'), attempts: 2 });
      assert.equal(again.isNew, false, 'met again (a replay from a snapshot): not news');
      assert.equal(again.letter.attempts, 5);
      assert.equal(again.letter.error.message, 'second');
      assert.equal(again.letter.encoding, 'base64');
      assert.deepEqual(Buffer.from(payloadBytes(again.letter)), Buffer.from(bytes));
      assert.equal((await store.list()).length, 1);
    });

    it('takes consumer names that are special words of JavaScript objects', async (t) => {
      const store = await opened(t, 'proto');
      if (!store) return;
      for (const consumer of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'prototype']) {
        await store.add({ consumer, offset: 1, payload: enc('{}'), error: new Error(consumer), attempts: 1 });
      }
      assert.deepEqual((await store.list()).map((l) => l.id).sort(), ['__proto__@1', 'constructor@1', 'hasOwnProperty@1', 'prototype@1', 'toString@1']);
      assert.equal((await store.get('__proto__@1'))!.error.message, '__proto__');
      await assert.rejects(store.add({ consumer: 'has space', offset: 1, payload: enc('{}'), error: 'x', attempts: 1 }), /consumer>@<offset>/);
    });

    it('goes through a retry: requested, failed, requested again, applied; never applied twice', async (t) => {
      const store = await opened(t, 'retry');
      if (!store) return;
      await store.add({ consumer: 'archiver', offset: 9, payload: enc('{}'), error: new Error('boom'), attempts: 3 });
      await assert.rejects(store.requestRetry('archiver@10'), NotFoundError);
      const requested = await store.requestRetry('archiver@9');
      assert.equal(requested.state, 'retry-requested');
      assert.ok(requested.retryRequestedAt);
      assert.deepEqual(
        (await store.list({ state: 'retry-requested' })).map((l) => l.id),
        ['archiver@9'],
      );
      const failed = await store.recordRetry('archiver@9', { ok: false, error: new Error('still broken') });
      assert.equal(failed.state, 'retry-failed');
      assert.equal(failed.error.message, 'still broken');
      assert.equal(failed.attempts, 4);
      await store.requestRetry('archiver@9');
      const ok = await store.recordRetry('archiver@9', { ok: true });
      assert.equal(ok.state, 'retried-ok');
      assert.ok(ok.retriedAt);
      await assert.rejects(store.requestRetry('archiver@9'), ConflictError);
      // Failing again later (a rebuild from the log meets it again) is news again.
      const reopened = await store.add({ consumer: 'archiver', offset: 9, payload: enc('{}'), error: new Error('again'), attempts: 1 });
      assert.equal(reopened.isNew, true);
      assert.equal(reopened.letter.state, 'open');
    });

    it('shares the store between handles (the CLI beside the service) and keeps it across reopening', async (t) => {
      const service = await opened(t, 'shared');
      if (!service) return;
      const cli = (await opened(t, 'shared'))!;
      await service.add({ consumer: 'archiver', offset: 1, payload: enc('{"a":1}'), error: new Error('x'), attempts: 3 });
      await service.add({ consumer: 'archiver', offset: 2, payload: enc('{"a":2}'), error: new Error('y'), attempts: 3 });
      assert.deepEqual((await cli.list()).map((l) => l.id).sort(), ['archiver@1', 'archiver@2']);
      await cli.requestRetry('archiver@2');
      // Meanwhile the service records another failure of the other letter: neither change is lost.
      await service.add({ consumer: 'archiver', offset: 1, payload: enc('{"a":1}'), error: new Error('x again'), attempts: 1 });
      assert.deepEqual(
        (await service.list({ state: 'retry-requested' })).map((l) => l.id),
        ['archiver@2'],
      );
      await service.recordRetry('archiver@2', { ok: true });
      assert.equal((await cli.get('archiver@2'))!.state, 'retried-ok');
      const third = (await opened(t, 'shared'))!;
      const letters = await third.list();
      assert.deepEqual(letters.map((l) => [l.id, l.state, l.attempts]).sort(), [
        ['archiver@1', 'open', 4],
        ['archiver@2', 'retried-ok', 4],
      ]);
    });
  });
}

// ---------------------------------------------------------------------------------------------

const storesDir = tempDir('wb-dlq-');
deadLetterStoreConformance('file', async (name) => FileDeadLetterStore.open(join(storesDir, name)));

const servers = 'nats://127.0.0.1:4222';
const streamPrefix = `WB_TEST_DLQ_${process.pid}_${Date.now()}`;
const streams = new Set<string>();
let natsOk: Promise<true | string> | undefined;
after(async () => {
  if (streams.size === 0) return;
  const nc = await connect({ servers });
  const jsm = await nc.jetstreamManager();
  for (const s of streams) await jsm.streams.delete(s).catch(() => undefined);
  await nc.close();
});
deadLetterStoreConformance('jetstream', async (name) => {
  const ok = await (natsOk ??= serverAvailable('NATS JetStream', servers));
  if (ok !== true) return ok;
  const stream = `${streamPrefix}_${name}`;
  streams.add(stream);
  return JetStreamDeadLetterStore.open({ servers, stream });
});

describe('FileDeadLetterStore', () => {
  it('skips and reports a corrupt line, and a line torn by a crash, without losing the others', async () => {
    const dir = join(storesDir, 'corrupt');
    const first = await FileDeadLetterStore.open(dir);
    await first.add({ consumer: 'archiver', offset: 1, payload: enc('{}'), error: new Error('x'), attempts: 1 });
    await first.close();
    const file = join(dir, 'letters.jsonl');
    appendFileSync(file, 'this is not json\n{"op":"retry","id":"bad id","at":"2024-01-01T00:00:00.000Z"}\n{"op":"failed","id":"archiver@2"');
    const warnings: string[] = [];
    const second = await FileDeadLetterStore.open(dir, { warn: (m) => warnings.push(m) });
    await second.add({ consumer: 'archiver', offset: 3, payload: enc('{}'), error: new Error('y'), attempts: 1 });
    assert.deepEqual((await second.list()).map((l) => l.id).sort(), ['archiver@1', 'archiver@3']);
    assert.equal(second.skipped, 3);
    assert.equal(warnings.length, 3);
    assert.match(warnings[0]!, /letters\.jsonl:2 cannot be read/);
    assert.match(warnings[1]!, /letters\.jsonl:3 .*id/);
    assert.match(warnings[2]!, /letters\.jsonl:4 /);
    await second.close();
  });
});

// ---------------------------------------------------------------------------------------------
// The runner: poison records are isolated and set aside, the rest is handled once.

const event = (i: number, over: Partial<EnrichedEvent> = {}): EnrichedEvent => ({
  event_id: `e${i}`,
  time: new Date(Date.UTC(2024, 4, 1, 12, 0, i % 60)).toISOString(),
  user_id: `u${i % 7}`,
  event: 'login',
  props: { n: i },
  dims: { tier: 'free', country: 'GB', device: 'ios', first_seen: '2024-04-01' } as EnrichedEvent['dims'],
  experiments: {},
  received_at: new Date(Date.UTC(2024, 4, 1, 12, 1)).toISOString(),
  ...over,
});

/** Records every event it is handed, all or nothing per batch (as a retried consumer must be), and throws on the poison. */
class Recorder implements EventConsumer {
  readonly seen = new Map<string, number>();
  readonly batches: { first: number; size: number }[] = [];
  broken = true;
  acceptsLateRecords?: boolean;
  constructor(
    readonly name: string,
    private readonly poison: (e: EnrichedEvent) => boolean,
    lateRecords = false,
  ) {
    if (lateRecords) this.acceptsLateRecords = true;
  }
  async handle(events: EnrichedEvent[], first: number): Promise<void> {
    this.batches.push({ first, size: events.length });
    const bad = events.findIndex((e) => this.broken && this.poison(e));
    if (bad >= 0) throw new Error(`cannot apply ${events[bad]!.event_id} at offset ${first + bad}`);
    for (const e of events) this.seen.set(e.event_id, (this.seen.get(e.event_id) ?? 0) + 1);
  }
}

async function setup(t: TestContext, records: (string | Uint8Array)[]) {
  const dir = tempDir('wb-dlq-run-');
  const log = await FileEventLog.open(join(dir, 'log'));
  const store = await FileDeadLetterStore.open(join(dir, 'dead-letters'));
  t.after(async () => {
    await log.close();
    await store.close();
  });
  if (records.length > 0) await log.append(records);
  const letters: DeadLetter[] = [];
  const retried: DeadLetter[] = [];
  const start = async (consumer: EventConsumer | Archiver, batchSize = 1000) => {
    const runner = new ConsumerRunner(log, consumer, {
      batchSize,
      maxWaitMs: 0,
      deadLetters: { store, tries: 3, backoffMs: 5, retryPollMs: 50, onDeadLetter: (l) => letters.push(l), onRetried: (l) => retried.push(l) },
    });
    await runner.start();
    t.after(() => runner.stop());
    return runner;
  };
  return { dir, log, store, letters, retried, start };
}

describe('ConsumerRunner with a dead-letter store', () => {
  it('sets aside the one record a consumer throws on among 1,000, and handles the other 999 exactly once', async (t) => {
    const records = Array.from({ length: 1000 }, (_, i) => JSON.stringify(event(i)));
    const { log, store, letters, start } = await setup(t, records);
    const consumer = new Recorder('test', (e) => e.event_id === 'e617');
    const runner = await start(consumer);
    await until('the consumer to pass the poison', async () => (runner.offset === 1000 ? true : undefined));
    assert.equal(consumer.seen.size, 999);
    assert.ok(
      [...consumer.seen.values()].every((n) => n === 1),
      'every good event handled exactly once',
    );
    assert.equal(consumer.seen.has('e617'), false);
    assert.ok(consumer.batches.length <= 40, `bisecting took ${consumer.batches.length} calls`);
    const handledBatches = consumer.batches.filter((b) => b.first > 617 || b.first + b.size <= 617);
    assert.ok(handledBatches.length <= 20, 'the good records went through in few batches');
    assert.equal(letters.length, 1, 'one alert-worthy letter');
    const [letter] = await store.list();
    assert.equal(letter!.id, 'test@617');
    assert.equal(letter!.offset, 617);
    assert.equal(letter!.payload, records[617]);
    assert.match(letter!.error.message, /cannot apply e617 at offset 617/);
    assert.equal(letter!.attempts, 3);
    await until('the offset past the poison to be committed', async () => ((await log.committed('test')) === 1000 ? true : undefined));
    // New records keep flowing.
    await log.append([JSON.stringify(event(1000))]);
    await until('a later record', async () => (consumer.seen.get('e1000') === 1 ? true : undefined));
  });

  it('sets aside records an event consumer cannot even decode, and goes on', async (t) => {
    const records: (string | Uint8Array)[] = [
      JSON.stringify(event(0)),
      'not json {',
      JSON.stringify(event(2)),
      '[1,2]',
      Uint8Array.from([0xff, 0x00]),
      JSON.stringify(event(5)),
    ];
    const { store, start } = await setup(t, records);
    const consumer = new Recorder('decoder', () => false);
    const runner = await start(consumer);
    await until('all records', async () => (runner.offset === 6 ? true : undefined));
    assert.deepEqual([...consumer.seen.keys()], ['e0', 'e2', 'e5']);
    const letters = await store.list();
    assert.deepEqual(letters.map((l) => l.id).sort(), ['decoder@1', 'decoder@3', 'decoder@4']);
    const byId = new Map(letters.map((l) => [l.id, l]));
    assert.match(byId.get('decoder@1')!.error.message, /record 1 is not JSON/);
    assert.equal(byId.get('decoder@1')!.payload, 'not json {');
    assert.match(byId.get('decoder@3')!.error.message, /not an event object/);
    assert.deepEqual(Buffer.from(payloadBytes(byId.get('decoder@4')!)), Buffer.from([0xff, 0x00]));
  });

  it('applies a retried letter alone once the consumer is fixed, and records a retry that fails again', async (t) => {
    const records = Array.from({ length: 50 }, (_, i) => JSON.stringify(event(i)));
    const { store, retried, start } = await setup(t, records);
    const consumer = new Recorder('late', (e) => e.event_id === 'e20' || e.event_id === 'e30', true);
    const runner = await start(consumer);
    await until('both poisons set aside', async () => (runner.offset === 50 && (await store.list()).length === 2 ? true : undefined));
    await store.requestRetry('late@20');
    await until('the retry to fail', async () => ((await store.get('late@20'))!.state === 'retry-failed' ? true : undefined));
    assert.match((await store.get('late@20'))!.error.message, /cannot apply e20/);
    consumer.broken = false;
    await store.requestRetry('late@20');
    await store.requestRetry('late@30');
    await until('both retries applied', async () => ((await store.list({ state: 'retried-ok' })).length === 2 ? true : undefined));
    assert.equal(consumer.seen.get('e20'), 1);
    assert.equal(consumer.seen.get('e30'), 1);
    assert.deepEqual(
      consumer.batches.slice(-2).sort((a, b) => a.first - b.first),
      [
        { first: 20, size: 1 },
        { first: 30, size: 1 },
      ],
      'each applied alone, at its offset',
    );
    assert.deepEqual(
      retried.map((l) => [l.id, l.state]),
      [
        ['late@20', 'retry-failed'],
        ['late@20', 'retried-ok'],
        ['late@30', 'retried-ok'],
      ],
    );
  });

  it('refuses, with the reason, to retry for a consumer that keeps its position with its state', async (t) => {
    const records = Array.from({ length: 5 }, (_, i) => JSON.stringify(event(i)));
    const { store, start } = await setup(t, records);
    const consumer = new Recorder('stateful', (e) => e.event_id === 'e2');
    const runner = await start(consumer);
    await until('the poison set aside', async () => (runner.offset === 5 ? true : undefined));
    consumer.broken = false;
    await store.requestRetry('stateful@2');
    await until('the refusal', async () => ((await store.get('stateful@2'))!.state === 'retry-failed' ? true : undefined));
    assert.match((await store.get('stateful@2'))!.error.message, /cannot apply a record out of order/);
    assert.equal(consumer.seen.has('e2'), false);
  });

  it('archives everything but a lone-surrogate record, which is set aside, and leaves no staging folder', async (t) => {
    const records = Array.from({ length: 300 }, (_, i) => JSON.stringify(event(i)));
    // Straight into the log, as ingest wrote such events before it checked Unicode: JSON.stringify escapes a lone surrogate.
    records[120] = JSON.stringify(event(120, { props: { note: 'bad \ud800 text' } }));
    assert.match(records[120]!, /\\ud800/);
    const { dir, store, letters, start } = await setup(t, records);
    const lake = join(dir, 'lake');
    // A leftover of a crash mid-batch: removed when the archiver opens.
    mkdirSync(join(lake, '.staging-live', '000000000000-000000000009.tmp'), { recursive: true });
    writeFileSync(join(lake, '.staging-live', '000000000000-000000000009.tmp', 'records.ndjson'), 'x'.repeat(1000));
    const archiver = await Archiver.open(lake);
    assert.deepEqual(readdirSync(join(lake, '.staging-live')), [], 'leftovers removed on start');
    const runner = await start(archiver, 50_000);
    await until('the archiver to pass the poison', async () => (runner.offset === 300 ? true : undefined), 60_000);
    assert.equal(letters.length, 1);
    const [letter] = await store.list();
    assert.equal(letter!.id, 'archiver@120');
    assert.equal(letter!.payload, records[120]);
    assert.match(letter!.error.message, /surrogate/);
    assert.deepEqual(existsSync(join(lake, '.staging-live')) ? readdirSync(join(lake, '.staging-live')) : [], [], 'no staging folder left');
    const db = await DuckDb.open(':memory:');
    t.after(() => db.close());
    const glob = join(lake, 'archive', 'events', 'source=live', '*', '*.parquet');
    const result = await db.query(
      sql`SELECT count(*)::INTEGER AS n, count(DISTINCT event_id)::INTEGER AS d, count(*) FILTER (WHERE event_id = 'e120')::INTEGER AS poison FROM read_parquet(${glob})`,
    );
    const [n, d, poison] = result.columns.map((c) => (c as number[])[0]);
    assert.deepEqual([n, d, poison], [299, 299, 0]);
    const parts = readdirSync(join(lake, 'archive', 'events', 'source=live', 'date=2024-05-01'));
    assert.ok(parts.length <= 20, `${parts.length} files for 299 records`);
    assert.ok(!parts.some((p) => /part-0+120-0+120\./.test(p)));
    // An operator's retry of a record DuckDB still refuses fails again, and leaves nothing behind either.
    await store.requestRetry('archiver@120');
    await until('the retry to fail', async () => ((await store.get('archiver@120'))!.state === 'retry-failed' ? true : undefined));
    assert.deepEqual(readdirSync(join(lake, '.staging-live')), []);
    assert.ok(readFileSync(join(dir, 'dead-letters', 'letters.jsonl'), 'utf8').includes('archiver@120'));
  });
});
