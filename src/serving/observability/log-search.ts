import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** pino's level numbers by name. */
export const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;
export type LevelName = keyof typeof LEVELS;

export interface LogQuery {
  /** Lowest level shown. */
  level?: LevelName;
  /** ISO instants bounding the record's time. */
  since?: number;
  until?: number;
  /** Case-insensitive text anywhere in the record. */
  text?: string;
  /** Most records returned (the newest). */
  limit?: number;
}

export interface LogRecord {
  level: number;
  time: string;
  msg?: string;
  [key: string]: unknown;
}

/**
 * Searches the service's JSON log files (`<data dir>/logs/service.*.log`, rotated by pino-roll),
 * oldest file first, keeping the newest `limit` matches. Lines that are not JSON are skipped and
 * counted, never thrown on: a log being written can end in half a line.
 */
export async function searchLogs(dataDir: string, query: LogQuery): Promise<{ records: LogRecord[]; files: number; unreadable: number }> {
  const dir = join(dataDir, 'logs');
  if (!existsSync(dir)) return { records: [], files: 0, unreadable: 0 };
  const files = readdirSync(dir)
    .filter((f) => /^service\..*log$/.test(f))
    .map((f) => join(dir, f))
    .sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs || a.localeCompare(b));
  const min = LEVELS[query.level ?? 'trace'];
  const text = query.text?.toLowerCase();
  const limit = query.limit ?? 100;
  const records: LogRecord[] = [];
  let unreadable = 0;
  for (const file of files) {
    for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
      if (!line) continue;
      let r: LogRecord;
      try {
        r = JSON.parse(line) as LogRecord;
      } catch {
        unreadable++;
        continue;
      }
      if (r.level < min) continue;
      const t = Date.parse(r.time);
      if (query.since !== undefined && t < query.since) continue;
      if (query.until !== undefined && t > query.until) continue;
      if (text && !line.toLowerCase().includes(text)) continue;
      records.push(r);
      if (records.length > limit) records.shift();
    }
  }
  return { records, files: files.length, unreadable };
}
