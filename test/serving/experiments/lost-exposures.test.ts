import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { LostExposures } from '../../../src/serving/experiments/lost-exposures.js';
import { ExperimentPlatform, type DecidingLease } from '../../../src/serving/experiments/platform.js';
import { AlertSink } from '../../../src/serving/observability/alerts.js';
import { silentLogger } from '../../../src/serving/observability/logger.js';
import { FileEventLog } from '../../../src/serving/pipeline/file-log.js';
import { Ingest } from '../../../src/serving/pipeline/ingest.js';
import type { EnrichedEvent } from '../../../src/workbench/event.js';
import { ExperimentSchema, assign } from '../../../src/workbench/experiments/definition.js';
import { PostgresOltp, SqliteOltp, openOltp, type OltpStore } from '../../../src/workbench/oltp/index.js';
import { loginsExperiment } from '../../helpers/experiments.js';
import { postgresTestSchema, storeUnderTest } from '../../helpers/servers.js';
import { startTestService } from '../../helpers/service.js';
import { until } from '../../helpers/wait.js';

const armOf = (user: string) => assign(ExperimentSchema.parse(loginsExperiment), { user_id: user })!;
/** The id the assigner gives a user's exposure (what the instance that died would have logged). */
const exposureId = (experiment: string, user: string) => `exposure-${createHash('sha256').update(`${experiment}\u0000${user}`).digest('hex').slice(0, 40)}`;

function sweepSuite(name: string, open: () => Promise<OltpStore | string>): void {
  describe(`re-logging exposures lost between claim and append: ${name}`, () => {
    const subject = storeUnderTest(open);
    const dir = mkdtempSync(join(tmpdir(), 'wb-lost-exposures-'));
    const warnings: { msg: string; relogged?: number; experiments?: Record<string, number> }[] = [];
    let log: FileEventLog;
    let ingest: Ingest;
    let platform: ExperimentPlatform;
    let holding = true;

    const records = async () => (await log.read(0, 100_000)).map((r) => JSON.parse(new TextDecoder().decode(r.payload)) as EnrichedEvent);
    const exposuresOf = async (user: string) => (await records()).filter((e) => e.event === 'experiment_exposure' && e.user_id === user);
    /** Feeds the statistics everything in the log (as the service's consumer runner does). */
    const catchUp = async () => {
      for (;;) {
        const from = platform.tracker.position;
        const entries = await log.read(from, 10_000);
        if (entries.length === 0) return;
        await platform.tracker.handle(
          entries.map((r) => JSON.parse(new TextDecoder().decode(r.payload)) as EnrichedEvent),
          from,
        );
      }
    };
    const users = () => Object.values(platform.tracker.exposures('exp')).reduce((x, y) => x + y, 0);
    /** An instance that stored its claim and died before appending the exposure. */
    const claimAndDie = (user: string) =>
      subject.store.claimAssignments([{ experiment: 'exp', user_id: user, arm: armOf(user), assigned_at: '2026-01-10T10:00:00.000Z' }]);

    before(async () => {
      if (!subject.store) return;
      const logger = pino({ level: 'info' }, { write: (line: string) => void warnings.push(JSON.parse(line) as (typeof warnings)[number]) });
      platform = await ExperimentPlatform.open({ oltp: subject.store, alerts: new AlertSink(silentLogger()), logger, instanceDir: dir });
      await platform.experiments.create(loginsExperiment, 'test');
      await platform.tracker.resumeAt();
      log = await FileEventLog.open(join(dir, 'log'));
      ingest = await Ingest.open(log, subject.store, {}, Date.now, undefined, platform.assigner);
      const deciding: DecidingLease = {
        term: () => (holding ? { name: 'wb:decider', token: 1n, signal: new AbortController().signal } : undefined),
        guard: () => async () => undefined,
      };
      platform.start((keys) => ingest.ingest([], { internal: true, expose: keys }), 3_600_000, deciding, {
        logEnd: () => log.next(),
        everyMs: 3_600_000,
        graceMs: 0,
        catchUpMs: 300,
      });
    });
    after(async () => {
      await platform?.stop();
      await log?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('logs a lost exposure once, with the id and time the claimer would have used, and the statistics count the user', async () => {
      // A user assigned the normal way: the exposure went into the log with the claim.
      await ingest.ingest([{ event_id: 'e1', time: new Date(Date.now() - 1000).toISOString(), user_id: 'alive-1', event: 'login', props: {} }]);
      await claimAndDie('dead-1');
      await catchUp();
      assert.equal(users(), 1, 'the user whose claimer died is not counted');
      assert.equal(await platform.sweepLostExposures(), 1);
      const [exposure, ...more] = await exposuresOf('dead-1');
      assert.equal(more.length, 0);
      assert.equal(exposure!.event_id, exposureId('exp', 'dead-1'));
      assert.equal(exposure!.time, '2026-01-10T10:00:00.000Z', "the assignment's time");
      assert.deepEqual(exposure!.props, { experiment: 'exp', arm: armOf('dead-1') });
      assert.deepEqual(exposure!.experiments, { exp: armOf('dead-1') });
      assert.equal((await exposuresOf('alive-1')).length, 1, 'a logged exposure is not logged again');
      await catchUp();
      assert.ok(platform.tracker.exposed('exp', 'dead-1'));
      assert.equal(users(), 2);
      const warning = warnings.find((w) => w.relogged !== undefined);
      assert.equal(warning?.relogged, 1);
      assert.deepEqual({ ...warning?.experiments }, { exp: 1 });
      assert.match(warning!.msg, /re-logged 1 experiment exposures/);
      assert.equal(platform.reloggedExposures, 1);
    });

    it('re-logs nothing on the next sweep', async () => {
      const before = (await records()).length;
      assert.equal(await platform.sweepLostExposures(), 0);
      assert.equal((await records()).length, before);
      assert.equal(platform.reloggedExposures, 1);
    });

    it('does nothing on an instance that does not hold the decider lease', async () => {
      await claimAndDie('dead-2');
      await catchUp();
      const before = (await records()).length;
      holding = false;
      try {
        assert.equal(await platform.sweepLostExposures(), 0);
        assert.equal((await records()).length, before);
      } finally {
        holding = true;
      }
      assert.equal(await platform.sweepLostExposures(), 1, 'its holder does');
      assert.equal((await exposuresOf('dead-2')).length, 1);
    });

    it('waits for the statistics to reach the end of the log before taking an exposure as lost', async () => {
      await claimAndDie('dead-3');
      // The statistics have not read this record yet: it could be the user's exposure.
      await ingest.ingest([{ event_id: 'e2', time: new Date(Date.now() - 1000).toISOString(), user_id: 'someone', event: 'page_view', props: {} }]);
      assert.equal(await platform.sweepLostExposures(), 0);
      assert.equal((await exposuresOf('dead-3')).length, 0);
      await catchUp();
      assert.equal(await platform.sweepLostExposures(), 1);
      assert.equal((await exposuresOf('dead-3')).length, 1);
    });

    it('leaves claims younger than the grace period to their claimer', async () => {
      await catchUp();
      await claimAndDie('fresh-1');
      const lost = new LostExposures(
        {
          oltp: subject.store,
          experiments: platform.experiments,
          tracker: platform.tracker,
          assigner: platform.assigner,
          logger: silentLogger(),
          logEnd: () => log.next(),
          logExposures: (keys) => ingest.ingest([], { internal: true, expose: keys }),
        },
        { graceMs: 60_000 },
      );
      assert.equal(await lost.sweep(), 0);
      assert.equal((await exposuresOf('fresh-1')).length, 0);
      assert.equal(await platform.sweepLostExposures(), 1, 'with no grace left, it is lost');
    });

    it('pages through the claims', async () => {
      await catchUp();
      const dead = ['page-1', 'page-2', 'page-3', 'page-4', 'page-5'];
      for (const user of dead) await claimAndDie(user);
      const lost = new LostExposures(
        {
          oltp: subject.store,
          experiments: platform.experiments,
          tracker: platform.tracker,
          assigner: platform.assigner,
          logger: silentLogger(),
          logEnd: () => log.next(),
          logExposures: (keys) => ingest.ingest([], { internal: true, expose: keys }),
        },
        { graceMs: 0, pageRows: 2 },
      );
      assert.equal(await lost.sweep(), 5);
      for (const user of dead) assert.equal((await exposuresOf(user)).length, 1, user);
      await catchUp();
      assert.equal(await lost.sweep(), 0);
    });

    it('counts a user once when the original exposure lands after its re-logged copy', async () => {
      await catchUp();
      const counted = users();
      const [copy] = await exposuresOf('dead-1');
      // The claimer was stuck, not dead: its append arrives now, through an ingest that never saw the id.
      await log.append([JSON.stringify(copy)], [copy!.event_id]);
      assert.equal((await exposuresOf('dead-1')).length, 2);
      await catchUp();
      assert.equal(users(), counted);
      // And an ingest drops a copy whose id it has seen (a sweep taking the same claim over again).
      const [stored] = await subject.store.getAssignments('exp', ['dead-1']);
      assert.equal(platform.assigner.adopt([stored!]).length, 1);
      await ingest.ingest([], { internal: true, expose: [{ experiment: 'exp', user_id: 'dead-1' }] });
      assert.equal(platform.assigner.isUnlogged({ experiment: 'exp', user_id: 'dead-1' }), false, 'found in the log');
      assert.equal((await exposuresOf('dead-1')).length, 2);
    });
  });
}

const tmp = mkdtempSync(join(tmpdir(), 'wb-lost-exposures-oltp-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
sweepSuite('SQLite', async () => {
  const store = new SqliteOltp(join(tmp, 'oltp.sqlite'));
  await store.migrate();
  return store;
});
const postgres = postgresTestSchema('wb_lost_exposures');
sweepSuite('PostgreSQL', () =>
  postgres.open(async (url, schema) => {
    const store = new PostgresOltp(url, schema);
    await store.migrate();
    return store;
  }),
);

describe('the service sweeps for lost exposures on the holder of wb:decider', () => {
  it('logs the exposure of a user whose claimer died, and the statistics count them', async () => {
    const t = await startTestService({ exposureSweep: { everyMs: 100, graceMs: 0 } });
    const oltp = await openOltp(undefined, t.dataDir);
    try {
      assert.equal(t.service.singletons.get('wb:decider')?.held, true);
      await t.service.experiments.experiments.create(loginsExperiment, 'test');
      await oltp.claimAssignments([{ experiment: 'exp', user_id: 'dead', arm: armOf('dead'), assigned_at: new Date().toISOString() }]);
      await until('the lost exposure to be counted', async () => t.service.experiments.tracker.exposed('exp', 'dead') || undefined);
      assert.equal(t.service.experiments.reloggedExposures, 1);
      const metrics = await (await t.call('/metrics', { key: t.keys.read })).text();
      assert.match(metrics, /^wb_experiment_exposures_relogged_total 1$/m, 'operators see it on /metrics');
    } finally {
      await oltp.close();
      await t.stop();
    }
  });
});
