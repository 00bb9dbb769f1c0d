import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import pg from 'pg';
import { ChangeHub, EmbeddedChangeFeed, PostgresChangeFeed, type Change, type ChangeFeed, type ChangeTopic } from '../../../src/serving/cluster/changes.js';
import { followChanges } from '../../../src/serving/cluster/follow.js';
import { Experiments } from '../../../src/serving/experiments/experiments.js';
import { ModelServer } from '../../../src/serving/models/model-server.js';
import { silentLogger } from '../../../src/serving/observability/logger.js';
import { metricCatalog } from '../../../src/workbench/experiments/metrics.js';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { createBundle } from '../../../src/workbench/models/bundle.js';
import { columnsFor } from '../../../src/workbench/models/preprocess.js';
import { ModelRegistry } from '../../../src/workbench/models/registry.js';
import { trainClassifier } from '../../../src/workbench/models/train.js';
import { PostgresOltp } from '../../../src/workbench/oltp/postgres.js';
import { postgresTestSchema } from '../../helpers/servers.js';
import { tempDir } from '../../helpers/tmp.js';
import { loadScaled, sleep, within } from '../../helpers/wait.js';

/** Collects what a feed delivers on a topic, and waits for the next delivery matching `match`. */
function heard(feed: ChangeFeed, topic: ChangeTopic) {
  const changes: { change: Change; at: number }[] = [];
  const waiters: { match: (c: Change) => boolean; resolve: (at: number) => void }[] = [];
  feed.subscribe(topic, (change) => {
    const at = performance.now();
    changes.push({ change, at });
    for (const w of [...waiters]) {
      if (!w.match(change)) continue;
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(at);
    }
  });
  return {
    changes,
    /** The time the first delivery matching `match` arrives (from now on), or a failure after `timeoutMs`. */
    next(match: (c: Change) => boolean, timeoutMs = 2_000): Promise<number> {
      return new Promise((resolve, reject) => {
        const bound = loadScaled(timeoutMs);
        const timer = setTimeout(() => reject(new Error(`no ${topic} change within ${bound.toFixed(0)} ms`)), bound);
        waiters.push({ match, resolve: (at) => (clearTimeout(timer), resolve(at)) });
      });
    },
  };
}

describe('the embedded change feed', () => {
  it('delivers to every feed of its hub (the publisher too), asynchronously, by topic', async () => {
    const hub = new ChangeHub();
    const a = new EmbeddedChangeFeed(hub);
    const b = new EmbeddedChangeFeed(hub);
    const elsewhere = new EmbeddedChangeFeed();
    const onB = heard(b, 'keys');
    const onA = heard(a, 'keys');
    const aliasesOnB = heard(b, 'aliases');
    const other = heard(elsewhere, 'keys');
    const arrived = onB.next((c) => c.detail === 'k1');
    await a.publish('keys', 'k1');
    assert.equal(onB.changes.length, 0, 'not delivered during publish');
    await arrived;
    await sleep(10);
    assert.deepEqual(
      onA.changes.map((c) => c.change),
      [{ topic: 'keys', detail: 'k1', resync: false }],
    );
    assert.equal(aliasesOnB.changes.length, 0);
    assert.equal(other.changes.length, 0, 'another hub hears nothing');
    await Promise.all([a.close(), b.close(), elsewhere.close()]);
  });

  it('refuses an unknown topic and an oversized detail, and survives a failing listener', async () => {
    const errors: Error[] = [];
    const feed = new EmbeddedChangeFeed(undefined, (err) => errors.push(err));
    await assert.rejects(feed.publish('nope' as ChangeTopic), /topic/);
    await assert.rejects(feed.publish('keys', 'x'.repeat(501)), /detail/);
    assert.throws(() => feed.subscribe('nope' as ChangeTopic, () => undefined));
    feed.subscribe('experiments', () => {
      throw new Error('boom');
    });
    feed.subscribe('experiments', () => Promise.reject(new Error('async boom')));
    const ok = heard(feed, 'experiments');
    const arrived = ok.next(() => true);
    await feed.publish('experiments', 'e1');
    await arrived;
    await sleep(10);
    assert.deepEqual(errors.map((e) => e.message).sort(), ['a experiments change listener failed: async boom', 'a experiments change listener failed: boom']);
    await feed.close();
  });

  it('stops delivering to an unsubscribed listener and after close', async () => {
    const hub = new ChangeHub();
    const a = new EmbeddedChangeFeed(hub);
    const b = new EmbeddedChangeFeed(hub);
    let calls = 0;
    const stop = b.subscribe('aliases', () => void calls++);
    await a.publish('aliases');
    await sleep(10);
    stop();
    await a.publish('aliases');
    await sleep(10);
    assert.equal(calls, 1);
    b.subscribe('aliases', () => void calls++);
    await b.close();
    await a.publish('aliases');
    await sleep(10);
    assert.equal(calls, 1);
    await a.close();
  });
});

describe('the PostgreSQL change feed', { timeout: 60_000 }, () => {
  const pgSchema = postgresTestSchema('wb_changes');
  let url = '';
  let ns = '';
  let admin: pg.Client | undefined;
  let skip: string | undefined;
  const feeds: PostgresChangeFeed[] = [];
  const errors: Error[] = [];
  // The namespace keeps this file apart from any other test on the database-wide channel.
  const open = async (name: string, namespace = ns) => {
    const feed = new PostgresChangeFeed(`${url}${url.includes('?') ? '&' : '?'}application_name=${name}`, {
      namespace,
      reconnectMs: 50,
      onError: (err) => errors.push(err),
    });
    feeds.push(feed);
    return feed;
  };
  before(async () => {
    const opened = await pgSchema.open(async (u, schema) => {
      url = u;
      ns = schema;
      admin = new pg.Client({ connectionString: u });
      await admin.connect();
      return true;
    });
    if (typeof opened === 'string') skip = opened;
  });
  after(async () => {
    for (const f of feeds) await f.close();
    await admin?.end();
  });
  const skipped = (t: TestContext) => {
    if (skip) t.skip(skip);
    return skip !== undefined;
  };

  it('lets two instances hear each other within a second, and not a feed of another namespace', async (t) => {
    if (skipped(t)) return;
    const a = await open(`${ns}_a`);
    const b = await open(`${ns}_b`);
    const other = await open(`${ns}_o`, `${ns}_other`);
    const onA = heard(a, 'aliases');
    const onB = heard(b, 'aliases');
    const onOther = heard(other, 'aliases');
    await Promise.all([a.ready(), b.ready(), other.ready()]);
    for (const [from, to, onTo] of [
      [a, 'b', onB],
      [b, 'a', onA],
    ] as const) {
      const sent = performance.now();
      const arrived = onTo.next((c) => c.detail === `to ${to}`);
      await from.publish('aliases', `to ${to}`);
      const latency = (await arrived) - sent;
      assert.ok(latency < loadScaled(1_000), `${latency.toFixed(0)} ms`);
    }
    await sleep(100);
    assert.equal(onOther.changes.length, 0, 'another namespace hears nothing');
    assert.deepEqual(
      onB.changes.map((c) => c.change),
      [
        { topic: 'aliases', detail: 'to b', resync: false },
        { topic: 'aliases', detail: 'to a', resync: false },
      ],
      'the publisher hears itself too',
    );
  });

  it('counts and ignores malformed notifications on the channel', async (t) => {
    if (skipped(t)) return;
    const b = await open(`${ns}_m`);
    const onB = heard(b, 'keys');
    await b.ready();
    const notify = (payload: string) => admin!.query('SELECT pg_notify($1, $2)', ['wb_changes', payload]);
    // Waited for before it is sent: it may arrive before the last notify's query returns.
    const ok = onB.next((c) => c.detail === 'ok');
    await notify('not json');
    await notify(JSON.stringify({ v: 1, ns, topic: 'secrets' }));
    await notify(JSON.stringify({ v: 1, ns, topic: 'keys', detail: 42 }));
    await notify(JSON.stringify({ v: 2, ns, topic: 'keys' }));
    await notify(`{"v":1,"ns":${JSON.stringify(ns)},"topic":"keys","detail":"ok","__proto__":{"polluted":true}}`);
    await ok;
    assert.equal(b.malformed, 4);
    assert.equal(onB.changes.length, 1);
    assert.equal(({} as { polluted?: boolean }).polluted, undefined);
    assert.ok(errors.some((e) => /malformed change notification/.test(e.message)));
  });

  it('reconnects after its LISTEN connection is terminated and tells subscribers to resync', async (t) => {
    if (skipped(t)) return;
    const a = await open(`${ns}_pa`);
    const b = await open(`${ns}_pb`);
    const onB = heard(b, 'experiments');
    const keysOnB = heard(b, 'keys');
    await Promise.all([a.ready(), b.ready()]);
    const resynced = onB.next((c) => c.resync);
    const keysResynced = keysOnB.next((c) => c.resync);
    const killedAt = performance.now();
    const { rows } = await admin!.query("SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'", [
      `${ns}_pb`,
    ]);
    assert.equal(rows.length, 1, 'one LISTEN connection was terminated');
    const [resyncedAt] = await Promise.all([resynced, keysResynced]);
    const took = resyncedAt - killedAt;
    assert.ok(took < loadScaled(1_000), `resync ${took.toFixed(0)} ms after the drop`);
    assert.equal(b.reconnects, 1);
    assert.ok(errors.some((e) => /change notifications interrupted/.test(e.message)));
    const arrived = onB.next((c) => c.detail === 'after');
    await a.publish('experiments', 'after');
    await arrived;
  });

  it('makes followChanges re-read on a change and on a resync, and announce local changes', async (t) => {
    if (skipped(t)) return;
    const a = await open(`${ns}_fa`);
    const b = await open(`${ns}_fb`);
    let reloads = 0;
    let refreshes = 0;
    const saved: ((e: { experiment: { key: string } }) => void)[] = [];
    const moved: ((m: { name: string; alias: string; unchanged?: boolean }) => void)[] = [];
    const logger = { warn: () => undefined, error: () => undefined };
    const followingB = followChanges(b, {
      keys: { reload: async () => void reloads++ },
      experiments: { refresh: async () => void refreshes++, onSaved: () => () => undefined },
      logger,
    });
    const followingA = followChanges(a, {
      experiments: {
        refresh: async () => undefined,
        onSaved: (l) => (saved.push(l as never), () => undefined),
      },
      models: { refresh: async () => undefined, registry: { onAliasMoved: (l) => (moved.push(l as never), () => undefined) } },
      logger,
    });
    await Promise.all([a.ready(), b.ready()]);
    const onB = heard(b, 'experiments');
    const arrived = onB.next(() => true);
    saved[0]!({ experiment: { key: 'exp-1' } });
    await arrived;
    await followingB.idle();
    assert.equal(refreshes, 1);
    await a.publish('keys', 'k');
    for (let i = 0; i < 40 && reloads === 0; i++) await sleep(25);
    assert.equal(reloads, 1);
    await admin!.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'", [`${ns}_fb`]);
    for (let i = 0; i < 40 && reloads < 2; i++) await sleep(25);
    await followingB.idle();
    assert.equal(reloads, 2, 'the keys were re-read after the drop');
    assert.equal(refreshes, 2, 'the experiments too');
    const aliasOnB = heard(b, 'aliases');
    const aliasArrived = aliasOnB.next((c) => c.detail === 'churn/champion');
    moved[0]!({ name: 'churn', alias: 'champion', unchanged: true });
    moved[0]!({ name: 'churn', alias: 'champion' });
    await aliasArrived;
    await sleep(50);
    assert.equal(aliasOnB.changes.length, 1, 'an unchanged alias is not announced');
    await followingA.close();
    await followingB.close();
  });
});

describe('two instances following each other through PostgreSQL', { timeout: 60_000 }, () => {
  const pgSchema = postgresTestSchema('wb_follow');
  let url = '';
  let ns = '';
  let skip: string | undefined;
  before(async () => {
    const opened = await pgSchema.open(async (u, schema) => ((url = u), (ns = schema), true));
    if (typeof opened === 'string') skip = opened;
  });

  it('serves an alias moved on one instance from the other within a second', async (t) => {
    if (skip) return t.skip(skip);
    const features = featureSet([{ name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 }]);
    const rows = Array.from({ length: 60 }, (_, i) => ({ logins_7d: i % 7, bought: i % 3 === 0 ? 1 : 0 }));
    const [m1, m2] = await Promise.all([1, 2].map((seed) => trainClassifier(rows, 'bought', columnsFor(features), { seed, maxEpochs: 2 })));
    const [v1, v2] = await Promise.all([m1!, m2!].map((m) => createBundle('churn', m, features)));
    m1!.dispose();
    m2!.dispose();
    // One registry directory (this slice keeps the registry in a shared directory), one ModelServer per instance.
    const root = join(tempDir(), 'registry');
    const seed = ModelRegistry.open(root);
    seed.put(v1!);
    seed.put(v2!);
    seed.setAlias('churn', 'champion', v1!.version);
    // A minute between periodic refreshes: only the notification can make the move visible within a second.
    const [a, b] = await Promise.all([0, 1].map(() => ModelServer.open(ModelRegistry.open(root), { refreshMs: 60_000 })));
    const feeds = [0, 1].map(() => new PostgresChangeFeed(url, { namespace: ns }));
    const following = [a!, b!].map((models, i) => followChanges(feeds[i]!, { models, logger: silentLogger() }));
    try {
      await Promise.all(feeds.map((f) => f.ready()));
      assert.equal((await b!.resolve({ model: 'churn' })).bundle.version, v1!.version);
      await a!.moveAlias('churn', 'champion', v2!.version, { by: 'test' });
      const took = await within('the other instance serves the moved alias', async () => (await b!.resolve({ model: 'churn' })).bundle.version === v2!.version);
      t.diagnostic(`alias followed after ${took.toFixed(0)} ms`);
    } finally {
      for (const f of following) await f.close();
      a!.close();
      b!.close();
    }
  });

  it('shows an experiment saved on one instance to the other within a second', async (t) => {
    if (skip) return t.skip(skip);
    const oltps = [0, 1].map(() => new PostgresOltp(url, ns));
    await oltps[0]!.migrate();
    const [a, b] = await Promise.all(oltps.map((o) => Experiments.open(o, metricCatalog())));
    const feeds = [0, 1].map(() => new PostgresChangeFeed(url, { namespace: ns }));
    const following = [a!, b!].map((experiments, i) => followChanges(feeds[i]!, { experiments, logger: silentLogger() }));
    try {
      await Promise.all(feeds.map((f) => f.ready()));
      const definition = {
        key: 'exp-follow',
        hypothesis: 'h',
        arms: [
          { key: 'a', weight: 0.5 },
          { key: 'b', weight: 0.5 },
        ],
        exposureEvent: 'login',
        objective: 'logins',
        mde: 0.05,
        status: 'draft' as const,
      };
      await a!.create(definition, 'test');
      const created = await within('the other instance sees the new experiment', () => b!.list().some((s) => s.experiment.key === 'exp-follow'));
      await a!.setStatus('exp-follow', 'running', 1, 'test', 'go');
      const started = await within('the other instance sees it running', () => b!.running().some((e) => e.key === 'exp-follow'));
      t.diagnostic(`experiment seen after ${created.toFixed(0)} ms (created), ${started.toFixed(0)} ms (started)`);
    } finally {
      for (const f of following) await f.close();
      for (const o of oltps) await o.close();
    }
  });
});
