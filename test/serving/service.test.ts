import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { KeyStore } from '../../src/serving/auth/keys.js';
import { Lakehouse } from '../../src/workbench/lakehouse.js';
import { sql } from '../../src/workbench/sql.js';
import { event, startTestService } from '../helpers/service.js';
import { sleep, until } from '../helpers/wait.js';

describe('the service pipeline', { timeout: 120_000 }, () => {
  it('feeds live aggregates by cohort and the lakehouse archive within seconds, and resumes exactly once after a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wb-pipe-'));
    let t = await startTestService({}, dir);
    // One hook, in this order: the service writes its consumers' offsets as it stops.
    after(async () => {
      await t.service.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    const minute = Math.floor((Date.now() - 120_000) / 60_000) * 60_000;
    const at = (s: number) => new Date(minute + s * 1000).toISOString();
    const batch = [
      event('p1', { user_id: 'gb-ios', time: at(1), props: { country: 'GB', device: 'ios' } }),
      event('p2', { user_id: 'gb-ios', time: at(2), event: 'upgrade', props: { mrr: 29 } }),
      event('p3', { user_id: 'fr-web', time: at(3), props: { country: 'france', device: 'web' } }),
      event('p4', { user_id: 'fr-web', time: at(4), event: 'purchase', props: { amount: 12.5 } }),
      event('p5', { user_id: 'fr-web', time: at(65), event: 'purchase', props: { amount: 7.5 } }),
    ];
    const sentAt = Date.now();
    assert.equal((await t.post('/v1/events', batch)).status, 200);

    const points = await until('the aggregates', async () => {
      const r = (await (await t.call('/v1/aggregates?window=1m', { key: t.keys.read })).json()) as {
        position: number;
        points: { start: string; event: string; dimension: string; value: string; count: number; sums: Record<string, number> }[];
      };
      return r.position >= 5 ? r.points : undefined;
    });
    const find = (event: string, dimension: string, value: string, start = minute) =>
      points.find((p) => p.event === event && p.dimension === dimension && p.value === value && Date.parse(p.start) === start);
    assert.equal(find('login', 'all', 'all')?.count, 2);
    assert.equal(find('login', 'country', 'GB')?.count, 1);
    assert.equal(find('login', 'device', 'web')?.count, 1);
    assert.equal(find('upgrade', 'tier', 'free')?.sums.mrr, 29);
    assert.equal(find('purchase', 'all', 'all')?.sums.amount, 12.5);
    assert.equal(find('purchase', 'all', 'all', minute + 60_000)?.sums.amount, 7.5, 'the next minute is its own window');
    assert.equal(find('purchase', 'country', 'FR')?.count, 1, "dims come from the user created by its first event, the country's name as its ISO code");

    const archived = await until('the archive', async () => {
      const lake = await Lakehouse.open(join(dir, 'lake')).catch(() => undefined);
      if (!lake) return undefined;
      try {
        const [r] = await lake.query(sql`SELECT count(*) AS n, count(DISTINCT event_id) AS ids, min(dims->>'country') AS country FROM live_events`);
        return r!.n === 5 ? r : undefined;
      } catch {
        return undefined; // no live files yet
      } finally {
        lake.close();
      }
    });
    const delay = Date.now() - sentAt;
    assert.equal(archived.ids, 5);
    assert.ok(delay < 10_000, `archived within ${delay} ms`);

    // Restart on the same data dir: nothing is counted or archived twice, retries stay duplicates.
    await t.service.stop();
    t = await startTestService({}, dir);
    const retry = (await (await t.post('/v1/events', batch, t.keys.ingest)).json()) as { accepted: number; duplicates: number };
    assert.deepEqual([retry.accepted, retry.duplicates], [0, 5]);
    await t.post('/v1/events', [event('p6', { user_id: 'gb-ios', time: at(5) })]);
    const afterRestart = await until('the aggregates after restart', async () => {
      const r = (await (await t.call('/v1/aggregates?window=1m&event=login&dimension=all', { key: t.keys.read })).json()) as {
        position: number;
        points: { start: string; count: number }[];
      };
      return r.position >= 6 ? r.points : undefined;
    });
    assert.equal(afterRestart.find((p) => Date.parse(p.start) === minute)?.count, 3);
  });
});

describe('a service killed while clients send batches', { timeout: 180_000 }, () => {
  it('keeps every acknowledged event exactly once in the log, the archive and the aggregates', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wb-kill-'));
    const store = KeyStore.open(join(dir, 'keys.json'));
    const key = store.create('kill-test', ['ingest', 'read']).key;
    let child: ChildProcess | undefined;
    after(() => {
      child?.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    });
    const start = async () => {
      child = spawn(process.execPath, ['bin/wb.cjs', '--data-dir', dir, 'serve', '--port', '0', '--quiet'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      return new Promise<string>((resolve, reject) => {
        child!.stderr!.on('data', (d: Buffer) => {
          err += d.toString();
          const m = /service on (http:\/\/[\d.:]+)/.exec(err);
          if (m) resolve(m[1]!);
        });
        child!.once('exit', (code) => reject(new Error(`the service exited (${code}): ${err}`)));
      });
    };
    const send = async (url: string, ids: number[]) => {
      const body = ids.map((i) => event(`k${i}`, { user_id: `u${i % 37}` }));
      const r = await fetch(`${url}/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (r.status !== 200) throw new Error(`status ${r.status}`);
      return (await r.json()) as { accepted: number; duplicates: number };
    };

    let url = await start();
    const acknowledged = new Set<number>();
    const unacknowledged: number[][] = [];
    let nextId = 0;
    const killAt = Date.now() + 1500;
    let killed = false;
    const client = async () => {
      while (!killed) {
        const ids = Array.from({ length: 100 }, () => nextId++);
        try {
          await send(url, ids);
          for (const i of ids) acknowledged.add(i);
        } catch {
          unacknowledged.push(ids); // in flight when the service died: a real client retries these
        }
      }
    };
    const clients = [client(), client()];
    while (Date.now() < killAt) await sleep(20);
    child!.kill('SIGKILL');
    killed = true;
    await Promise.all(clients);
    await new Promise((r) => (child!.exitCode !== null || child!.signalCode !== null ? r(null) : child!.once('exit', r)));
    assert.ok(acknowledged.size >= 500, `only ${acknowledged.size} events were acknowledged before the kill`);

    url = await start();
    let retriedDuplicates = 0;
    for (const ids of unacknowledged) retriedDuplicates += (await send(url, ids)).duplicates;
    const total = nextId;

    const log = await until('consumers to catch up', async () => {
      const r = (await (await fetch(`${url}/v1/log`, { headers: { authorization: `Bearer ${key}` } })).json()) as {
        next: number;
        consumers: { name: string; lag: number }[];
      };
      return r.consumers.every((c) => c.lag === 0) ? r : undefined;
    });
    assert.equal(log.next, total, 'the log holds every event once, acknowledged or retried');

    const aggregates = (await (
      await fetch(`${url}/v1/aggregates?window=1h&event=login&dimension=all`, { headers: { authorization: `Bearer ${key}` } })
    ).json()) as { points: { count: number }[] };
    assert.equal(
      aggregates.points.reduce((s, p) => s + p.count, 0),
      total,
      'the aggregates count every event once',
    );

    const lake = await Lakehouse.open(join(dir, 'lake'));
    const [archive] = await lake.query(sql`SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM live_events`);
    const missing = await lake.query(sql`SELECT count(*) AS n FROM range(${total}) r(i) ANTI JOIN live_events e ON e.event_id = 'k' || r.i`);
    lake.close();
    assert.deepEqual(archive, { n: total, ids: total }, 'the archive holds every event once');
    assert.equal(missing[0]!.n, 0);
    console.log(
      `# kill test: ${acknowledged.size} acknowledged before SIGKILL, ${unacknowledged.length} batches in flight retried (${retriedDuplicates} of their events were already in), ${total} in all`,
    );
    child!.kill('SIGTERM');
    await new Promise((r) => child!.once('exit', r));
  });
});
