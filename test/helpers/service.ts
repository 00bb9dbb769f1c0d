import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyStore } from '../../src/serving/auth/keys.js';
import { silentLogger } from '../../src/serving/observability/logger.js';
import { startService, type RunningService, type ServiceConfig } from '../../src/serving/service.js';

export interface TestService {
  service: RunningService;
  /** Stops the service, then removes its data dir. */
  stop(): Promise<void>;
  dataDir: string;
  keys: { admin: string; ingest: string; read: string };
  /** fetch against the service, with a key. */
  call(path: string, init?: RequestInit & { key?: string }): Promise<Response>;
  post(path: string, body: unknown, key?: string): Promise<Response>;
}

/** A real service on a free port over a fresh data dir (file event log, SQLite), with keys made. */
export async function startTestService(config: Partial<ServiceConfig> = {}, dir?: string): Promise<TestService> {
  const dataDir = dir ?? mkdtempSync(join(tmpdir(), 'wb-svc-'));
  const store = KeyStore.open(join(dataDir, 'keys.json'));
  const make = (scope: string) => store.create(`test-${scope}`, [scope]).key;
  const keys = { admin: make('admin'), ingest: make('ingest'), read: make('read') };
  const service = await startService({ dataDir, port: 0, host: '127.0.0.1', logger: silentLogger(), ...config });
  const call = (path: string, init: RequestInit & { key?: string } = {}) => {
    const headers = new Headers(init.headers);
    if (init.key) headers.set('authorization', `Bearer ${init.key}`);
    return fetch(`${service.url}${path}`, { ...init, headers });
  };
  const post = (path: string, body: unknown, key?: string) =>
    call(path, { method: 'POST', key: key ?? keys.ingest, body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  const stop = async () => {
    await service.stop();
    if (!dir) rmSync(dataDir, { recursive: true, force: true });
  };
  return { service, stop, dataDir, keys, call, post };
}

export const event = (id: string, over: Record<string, unknown> = {}) => ({
  event_id: id,
  time: new Date(Date.now() - 1000).toISOString(),
  user_id: 'u1',
  event: 'login',
  props: { country: 'GB', device: 'ios' },
  ...over,
});
