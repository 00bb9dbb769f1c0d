import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { connect } from 'nats';
import pg from 'pg';
import { clusterEngines, haproxyConfig, plannedInstances } from '../../src/cli/cluster.js';
import { postgresTestSchema, serverAvailable } from '../helpers/servers.js';
import { sleep, until } from '../helpers/wait.js';
import { alive, findHaproxy, startCluster } from '../helpers/processes.js';
import { tempDir } from '../helpers/tmp.js';
import { wbInProcess } from '../helpers/wb.js';

describe('haproxyConfig', () => {
  const config = haproxyConfig({
    port: 9000,
    instances: [
      { name: 'wb1', host: '127.0.0.1', port: 9001 },
      { name: 'wb2', host: '10.0.0.2', port: 7000 },
    ],
  });
  const lines = config.split('\n').map((l) => l.trim());
  /** The lines of one section (from its header to the next blank line). */
  const section = (header: string): string[] => {
    const start = lines.indexOf(header);
    assert.ok(start >= 0, `section ${header}`);
    const end = lines.indexOf('', start);
    return lines.slice(start + 1, end < 0 ? undefined : end);
  };

  it('listens on the proxy port and balances over every instance, each health-checked on the readiness route', () => {
    assert.deepEqual(section('frontend wb'), ['bind 127.0.0.1:9000', 'default_backend wb_instances']);
    const backend = section('backend wb_instances');
    assert.ok(backend.includes('balance roundrobin'));
    assert.ok(backend.includes('option httpchk GET /readyz'));
    assert.ok(backend.includes('http-check expect status 200'));
    assert.deepEqual(
      backend.filter((l) => l.startsWith('server ')),
      ['server wb1 127.0.0.1:9001 check inter 1s fall 2 rise 1', 'server wb2 10.0.0.2:7000 check inter 1s fall 2 rise 1'],
    );
  });

  it('retries only connections that never reached an instance, on another one', () => {
    const defaults = section('defaults');
    assert.ok(defaults.includes('retries 2'));
    assert.ok(defaults.includes('option redispatch'));
    // conn-failure alone: no empty-response, response-timeout or status codes, which would replay a request an instance got.
    assert.deepEqual(
      defaults.filter((l) => l.startsWith('retry-on')),
      ['retry-on conn-failure'],
    );
    assert.ok(defaults.includes('timeout tunnel 1h'));
    assert.ok(defaults.some((l) => /^timeout connect \d+s$/.test(l)));
    assert.ok(defaults.includes('timeout check 3s'), 'a slow health check answer is not a failure');
  });

  it('adds a stats page on localhost only when asked, binds where told, and refuses no instances', () => {
    assert.ok(!config.includes('stats'));
    const withStats = haproxyConfig({ port: 80, bind: '0.0.0.0', instances: plannedInstances(1, 80), statsPort: 8404 });
    assert.match(withStats, /^frontend stats\n {2}bind 127\.0\.0\.1:8404\n {2}stats enable$/m);
    assert.match(withStats, /^ {2}bind 0\.0\.0\.0:80$/m);
    assert.throws(() => haproxyConfig({ port: 80, instances: [] }), /at least one instance/);
  });

  it('puts the instances on the ports after the proxy', () => {
    assert.deepEqual(plannedInstances(3, 8080), [
      { name: 'wb1', host: '127.0.0.1', port: 8081 },
      { name: 'wb2', host: '127.0.0.1', port: 8082 },
      { name: 'wb3', host: '127.0.0.1', port: 8083 },
    ]);
  });

  it('is a configuration HAProxy accepts, when HAProxy is installed', (t) => {
    const haproxy = findHaproxy();
    if (!haproxy) return t.skip('haproxy is not installed');
    const file = join(tempDir(), 'haproxy.cfg');
    writeFileSync(file, haproxyConfig({ port: 9000, instances: plannedInstances(3, 9000), statsPort: 9100 }));
    const check = spawnSync(haproxy, ['-c', '-f', file], { encoding: 'utf8' });
    assert.equal(check.status, 0, check.stdout + check.stderr);
  });
});

describe('clusterEngines', () => {
  it('asks for PostgreSQL and JetStream, naming the option and the variable', () => {
    const saved = { oltp: process.env.WB_OLTP_URL, log: process.env.WB_EVENT_LOG };
    delete process.env.WB_OLTP_URL;
    delete process.env.WB_EVENT_LOG;
    try {
      assert.throws(() => clusterEngines({ eventLog: 'nats://x:4222' }), /--oltp postgres:\/\/.*WB_OLTP_URL/);
      assert.throws(() => clusterEngines({ oltp: 'oltp.db', eventLog: 'nats://x:4222' }), /got "oltp\.db"/);
      assert.throws(() => clusterEngines({ oltp: 'postgres://u:secret@h/db', eventLog: 'file' }), /--event-log nats:\/\/.*got "file"/);
      assert.throws(
        () => clusterEngines({ oltp: 'postgres://u:secret@h/db' }),
        (err: Error) => !err.message.includes('secret'),
      );
      assert.deepEqual(clusterEngines({ oltp: 'postgresql://h/db', eventLog: 'nats://h:4222?stream=S' }), {
        oltp: 'postgresql://h/db',
        eventLog: 'nats://h:4222?stream=S',
      });
    } finally {
      if (saved.oltp !== undefined) process.env.WB_OLTP_URL = saved.oltp;
      if (saved.log !== undefined) process.env.WB_EVENT_LOG = saved.log;
    }
  });
});

describe('wb cluster up (PostgreSQL, JetStream, HAProxy)', { timeout: 240_000 }, () => {
  const NATS = 'nats://127.0.0.1:4222';
  const stream = `WB_CLUSTER_${process.pid}_${Date.now()}`;
  const pgSchema = postgresTestSchema('wb_cluster');
  const dataDir = tempDir('wb-cluster-');
  let url = '';
  let skip: string | undefined;
  let cluster: ChildProcess | undefined;
  const pids: number[] = [];

  before(async () => {
    const opened = await pgSchema.open(async (u, s) => {
      // What each process of the deployment is given: the schema rides on the URL as its search_path.
      url = `${u}${u.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${s}`)}`;
      const admin = new pg.Client({ connectionString: u });
      await admin.connect();
      await admin.query(`CREATE SCHEMA IF NOT EXISTS "${s}"`);
      await admin.end();
      return true;
    });
    if (typeof opened === 'string') return void (skip = opened);
    const nats = await serverAvailable('NATS JetStream', NATS);
    if (nats !== true) return void (skip = nats);
    if (!findHaproxy()) {
      const reason = 'haproxy is not installed (apt-get install haproxy)';
      if (process.env.CI) throw new Error(`${reason}, and CI must test the cluster with it (.ci/run installs it)`);
      console.warn(`\n*** SKIPPING wb cluster up tests: ${reason}. ***\n`);
      skip = `SKIPPED: ${reason}`;
    }
  });
  after(async () => {
    // A failed test must not leave processes behind.
    if (cluster && cluster.exitCode === null && cluster.signalCode === null) cluster.kill('SIGKILL');
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    if (skip || !url) return;
    const nc = await connect({ servers: NATS });
    const jsm = await nc.jetstreamManager();
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
  });

  it('serves through the proxy, keeps serving when an instance is killed, and stops every process on SIGTERM', async (t: TestContext) => {
    if (skip) return t.skip(skip);
    // The key is made before the cluster starts, in the shared OLTP: every instance reads it on start.
    const key = (await wbInProcess(dataDir, 'keys', 'create', '--name', 'cluster', '--scope', 'admin', '--oltp', url)).trim();
    assert.match(key, /^wb_/);

    const started = await startCluster({ dataDir, instances: 2, oltp: url, eventLog: `${NATS}?stream=${stream}` });
    cluster = started.child;
    const { proxy, exited } = started;
    const port = Number(new URL(proxy).port);
    assert.match(started.output, new RegExp(`^cluster up: ${proxy} \\(haproxy pid \\d+`, 'm'));
    const pidOf = (re: RegExp) => Number(re.exec(started.output)?.[1]);
    const haproxyPid = pidOf(/haproxy pid (\d+)/);
    const wb1 = pidOf(/^ {2}wb1 pid (\d+)/m);
    const wb2 = pidOf(/^ {2}wb2 pid (\d+)/m);
    pids.push(haproxyPid, wb1, wb2);
    assert.ok(
      pids.every((p) => Number.isInteger(p) && p > 0 && alive(p)),
      started.output,
    );
    const cfg = readFileSync(join(dataDir, 'cluster', 'haproxy.cfg'), 'utf8');
    assert.match(cfg, new RegExp(`bind 127\\.0\\.0\\.1:${port}\\n`));
    assert.equal((cfg.match(/^ {2}server wb\d /gm) ?? []).length, 2);

    // Round robin: both instances answer (the instance id carries the pid).
    const instanceOf = async (): Promise<string> => {
      const r = await fetch(`${proxy}/healthz`);
      assert.equal(r.status, 200);
      return ((await r.json()) as { instance: string }).instance;
    };
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(await instanceOf());
    assert.equal(seen.size, 2, [...seen].join(', '));
    assert.ok([...seen].some((id) => id.includes(`:${wb1}:`)) && [...seen].some((id) => id.includes(`:${wb2}:`)));

    let sent = 0;
    /** Posts one new event; a failure is retried once (with the same event_id), and the retry must succeed. */
    let firstTryFailures = 0;
    const send = async (): Promise<void> => {
      const body = JSON.stringify([
        { event_id: `e-${++sent}`, time: new Date(Date.now() - 1000).toISOString(), user_id: `u${sent % 7}`, event: 'login', props: { country: 'GB' } },
      ]);
      const post = () =>
        fetch(`${proxy}/v1/events`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body,
        }).then(
          async (r) => ({ status: r.status, json: (await r.json().catch(() => ({}))) as { accepted?: number; duplicates?: number } }),
          () => ({ status: 0, json: {} as { accepted?: number; duplicates?: number } }),
        );
      let r = await post();
      if (r.status !== 200) {
        firstTryFailures++;
        await sleep(100);
        r = await post();
      }
      assert.equal(r.status, 200, `event ${sent}: ${JSON.stringify(r)}`);
      assert.equal((r.json.accepted ?? 0) + (r.json.duplicates ?? 0), 1);
    };
    for (let i = 0; i < 10; i++) await send();
    assert.equal(firstTryFailures, 0, 'no failure before an instance dies');

    process.kill(wb1, 'SIGKILL');
    // Requests keep succeeding: a connection refused by the dead instance is redispatched by the proxy;
    // at most a request in flight on it fails, and its retry succeeds.
    const killedAt = Date.now();
    while (Date.now() - killedAt < 4000) await send();
    assert.ok(firstTryFailures <= 2, `${firstTryFailures} first tries failed`);
    await until('the cluster to report wb1 gone', async () => (started.output.includes(`wb1 (pid ${wb1}) was killed by SIGKILL`) ? true : undefined), 10_000);
    // The health check has taken it out: every answer is from wb2.
    for (let i = 0; i < 6; i++) assert.ok((await instanceOf()).includes(`:${wb2}:`));
    assert.ok(alive(wb2) && alive(haproxyPid));

    cluster.kill('SIGTERM');
    const stopStart = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const { code, signal } = await Promise.race([
      exited,
      new Promise<{ code: number; signal: null }>((r) => (timer = setTimeout(() => r({ code: -1, signal: null }), 60_000))),
    ]);
    clearTimeout(timer);
    t.diagnostic(
      `the cluster stopped ${Date.now() - stopStart} ms after SIGTERM; ${sent} events sent, ${firstTryFailures} first tries failed (after the kill)`,
    );
    assert.equal(code, 0, `wb cluster up exited with ${code ?? signal}:\n${started.output}`);
    assert.match(started.output, new RegExp(`wb2 \\(pid ${wb2}\\) exited with code 0`));
    for (const pid of pids) assert.ok(!alive(pid), `pid ${pid} still running`);
  });
});
