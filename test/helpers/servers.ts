import net from 'node:net';
import { after, before, beforeEach, type TestContext } from 'node:test';
import pg from 'pg';

/**
 * Whether a scale-out server's test may run. Under CI the server must be there (.ci/run starts it),
 * so its absence fails the run; on a laptop without it the test is skipped, loudly.
 */
export async function serverAvailable(name: string, url: string): Promise<true | string> {
  const { hostname, port } = new URL(url);
  const reachable = await new Promise<boolean>((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port) });
    socket.setTimeout(1500);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
  if (reachable) return true;
  const reason = `${name} is not reachable at ${url}`;
  if (process.env.CI) throw new Error(`${reason}, and CI must test against it (.ci/run starts it)`);
  console.warn(`\n*** SKIPPING ${name} tests: ${reason}. Start it to run them (see README). ***\n`);
  return `SKIPPED: ${reason}`;
}

/**
 * A PostgreSQL schema of this test process's own, dropped when the test file ends: `open` makes a
 * store on it once the server is reachable (or returns the skip reason of `serverAvailable`).
 */
export function postgresTestSchema(prefix: string): { open<T>(make: (url: string, schema: string) => Promise<T>): Promise<T | string> } {
  const url = process.env.WB_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `${prefix}_${process.pid}_${Date.now()}`;
  let created = false;
  after(async () => {
    if (!created) return;
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await client.end();
  });
  return {
    async open(make) {
      const available = await serverAvailable('PostgreSQL', url);
      if (available !== true) return available;
      created = true;
      return make(url, schema);
    },
  };
}

/**
 * The store a conformance suite runs against: opened before the suite's tests, closed after them.
 * When `open` returns a reason instead (a server that is not there, see `serverAvailable`), every
 * test of the suite is skipped with it. Call inside `describe`; the tests read `.store`.
 */
export function storeUnderTest<T extends { close(): Promise<void> }>(open: () => Promise<T | string>): { readonly store: T } {
  let store: T | undefined;
  let skipped: string | undefined;
  before(async () => {
    const opened = await open();
    if (typeof opened === 'string') skipped = opened;
    else store = opened;
  });
  beforeEach((t) => {
    if (skipped) (t as TestContext).skip(skipped);
  });
  after(async () => {
    await store?.close();
  });
  return {
    get store() {
      return store!;
    },
  };
}
