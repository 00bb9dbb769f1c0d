import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { searchLogs } from '../../../src/serving/observability/log-search.js';
import { createLogger } from '../../../src/serving/observability/logger.js';
import { tempDir } from '../../helpers/tmp.js';

describe('searching the logs', () => {
  it('filters by level, time range and text across rotated files, skipping broken lines', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'logs'));
    const line = (level: number, time: string, msg: string, extra = {}) => JSON.stringify({ level, time, msg, ...extra });
    writeFileSync(
      join(dir, 'logs', 'service.1.log'),
      [line(30, '2026-01-01T10:00:00Z', 'service started'), line(50, '2026-01-01T11:00:00Z', 'consumer failed', { consumer: 'archiver' })].join('\n') + '\n',
    );
    writeFileSync(
      join(dir, 'logs', 'service.2.log'),
      [line(40, '2026-01-02T09:00:00Z', 'anomaly: events{country="GB"} drop'), '{"level":30,"ti', line(20, '2026-01-02T10:00:00Z', 'debug detail')].join('\n') +
        '\n',
    );
    const all = await searchLogs(dir, {});
    assert.equal(all.records.length, 4);
    assert.equal(all.unreadable, 1);
    assert.deepEqual(
      (await searchLogs(dir, { level: 'warn' })).records.map((r) => r.msg),
      ['consumer failed', 'anomaly: events{country="GB"} drop'],
    );
    assert.deepEqual(
      (await searchLogs(dir, { since: Date.parse('2026-01-01T10:30:00Z'), until: Date.parse('2026-01-02T09:30:00Z') })).records.map((r) => r.msg),
      ['consumer failed', 'anomaly: events{country="GB"} drop'],
    );
    assert.deepEqual(
      (await searchLogs(dir, { text: 'ARCHIVER' })).records.map((r) => r.msg),
      ['consumer failed'],
    );
    assert.deepEqual(
      (await searchLogs(dir, { limit: 1 })).records.map((r) => r.msg),
      ['debug detail'],
      'the newest',
    );

    const cli = spawnSync(process.execPath, ['bin/wb.cjs', '--data-dir', dir, 'logs', '--level', 'error', '--since', '2025-12-31T00:00:00Z'], {
      encoding: 'utf8',
    });
    assert.equal(cli.status, 0, cli.stderr);
    assert.match(cli.stdout, /^2026-01-01T11:00:00Z ERROR consumer failed \{"consumer":"archiver"\}$/m);
    const bad = spawnSync(process.execPath, ['bin/wb.cjs', '--data-dir', dir, 'logs', '--since', 'last tuesday'], { encoding: 'utf8' });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--since "last tuesday": give an ISO time/);
  });

  it('finds what the service logger wrote to its rotating files', async () => {
    const dir = tempDir();
    const logger = createLogger(dir, { quiet: true });
    logger.info({ consumer: 'archiver' }, 'hello from the service');
    logger.warn('careful');
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
    await new Promise((r) => setTimeout(r, 300));
    const found = await searchLogs(dir, { text: 'hello from' });
    assert.deepEqual(
      found.records.map((r) => [r.msg, r.consumer]),
      [['hello from the service', 'archiver']],
    );
    assert.equal((await searchLogs(dir, { level: 'warn' })).records.length, 1);
  });
});
