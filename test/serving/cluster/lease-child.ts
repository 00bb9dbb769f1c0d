// A lease holder in its own process, for the tests that kill or freeze one. Settings come from the
// environment (LEASE_URL, LEASE_SCHEMA, LEASE_NAME, LEASE_TTL_MS, LEASE_RENEW_MS); it prints JSON
// lines (acquired, wrote, lost) and takes commands on stdin:
//   write        a fenced write of the current term into fenced_writes
//   pause MS     freezes the event loop for MS (Atomics.wait: timers, sockets and renewals all stop,
//                as in a long GC pause or a SIGSTOP), then at once makes the write the frozen work
//                was about to make, with the token it held before the pause
import { createInterface } from 'node:readline';
import pg from 'pg';
import { Lease, PostgresLeaseStore } from '../../../src/serving/cluster/lease.js';

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const say = (o: object) => process.stdout.write(`${JSON.stringify(o, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`);

async function main(): Promise<void> {
  const schema = env('LEASE_SCHEMA');
  const store = new PostgresLeaseStore(env('LEASE_URL'), { schema });
  const lease = new Lease(store, env('LEASE_NAME'), {
    ttlMs: Number(env('LEASE_TTL_MS')),
    renewEveryMs: Number(env('LEASE_RENEW_MS')),
    onLost: (term, reason) => say({ event: 'lost', token: term.token, reason }),
  });
  // The writer's own connection, opened before any pause so that only the lease can refuse the write.
  const db = new pg.Client({ connectionString: env('LEASE_URL') });
  await db.connect();
  await db.query(`SET search_path TO "${schema}"`);

  const write = async (token: bigint, heldAtStart: boolean) => {
    try {
      await db.query('BEGIN');
      await store.fence(db, lease.name, token);
      await db.query('INSERT INTO fenced_writes (lease, writer, token) VALUES ($1, $2, $3)', [lease.name, 'child', token.toString()]);
      await db.query('COMMIT');
      say({ event: 'wrote', ok: true, token, heldAtStart });
    } catch (err) {
      await db.query('ROLLBACK');
      say({ event: 'wrote', ok: false, token, heldAtStart, code: (err as { code?: string }).code, message: (err as Error).message });
    }
  };

  lease.start();
  const term = await lease.waitUntilHeld(30_000);
  say({ event: 'acquired', token: term.token, holder: lease.holder });

  for await (const line of createInterface({ input: process.stdin })) {
    const [command, arg] = line.trim().split(/\s+/);
    if (command === 'write') await write(term.token, lease.held);
    else if (command === 'pause') {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(arg));
      // Nothing has run since the freeze: `held` is the runner's own judgement, from its clock alone.
      await write(term.token, lease.held);
    }
  }
}

main().catch((err: unknown) => {
  say({ event: 'error', message: (err as Error).message });
  process.exit(1);
});
