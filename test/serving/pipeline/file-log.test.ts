import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync, readdirSync, readFileSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { FileEventLog } from '../../../src/serving/pipeline/file-log.js';
import { tempDir } from '../../helpers/tmp.js';
import { eventLogConformance } from './conformance.js';

const root = tempDir('file-log-');
const enc = (s: string) => Buffer.from(s);
const dec = (b: Uint8Array) => Buffer.from(b).toString();
const segmentFiles = (dir: string) =>
  readdirSync(dir)
    .filter((n) => n.endsWith('.log'))
    .sort();

/** Appends `count` records named `record-<i>`, one batch each, and closes the log. */
async function writeRecords(dir: string, count: number, options?: { segmentBytes?: number }): Promise<void> {
  const log = await FileEventLog.open(dir, options);
  for (let i = 0; i < count; i++) await log.append([enc(`record-${i}-${'x'.repeat(20)}`)]);
  await log.close();
}

function flipByteOf(file: string, needle: string): void {
  const buf = readFileSync(file);
  const at = buf.indexOf(needle);
  assert.ok(at >= 0, `${needle} is in ${file}`);
  buf[at + needle.length - 1]! ^= 0xff;
  writeFileSync(file, buf);
}

eventLogConformance('file', () => FileEventLog.open(join(root, 'conformance')));

describe('FileEventLog', () => {
  it('cuts a torn tail on open and keeps every whole record', async () => {
    for (const [name, tear] of [
      ['garbage', (file: string) => appendFileSync(file, 'garbage that is not a record')],
      ['half a record', (file: string) => truncateSync(file, statSync(file).size - 15)],
    ] as const) {
      const dir = join(root, `torn-${name.replace(/ /g, '-')}`);
      await writeRecords(dir, 10);
      const whole = name === 'garbage' ? 10 : 9;
      tear(join(dir, segmentFiles(dir).at(-1)!));
      const log = await FileEventLog.open(dir);
      try {
        assert.ok(log.recovered.truncatedBytes > 0, `${name}: truncated`);
        assert.equal(await log.next(), whole, name);
        const entries = await log.read(0, 100);
        assert.deepEqual(
          entries.map((e) => dec(e.payload).split('-')[1]),
          Array.from({ length: whole }, (_, i) => String(i)),
        );
        assert.deepEqual(await log.append([enc('after')]), { first: whole, next: whole + 1 });
        assert.equal(dec((await log.read(whole, 1))[0]!.payload), 'after');
      } finally {
        await log.close();
      }
      const again = await FileEventLog.open(dir);
      assert.equal(again.recovered.truncatedBytes, 0, 'a repaired log opens clean');
      assert.equal(await again.next(), whole + 1);
      await again.close();
    }
  });

  it('refuses a CRC mismatch in the last segment that intact records follow, and cuts it only when asked', async () => {
    const dir = join(root, 'crc-last');
    await writeRecords(dir, 10);
    const file = join(dir, segmentFiles(dir).at(-1)!);
    const size = statSync(file).size;
    flipByteOf(file, 'record-5-');
    await assert.rejects(
      FileEventLog.open(dir),
      /corrupt record in .*00000000000000000000\.log at byte \d+ \(offset 5\), followed by 4 intact record\(s\).*--repair-log/,
    );
    assert.equal(statSync(file).size, size, 'nothing is cut when opening refuses');
    const log = await FileEventLog.open(dir, { repairTail: true });
    try {
      assert.equal(await log.next(), 5);
      assert.equal(log.recovered.truncatedBytes, size / 2, 'records 5 to 9 are cut: half of ten equal records');
      assert.deepEqual([log.recovered.cut?.offset, log.recovered.cut?.records, log.recovered.cut?.intactRecords], [5, 5, 4]);
      assert.equal(readFileSync(log.recovered.cut!.savedAs).length, size / 2, 'the cut bytes are kept aside');
      assert.deepEqual(
        (await log.read(0, 100)).map((e) => dec(e.payload).split('-')[1]),
        ['0', '1', '2', '3', '4'],
      );
    } finally {
      await log.close();
    }
  });

  it('refuses to open when a record in an older segment is corrupt, naming the file', async () => {
    const dir = join(root, 'crc-older');
    await writeRecords(dir, 30, { segmentBytes: 256 });
    assert.ok(segmentFiles(dir).length >= 3);
    flipByteOf(join(dir, segmentFiles(dir)[0]!), 'record-1-');
    for (let attempt = 0; attempt < 2; attempt++) {
      await assert.rejects(FileEventLog.open(dir, { segmentBytes: 256 }), /corrupt record in .*00000000000000000000\.log at byte \d+ \(offset 1\)/);
    }
  });

  it('rolls segments over and reads across their boundaries, before and after a reopen', async () => {
    const dir = join(root, 'rollover');
    let log = await FileEventLog.open(dir, { segmentBytes: 1024 });
    const expected: string[] = [];
    const batches = Array.from({ length: 60 }, (_, b) => Array.from({ length: 1 + (b % 7) }, (_, j) => `b${b}-r${j}-${'y'.repeat(30)}`));
    for (let b = 0; b < batches.length; b += 10) {
      const group = batches.slice(b, b + 10);
      const append = (batch: string[]) => log.append(batch.map(enc));
      const results = [];
      if (b % 20 === 0) results.push(...(await Promise.all(group.map(append))));
      else for (const batch of group) results.push(await append(batch));
      for (const [i, { first }] of results.entries()) group[i]!.forEach((p, j) => (expected[first + j] = p));
    }
    const files = segmentFiles(dir);
    assert.ok(files.length >= 5, `${files.length} segments`);
    assert.equal(files[0], '00000000000000000000.log');
    const check = async () => {
      assert.equal(await log.next(), expected.length);
      assert.deepEqual(
        (await log.read(0, 10_000)).map((e) => dec(e.payload)),
        expected,
      );
      for (let from = 0; from < expected.length; from += 11) {
        for (const max of [1, 6, 23, 100]) {
          const entries = await log.read(from, max);
          assert.deepEqual(
            entries.map((e) => e.offset),
            expected.slice(from, from + max).map((_, i) => from + i),
          );
          assert.deepEqual(
            entries.map((e) => dec(e.payload)),
            expected.slice(from, from + max),
          );
        }
      }
      for (const name of segmentFiles(dir)) {
        const base = Number(name.slice(0, 20));
        if (base < expected.length) assert.equal(dec((await log.read(base, 1))[0]!.payload), expected[base], `first record of ${name}`);
      }
    };
    await check();
    await log.close();
    log = await FileEventLog.open(dir, { segmentBytes: 1024 });
    try {
      assert.equal(log.recovered.truncatedBytes, 0);
      await check();
      assert.equal((await log.append([enc('after reopen')])).first, expected.length);
    } finally {
      await log.close();
    }
  });

  it('keeps every acknowledged batch when the writer process is killed', { timeout: 60_000 }, async () => {
    const dir = join(root, 'crash');
    const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'file-log-writer.ts'), dir, '4096'], {
      cwd: resolve(__dirname, '../../..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d));
    const closed = once(child, 'close');
    await new Promise<void>((ready, fail) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d;
        if (out.startsWith('ready\n')) ready();
      });
      child.once('close', (code) => fail(new Error(`writer exited (${code}) before it was ready: ${err}`)));
    });
    await delay(1000);
    child.kill('SIGKILL');
    const [, signal] = await closed;
    assert.equal(signal, 'SIGKILL', `the writer was still running: ${err}`);

    const acks = [...out.matchAll(/^(\d+) (\d+) (\d+:\d+)\n/gm)].map((m) => ({ first: Number(m[1]), next: Number(m[2]), tag: m[3]! }));
    assert.ok(acks.length >= 10, `only ${acks.length} acknowledged batches`);
    assert.match(readFileSync(join(dir, 'LOCK'), 'utf8'), new RegExp(`^${child.pid}\\b`), 'the dead writer left its LOCK');

    const log = await FileEventLog.open(dir, { segmentBytes: 4096 });
    try {
      const next = await log.next();
      const all = await log.read(0, next + 1);
      assert.equal(all.length, next);
      assert.deepEqual(
        all.map((e) => e.offset),
        all.map((_, i) => i),
      );
      for (const { first, next: end, tag } of acks) {
        assert.ok(end <= next, `acknowledged ${first}..${end} but the log ends at ${next}`);
        assert.deepEqual(
          all.slice(first, end).map((e) => dec(e.payload)),
          [0, 1, 2, 3, 4].map((j) => `${tag}:${j}`),
        );
      }
      const payloads = all.map((e) => dec(e.payload));
      assert.equal(new Set(payloads).size, payloads.length, 'no record is duplicated');
      assert.ok(
        payloads.every((p) => /^\d+:\d+:\d$/.test(p)),
        'every record is whole',
      );
      assert.deepEqual(await log.append([enc('after crash')]), { first: next, next: next + 1 });
    } finally {
      await log.close();
    }
  });

  it('lets one handle at a time open a directory', async () => {
    const dir = join(root, 'lock');
    const log = await FileEventLog.open(dir);
    await assert.rejects(FileEventLog.open(dir), /event log .* is already open in this process/);
    symlinkSync(dir, join(root, 'lock-link'));
    await assert.rejects(FileEventLog.open(join(root, 'lock-link')), /is already open in this process/);
    await log.close();
    await (await FileEventLog.open(dir)).close();

    writeFileSync(join(dir, 'LOCK'), `${process.ppid}\n`);
    await assert.rejects(FileEventLog.open(dir), new RegExp(`event log .* is locked by running process ${process.ppid}`));

    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    writeFileSync(join(dir, 'LOCK'), `${dead}\n`);
    const taken = await FileEventLog.open(dir);
    assert.equal(readFileSync(join(dir, 'LOCK'), 'utf8').trim(), String(process.pid));
    await taken.close();
    assert.ok(!readdirSync(dir).includes('LOCK'), 'close releases the lock');
  });

  it('rejects calls after close and invalid consumer names', async () => {
    const log = await FileEventLog.open(join(root, 'closed'));
    await assert.rejects(log.commit('../escape', 1), /invalid consumer name/);
    await assert.rejects(log.committed(''), /invalid consumer name/);
    await assert.rejects(log.committed('x'.repeat(65)), /invalid consumer name/);
    await log.commit('Feature_updater.v2-1', 7);
    assert.equal(await log.committed('Feature_updater.v2-1'), 7);
    const waiting = log.waitFor(1_000, 60_000);
    await log.close();
    await waiting; // close releases waiters and their timers
    for (const call of [() => log.append([enc('x')]), () => log.read(0, 1), () => log.next(), () => log.commit('a', 1), () => log.waitFor(0, 1)]) {
      await assert.rejects(call(), /is closed/);
    }
  });

  it('group-commits concurrent appends: one fsync for many batches', async () => {
    const log = await FileEventLog.open(join(root, 'group'));
    try {
      const before = log.stats;
      const appending = Promise.all(Array.from({ length: 50 }, (_, i) => log.append([enc(`a${i}`), enc(`b${i}`)])));
      assert.equal(await log.next(), 0, 'nothing is visible before its fsync');
      assert.deepEqual(await log.read(0, 10), []);
      const results = await appending;
      const after = log.stats;
      assert.equal(after.appends - before.appends, 50);
      assert.ok(after.fsyncs - before.fsyncs < 50, `${after.fsyncs - before.fsyncs} fsyncs for 50 appends`);
      assert.deepEqual(
        results.map((r) => r.next - r.first),
        Array(50).fill(2),
      );
      assert.equal(await log.next(), 100);
    } finally {
      await log.close();
    }
  });
});
