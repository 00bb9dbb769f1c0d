import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { AnomalyAlert } from '../../../src/serving/observability/alerts.js';
import { lakeDir } from '../../../src/workbench/config.js';
import { DuckDb } from '../../../src/workbench/duckdb.js';
import { lakeLayout, sourceDir } from '../../../src/workbench/lakehouse/layout.js';
import { LIVE_SOURCE } from '../../../src/workbench/lakehouse/live.js';
import { sql } from '../../../src/workbench/sql.js';
import { serviceCluster, type Cluster, type ClusterInstance } from '../../helpers/cluster.js';
import { sleep, until } from '../../helpers/wait.js';

/**
 * Consumers of one service run by several instances (one PostgreSQL schema, one JetStream stream,
 * one shared data dir, an instance dir each): the archiver writes each offset once, whichever
 * instance holds it; the read models count everything on every instance; an alert is posted once.
 */
const TTL_MS = 1_500;
const harness = serviceCluster('consumers');
const { undo } = harness;
type Instance = ClusterInstance;

const cluster = () => harness.cluster();
const instance = (name: string, c: Cluster, over: { alertWebhook?: string } = {}) => harness.instance(name, c, { leaseTtlMs: TTL_MS, ...over });

let sent = 0;
/** `count` page views, in batches of 50, to the instances in turn. */
async function sendEvents(group: readonly Instance[], count: number): Promise<void> {
  const time = new Date(Date.now() - 30_000).toISOString();
  const events = Array.from({ length: count }, () => ({
    event_id: `ev-${sent++}`,
    time,
    user_id: `u${sent % 37}`,
    event: 'page_view',
    props: { country: 'GB', device: 'ios' },
  }));
  for (let k = 0; k < events.length; k += 50) {
    const res = await group[(k / 50) % group.length]!.post('/v1/events', events.slice(k, k + 50));
    assert.equal(res.status, 200, await res.text());
  }
}

/** The archive's files by offset range (a batch spanning dates has one file per date), and the rows in each range. */
async function archived(dataDir: string): Promise<{ first: number; last: number; rows: number }[]> {
  const archive = sourceDir(lakeLayout(lakeDir(dataDir)), LIVE_SOURCE);
  if (!existsSync(archive)) return [];
  const db = await DuckDb.open(':memory:');
  try {
    const rows = new Map<string, number>();
    for (const date of readdirSync(archive)) {
      for (const f of readdirSync(join(archive, date))) {
        const m = /^part-(\d+)-(\d+)\.parquet$/.exec(f);
        assert.ok(m, `an archive file named ${f}`);
        const result = await db.query(sql`SELECT count(*)::INTEGER AS n FROM read_parquet(${join(archive, date, f)})`);
        const key = `${Number(m[1])}-${Number(m[2])}`;
        rows.set(key, (rows.get(key) ?? 0) + (result.columns[0] as number[])[0]!);
      }
    }
    return [...rows].map(([key, n]) => {
      const [first, last] = key.split('-').map(Number) as [number, number];
      return { first, last, rows: n };
    });
  } finally {
    db.close();
  }
}

/** Every offset below `end` in exactly one file, each file holding as many rows as its range. */
async function archivedOnce(dataDir: string, end: number): Promise<boolean> {
  const files = (await archived(dataDir)).sort((x, y) => x.first - y.first);
  let next = 0;
  for (const f of files) {
    assert.equal(f.rows, f.last - f.first + 1, `file ${f.first}-${f.last} holds ${f.rows} rows`);
    assert.equal(f.first, next, `after offset ${next - 1} the next file starts at ${f.first}: ${files.map((x) => `${x.first}-${x.last}`).join(' ')}`);
    next = f.last + 1;
  }
  assert.ok(next <= end, `archived up to ${next - 1}, past the log's end ${end}`);
  return next === end;
}

const archiving = (i: Instance) => i.service.runners.some((r) => r.consumer.name === 'archiver');
const pageViews = (i: Instance) => i.service.aggregates.query('1m', { event: 'page_view', dimension: 'all' }).reduce((s, p) => s + p.count, 0);

describe('consumers across service instances', { timeout: 180_000 }, () => {
  it('archives every offset once, on one instance at a time, with no gap or overlap when the holder loses its lease; each instance counts every event once', async () => {
    const c = cluster();
    const a = await instance('a', c);
    await until('a to run the archiver', async () => (archiving(a) ? true : undefined), 10_000);
    const b = await instance('b', c);
    await sendEvents([a, b], 600);
    let end = await a.service.log.next();
    assert.equal(end, 600);
    await until('the archive to hold every offset', async () => ((await archivedOnce(c.dataDir, end)) ? true : undefined), 30_000);
    assert.ok(archiving(a) && !archiving(b), 'only the holder archives');

    // a stops reaching the lease table: it stops archiving when its term runs out, b takes over.
    let reconnect!: () => void;
    const partition = new Promise<void>((resolve) => (reconnect = resolve));
    const acquire = a.service.leases.acquire.bind(a.service.leases);
    a.service.leases.acquire = async () => {
      await partition;
      return undefined;
    };
    undo.push(() => {
      a.service.leases.acquire = acquire;
      reconnect();
    });
    // Events keep coming meanwhile, to both.
    const during = sendEvents([a, b], 400);
    await until('a to stop archiving', async () => (!archiving(a) ? true : undefined), 20_000).catch((err: unknown) => {
      const lease = a.service.singletons.get('wb:archiver')!;
      const state = { held: lease.held, token: String(lease.token), runners: a.service.runners.map((r) => r.consumer.name) };
      throw new Error(`${(err as Error).message}; a's archiver lease and runners: ${JSON.stringify(state)}`, { cause: err });
    });
    await until('b to archive', async () => (archiving(b) ? true : undefined), 20_000);
    await during;
    await sendEvents([a, b], 300);
    end = await b.service.log.next();
    assert.equal(end, 1_300);
    await until('the archive to hold every offset', async () => ((await archivedOnce(c.dataDir, end)) ? true : undefined), 30_000);
    assert.ok(!archiving(a));
    const files = await archived(c.dataDir);
    assert.equal(
      files.reduce((s, f) => s + f.rows, 0),
      end,
    );
    // Both holders wrote some of it.
    assert.ok(a.service.archiver.freshness && b.service.archiver.freshness, 'both archived');
    const staging = join(lakeLayout(lakeDir(c.dataDir)).root, '.staging-live');
    assert.deepEqual(existsSync(staging) ? readdirSync(staging) : [], [], 'nothing left staged');

    // Each instance's read models count every event once; a third, new, instance too (it does not
    // start at another instance's committed offset).
    const z = await instance('z', c);
    for (const i of [a, b, z])
      await until(`${i.name}'s dashboard to count every page view`, async () => (pageViews(i) === end ? true : pageViews(i) > end ? false : undefined), 20_000);
    for (const i of [a, b, z]) assert.equal(pageViews(i), end, `${i.name} counted each event once`);
    // Their offsets are their own, in their instance dirs. (a reconnected first: a stop waits for a hung renewal.)
    for (const f of undo.splice(0)) f();
    for (const i of [a, b, z]) {
      const dir = i.service.instanceDir;
      await i.stop();
      const offsets = JSON.parse(readFileSync(join(dir, 'consumers', 'offsets.json'), 'utf8')) as Record<string, number>;
      assert.equal(offsets.aggregates, end, `${i.name}: ${JSON.stringify(offsets)}`);
      assert.equal(offsets.metrics, end);
      assert.ok(existsSync(join(dir, 'consumers', 'aggregates.json')), 'the snapshot in the instance dir');
    }
    assert.ok(!existsSync(join(c.dataDir, 'consumers')), 'no read model state in the shared data dir');
  });

  it('a clean stop of the archiver holder finishes its batch and hands over with no gap or overlap', async () => {
    const c = cluster();
    const a = await instance('a', c);
    await until('a to run the archiver', async () => (archiving(a) ? true : undefined), 10_000);
    const b = await instance('b', c);
    await sendEvents([a, b], 500);
    await a.stop();
    await until('b to archive', async () => (archiving(b) ? true : undefined), 10_000);
    await sendEvents([b], 200);
    const end = await b.service.log.next();
    await until('the archive to hold every offset', async () => ((await archivedOnce(c.dataDir, end)) ? true : undefined), 30_000);
  });

  it('posts an alert raised on every instance once, from the holder of wb:monitor, and from the new holder after a handover', async () => {
    const posts: { alert?: AnomalyAlert }[] = [];
    const receiver: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        posts.push(JSON.parse(body) as { alert?: AnomalyAlert });
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    undo.push(() => receiver.close());
    const address = receiver.address();
    const webhook = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/hook`;
    const c = cluster();
    const a = await instance('a', c, { alertWebhook: webhook });
    await until('a to hold wb:monitor', async () => (a.service.singletons.get('wb:monitor')!.held ? true : undefined), 10_000);
    const b = await instance('b', c, { alertWebhook: webhook });
    // The monitor of each instance raises the same alert from the shared log; injected here at the
    // sink, as each monitor would raise it.
    const alert = (series: string): AnomalyAlert => ({
      series,
      labels: { event: 'login' },
      metric: 'count',
      direction: 'drop',
      pattern: 'point',
      observed: 1,
      expected: 100,
      score: 9,
      threshold: 5,
      windowStart: '2025-01-01T00:00:00.000Z',
      windowEnd: '2025-01-01T00:15:00.000Z',
      detectedAt: '2025-01-01T00:15:00.000Z',
      incident: `${series}@2025-01-01T00:00:00.000Z`,
    });
    for (const i of [a, b]) i.service.alerts.raise(alert('events/login'));
    await until('the POST', async () => (posts.length >= 1 ? true : undefined), 10_000);
    await sleep(1_000);
    assert.deepEqual(
      posts.map((p) => p.alert?.series),
      ['events/login'],
    );
    // Both list it.
    for (const i of [a, b]) assert.equal(i.service.alerts.list().length, 1);

    await a.stop();
    await until('b to hold wb:monitor', async () => (b.service.singletons.get('wb:monitor')!.held ? true : undefined), 10_000);
    b.service.alerts.raise(alert('events/signup'));
    await until('the second POST', async () => (posts.length >= 2 ? true : undefined), 10_000);
    assert.deepEqual(
      posts.map((p) => p.alert?.series),
      ['events/login', 'events/signup'],
    );
  });
});
