import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { connect } from 'nats';
import pino from 'pino';
import type { LogRecoveryAlert } from '../../../src/serving/observability/alerts.js';
import { ConsumerRunner, type EventConsumer } from '../../../src/serving/pipeline/consumer.js';
import type { EventLog } from '../../../src/serving/pipeline/event-log.js';
import { FileEventLog } from '../../../src/serving/pipeline/file-log.js';
import { JetStreamEventLog } from '../../../src/serving/pipeline/jetstream-log.js';
import { Lakehouse } from '../../../src/workbench/lakehouse.js';
import { sql } from '../../../src/workbench/sql.js';
import { serverAvailable } from '../../helpers/servers.js';
import { event, startTestService, type TestService } from '../../helpers/service.js';
import { until } from '../../helpers/wait.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tempDir = (prefix: string) => {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
};

/** A logger that keeps its records, to find the recovery report in. */
function capturingLogger(): { logger: pino.Logger; records: { level: number; msg: string; recovery?: unknown }[] } {
  const records: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void records.push(JSON.parse(line) as { level: number; msg: string }) });
  return { logger, records };
}

const newestSegment = (dataDir: string) => {
  const dir = join(dataDir, 'log');
  return join(
    dir,
    readdirSync(dir)
      .filter((n) => /^\d{20}\.log$/.test(n))
      .sort()
      .at(-1)!,
  );
};

/** Every consumer of the service has handled the whole log. */
async function caughtUp(t: TestService): Promise<number> {
  return until('every consumer to reach the end of the log', async () => {
    const end = await t.service.log.next();
    return [...t.service.runners, ...t.service.features.runners].every((r) => r.offset === end) ? end : undefined;
  });
}

async function logIds(log: EventLog): Promise<{ offset: number; id: string }[]> {
  const entries = await log.read(0, 1_000_000);
  return entries.map((e) => ({ offset: e.offset, id: (JSON.parse(Buffer.from(e.payload).toString()) as { event_id: string }).event_id }));
}

interface Damage {
  name: string;
  /** Damages the newest segment, which ends with the records of e0..e5, one per event. */
  corrupt(file: string): void;
  /** The ids of the records lost (the damaged one and those after it). */
  lost: string[];
}

const DAMAGES: Damage[] = [
  {
    name: 'the last bytes flipped',
    corrupt: (file) => {
      const buf = readFileSync(file);
      for (let i = 1; i <= 3; i++) buf[buf.length - i]! ^= 0xff;
      writeFileSync(file, buf);
    },
    lost: ['e5'],
  },
  { name: 'a truncated last record', corrupt: (file) => truncateSync(file, statSync(file).size - 10), lost: ['e5'] },
  { name: 'garbage appended', corrupt: (file) => appendFileSync(file, Buffer.from('\u0007garbage that is not a record')), lost: [] },
  {
    name: 'a zeroed tail from inside the second-last record',
    corrupt: (file) => {
      const buf = readFileSync(file);
      const at = buf.indexOf('"event_id":"e4"');
      assert.ok(at > 0);
      buf.fill(0, at);
      writeFileSync(file, buf);
    },
    lost: ['e4', 'e5'],
  },
];

describe('log recovery through the service', { timeout: 180_000 }, () => {
  for (const damage of DAMAGES) {
    it(`after ${damage.name}: reports the cut, rewinds every consumer, and uses no offset twice`, async (ctx) => {
      const dir = tempDir('wb-recover-');
      let t = await startTestService({}, dir);
      try {
        const sent = Array.from({ length: 6 }, (_, i) => event(`e${i}`, { user_id: `u${i % 2}` }));
        assert.equal((await t.post('/v1/events', sent.slice(0, 5))).status, 200);
        assert.equal((await t.post('/v1/events', sent.slice(5))).status, 200);
        assert.equal(await caughtUp(t), 6);
      } finally {
        await t.service.stop();
      }

      damage.corrupt(newestSegment(dir));
      const { logger, records } = capturingLogger();
      t = await startTestService({ logger }, dir);
      try {
        const end = 6 - damage.lost.length;
        const { log } = t.service;

        // The report: an error log line, an alert and a metric, naming the cut and the offsets lost.
        const report = records.find((r) => r.level === 50 && r.msg.startsWith('event log recovered'));
        assert.ok(report, `an error names the recovery; logged: ${records.map((r) => r.msg).join(' | ')}`);
        ctx.diagnostic(report.msg);
        assert.match(
          report.msg,
          new RegExp(`cut \\d+ damaged bytes .* of ${newestSegment(dir).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*the log now ends at offset ${end}`),
        );
        if (damage.lost.length === 1) assert.match(report.msg, /the record at offset 5 is lost/);
        if (damage.lost.length === 2) assert.match(report.msg, /the 2 records at offsets 4 to 5 are lost/);
        const alerts = (await (await t.call('/v1/alerts', { key: t.keys.read })).json()) as { alerts: LogRecoveryAlert[] };
        const alert = alerts.alerts.find((a) => a.kind === 'log_recovery');
        assert.ok(alert, 'a log_recovery alert is raised');
        assert.equal(alert.end, end);
        assert.equal(alert.reason, report.msg.replace('event log recovered: ', ''));
        const metrics = await (await t.call('/metrics', { key: t.keys.read })).text();
        assert.match(metrics, /^wb_log_recoveries_total 1$/m);
        assert.ok(existsSync(log.recovered!.cut!.savedAs), 'the cut bytes are kept aside');

        // Nothing acknowledged before the damage is lost; no consumer stands past the end.
        assert.equal(await log.next(), end);
        assert.deepEqual(
          (await logIds(log)).map((e) => e.id),
          Array.from({ length: end }, (_, i) => `e${i}`),
        );
        for (const r of [...t.service.runners, ...t.service.features.runners]) {
          assert.ok(r.offset <= end, `${r.consumer.name} resumes at ${r.offset}, within the end ${end}`);
          assert.ok((await log.committed(r.consumer.name)) <= end, `${r.consumer.name}'s committed offset is within the end`);
        }
        if (damage.lost.length > 0) {
          const quarantined = t.service.archiver.quarantined;
          assert.ok(
            quarantined.length > 0 && quarantined.every((f) => f.includes(join('lake', 'quarantine', 'live-log-recovery'))),
            `archive files past the end are set aside: ${quarantined}`,
          );
        }

        // A new event and a resent copy of each lost one: each once in the log, the aggregates and the archive.
        const resend = [event('n1', { user_id: 'u9' }), ...damage.lost.map((id) => event(id, { user_id: `u${Number(id.slice(1)) % 2}` }))];
        const answer = (await (await t.post('/v1/events', resend)).json()) as { accepted: number; duplicates: number };
        assert.deepEqual([answer.accepted, answer.duplicates], [resend.length, 0], 'the lost events are not taken for duplicates');
        const total = await caughtUp(t);
        assert.equal(total, 7);
        const ids = await logIds(log);
        assert.deepEqual(
          ids.map((e) => e.offset),
          Array.from({ length: total }, (_, i) => i),
          'offsets are dense',
        );
        assert.deepEqual(ids.map((e) => e.id).sort(), ['e0', 'e1', 'e2', 'e3', 'e4', 'e5', 'n1']);

        const aggregates = (await (await t.call('/v1/aggregates?window=1h&event=login&dimension=all', { key: t.keys.read })).json()) as {
          position: number;
          points: { count: number }[];
        };
        assert.equal(aggregates.position, total);
        assert.equal(
          aggregates.points.reduce((s, p) => s + p.count, 0),
          total,
          'the aggregates count every event once',
        );

        const lake = await Lakehouse.open(join(dir, 'lake'));
        try {
          const rows = await lake.query(sql`SELECT event_id, count(*) AS n FROM live_events GROUP BY 1 ORDER BY 1`);
          assert.deepEqual(
            rows.map((r) => [r.event_id, Number(r.n)]),
            ['e0', 'e1', 'e2', 'e3', 'e4', 'e5', 'n1'].map((id) => [id, 1]),
            'the archive holds every event once',
          );
        } finally {
          lake.close();
        }
        // A batch spanning two dates is one file per date, under one name: names, not files, must not overlap.
        const names = new Set(
          readdirSync(join(dir, 'lake', 'archive', 'events', 'source=live'), { recursive: true })
            .map(String)
            .filter((f) => f.endsWith('.parquet'))
            .map((f) => f.split(/[\\/]/).pop()!),
        );
        const ranges = [...names].map((f) => /^part-(\d+)-(\d+)\.parquet$/.exec(f)!.slice(1).map(Number) as [number, number]).sort((a, b) => a[0] - b[0]);
        for (let i = 1; i < ranges.length; i++) assert.ok(ranges[i]![0] > ranges[i - 1]![1], `archive files hold each offset once: ${JSON.stringify(ranges)}`);
      } finally {
        await t.service.stop();
      }
    });
  }
});

describe('log recovery in the file log', () => {
  const write = async (dir: string, count: number, segmentBytes?: number) => {
    const log = await FileEventLog.open(dir, { segmentBytes });
    for (let i = 0; i < count; i++) await log.append([`record-${i}-${'x'.repeat(20)}`]);
    await log.commit('reader', count);
    await log.close();
  };
  const segments = (dir: string) =>
    readdirSync(dir)
      .filter((n) => n.endsWith('.log'))
      .sort();

  it('refuses to start when a segment between others is missing, naming the offsets and the file', async () => {
    const dir = tempDir('wb-gap-');
    await write(dir, 30, 256);
    const names = segments(dir);
    assert.ok(names.length >= 3);
    rmSync(join(dir, names[1]!));
    const base = Number(names[1]!.slice(0, 20));
    await assert.rejects(
      FileEventLog.open(dir),
      new RegExp(`offsets ${base} to \\d+ are missing: there is no segment file ${names[1]} between ${names[0]} and ${names[2]}`),
    );
  });

  it('rewrites committed offsets past the end when the last segment is gone, and reports them', async () => {
    const dir = tempDir('wb-lost-last-');
    await write(dir, 30, 256);
    const names = segments(dir);
    rmSync(join(dir, names.at(-1)!));
    const end = Number(names.at(-1)!.slice(0, 20));
    const log = await FileEventLog.open(dir, { segmentBytes: 256 });
    try {
      assert.equal(await log.next(), end);
      assert.deepEqual(log.recovered.rewound, [{ consumer: 'reader', committed: 30 }]);
      assert.equal(await log.committed('reader'), end);
      assert.equal(readFileSync(join(dir, 'consumers', 'reader.offset'), 'utf8').trim(), String(end), 'rewritten on disk');
    } finally {
      await log.close();
    }
  });

  it('moves a consumer whose own position is past the end back to where its rewind says', async () => {
    const dir = tempDir('wb-rewind-');
    await write(dir, 5);
    const file = join(dir, segments(dir).at(-1)!);
    truncateSync(file, statSync(file).size - 3);
    const log = await FileEventLog.open(dir);
    try {
      const calls: number[] = [];
      const consumer: EventConsumer = {
        name: 'snapshotting',
        resumeAt: async () => 5, // its own snapshot says it has handled all five
        rewind: async (end) => (calls.push(end), 2), // say, a snapshot it keeps at offset 2
        handle: async () => undefined,
      };
      const runner = new ConsumerRunner(log, consumer, { batchSize: 10, maxWaitMs: 0 });
      await runner.start();
      assert.deepEqual(calls, [4]);
      assert.equal(runner.offset, 2);
      assert.deepEqual(runner.rewound, { from: 5, to: 2 });
      await runner.stop();
    } finally {
      await log.close();
    }
  });
});

describe('a JetStream stream that lost its records', () => {
  const servers = 'nats://127.0.0.1:4222';
  const stream = `WB_TEST_RECOVERY_${process.pid}_${Date.now()}`;
  after(async () => {
    if ((await serverAvailable('NATS JetStream', servers).catch(() => false)) !== true) return;
    const nc = await connect({ servers });
    const jsm = await nc.jetstreamManager();
    for (const name of [stream, `KV_${stream}_offsets`]) await jsm.streams.delete(name).catch(() => undefined);
    await nc.close();
  });

  it('moves a consumer whose committed offset is past the recreated stream back to its end', async (t: TestContext) => {
    const ok = await serverAvailable('NATS JetStream', servers);
    if (ok !== true) return t.skip(ok);
    let log = await JetStreamEventLog.open({ servers, stream });
    await log.append(['a', 'b', 'c', 'd', 'e']);
    await log.commit('reader', 5);
    await log.close();
    // The stream is deleted and made again (its offsets bucket survives): two records this time.
    const nc = await connect({ servers });
    await (await nc.jetstreamManager()).streams.delete(stream);
    await nc.close();
    log = await JetStreamEventLog.open({ servers, stream });
    try {
      await log.append(['x', 'y']);
      const seen: string[] = [];
      const runner = new ConsumerRunner(
        log,
        { name: 'reader', input: 'records', handle: async (records) => void seen.push(...records.map((r) => Buffer.from(r).toString())) },
        { batchSize: 10, maxWaitMs: 0 },
      );
      await runner.start();
      assert.deepEqual(runner.rewound, { from: 5, to: 2 });
      assert.equal(await log.committed('reader'), 2, 'the committed offset is rewritten');
      await log.append(['z']);
      await until('the new record', async () => (seen.includes('z') ? true : undefined));
      await runner.stop();
      assert.deepEqual(seen, ['z'], 'the record that takes offset 2 is not skipped');
    } finally {
      await log.close();
    }
  });
});
