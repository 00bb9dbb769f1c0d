import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { KeyStore } from './auth/keys.js';
import { createLogger } from './observability/logger.js';
import { startService, type RunningService, type ServiceConfig } from './service.js';

export interface EmbeddedService {
  url: string;
  dataDir: string;
  keys: { admin: string; read: string };
  service: RunningService;
  stop(): Promise<void>;
}

/**
 * A service in this process on a fresh data dir and a free port, with an admin and a read key:
 * what a notebook starts when no service is running (its logs go to the data dir's logs/).
 */
export async function startEmbeddedService(dataDir: string, config: Partial<ServiceConfig> = {}): Promise<EmbeddedService> {
  rmSync(dataDir, { recursive: true, force: true });
  const store = KeyStore.open(join(dataDir, 'keys.json'));
  const keys = { admin: store.create('embedded admin', ['admin']).key, read: store.create('embedded read', ['read']).key };
  const logger = createLogger(dataDir, { quiet: true });
  const service = await startService({ dataDir, port: 0, host: '127.0.0.1', logger, ...config });
  return {
    url: service.url,
    dataDir,
    keys,
    service,
    stop: async () => {
      await service.stop();
      logger.flush();
    },
  };
}
