import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { after, before, beforeEach, describe, it, type TestContext } from 'node:test';
import pg from 'pg';
import { EmbeddedLeaseStore, FencedError, Lease, PostgresLeaseStore, type LeaseStore, type LeaseTerm } from '../../../src/serving/cluster/lease.js';
import { postgresTestSchema, storeUnderTest } from '../../helpers/servers.js';
import { sleep, stretch, until } from '../../helpers/wait.js';

const unique = (what: string) => `${what}-${randomUUID().slice(0, 8)}`;

/** What every LeaseStore must do, driven directly (no runner): the semantics the runner relies on. */
function leaseStoreConformance(name: string, open: () => Promise<LeaseStore | string>): void {
  describe(`LeaseStore conformance: ${name}`, () => {
    const subject = storeUnderTest(open);

    it('gives a free lease to one holder, renews it with the same token, refuses it to another while live', async () => {
      const lease = unique('free');
      const a = await subject.store.acquire(lease, 'A', 5_000);
      assert.ok(a);
      assert.equal((await subject.store.acquire(lease, 'A', 5_000))?.token, a.token);
      assert.equal(await subject.store.acquire(lease, 'B', 5_000), undefined);
      await subject.store.check(lease, a.token);
      await assert.rejects(subject.store.check(lease, a.token + 1n), FencedError);
    });

    it('hands an expired lease to the next holder with a larger token and fences the old one', async () => {
      const lease = unique('expiry');
      const a = (await subject.store.acquire(lease, 'A', 150))!;
      await sleep(300);
      await assert.rejects(subject.store.check(lease, a.token), /the term has expired/);
      const b = (await subject.store.acquire(lease, 'B', 5_000))!;
      assert.ok(b.token > a.token, `${b.token} > ${a.token}`);
      assert.equal(await subject.store.acquire(lease, 'A', 5_000), undefined, 'the old holder cannot renew');
      await assert.rejects(subject.store.check(lease, a.token), (err: unknown) => err instanceof FencedError && /current token is/.test(err.message));
      await subject.store.check(lease, b.token);
    });

    it('starts a new term (a new token) when the same holder comes back after its lease expired', async () => {
      const lease = unique('again');
      const first = (await subject.store.acquire(lease, 'A', 150))!;
      await sleep(300);
      const second = (await subject.store.acquire(lease, 'A', 5_000))!;
      assert.ok(second.token > first.token);
    });

    it('releases only for the holder and token that have it, tells listeners, and lets the next holder in at once', async () => {
      const lease = unique('release');
      const heard: string[] = [];
      const stop = subject.store.onRelease((n) => heard.push(n));
      const a = (await subject.store.acquire(lease, 'A', 60_000))!;
      assert.equal(await subject.store.release(lease, 'B', a.token), false);
      assert.equal(await subject.store.release(lease, 'A', a.token + 1n), false);
      assert.equal(await subject.store.acquire(lease, 'B', 5_000), undefined);
      await sleep(300); // the LISTEN connection of the PostgreSQL store starts on the first subscription
      assert.equal(await subject.store.release(lease, 'A', a.token), true);
      await assert.rejects(subject.store.check(lease, a.token), FencedError);
      const b = (await subject.store.acquire(lease, 'B', 5_000))!;
      assert.ok(b.token > a.token);
      await until('the release notification', async () => (heard.includes(lease) ? true : undefined), 5_000);
      stop();
    });

    it('gives a lease to exactly one of many holders racing for it', async () => {
      const lease = unique('race');
      const grants = await Promise.all(Array.from({ length: 12 }, (_, i) => subject.store.acquire(lease, `H${i}`, 5_000)));
      assert.equal(grants.filter(Boolean).length, 1);
    });

    it('refuses a lease name that is not a short printable identifier', async () => {
      await assert.rejects(subject.store.acquire("x'; DROP TABLE wb_leases; --", 'A', 1_000));
      await assert.rejects(subject.store.acquire('', 'A', 1_000));
    });
  });
}

leaseStoreConformance('embedded', async () => new EmbeddedLeaseStore());

const postgres = postgresTestSchema('wb_lease');
let url = '';
let schema = '';
const openPostgres = () =>
  postgres.open(async (u, s) => {
    url = u;
    schema = s;
    const store = new PostgresLeaseStore(u, { schema: s });
    await store.migrate();
    return store;
  });
leaseStoreConformance('PostgreSQL', openPostgres);

/** Samples `held` of every runner until `ms` have passed; fails if two ever hold at once. */
async function neverTwo(runners: readonly Lease[], ms: number): Promise<number> {
  const end = performance.now() + ms;
  let samples = 0;
  while (performance.now() < end) {
    const holders = runners.filter((r) => r.held).length;
    assert.ok(holders <= 1, `${holders} runners hold the lease at once`);
    samples++;
    await sleep(10);
  }
  return samples;
}

describe('Lease runner on PostgreSQL', () => {
  let skipped: string | undefined;
  const stores: PostgresLeaseStore[] = [];
  const children = new Set<ChildProcess>();
  const runners: Lease[] = [];
  /** A runner on its own store; stopped when the suite ends even if its test failed. */
  const runner = (name: string, options: ConstructorParameters<typeof Lease>[2]) => {
    const lease = new Lease(instance(), name, options);
    runners.push(lease);
    return lease.start();
  };
  /** One store per simulated instance: its own pool and LISTEN connection, as in separate processes. */
  const instance = () => {
    const store = new PostgresLeaseStore(url, { schema });
    stores.push(store);
    return store;
  };
  before(async () => {
    const opened = await openPostgres();
    if (typeof opened === 'string') skipped = opened;
    else {
      await opened.close();
      const db = new pg.Client({ connectionString: url });
      await db.connect();
      await db.query(
        `CREATE TABLE IF NOT EXISTS "${schema}".fenced_writes (lease TEXT NOT NULL, writer TEXT NOT NULL, token BIGINT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())`,
      );
      await db.end();
    }
  });
  beforeEach((t) => {
    if (skipped) (t as TestContext).skip(skipped);
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await Promise.all(runners.map((r) => r.stop()));
    await Promise.all(stores.map((s) => s.close()));
  });

  /** A holder in a child process (./lease-child.ts), with its JSON lines as a queue to await. */
  async function holderProcess(name: string, ttlMs: number, renewMs: number) {
    const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'lease-child.ts')], {
      env: { ...process.env, LEASE_URL: url, LEASE_SCHEMA: schema, LEASE_NAME: name, LEASE_TTL_MS: String(ttlMs), LEASE_RENEW_MS: String(renewMs) },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    children.add(child);
    const lines: Record<string, string | boolean>[] = [];
    createInterface({ input: child.stdout! }).on('line', (l) => lines.push(JSON.parse(l) as Record<string, string | boolean>));
    const next = (event: string, timeoutMs = 30_000) =>
      until(
        `the child's "${event}"`,
        async () => {
          const i = lines.findIndex((l) => l.event === event || l.event === 'error');
          if (i < 0) return undefined;
          const [line] = lines.splice(i, 1);
          if (line!.event === 'error') throw new Error(`the lease child failed: ${String(line!.message)}`);
          return line!;
        },
        timeoutMs,
      );
    const acquired = await next('acquired');
    return { child, next, token: BigInt(acquired.token as string), send: (command: string) => child.stdin!.write(`${command}\n`) };
  }

  async function fencedWrite(store: PostgresLeaseStore, name: string, token: bigint, writer: string): Promise<void> {
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      await db.query('BEGIN');
      await store.fence(db, name, token);
      await db.query(`INSERT INTO "${schema}".fenced_writes (lease, writer, token) VALUES ($1, $2, $3)`, [name, writer, token.toString()]);
      await db.query('COMMIT');
    } catch (err) {
      await db.query('ROLLBACK');
      throw err;
    } finally {
      await db.end();
    }
  }

  async function writesOf(name: string, token: bigint): Promise<string[]> {
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    const { rows } = await db.query(`SELECT writer FROM "${schema}".fenced_writes WHERE lease = $1 AND token = $2 ORDER BY at`, [name, token.toString()]);
    await db.end();
    return rows.map((r: { writer: string }) => r.writer);
  }

  it('lets only one of two runners hold a name, and keeps it there while the holder renews', async () => {
    const name = unique('one');
    const acquired: string[] = [];
    const a = runner(name, { ttlMs: 2_400, onAcquired: () => acquired.push('a') });
    const b = runner(name, { ttlMs: 2_400, onAcquired: () => acquired.push('b') });
    await Promise.race([a.waitUntilHeld(10_000), b.waitUntilHeld(10_000)]);
    // Several ttls: only renewals keep the lease, and the one holder never changes.
    const samples = await neverTwo([a, b], 5_000);
    assert.ok(samples > 50);
    assert.deepEqual(acquired.length, 1, `acquired by ${acquired.join(', ')}`);
    const holder = a.held ? a : b;
    assert.ok(holder.held && holder.token !== undefined);
    await holder.check();
    await a.stop();
    await b.stop();
  });

  it("runs a singleton's work only while held, and hands a term's token and abort signal to it", async () => {
    const name = unique('work');
    const lost: string[] = [];
    const a = runner(name, { ttlMs: 1_500, onLost: (_t, reason) => lost.push(reason) });
    const term = await a.waitUntilHeld(10_000);
    const b = runner(name, { ttlMs: 1_500 });
    await sleep(200);
    assert.equal(await b.ifHeld(() => 'ran'), undefined);
    let seen: LeaseTerm | undefined;
    assert.equal(await a.ifHeld((t) => ((seen = t), 'ran')), 'ran');
    assert.equal(seen?.token, term.token);
    assert.equal(term.signal.aborted, false);
    await a.stop();
    assert.equal(term.signal.aborted, true, 'the term is over once released');
    assert.deepEqual(lost, ['released']);
    assert.equal(await a.ifHeld(() => 'ran'), undefined);
    await b.stop();
  });

  it('hands over at once on a clean release (a notification, not the next poll), with a larger token', async () => {
    const name = unique('release');
    // Renewals 5 s apart: a handover in well under that is the release notification's doing.
    const a = runner(name, { ttlMs: 15_000, renewEveryMs: 5_000 });
    const first = await a.waitUntilHeld(10_000);
    const b = runner(name, { ttlMs: 15_000, renewEveryMs: 5_000 });
    await sleep(500); // b has tried once and is waiting
    assert.equal(b.held, false);
    const released = performance.now();
    await a.stop();
    const second = await b.waitUntilHeld(10_000);
    const handover = performance.now() - released;
    assert.ok(second.token > first.token);
    assert.ok(handover < 1_000 * stretch(), `handover took ${handover.toFixed(0)} ms`);
    console.log(`# clean release handover: ${handover.toFixed(0)} ms (polling alone: up to 5000 ms)`);
    await assert.rejects(fencedWrite(instance(), name, first.token, 'old'), FencedError);
    await fencedWrite(instance(), name, second.token, 'new');
    await b.stop();
  });

  it('gives strictly increasing tokens across a chain of holders', async () => {
    const name = unique('chain');
    const tokens: bigint[] = [];
    for (let i = 0; i < 5; i++) {
      const lease = runner(name, { ttlMs: 2_000 });
      tokens.push((await lease.waitUntilHeld(10_000)).token);
      await lease.stop();
    }
    for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i]! > tokens[i - 1]!, tokens.join(' < '));
  });

  it('holds the lease row for a fenced write until it commits: a takeover waits for it', async () => {
    const name = unique('lock');
    const store = instance();
    const a = (await store.acquire(name, 'A', 300))!;
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    await db.query('BEGIN');
    await store.fence(db, name, a.token);
    await sleep(500); // the term has expired by now, but the write passed its check while it was live
    let tookOver: bigint | undefined;
    const takeover = instance()
      .acquire(name, 'B', 5_000)
      .then((g) => (tookOver = g?.token));
    await sleep(500);
    assert.equal(tookOver, undefined, 'the takeover waits for the fenced transaction');
    await db.query(`INSERT INTO "${schema}".fenced_writes (lease, writer, token) VALUES ($1, 'A', $2)`, [name, a.token.toString()]);
    await db.query('COMMIT');
    await takeover;
    assert.equal(tookOver, a.token + 1n);
    await db.end();
    assert.deepEqual(await writesOf(name, a.token), ['A']);
    await assert.rejects(fencedWrite(store, name, a.token, 'A-late'), /current token is/);
  });

  it('takes over from a holder killed with SIGKILL within ttl + one renewal interval', async () => {
    const name = unique('kill');
    const ttlMs = 2_000;
    const renewMs = 600;
    const holder = await holderProcess(name, ttlMs, renewMs);
    const b = runner(name, { ttlMs, renewEveryMs: renewMs });
    await sleep(1_000);
    assert.equal(b.held, false, 'the child holds it and renews it');
    const killed = performance.now();
    holder.child.kill('SIGKILL');
    const term = await b.waitUntilHeld(20_000);
    const takeover = performance.now() - killed;
    console.log(`# takeover after SIGKILL: ${takeover.toFixed(0)} ms (ttl ${ttlMs} + renewal ${renewMs})`);
    assert.ok(term.token > holder.token);
    // The bound: the dead holder's last renewal lasts ttl, then b's next attempt comes within one interval.
    assert.ok(takeover <= (ttlMs + renewMs) * stretch() + 500, `took ${takeover.toFixed(0)} ms`);
    await b.stop();
  });

  it('fences a paused holder that wakes after losing its lease: its write is refused and it knows it lost', async () => {
    const name = unique('pause');
    const ttlMs = 1_500;
    const renewMs = 500;
    const holder = await holderProcess(name, ttlMs, renewMs);
    holder.send('write');
    const before = await holder.next('wrote');
    assert.equal(before.ok, true, 'while it holds the lease its writes pass');

    const b = runner(name, { ttlMs, renewEveryMs: renewMs });
    holder.send(`pause ${4 * ttlMs}`);
    const term = await b.waitUntilHeld(20_000);
    assert.ok(term.token > holder.token);
    await fencedWrite(instance(), name, term.token, 'successor');

    const after = await holder.next('wrote', 30_000);
    assert.equal(after.heldAtStart, false, 'on waking it already judges itself not to hold the lease');
    assert.equal(after.ok, false, 'its write is refused');
    assert.equal(after.code, 'fenced');
    assert.match(String(after.message), /no longer current/);
    const lost = await holder.next('lost', 10_000);
    assert.equal(BigInt(lost.token as string), holder.token);
    assert.ok(['taken', 'expired'].includes(String(lost.reason)));

    assert.deepEqual(await writesOf(name, holder.token), ['child'], 'only the write made while it held the lease');
    assert.deepEqual(await writesOf(name, term.token), ['successor']);
    holder.child.kill('SIGKILL');
    await once(holder.child, 'exit');
    await b.stop();
  });
});

describe('Lease runner, embedded (one process)', () => {
  it('takes every lease at once, so a single instance runs its singletons as before', async () => {
    const store = new EmbeddedLeaseStore();
    const lease = new Lease(store, 'decider', { ttlMs: 5_000 }).start();
    const started = performance.now();
    const term = await lease.waitUntilHeld(1_000);
    assert.ok(performance.now() - started < 100);
    assert.equal(term.token, 1n);
    assert.equal(await lease.ifHeld(() => 'ran'), 'ran');
    await lease.check();
    await lease.stop();
    await assert.rejects(store.check('decider', term.token), FencedError);
    await assert.rejects(lease.check(), FencedError);
  });

  it('keeps two runners of one name apart and hands over on release', async () => {
    const store = new EmbeddedLeaseStore();
    const a = new Lease(store, 'scheduler', { ttlMs: 2_000 }).start();
    const first = await a.waitUntilHeld(1_000);
    const b = new Lease(store, 'scheduler', { ttlMs: 2_000 }).start();
    await neverTwo([a, b], 2_500);
    assert.equal(a.held, true);
    await a.stop();
    const second = await b.waitUntilHeld(1_000);
    assert.equal(second.token, first.token + 1n);
    await b.stop();
  });

  it('reports a term that runs out while a renewal hangs, even when timers fire before their time', async () => {
    const store = new EmbeddedLeaseStore();
    const acquire = store.acquire.bind(store);
    let cut = false;
    let reconnect!: () => void;
    const network = new Promise<undefined>((resolve) => (reconnect = () => resolve(undefined)));
    // A renewal that does not answer (a cut network): the term ends by the runner's clock alone.
    store.acquire = (name, holder, ttlMs) => (cut ? network : acquire(name, holder, ttlMs));
    const lost: string[] = [];
    const lease = new Lease(store, 'archiver', { ttlMs: 300, renewEveryMs: 100, onLost: (_term, reason) => lost.push(reason) }).start();
    await lease.waitUntilHeld(1_000);
    // Timers that fire 5 ms before performance.now() reaches their time, as libuv's loop clock may make them.
    const realNow = performance.now.bind(performance);
    performance.now = () => realNow() - 5;
    try {
      cut = true;
      await until('the lost term to be reported', async () => (lost.length > 0 ? true : undefined), 2_000);
    } finally {
      performance.now = realNow;
    }
    assert.deepEqual(lost, ['expired']);
    assert.equal(lease.held, false);
    reconnect(); // stop() waits for the renewal on the wire
    await lease.stop();
  });

  it('rejects bad settings', () => {
    const store = new EmbeddedLeaseStore();
    assert.throws(() => new Lease(store, 'x', { ttlMs: 1_000, renewEveryMs: 1_000 }), /renewEveryMs must be less than ttlMs/);
    assert.throws(() => new Lease(store, 'x', { ttlMs: 5 }));
    assert.throws(() => new Lease(store, 'a b'));
  });
});
