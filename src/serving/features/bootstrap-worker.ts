import type { LogEntry } from '../pipeline/event-log.js';
import type { UserState } from '../../workbench/features/online.js';
import { ArchiveUnusable, computeFromArchive, type ChunkPart, type FromWorker, type LogReader, type ToWorker, type WorkerInput } from './bootstrap.js';
import { StateChunkWriter, stateUnits } from './state-chunks.js';

/**
 * The archive bootstrap's worker process (see bootstrap.ts, which starts it through
 * bootstrap-worker.cjs, at a lower priority): computes the states in DuckDB on its own event loop,
 * reading the log through the service, then hands them over a chunk at a time (state-chunks.ts),
 * when asked. Its heap is its own, so the garbage of turning DuckDB's rows into states is collected
 * here, not in the service's pauses.
 */

// A message the service can no longer take (it stopped while this worker was starting): nothing is
// left to do, and the error is not worth a stack trace on the service's terminal.
const send = (m: FromWorker) => {
  if (!process.connected) process.exit(0);
  process.send!(m, undefined, undefined, (err: Error | null) => err && process.exit(0));
};
// The service stopped, or let this worker go: nothing is left to do.
process.on('disconnect', () => process.exit(0));

/** The service's log, read through the main thread (an EventLog cannot cross threads). */
const pending = new Map<number, { resolve: (value: unknown) => void; reject: (err: Error) => void }>();
let asked = 0;
function ask(m: { kind: 'log-next' } | { kind: 'log-read'; from: number; max: number }): Promise<unknown> {
  const id = asked++;
  send({ ...m, id });
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}
const log: LogReader = {
  next: async () => Number(await ask({ kind: 'log-next' })),
  read: async (from, max) => (await ask({ kind: 'log-read', from, max })) as LogEntry[],
};

let parts: { states: [string, UserState][]; users: string[] } | undefined;
const at: Record<ChunkPart, number> = { states: 0, users: 0 };

const writer = new StateChunkWriter();

/** The next chunk of a part, of about `units` (stateUnits; a user each for the users). */
function take(part: ChunkPart, units: number): void {
  const items = parts![part];
  const from = at[part];
  let to = from;
  for (let counted = 0; to < items.length && (to === from || counted < units); to++) counted += part === 'states' ? stateUnits(parts!.states[to]![1]) : 1;
  at[part] = to;
  const { texts, numbers } = part === 'states' ? writer.states(parts!.states.slice(from, to)) : writer.users(parts!.users.slice(from, to));
  send({ kind: 'chunk', part, texts, numbers, more: to < items.length });
}

process.on('message', (m: ToWorker) => {
  if (m.kind === 'start') return start(m.input);
  if (m.kind === 'take') return take(m.part, m.units);
  const waiting = pending.get(m.id);
  pending.delete(m.id);
  if (m.error !== undefined) waiting?.reject(new Error(`reading the event log: ${m.error}`));
  else waiting?.resolve(m.value);
});

/** The one bootstrap this worker does. */
function start(input: WorkerInput): void {
  computeFromArchive(input, log).then(
    ({ states, users, ...computed }) => {
      parts = { states: [...states], users: [...users] };
      send({ kind: 'computed', ...computed });
    },
    (err: unknown) => send({ kind: 'failed', unusable: err instanceof ArchiveUnusable, message: err instanceof Error ? err.message : String(err) }),
  );
}

// Loaded: ready for its work (a spare waits here until a bootstrap takes it).
send({ kind: 'ready' });
