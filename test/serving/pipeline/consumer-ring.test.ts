import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { EnrichedEvent } from '../../../src/workbench/event.js';
import { ConsumerRunner, type EventConsumer } from '../../../src/serving/pipeline/consumer.js';
import { FileEventLog } from '../../../src/serving/pipeline/file-log.js';
import { RecentEvents } from '../../../src/serving/pipeline/recent-events.js';
import { tempDir } from '../../helpers/tmp.js';
import { sleep, until } from '../../helpers/wait.js';

const enriched = (id: string): EnrichedEvent => ({
  event_id: id,
  time: '2026-01-01T00:00:00.000Z',
  user_id: 'u1',
  event: 'login',
  props: { n: id },
  dims: { country: 'GB', device: 'ios', tier: 'free', first_seen: '2026-01-01T00:00:00.000Z' },
  experiments: {},
  received_at: '2026-01-01T00:00:01.000Z',
});

/** Keeps every event it is handed, the very objects. */
class Recorder implements EventConsumer {
  readonly name = 'recorder';
  readonly seen: EnrichedEvent[] = [];
  async handle(events: EnrichedEvent[]): Promise<void> {
    this.seen.push(...events);
  }
}

describe('consumers and the ring of recent events', () => {
  const dir = tempDir();
  let n = 0;

  /** A log, a ring and a runner; `close` stops them (before the test's directory goes). */
  const setUp = async () => {
    const log = await FileEventLog.open(join(dir, `log-${n++}`));
    const ring = new RecentEvents();
    const recorder = new Recorder();
    const runner = new ConsumerRunner(log, recorder, { batchSize: 1_000, maxWaitMs: 0 }, ring);
    await runner.start();
    const close = async () => {
      await runner.stop();
      await log.close();
    };
    /** As ingest does it: the batch is put in the ring once the log has it durable, some time later (here after `putAfterMs`). */
    const ingest = async (ids: string[], putAfterMs: number) => {
      const events = ids.map(enriched);
      const texts = events.map((e) => JSON.stringify(e));
      const { first } = await log.append(texts);
      if (putAfterMs > 0) await sleep(putAfterMs);
      ring.put(
        first,
        events,
        texts.map((t) => t.length),
      );
      return events;
    };
    return { log, ring, recorder, runner, ingest, close };
  };

  it('takes the events ingest puts in the ring after the log woke the consumer, instead of decoding the log', async () => {
    const { recorder, runner, ingest, close } = await setUp();
    try {
      // The ring has never been put to: the first batch is read from the log.
      await ingest(['a0', 'a1'], 0);
      await until('the first batch', async () => (runner.offset === 2 ? true : undefined));
      const put: EnrichedEvent[] = [];
      // Puts lag the log's wake-up by a few ms here (ingest may store experiment assignments first).
      for (let b = 1; b <= 5; b++) put.push(...(await ingest([`b${b}-0`, `b${b}-1`, `b${b}-2`], 5)));
      await until('every batch', async () => (runner.offset === 17 ? true : undefined));
      assert.deepEqual(
        recorder.seen.slice(2).map((e) => e.event_id),
        put.map((e) => e.event_id),
      );
      const decoded = recorder.seen
        .slice(2)
        .filter((e, i) => e !== put[i])
        .map((e) => e.event_id);
      assert.deepEqual(decoded, [], 'every event after the first batch is the object ingest put in the ring, not a copy decoded from the log');
    } finally {
      await close();
    }
  });

  it('reads from the log, after a short wait, the records the ring never gets (another writer of a shared log)', async () => {
    const { log, recorder, runner, ingest, close } = await setUp();
    try {
      const mine = await ingest(['m0'], 0);
      await until('the first batch', async () => (runner.offset === 1 ? true : undefined));
      await ingest(['m1'], 0);
      await until('the second batch', async () => (runner.offset === 2 ? true : undefined));
      const started = Date.now();
      await log.append([JSON.stringify(enriched('other-0')), JSON.stringify(enriched('other-1'))]);
      await until("the other writer's records", async () => (runner.offset === 4 ? true : undefined), 5_000);
      const waited = Date.now() - started;
      assert.ok(waited < 2_000, `handed over ${waited} ms after they were durable`);
      assert.deepEqual(recorder.seen.slice(2), [enriched('other-0'), enriched('other-1')], 'decoded from the log');
      assert.equal(recorder.seen[0], mine[0]);
      // The ring is used again for what ingest puts next.
      const next = await ingest(['m2'], 3);
      await until('the next batch', async () => (runner.offset === 5 ? true : undefined));
      assert.equal(recorder.seen[4], next[0]);
    } finally {
      await close();
    }
  });
});
