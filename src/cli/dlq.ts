import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { dataDir } from '../workbench/config.js';
import { processAlive } from '../workbench/files.js';
import { InputError, NotFoundError } from '../workbench/errors.js';
import {
  DEAD_LETTER_STATES,
  DeadLetterId,
  openDeadLetterStore,
  summarize,
  type DeadLetter,
  type DeadLetterState,
  type DeadLetterStore,
} from '../serving/pipeline/dead-letters.js';
import { intOption } from './main.js';

interface StoreFlags {
  eventLog: string;
}

/**
 * `wb dlq`: the dead-letter store, records a consumer of the service could not apply and set aside.
 * A retry is recorded in the store; the running service's runner of that consumer applies the
 * record alone and records the outcome, which `retry` waits for. The consumers' state lives in the
 * service, so nothing is applied offline: without a running service the retry waits for its start.
 */
export function registerDlq(program: Command): void {
  const dlq = program
    .command('dlq')
    .description('dead letters: records a consumer of the service could not apply, set aside (list, show, retry)')
    .option(
      '--event-log <spec>',
      'the event log the service uses: file (default) or nats://host:4222[?stream=NAME], whose dead letters are in the stream <NAME>_DLQ (env WB_EVENT_LOG)',
      process.env.WB_EVENT_LOG || 'file',
    );

  const withStore = async <T>(run: (store: DeadLetterStore, data: string) => Promise<T>): Promise<T> => {
    const data = dataDir(program.opts().dataDir);
    const store = await openDeadLetterStore(data, dlq.opts<StoreFlags>().eventLog, { warn: (message) => console.error(`warning: ${message}`) });
    try {
      return await run(store, data);
    } finally {
      await store.close();
    }
  };

  dlq
    .command('list')
    .description('dead letters, newest failure first: id, state, attempts, when it last failed and why')
    .option('--consumer <name>', 'only this consumer (archiver, aggregates, monitor, experiments, features, precompute)')
    .option('--state <state>', `only this state: ${DEAD_LETTER_STATES.join(', ')}`)
    .option('--json', 'print JSON')
    .action((flags: { consumer?: string; state?: string; json?: boolean }) =>
      withStore(async (store) => {
        const letters = await store.list({ consumer: flags.consumer, state: state(flags.state) });
        if (flags.json) return void console.log(JSON.stringify(letters.map(summarize), null, 2));
        if (letters.length === 0) return void console.log('no dead letters');
        for (const l of letters) {
          console.log(
            `${l.id.padEnd(28)} ${l.state.padEnd(15)} ${String(l.attempts).padStart(3)} tries  last ${l.lastFailedAt}  ${oneLine(l.error.message, 100)}`,
          );
        }
      }),
    );

  dlq
    .command('show')
    .description('one dead letter: the record as stored in the log, the error with its stack, its history')
    .argument('<id>', 'the letter id, <consumer>@<offset> (from `wb dlq list`)')
    .option('--json', 'print JSON')
    .action((id: string, flags: { json?: boolean }) =>
      withStore(async (store) => {
        const letter = await store.get(letterId(id));
        if (!letter) throw new NotFoundError(`no dead letter ${id} (see \`wb dlq list\`)`);
        if (flags.json) return void console.log(JSON.stringify(letter, null, 2));
        console.log(`${letter.id}: ${letter.state}, ${letter.attempts} tries`);
        console.log(`consumer ${letter.consumer}, log offset ${letter.offset}`);
        console.log(
          `failed first ${letter.firstFailedAt}, last ${letter.lastFailedAt}${letter.retryRequestedAt ? `; retry requested ${letter.retryRequestedAt}` : ''}${letter.retriedAt ? `; retried ${letter.retriedAt}` : ''}`,
        );
        console.log(`error: ${letter.error.message}`);
        if (letter.error.stack) console.log(letter.error.stack.split('\n').slice(1).join('\n'));
        console.log(`record (${letter.encoding === 'utf8' ? 'as stored' : 'not UTF-8, in base64'}):`);
        console.log(prettyPayload(letter));
      }),
    );

  dlq
    .command('retry')
    .description('hand dead letters to their consumer again, each alone, in the running service, and wait for the outcome')
    .argument('[id]', 'the letter id, <consumer>@<offset>')
    .option('--all', 'every letter that is open or whose retry failed')
    .option('--consumer <name>', 'with --all: only this consumer')
    .option('--wait <seconds>', 'how long to wait for the service to apply them (0: do not wait)', intOption('--wait', 0), 15)
    .option('--json', 'print JSON')
    .action((id: string | undefined, flags: { all?: boolean; consumer?: string; wait: number; json?: boolean }) =>
      withStore(async (store, data) => {
        if ((id === undefined) === !flags.all) throw new InputError('give one letter id, or --all (optionally with --consumer)');
        if (id !== undefined && flags.consumer) throw new InputError('--consumer goes with --all; a letter id already names its consumer');
        const targets =
          id !== undefined
            ? [letterId(id)]
            : (await store.list({ consumer: flags.consumer })).filter((l) => l.state === 'open' || l.state === 'retry-failed').map((l) => l.id);
        if (targets.length === 0) return void console.log(flags.json ? '[]' : 'no dead letters to retry');
        for (const target of targets) await store.requestRetry(target);
        const running = serviceRunning(data, dlq.opts<StoreFlags>().eventLog);
        if (running === false) {
          const message = `retry recorded for ${targets.length} letter(s), but no service is running on ${data}: the consumers' state lives in the service, so they are applied when \`wb serve\` starts`;
          if (flags.json)
            console.log(
              JSON.stringify(
                (await Promise.all(targets.map((t) => store.get(t)))).map((l) => summarize(l!)),
                null,
                2,
              ),
            );
          return void console.error(message);
        }
        const letters = await waitForOutcomes(store, targets, flags.wait * 1000);
        if (flags.json) console.log(JSON.stringify(letters.map(summarize), null, 2));
        for (const l of letters) {
          if (flags.json) break;
          if (l.state === 'retried-ok') console.log(`${l.id}: applied`);
          else if (l.state === 'retry-failed') console.log(`${l.id}: failed again: ${oneLine(l.error.message, 200)}`);
          else
            console.log(
              `${l.id}: still waiting for the ${l.consumer} consumer after ${flags.wait} s (it applies a record once it is past its offset; the request stays)`,
            );
        }
        if (letters.some((l) => l.state !== 'retried-ok')) process.exitCode = 1;
      }),
    );
}

/** Polls until every letter left `retry-requested`, or the time is up. */
async function waitForOutcomes(store: DeadLetterStore, ids: string[], ms: number): Promise<DeadLetter[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const letters = (await Promise.all(ids.map((id) => store.get(id)))).filter((l): l is DeadLetter => l !== undefined);
    if (Date.now() >= deadline || letters.every((l) => l.state !== 'retry-requested')) return letters;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Whether a service runs on this data dir: the file event log's LOCK names a live process. With
 * JetStream nothing local says so (undefined): `retry` then waits for the outcome.
 */
function serviceRunning(data: string, eventLog: string): boolean | undefined {
  if (eventLog !== 'file') return undefined;
  let pid: number;
  try {
    pid = Number(readFileSync(join(data, 'log', 'LOCK'), 'utf8').trim());
  } catch {
    return false;
  }
  return Number.isSafeInteger(pid) && pid > 0 && processAlive(pid);
}

function letterId(id: string): string {
  const parsed = DeadLetterId.safeParse(id);
  if (!parsed.success) throw new InputError(`${JSON.stringify(id)} is not a dead-letter id: ${parsed.error.issues[0]!.message}`);
  return parsed.data;
}

function state(value: string | undefined): DeadLetterState | undefined {
  if (value === undefined) return undefined;
  if (!(DEAD_LETTER_STATES as readonly string[]).includes(value))
    throw new InputError(`--state ${JSON.stringify(value)}: use one of ${DEAD_LETTER_STATES.join(', ')}`);
  return value as DeadLetterState;
}

/** The record indented when it is JSON, else as it is. */
function prettyPayload(letter: DeadLetter): string {
  if (letter.encoding !== 'utf8') return letter.payload;
  try {
    return JSON.stringify(JSON.parse(letter.payload), null, 2);
  } catch {
    return letter.payload;
  }
}

const oneLine = (text: string, max: number) => {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
};
