import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { main } from '../../src/cli/main.js';
import { FileDeadLetterStore, type DeadLetterSummary } from '../../src/serving/pipeline/dead-letters.js';
import { FileEventLog } from '../../src/serving/pipeline/file-log.js';
import { startTestService } from '../helpers/service.js';
import { tempDir } from '../helpers/tmp.js';
import { until } from '../helpers/wait.js';

/**
 * `wb` run in this process (a process of its own costs seconds of start-up), with its output and
 * exit code captured; it awaits without blocking, so a service under test here keeps running.
 */
async function wb(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const saved = { log: console.log, error: console.error, write: process.stdout.write, exitCode: process.exitCode };
  console.log = (...parts: unknown[]) => void (out += `${parts.join(' ')}\n`);
  console.error = (...parts: unknown[]) => void (err += `${parts.join(' ')}\n`);
  process.stdout.write = ((chunk: string | Uint8Array) => ((out += String(chunk)), true)) as typeof process.stdout.write;
  process.exitCode = undefined;
  try {
    await main(['node', 'wb', ...args]);
    return { code: Number(process.exitCode ?? 0), out, err };
  } finally {
    console.log = saved.log;
    console.error = saved.error;
    process.stdout.write = saved.write;
    process.exitCode = saved.exitCode;
  }
}

const enc = (s: string) => new TextEncoder().encode(s);
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

describe('wb dlq', () => {
  it('lists, shows and marks for retry the letters of a data dir, saying when no service will apply them', async () => {
    const dir = tempDir('wb-dlq-cli-');
    const store = await FileDeadLetterStore.open(join(dir, 'dead-letters'));
    const poison = record('e12', 'bad \ud800');
    await store.add({ consumer: 'archiver', offset: 12, payload: enc(poison), error: new Error('Malformed JSON: no low surrogate in string'), attempts: 3 });
    await store.add({ consumer: 'experiments', offset: 3, payload: enc('not json {'), error: new Error('record 3 is not JSON'), attempts: 1 });
    await store.close();

    for (const c of [['dlq'], ['dlq', 'list'], ['dlq', 'show'], ['dlq', 'retry']]) {
      const help = await wb(...c, '--help');
      assert.equal(help.code, 0, help.err);
      assert.match(help.out, new RegExp(`^Usage: wb ${c.join(' ')} `));
    }

    const list = await wb('--data-dir', dir, 'dlq', 'list');
    assert.equal(list.code, 0, list.err);
    assert.match(list.out, /^archiver@12 +open +3 tries .*no low surrogate/m);
    assert.match(list.out, /^experiments@3 +open +1 tries .*not JSON/m);

    const json = await wb('--data-dir', dir, 'dlq', 'list', '--consumer', 'archiver', '--json');
    const letters = JSON.parse(json.out) as DeadLetterSummary[];
    assert.deepEqual(
      letters.map((l) => [l.id, l.consumer, l.offset, l.state, l.attempts]),
      [['archiver@12', 'archiver', 12, 'open', 3]],
    );
    assert.equal('payload' in letters[0]!, false, 'lists leave payloads out');

    const show = await wb('--data-dir', dir, 'dlq', 'show', 'archiver@12');
    assert.equal(show.code, 0, show.err);
    assert.match(show.out, /consumer archiver, log offset 12/);
    assert.match(show.out, /error: Malformed JSON/);
    assert.match(show.out, /"event_id": "e12"/, 'the record, indented');
    const shown = JSON.parse((await wb('--data-dir', dir, 'dlq', 'show', 'archiver@12', '--json')).out) as { payload: string };
    assert.equal(shown.payload, poison, 'the record exactly as stored');
    assert.match(shown.payload, /\\ud800/);

    const badId = await wb('--data-dir', dir, 'dlq', 'show', 'archiver 12');
    assert.equal(badId.code, 2);
    assert.match(badId.err, /^error: "archiver 12" is not a dead-letter id: a dead-letter id is <consumer>@<offset>/);
    const unknown = await wb('--data-dir', dir, 'dlq', 'show', 'archiver@13');
    assert.equal(unknown.code, 1);
    assert.match(unknown.err, /^error: no dead letter archiver@13/);
    const badState = await wb('--data-dir', dir, 'dlq', 'list', '--state', 'closed');
    assert.equal(badState.code, 2);
    assert.match(badState.err, /--state "closed": use one of open, retry-requested, retried-ok, retry-failed/);
    const neither = await wb('--data-dir', dir, 'dlq', 'retry');
    assert.equal(neither.code, 2);
    assert.match(neither.err, /give one letter id, or --all/);

    const retry = await wb('--data-dir', dir, 'dlq', 'retry', '--all', '--consumer', 'archiver');
    assert.equal(retry.code, 0, retry.err);
    assert.match(retry.err, /retry recorded for 1 letter\(s\), but no service is running on .*: .*applied when `wb serve` starts/);
    const after = JSON.parse((await wb('--data-dir', dir, 'dlq', 'list', '--json')).out) as DeadLetterSummary[];
    assert.deepEqual(after.map((l) => [l.id, l.state]).sort(), [
      ['archiver@12', 'retry-requested'],
      ['experiments@3', 'open'],
    ]);
  });

  it('retries through the running service, which hands the record to its consumer again and reports the outcome', async (t) => {
    const dir = tempDir('wb-dlq-svc-');
    // A lone surrogate written straight into the log (as ingest did before it checked Unicode): the archiver cannot store it.
    const log = await FileEventLog.open(join(dir, 'log'));
    await log.append([record('e0'), record('e1', 'bad \ud800'), record('e2')]);
    await log.close();
    const svc = await startTestService({}, dir);
    t.after(() => svc.stop());
    await until('the dead letter', async () => ((await svc.service.deadLetters.list()).length > 0 ? true : undefined), 30_000);

    const list = await wb('--data-dir', dir, 'dlq', 'list');
    assert.match(list.out, /^archiver@1 +open/m);
    const retry = await wb('--data-dir', dir, 'dlq', 'retry', 'archiver@1', '--wait', '20');
    assert.equal(retry.code, 1, 'DuckDB still refuses it');
    assert.match(retry.out, /^archiver@1: failed again: .*surrogate/m);
    const letter = await svc.service.deadLetters.get('archiver@1');
    assert.equal(letter!.state, 'retry-failed');
    assert.equal(letter!.attempts, 4);
  });
});
