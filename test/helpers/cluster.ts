import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, type TestContext } from 'node:test';
import { connect } from 'nats';
import pino from 'pino';
import { openKeyStore } from '../../src/serving/auth/keys.js';
import { startService, type RunningService, type ServiceConfig } from '../../src/serving/service.js';
import { postgresTestSchema, serverAvailable } from './servers.js';

export const NATS = 'nats://127.0.0.1:4222';

/** One cluster: its JetStream stream and the data dir its instances share. */
export interface Cluster {
  stream: string;
  dataDir: string;
}

/** A service instance of a test cluster, with what it logged and an admin client. */
export interface ClusterInstance {
  name: string;
  service: RunningService;
  lines: { level: number; msg: string }[];
  post(path: string, body: unknown): Promise<Response>;
  get(path: string): Promise<Response>;
  stop(): Promise<void>;
}

/**
 * Several service instances in one test process, as a cluster: one PostgreSQL schema (OLTP, leases,
 * keys, change feed), a JetStream stream and a shared data dir per cluster, an instance dir each,
 * and an admin key made once. Call at a test file's top level: it registers the hooks (skip loudly
 * without the servers; after each test, run `undo` and stop every instance; delete the streams at
 * the end).
 */
export function serviceCluster(prefix: string) {
  const postgres = postgresTestSchema(`wb_${prefix}`);
  const streamPrefix = `WB_${prefix.toUpperCase()}_${process.pid}_${Date.now()}`;
  let streams = 0;
  let url = '';
  let schema = '';
  let adminKey = '';
  let skipped: string | undefined;
  const instances: ClusterInstance[] = [];
  const dirs: string[] = [];
  /** Undone after each test, before its instances stop (a stubbed lease store would hold a stop forever). */
  const undo: (() => void)[] = [];
  const dir = (what: string) => {
    const d = mkdtempSync(join(tmpdir(), `wb-${prefix}-${what}-`));
    dirs.push(d);
    return d;
  };

  before(async () => {
    const opened = await postgres.open(async (u, s) => {
      url = u;
      schema = s;
      return true;
    });
    if (typeof opened === 'string') return void (skipped = opened);
    const nats = await serverAvailable('NATS JetStream', NATS);
    if (nats !== true) return void (skipped = nats);
    // The keys live in the OLTP database with PostgreSQL: made once, seen by every instance.
    const keys = await openKeyStore(dir('keys'), url, { schema });
    adminKey = (await keys.create('cluster-test', ['admin'])).key;
    await keys.close();
  });
  beforeEach((t) => {
    if (skipped) (t as TestContext).skip(skipped);
  });
  // A failed test must not leave its instances holding the schema's leases for the next one.
  afterEach(async () => {
    for (const f of undo.splice(0)) f();
    for (const i of instances.splice(0)) await i.stop().catch(() => undefined);
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  after(async () => {
    if (skipped || streams === 0) return;
    const nc = await connect({ servers: NATS });
    const jsm = await nc.jetstreamManager();
    for await (const name of jsm.streams.names()) if (name.includes(streamPrefix)) await jsm.streams.delete(name).catch(() => undefined);
    await nc.close();
  });

  return {
    undo,
    get url() {
      return url;
    },
    get schema() {
      return schema;
    },
    get adminKey() {
      return adminKey;
    },
    /** A new cluster: its own stream and shared data dir. */
    cluster(): Cluster {
      return { stream: `${streamPrefix}_${++streams}`, dataDir: dir('shared') };
    },
    /** Starts an instance of `cluster` named `name` (its instance id), with `config` over the cluster's settings. */
    async instance(name: string, cluster: Cluster, config: Partial<ServiceConfig> = {}): Promise<ClusterInstance> {
      const lines: { level: number; msg: string }[] = [];
      const service = await startService({
        dataDir: cluster.dataDir,
        instanceDir: dir(name),
        port: 0,
        host: '127.0.0.1',
        logger: pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) }),
        oltpUrl: url,
        oltpSchema: schema,
        eventLog: `${NATS}?stream=${cluster.stream}`,
        instanceId: name,
        ...config,
      });
      let stopped: Promise<void> | undefined;
      const headers = { authorization: `Bearer ${adminKey}` };
      const i: ClusterInstance = {
        name,
        service,
        lines,
        post: (path, body) =>
          fetch(`${service.url}${path}`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) }),
        get: (path) => fetch(`${service.url}${path}`, { headers }),
        stop: () => (stopped ??= service.stop()),
      };
      instances.push(i);
      return i;
    },
  };
}
