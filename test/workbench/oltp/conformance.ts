import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { storeUnderTest } from '../../helpers/servers.js';
import { ConflictError } from '../../../src/workbench/errors.js';
import type { Assignment, ExperimentRecord, OltpStore, Prediction, User } from '../../../src/workbench/oltp/index.js';

const user = (id: string, over: Partial<User> = {}): User => ({
  user_id: id,
  country: 'GB',
  device: 'ios',
  tier: 'free',
  first_seen: '2025-01-02T03:04:05.000Z',
  ...over,
});

/** The behaviour every OLTP implementation must have; run once per implementation. */
export function oltpConformance(name: string, open: () => Promise<OltpStore | string>): void {
  describe(`OLTP conformance: ${name}`, () => {
    const subject = storeUnderTest(open);

    it('migrates twice without harm and starts empty', async () => {
      await subject.store.migrate();
      assert.equal(await subject.store.count('users'), 0);
      assert.equal(await subject.store.count('predictions'), 0);
    });

    it('upserts users: inserts new ones and replaces every column of existing ones', async () => {
      await subject.store.upsertUsers([user('u1'), user('u2', { country: 'US', device: 'web' })]);
      await subject.store.upsertUsers([user('u1', { tier: 'pro', first_seen: '2025-01-01T00:00:00+02:00' })]);
      const got = await subject.store.getUsers(['u1', 'u2', 'nobody', 'u1']);
      assert.equal(got.size, 2);
      assert.deepEqual(got.get('u1'), user('u1', { tier: 'pro', first_seen: '2024-12-31T22:00:00.000Z' }));
      assert.deepEqual(got.get('u2'), user('u2', { country: 'US', device: 'web' }));
      assert.equal(await subject.store.count('users'), 2);
    });

    it('inserts only the users that do not exist yet', async () => {
      await subject.store.insertUsersIfAbsent([user('u1', { country: 'FR', first_seen: '2030-01-01T00:00:00.000Z' }), user('new-1', { device: 'android' })]);
      const got = await subject.store.getUsers(['u1', 'new-1']);
      assert.equal(got.get('u1')?.country, 'GB', 'an existing user is left as it was');
      assert.equal(got.get('u1')?.first_seen, '2024-12-31T22:00:00.000Z');
      assert.deepEqual(got.get('new-1'), user('new-1', { device: 'android' }));
      assert.equal(await subject.store.count('users'), 3);
    });

    it('keeps ids that look like SQL as plain data', async () => {
      const evil = "x'); DROP TABLE users; --";
      await subject.store.upsertUsers([user(evil)]);
      assert.equal((await subject.store.getUsers([evil])).get(evil)?.user_id, evil);
      assert.equal(await subject.store.count('users'), 4);
    });

    it('refuses a tier outside free/pro and keeps the batch all-or-nothing', async () => {
      const before = await subject.store.count('users');
      await assert.rejects(subject.store.upsertUsers([user('ok-1'), user('bad', { tier: 'gold' as User['tier'] })]));
      assert.equal(await subject.store.count('users'), before);
      assert.equal((await subject.store.getUsers(['ok-1'])).size, 0);
    });

    it('upserts predictions keyed by (model, user_id)', async () => {
      const p = (user_id: string, score: number, version = 'v1'): Prediction => ({
        model: 'churn',
        version,
        user_id,
        score,
        created_at: '2025-02-01T00:00:00.000Z',
      });
      await subject.store.upsertPredictions([p('u1', 0.25), p('u2', 0.5)]);
      await subject.store.upsertPredictions([p('u1', 0.75, 'v2')]);
      assert.equal(await subject.store.count('predictions'), 2);
      const rows: Prediction[] = [];
      for await (const batch of subject.store.scan('predictions')) rows.push(...batch);
      assert.deepEqual(rows, [p('u1', 0.75, 'v2'), p('u2', 0.5)]);
    });

    it('scans a table in key order, in batches, without losing or repeating rows', async () => {
      const many = Array.from({ length: 2345 }, (_, i) => user(`bulk-${String(i).padStart(5, '0')}`));
      await subject.store.upsertUsers(many);
      const total = await subject.store.count('users');
      const seen: string[] = [];
      let batches = 0;
      for await (const batch of subject.store.scan('users', 500)) {
        assert.ok(batch.length <= 500);
        batches++;
        seen.push(...batch.map((u) => u.user_id));
      }
      assert.equal(seen.length, total);
      assert.equal(new Set(seen).size, total);
      assert.deepEqual(
        seen,
        [...seen].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
      );
      assert.ok(batches >= 5);
    });

    it('keeps the first assignment of a user in an experiment (sticky) and returns what is stored', async () => {
      const a = (user_id: string, arm: string, at = '2025-03-01T10:00:00.000Z'): Assignment => ({ experiment: 'exp-1', user_id, arm, assigned_at: at });
      const first = await subject.store.insertAssignmentsIfAbsent([a('u1', 'control'), a('u2', 'treatment')]);
      assert.deepEqual(first, [a('u1', 'control'), a('u2', 'treatment')]);
      const again = await subject.store.insertAssignmentsIfAbsent([a('u1', 'treatment', '2025-03-02T00:00:00.000Z'), a('u3', 'control')]);
      assert.deepEqual(again, [a('u1', 'control'), a('u3', 'control')], 'u1 keeps its first arm and exposure time');
      await subject.store.insertAssignmentsIfAbsent([{ ...a('u1', 'treatment'), experiment: 'exp-2' }]);
      assert.deepEqual(await subject.store.getAssignments('exp-1', ['u3', 'nobody', 'u1']), [a('u1', 'control'), a('u3', 'control')]);
      assert.deepEqual(
        (await subject.store.getAssignments('exp-1')).map((x) => x.user_id),
        ['u1', 'u2', 'u3'],
      );
      assert.equal(await subject.store.count('assignments'), 4);
      const scanned: Assignment[] = [];
      for await (const batch of subject.store.scan('assignments')) scanned.push(...batch);
      assert.deepEqual(
        scanned.map((x) => `${x.experiment}/${x.user_id}`),
        ['exp-1/u1', 'exp-1/u2', 'exp-1/u3', 'exp-2/u1'],
      );
    });

    it('claims an assignment for exactly one of several concurrent callers, and tells each whether it was theirs', async () => {
      const a = (user_id: string, arm: string, at = '2025-04-01T10:00:00.000Z'): Assignment => ({ experiment: 'claims', user_id, arm, assigned_at: at });
      const first = await subject.store.claimAssignments([a('c1', 'control'), a('c2', 'treatment')]);
      assert.deepEqual(first, [
        { assignment: a('c1', 'control'), claimed: true },
        { assignment: a('c2', 'treatment'), claimed: true },
      ]);
      const again = await subject.store.claimAssignments([a('c1', 'treatment', '2025-04-02T00:00:00.000Z'), a('c3', 'control')]);
      assert.deepEqual(again, [
        { assignment: a('c1', 'control'), claimed: false },
        { assignment: a('c3', 'control'), claimed: true },
      ]);
      // Racing callers (as service instances): one winner per user, and every caller reads the winner's row.
      const racers = await Promise.all(['x', 'y', 'z', 'w'].map((arm) => subject.store.claimAssignments([a('c4', arm), a('c5', arm)])));
      for (const user of [0, 1]) {
        assert.equal(racers.filter((r) => r[user]!.claimed).length, 1);
        const winner = racers.find((r) => r[user]!.claimed)![user]!.assignment;
        for (const r of racers) assert.deepEqual(r[user]!.assignment, winner);
      }
    });

    it('lists assignments by when they were claimed, in pages, up to a cutoff on the database clock', async () => {
      const a = (experiment: string, user_id: string, at = '2020-01-01T00:00:00.000Z'): Assignment => ({
        experiment,
        user_id,
        arm: 'control',
        assigned_at: at,
      });
      const none = await subject.store.claimedAssignments({ experiments: ['timed-1'], limit: 10 });
      assert.deepEqual(none.rows, []);
      // An event from long ago assigns a user now: the claim's time is the database's now, not the event's.
      const before = Date.now();
      await subject.store.claimAssignments([a('timed-1', 'b'), a('timed-1', 'a'), a('timed-2', 'c'), a('untimed-other', 'x')]);
      // A later claim, a later millisecond (claim times are kept to the millisecond).
      await new Promise((resolve) => setTimeout(resolve, 5));
      await subject.store.insertAssignmentsIfAbsent([a('timed-1', 'd', '2024-06-01T00:00:00.000Z')]);
      const all = await subject.store.claimedAssignments({ experiments: ['timed-1', 'timed-2'], limit: 10 });
      assert.deepEqual(
        all.rows.map((r) => `${r.experiment}/${r.user_id}`).slice(0, 3),
        ['timed-1/a', 'timed-1/b', 'timed-2/c'],
        'one claim: one time, then by experiment and user',
      );
      assert.deepEqual(
        all.rows.map((r) => `${r.experiment}/${r.user_id}`),
        ['timed-1/a', 'timed-1/b', 'timed-2/c', 'timed-1/d'],
      );
      for (const r of all.rows) {
        assert.match(r.claimed_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        assert.ok(Math.abs(Date.parse(r.claimed_at) - before) < 60_000, `${r.claimed_at} is about now`);
      }
      assert.deepEqual(all.rows[0], { ...a('timed-1', 'a'), claimed_at: all.rows[0]!.claimed_at });
      assert.ok(all.rows[3]!.claimed_at > all.rows[0]!.claimed_at);
      // Pages: each continues after the last row of the one before, up to the first page's cutoff.
      const first = await subject.store.claimedAssignments({ experiments: ['timed-1', 'timed-2'], limit: 2 });
      assert.deepEqual(first.rows, all.rows.slice(0, 2));
      const second = await subject.store.claimedAssignments({ experiments: ['timed-1', 'timed-2'], after: first.rows[1]!, until: first.until, limit: 2 });
      assert.deepEqual(second.rows, all.rows.slice(2, 4));
      assert.equal(second.until, first.until);
      const third = await subject.store.claimedAssignments({ experiments: ['timed-1', 'timed-2'], after: second.rows[1]!, until: first.until, limit: 2 });
      assert.deepEqual(third.rows, []);
      // A bare instant as the cursor, and a cutoff: claims newer than the cutoff wait for a later pass.
      const since = await subject.store.claimedAssignments({
        experiments: ['timed-1'],
        after: { claimed_at: all.rows[0]!.claimed_at, experiment: '', user_id: '' },
        limit: 10,
      });
      assert.deepEqual(
        since.rows.map((r) => r.user_id),
        ['a', 'b', 'd'],
      );
      const old = await subject.store.claimedAssignments({ experiments: ['timed-1', 'timed-2'], olderThanMs: 3_600_000, limit: 10 });
      assert.deepEqual(old.rows, []);
      assert.ok(Date.parse(old.until) <= Date.now() - 3_500_000);
      assert.deepEqual((await subject.store.claimedAssignments({ experiments: [], limit: 10 })).rows, []);
      // The claim time is the service's own: the interface's rows (and the replica) do not carry it.
      assert.deepEqual(await subject.store.getAssignments('timed-2'), [a('timed-2', 'c')]);
      const scanned: Assignment[] = [];
      for await (const batch of subject.store.scan('assignments')) scanned.push(...batch.filter((x) => x.experiment === 'timed-2'));
      assert.deepEqual(scanned, [a('timed-2', 'c')]);
    });

    it('writes experiments only against the version they were read at, with a history of every change', async () => {
      const rec = (version: number, by: string, definition = `{"v":${version}}`): ExperimentRecord => ({
        key: 'checkout',
        version,
        definition,
        updated_at: `2025-03-0${version}T00:00:00.000Z`,
        updated_by: by,
      });
      await subject.store.saveExperiment(rec(1, 'ana'), 'created');
      await assert.rejects(
        subject.store.saveExperiment(rec(1, 'bo'), 'created'),
        (err: unknown) => err instanceof ConflictError && /already exists/.test(err.message),
      );
      await subject.store.saveExperiment(rec(2, 'bo'), 'status running');
      // A second editor who read version 1 is refused, and nothing of theirs is written.
      await assert.rejects(
        subject.store.saveExperiment(rec(2, 'cy', '{"lost":true}'), 'weights'),
        (err: unknown) => err instanceof ConflictError && /at version 2/.test(err.message),
      );
      await assert.rejects(subject.store.saveExperiment({ ...rec(3, 'cy'), key: 'nope' }, 'x'), ConflictError);
      // Concurrent writers against one version: exactly one wins.
      const results = await Promise.allSettled([
        subject.store.saveExperiment(rec(3, 'p'), 'a'),
        subject.store.saveExperiment(rec(3, 'q'), 'b'),
        subject.store.saveExperiment(rec(3, 'r'), 'c'),
      ]);
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      const [stored] = await subject.store.getExperiments();
      assert.equal(stored!.version, 3);
      const history = await subject.store.experimentHistory('checkout');
      assert.deepEqual(history.map((h) => [h.version, h.updated_by, h.change]).slice(0, 2), [
        [1, 'ana', 'created'],
        [2, 'bo', 'status running'],
      ]);
      assert.equal(history.length, 3);
      // A guard (a lease's fence) runs with the write and can refuse it: then nothing is written.
      let lent: unknown;
      await assert.rejects(
        subject.store.saveExperiment(rec(4, 'stale'), 'fenced', async (tx) => {
          lent = tx.client;
          if (tx.client) assert.equal(((await tx.client.query('SELECT 1 AS one')).rows[0] as { one: number }).one, 1);
          throw new Error('fenced');
        }),
        /fenced/,
      );
      assert.equal(subject.store.kind === 'postgres', lent !== undefined, 'PostgreSQL lends the transaction client, SQLite none');
      assert.equal((await subject.store.getExperiments())[0]!.version, 3);
      assert.equal((await subject.store.experimentHistory('checkout')).length, 3);
      await subject.store.saveExperiment(rec(4, 'current'), 'guarded', async () => undefined);
      assert.equal((await subject.store.getExperiments())[0]!.version, 4);
      assert.equal(history[2]!.updated_by, stored!.updated_by);
      assert.equal(history[1]!.updated_at, '2025-03-02T00:00:00.000Z');
      assert.deepEqual(await subject.store.experimentHistory('nope'), []);
    });
  });
}
