import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Assigner } from '../../../src/serving/experiments/assigner.js';
import { Experiments } from '../../../src/serving/experiments/experiments.js';
import type { EventLog, Payload } from '../../../src/serving/pipeline/event-log.js';
import { FileEventLog } from '../../../src/serving/pipeline/file-log.js';
import { Ingest } from '../../../src/serving/pipeline/ingest.js';
import { ExperimentSchema, assign } from '../../../src/workbench/experiments/definition.js';
import { metricCatalog } from '../../../src/workbench/experiments/metrics.js';
import { SqliteOltp } from '../../../src/workbench/oltp/sqlite.js';
import { loginsExperiment } from '../../helpers/experiments.js';

/** The real file log, with faults injected: the next append fails, or waits for a gate. */
class FaultyLog {
  failNext = false;
  gate: Promise<void> | undefined;
  constructor(readonly inner: FileEventLog) {}
  log(): EventLog {
    return new Proxy(this.inner, {
      get: (target, prop, receiver) => {
        if (prop !== 'append') return Reflect.get(target, prop, receiver) as unknown;
        return async (payloads: readonly Payload[]) => {
          const gate = this.gate;
          this.gate = undefined;
          if (gate) await gate;
          if (this.failNext) {
            this.failNext = false;
            throw new Error('injected: the disk is full');
          }
          return target.append(payloads);
        };
      },
    }) as EventLog;
  }
}

const ev = (id: string, user: string, event = 'login') => ({
  event_id: id,
  time: new Date(Date.now() - 1000).toISOString(),
  user_id: user,
  event,
  props: { country: 'GB', device: 'web' },
});

describe('exposure and tagging at ingest', () => {
  let oltp: SqliteOltp;
  let faulty: FaultyLog;
  let ingest: Ingest;
  let assigner: Assigner;
  const records = async () =>
    (await faulty.inner.read(0, 10_000)).map(
      (r) =>
        JSON.parse(new TextDecoder().decode(r.payload)) as {
          event: string;
          user_id: string;
          experiments: Record<string, string>;
          props: Record<string, unknown>;
        },
    );

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wb-assigner-'));
    oltp = new SqliteOltp(join(dir, 'oltp.sqlite'));
    await oltp.migrate();
    const experiments = await Experiments.open(oltp, metricCatalog());
    await experiments.create(loginsExperiment, 'test');
    assigner = new Assigner(experiments, oltp);
    faulty = new FaultyLog(await FileEventLog.open(join(dir, 'log')));
    ingest = await Ingest.open(faulty.log(), oltp, {}, Date.now, undefined, assigner);
  });
  after(async () => {
    await faulty.inner.close();
    await oltp.close();
  });

  it('stores an assignment before its exposure goes to the log (the database decides), and carries the exposure again after a failed append', async () => {
    faulty.failNext = true;
    await assert.rejects(ingest.ingest([ev('1', 'u1')]), /the disk is full/);
    assert.equal((await records()).length, 0);
    const arm0 = assign(ExperimentSchema.parse(loginsExperiment), { user_id: 'u1' })!;
    assert.deepEqual(
      (await oltp.getAssignments('exp')).map((a) => [a.user_id, a.arm]),
      [['u1', arm0]],
      'claimed in the database first; its exposure is still owed',
    );
    assert.ok(assigner.isUnlogged({ experiment: 'exp', user_id: 'u1' }));
    // The next event of u1 (not itself an exposure event) carries the exposure, just before it.
    await ingest.ingest([ev('2', 'u1', 'feature_used')]);
    const log = await records();
    assert.deepEqual(
      log.map((r) => r.event),
      ['experiment_exposure', 'feature_used'],
    );
    const arm = assign(ExperimentSchema.parse(loginsExperiment), { user_id: 'u1' })!;
    assert.deepEqual(
      log.map((r) => r.experiments.exp),
      [arm, arm],
    );
    assert.deepEqual(
      (await oltp.getAssignments('exp')).map((a) => [a.user_id, a.arm]),
      [['u1', arm]],
    );
    // Retried, the first batch adds the login only.
    await ingest.ingest([ev('1', 'u1')]);
    assert.deepEqual(
      (await records()).map((r) => r.event),
      ['experiment_exposure', 'feature_used', 'login'],
    );
  });

  it('never lets an event tagged with an experiment into the log before its user exposure', async () => {
    let open!: () => void;
    faulty.gate = new Promise<void>((resolve) => (open = resolve));
    const first = ingest.ingest([ev('3', 'u2')]); // assigns u2; its append waits at the gate
    await new Promise((r) => setTimeout(r, 20));
    const second = ingest.ingest([ev('4', 'u2', 'feature_used')]); // tagged with u2's arm: must wait for the first
    await new Promise((r) => setTimeout(r, 50));
    const before = (await records()).length;
    open();
    await Promise.all([first, second]);
    const mine = (await records()).slice(before).map((r) => r.event);
    assert.deepEqual(mine, ['experiment_exposure', 'login', 'feature_used']);
  });

  it('fails a waiting batch with a 503 when the batch carrying the exposure fails, and the retry carries it', async () => {
    let open!: () => void;
    faulty.gate = new Promise<void>((resolve) => (open = resolve));
    faulty.failNext = true;
    const first = ingest.ingest([ev('5', 'u3')]);
    await new Promise((r) => setTimeout(r, 20));
    const second = ingest.ingest([ev('6', 'u3', 'feature_used')]);
    await new Promise((r) => setTimeout(r, 50)); // the second batch is tagged, waiting for the first
    open();
    await assert.rejects(first, /the disk is full/);
    await assert.rejects(second, (err: unknown) => (err as { status?: number }).status === 503);
    const before = (await records()).length;
    await ingest.ingest([ev('6', 'u3', 'feature_used')]);
    assert.deepEqual(
      (await records()).slice(before).map((r) => r.event),
      ['experiment_exposure', 'feature_used'],
    );
  });

  it('logs the exposure of a user assigned through the API, once, with or without events', async () => {
    const e = ExperimentSchema.parse(loginsExperiment);
    const answer = await assigner.armFor(e, { user_id: 'api-user' }, { enroll: true });
    assert.equal(answer?.reason, 'assigned');
    assert.ok(assigner.isUnlogged({ experiment: 'exp', user_id: 'api-user' }));
    const before = (await records()).length;
    await ingest.ingest([], { internal: true, expose: [{ experiment: 'exp', user_id: 'api-user' }] });
    assert.equal(assigner.isUnlogged({ experiment: 'exp', user_id: 'api-user' }), false);
    await ingest.ingest([], { internal: true, expose: [{ experiment: 'exp', user_id: 'api-user' }] });
    const added = (await records()).slice(before);
    assert.deepEqual(
      added.map((r) => [r.event, r.user_id, r.experiments.exp]),
      [['experiment_exposure', 'api-user', answer!.arm]],
    );
    assert.equal((await assigner.armFor(e, { user_id: 'api-user' }, { enroll: true }))?.reason, 'existing');
  });
});
