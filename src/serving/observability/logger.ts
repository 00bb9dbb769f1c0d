import { join } from 'node:path';
import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * Structured JSON logs: to rotating files in `<data dir>/logs` (a new file daily or past 20 MB,
 * the last 14 kept; `wb logs` searches them) and, unless quiet, to standard output.
 */
export function createLogger(dataDir: string, options: { level?: string; quiet?: boolean } = {}): Logger {
  const targets: pino.TransportTargetOptions[] = [
    {
      target: 'pino-roll',
      level: options.level ?? 'info',
      options: { file: join(dataDir, 'logs', 'service'), extension: '.log', frequency: 'daily', size: '20m', limit: { count: 14 }, mkdir: true },
    },
  ];
  if (!options.quiet) targets.push({ target: 'pino/file', level: options.level ?? 'info', options: { destination: 1 } });
  return pino({ level: options.level ?? 'info', base: { service: 'plg-workbench' }, timestamp: pino.stdTimeFunctions.isoTime }, pino.transport({ targets }));
}

/** A logger that writes nothing (tests that do not look at logs). */
export const silentLogger = (): Logger => pino({ level: 'silent' });
