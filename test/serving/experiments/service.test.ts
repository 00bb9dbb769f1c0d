import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assign, ExperimentSchema, type ExperimentInput } from '../../../src/workbench/experiments/definition.js';
import type { MetricSums } from '../../../src/workbench/experiments/results.js';
import { openOltp } from '../../../src/workbench/oltp/index.js';
import { Random } from '../../../src/workbench/random.js';
import { event, startTestService, type TestService } from '../../helpers/service.js';
import { until } from '../../helpers/wait.js';

const checkout = (over: Partial<ExperimentInput> = {}): ExperimentInput => ({
  key: 'checkout',
  hypothesis: 'A shorter checkout makes users come back more often',
  arms: [
    { key: 'control', weight: 0.5 },
    { key: 'short', weight: 0.5 },
  ],
  exposureEvent: 'login',
  objective: 'logins',
  guardrails: [{ metric: 'cancellation', bad: 'increase', tolerance: 0.5 }],
  mde: 0.05,
  minRunDays: 0,
  ...over,
});

interface Results {
  results: {
    arms: { arm: string; users: number }[];
    srm: { mismatch: boolean };
    metrics: {
      metric: string;
      comparisons: {
        arm: string;
        control: { mean: number };
        treatment: { mean: number };
        absolute: { estimate: number };
        sequential: { ci: [number, number] };
        verdict: string;
      }[];
    }[];
  };
  decision?: { action: string; acted: boolean; reason: string };
  timeline: { at: string; lifts: unknown[] }[];
}

describe('experiments in the service', () => {
  let t: TestService;
  const put = (path: string, body: unknown, version?: number | string, method = 'PUT') =>
    t.call(path, {
      method,
      key: t.keys.admin,
      body: JSON.stringify(body),
      headers: { 'content-type': 'application/json', ...(version !== undefined ? { 'if-match': `"${version}"` } : {}) },
    });
  const json = async <T>(res: Response | Promise<Response>) => (await (await res).json()) as T;

  before(async () => {
    t = await startTestService({ decideEveryMs: 200 });
  });
  after(async () => {
    await t?.stop();
  });

  it('refuses bad definitions with a 400 naming the problem, and writes only with the admin scope', async () => {
    const bad = async (over: Partial<ExperimentInput>, pattern: RegExp) => {
      const res = await t.post('/v1/experiments', checkout(over), t.keys.admin);
      assert.equal(res.status, 400);
      assert.match((await json<{ error: { message: string } }>(res)).error.message, pattern);
    };
    await bad(
      {
        arms: [
          { key: 'a', weight: 0.5 },
          { key: 'b', weight: 0.6 },
        ],
      },
      /arm weights add up to 1\.1/,
    );
    await bad({ coverage: 1.5 }, /coverage is a share of users/);
    await bad({ objective: 'happiness' }, /unknown metric happiness/);
    assert.equal((await t.post('/v1/experiments', checkout(), t.keys.read)).status, 403);
    // Mutually exclusive experiments: a range that overlaps a running one in the same namespace.
    const ns = (key: string, range: [number, number]) => checkout({ key, exposureEvent: undefined, namespace: { name: 'pricing', range }, status: 'running' });
    assert.equal((await t.post('/v1/experiments', ns('ns-a', [0, 0.5]), t.keys.admin)).status, 201);
    await bad(ns('ns-b', [0.4, 0.9]), /namespace pricing range \[0\.4, 0\.9\) overlaps running experiment ns-a \[0, 0\.5\)/);
    assert.equal((await t.post('/v1/experiments', ns('ns-c', [0.5, 1]), t.keys.admin)).status, 201);
  });

  it('records who changed what and when, and refuses a change made against an old version', async () => {
    const created = await t.post('/v1/experiments', checkout({ key: 'edits' }), t.keys.admin);
    assert.equal(created.status, 201);
    assert.equal(created.headers.get('etag'), '"1"');
    assert.equal((await put('/v1/experiments/edits', checkout({ key: 'edits', mde: 0.1 }))).status, 428, 'no If-Match');
    assert.equal((await put('/v1/experiments/edits', checkout({ key: 'edits', mde: 0.1 }), 1)).status, 200);
    const stale = await put('/v1/experiments/edits', checkout({ key: 'edits', mde: 0.2 }), 1);
    assert.equal(stale.status, 409);
    assert.match((await json<{ error: { message: string } }>(stale)).error.message, /at version 2/);
    const history = await json<{ history: { version: number; updated_by: string; change: string; updated_at: string }[] }>(
      t.call('/v1/experiments/edits/history', { key: t.keys.read }),
    );
    assert.deepEqual(
      history.history.map((h) => [h.version, h.updated_by, h.change]),
      [
        [1, 'test-admin', 'created'],
        [2, 'test-admin', 'changed mde'],
      ],
    );
    assert.ok(Date.parse(history.history[1]!.updated_at) > Date.now() - 60_000);
    const got = await t.call('/v1/experiments/edits', { key: t.keys.read });
    assert.equal(got.headers.get('etag'), '"2"');
    assert.equal((await json<{ mde: number }>(got)).mde, 0.1);
    // A status change the lifecycle does not allow.
    const ship = await put('/v1/experiments/edits/status', { status: 'shipped', winner: 'short' }, 2, 'POST');
    assert.equal(ship.status, 409);
    assert.match((await json<{ error: { message: string } }>(ship)).error.message, /is draft: it can become running/);
    assert.equal((await t.call('/v1/experiments/nope/results', { key: t.keys.read })).status, 404);
    // Once users may be assigned, what would move them between arms (or restart a metric) is refused.
    assert.equal((await put('/v1/experiments/edits/status', { status: 'running' }, 2, 'POST')).status, 200);
    for (const [change, pattern] of [
      [{ seed: 'other' }, /seed cannot change/],
      [
        {
          arms: [
            { key: 'control', weight: 0.4 },
            { key: 'short', weight: 0.6 },
          ],
        },
        /weights cannot change/,
      ],
      [{ objective: 'upgrade' }, /metrics cannot change/],
      [
        {
          arms: [
            { key: 'control', weight: 0.5 },
            { key: 'long', weight: 0.5 },
          ],
        },
        /arms cannot be renamed/,
      ],
      [{ plannedUsersPerArm: 500 }, /plannedUsersPerArm and analysis.sequentialTuning cannot change/],
      [{ analysis: { sequentialTuning: 800 } }, /plannedUsersPerArm and analysis.sequentialTuning cannot change/],
    ] as const) {
      const res = await put('/v1/experiments/edits', { ...checkout({ key: 'edits', mde: 0.1 }), status: 'running', ...change }, 3);
      assert.equal(res.status, 400);
      assert.match((await json<{ error: { message: string } }>(res)).error.message, pattern);
    }
    const tolerance = await put(
      '/v1/experiments/edits',
      { ...checkout({ key: 'edits', mde: 0.1 }), status: 'running', guardrails: [{ metric: 'cancellation', bad: 'increase', tolerance: 0.2 }] },
      3,
    );
    assert.equal(tolerance.status, 200, 'a tolerance may change');
    assert.equal((await put('/v1/experiments/edits/status', { status: 'stopped', reason: 'done' }, 4, 'POST')).status, 200);
  });

  it('assigns users on exposure (sticky, logged once), tags their events, keeps live statistics and ships the winner', async () => {
    // Recommend-only until every event is in: the decider must not ship half-way through the sending.
    const created = await t.post('/v1/experiments', checkout({ decisions: { ship: 'recommend', rollback: 'auto' } }), t.keys.admin);
    assert.equal(created.status, 201);
    assert.equal((await put('/v1/experiments/checkout/status', { status: 'running', reason: 'go' }, 1, 'POST')).status, 200);
    const e = ExperimentSchema.parse({ ...checkout(), status: 'running' });
    const r = new Random(7);
    const users = Array.from({ length: 300 }, (_, i) => `exp-u${i}`);
    const expected = new Map<string, number>();
    const events = [];
    let n = 0;
    for (const user of users) {
      const arm = assign(e, { user_id: user })!;
      // The treatment's users log in more: 8 + Poisson-ish noise against 5.
      const logins = (arm === 'short' ? 8 : 5) + r.int(4);
      expected.set(user, logins);
      for (let k = 0; k < logins; k++) events.push(event(`x${n++}`, { user_id: user, time: new Date(Date.now() - 60_000 + k * 1000).toISOString() }));
    }
    for (let i = 0; i < events.length; i += 1000) assert.equal((await t.post('/v1/events', events.slice(i, i + 1000))).status, 200);

    // Tagged in the log, one exposure per user, sticky in OLTP.
    const records = (await t.service.log.read(0, 100_000)).map(
      (x) =>
        JSON.parse(new TextDecoder().decode(x.payload)) as {
          event: string;
          user_id: string;
          experiments: Record<string, string>;
          props: Record<string, unknown>;
        },
    );
    const exposures = records.filter((x) => x.event === 'experiment_exposure');
    assert.equal(
      exposures.length,
      users.length,
      JSON.stringify({
        records: records.length,
        byExp: exposures.reduce((m, x) => ({ ...m, [String(x.props.experiment)]: (m[String(x.props.experiment)] ?? 0) + 1 }), {} as Record<string, number>),
      }),
    );
    for (const x of records.filter((x) => x.user_id.startsWith('exp-u'))) assert.equal(x.experiments.checkout, assign(e, { user_id: x.user_id }));
    const oltp = await openOltp(undefined, t.dataDir);
    assert.equal((await oltp.getAssignments('checkout')).length, users.length);
    await oltp.close();

    // The live statistics match the events sent (computed here independently).
    const report = await until('the experiment consumer to count every login', async () => {
      const res = await json<Results>(t.call('/v1/experiments/checkout/results', { key: t.keys.read }));
      return res.results.arms.reduce((s, a) => s + a.users, 0) === users.length && res.results.metrics[0]!.comparisons[0]!.treatment.mean !== undefined
        ? res
        : undefined;
    });
    const mean = (arm: string) => {
      const xs = users.filter((u) => assign(e, { user_id: u }) === arm).map((u) => expected.get(u)!);
      return xs.reduce((s, x) => s + x, 0) / xs.length;
    };
    const logins = report.results.metrics.find((m) => m.metric === 'logins')!.comparisons[0]!;
    assert.ok(Math.abs(logins.control.mean - mean('control')) < 1e-9, `control ${logins.control.mean} vs ${mean('control')}`);
    assert.ok(Math.abs(logins.treatment.mean - mean('short')) < 1e-9);
    assert.equal(logins.verdict, 'better');
    assert.equal(report.results.srm.mismatch, false);
    assert.ok(report.timeline.length >= 1);

    // Recommend-only: the decider says it would ship, and does not.
    const recommended = await until('a recommendation', async () => {
      const res = await json<Results>(t.call('/v1/experiments/checkout/results', { key: t.keys.read }));
      return res.decision?.action === 'ship' ? res.decision : undefined;
    });
    assert.equal(recommended.acted, false);
    assert.equal((await json<{ status: string }>(t.call('/v1/experiments/checkout', { key: t.keys.read }))).status, 'running');
    // Switched to automatic, the decider ships the winner on its own, records why, and raises an alert.
    assert.equal((await put('/v1/experiments/checkout', { ...checkout({ decisions: { ship: 'auto', rollback: 'auto' } }), status: 'running' }, 2)).status, 200);
    const shipped = await until('the automatic ship', async () => {
      const res = await json<{ status: string; winner?: string }>(t.call('/v1/experiments/checkout', { key: t.keys.read }));
      return res.status === 'shipped' ? res : undefined;
    });
    assert.equal(shipped.winner, 'short');
    const history = await json<{ history: { updated_by: string; change: string }[] }>(t.call('/v1/experiments/checkout/history', { key: t.keys.read }));
    assert.equal(history.history.at(-1)!.updated_by, 'wb-decider');
    assert.match(history.history.at(-1)!.change, /status running -> shipped: objective logins is better in short: lift \+\d/);
    const alerts = await json<{ alerts: { series: string; direction: string }[] }>(t.call('/v1/alerts', { key: t.keys.read }));
    assert.ok(alerts.alerts.some((a) => a.series === 'experiment:checkout' && a.direction === 'ship'));
    // Everyone gets the winner now, assigned or not.
    const answer = await json<{ arms: { arm: string; reason: string }[] }>(t.post('/v1/assignments', { user_id: 'someone-new', experiment: 'checkout' }));
    assert.deepEqual(answer.arms, [{ experiment: 'checkout', arm: 'short', reason: 'shipped' }]);
  });

  it('rolls back a variant that hurts a guard-rail, and its users return to control', async () => {
    const paywall = checkout({
      key: 'paywall',
      objective: 'upgrade',
      guardrails: [{ metric: 'logins', bad: 'decrease', tolerance: 0.05 }],
      arms: [
        { key: 'control', weight: 0.5 },
        { key: 'nag', weight: 0.5 },
      ],
    });
    assert.equal((await t.post('/v1/experiments', { ...paywall, status: 'running' }, t.keys.admin)).status, 201);
    const e = ExperimentSchema.parse({ ...paywall, status: 'running' });
    const events = [];
    let n = 0;
    for (let i = 0; i < 300; i++) {
      const user = `pw-u${i}`;
      const logins = assign(e, { user_id: user }) === 'nag' ? 2 + (i % 2) : 6 + (i % 3);
      for (let k = 0; k < logins; k++) events.push(event(`pw${n++}`, { user_id: user, time: new Date(Date.now() - 30_000 + k * 100).toISOString() }));
    }
    assert.equal((await t.post('/v1/events', events)).status, 200);
    const rolled = await until('the automatic rollback', async () => {
      const res = await json<{ status: string }>(t.call('/v1/experiments/paywall', { key: t.keys.read }));
      return res.status === 'rolled_back' ? res : undefined;
    });
    assert.equal(rolled.status, 'rolled_back');
    const report = await json<Results>(t.call('/v1/experiments/paywall/results', { key: t.keys.read }));
    assert.equal(report.decision?.action, 'rollback');
    assert.equal(report.decision?.acted, true);
    assert.match(report.decision!.reason, /guard-rail logins is worse in nag beyond its tolerance of -5\.00%/);
    const nagUser = Array.from({ length: 300 }, (_, i) => `pw-u${i}`).find((u) => assign(e, { user_id: u }) === 'nag')!;
    const answer = await json<{ arms: { arm: string; reason: string }[] }>(t.post('/v1/assignments', { user_id: nagUser, experiment: 'paywall' }));
    assert.deepEqual(answer.arms, [{ experiment: 'paywall', arm: 'control', reason: 'rolled_back' }]);
    // Events after the rollback are no longer tagged with it.
    await t.post('/v1/events', [event('after-rollback', { user_id: nagUser })]);
    const last = (await t.service.log.read((await t.service.log.next()) - 1, 1)).map(
      (x) => JSON.parse(new TextDecoder().decode(x.payload)) as { experiments: Record<string, string> },
    );
    assert.equal(last[0]!.experiments.paywall, undefined);
  });

  it('keeps the exposure event to itself, and assigns users with long ids through the API', async () => {
    const forged = await json<{ error: { code: string; details: { rejected: { reason: string }[] } } }>(
      t.post('/v1/events', [event('forged', { event: 'experiment_exposure', props: { experiment: 'paywall', arm: 'nag' } })]),
    );
    assert.equal(forged.error.code, 'invalid_events');
    assert.match(forged.error.details.rejected[0]!.reason, /written by the experimentation platform/);
    assert.equal((await t.post('/v1/experiments', checkout({ key: 'long-ids', exposureEvent: undefined, status: 'running' }), t.keys.admin)).status, 201);
    const user = `user-${'x'.repeat(120)}`;
    const first = await json<{ arms: { experiment: string; arm: string; reason: string }[] }>(
      t.post('/v1/assignments', { user_id: user, experiment: 'long-ids' }),
    );
    assert.equal(first.arms[0]!.reason, 'assigned');
    const again = await json<{ arms: { arm: string; reason: string }[] }>(t.post('/v1/assignments', { user_id: user, experiment: 'long-ids' }));
    assert.deepEqual(
      again.arms.map((a) => [a.arm, a.reason]),
      [[first.arms[0]!.arm, 'existing']],
    );
    const records = (await t.service.log.read(0, 200_000)).map(
      (x) => JSON.parse(new TextDecoder().decode(x.payload)) as { event: string; user_id: string; experiments: Record<string, string> },
    );
    const exposures = records.filter((x) => x.event === 'experiment_exposure' && x.user_id === user);
    assert.equal(exposures.length, 1, 'logged once');
    assert.equal(exposures[0]!.experiments['long-ids'], first.arms[0]!.arm);
    assert.equal((await put('/v1/experiments/long-ids/status', { status: 'stopped' }, 1, 'POST')).status, 200);
  });

  it('tests a challenger model as an experiment: each user is answered by their arm, and shipping moves the alias', async () => {
    const { featureSet } = await import('../../../src/workbench/features/definition.js');
    const { createBundle } = await import('../../../src/workbench/models/bundle.js');
    const { columnsFor } = await import('../../../src/workbench/models/preprocess.js');
    const { publish } = await import('../../../src/workbench/models/publish.js');
    const { trainClassifier } = await import('../../../src/workbench/models/train.js');
    const features = featureSet([{ name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 }]);
    const versions: string[] = [];
    for (const [alias, flip] of [
      ['champion', false],
      ['challenger', true],
    ] as const) {
      const model = await trainClassifier(
        Array.from({ length: 60 }, (_, i) => ({ logins_7d: i % 6, y: i % 6 > 2 !== flip ? 1 : 0 })),
        'y',
        columnsFor(features),
        { maxEpochs: 3 },
      );
      const bundle = await createBundle('exp-model', model, features);
      model.dispose();
      versions.push(bundle.version);
      await publish(bundle, { url: t.service.url, key: t.keys.admin, alias });
    }
    const def = checkout({
      key: 'model-test',
      arms: [
        { key: 'control', weight: 0.5, model: { name: 'exp-model', alias: 'champion' } },
        { key: 'challenger', weight: 0.5, model: { name: 'exp-model', alias: 'challenger' } },
      ],
      decisions: { ship: 'recommend', rollback: 'auto' },
      status: 'running',
    });
    assert.equal((await t.post('/v1/experiments', def, t.keys.admin)).status, 201);
    const e = ExperimentSchema.parse(def);
    const users = Array.from({ length: 200 }, (_, i) => `model-u${i}`);
    const events = users.flatMap((u, i) =>
      Array.from({ length: (assign(e, { user_id: u }) === 'challenger' ? 6 : 3) + (i % 2) }, (_, k) =>
        event(`mt-${i}-${k}`, { user_id: u, time: new Date(Date.now() - 20_000 + k * 100).toISOString() }),
      ),
    );
    assert.equal((await t.post('/v1/events', events)).status, 200);
    for (const u of users.slice(0, 6)) {
      const res = await json<{ model: { alias: string; version: string }; experiment?: { key: string; arm: string } }>(
        t.post('/v1/predict', { model: 'exp-model', user_id: u }, t.keys.read),
      );
      const arm = assign(e, { user_id: u })!;
      assert.deepEqual(res.experiment, { key: 'model-test', arm });
      assert.equal(res.model.version, versions[arm === 'control' ? 0 : 1]);
    }
    const stranger = await json<{ model: { version: string }; experiment?: unknown }>(
      t.post('/v1/predict', { model: 'exp-model', user_id: 'model-u-never-seen', values: { logins_7d: 1 } }, t.keys.read),
    );
    assert.equal(stranger.experiment, undefined, 'predictions do not enroll users');
    assert.equal(stranger.model.version, versions[0]);
    await until('a ship recommendation', async () =>
      (await json<Results>(t.call('/v1/experiments/model-test/results', { key: t.keys.read }))).decision?.action === 'ship' ? true : undefined,
    );
    assert.equal((await put('/v1/experiments/model-test', { ...def, decisions: { ship: 'auto', rollback: 'auto' } }, 1)).status, 200);
    await until('the automatic ship', async () =>
      (await json<{ status: string }>(t.call('/v1/experiments/model-test', { key: t.keys.read }))).status === 'shipped' ? true : undefined,
    );
    // The decision (the status) is written first and the alias moved after it, so a reader can see
    // `shipped` a moment before the alias follows.
    await until('the control arm alias to point at the winner', async () => {
      const aliases = await json<{ aliases: Record<string, string> }>(t.call('/v1/models/exp-model', { key: t.keys.read }));
      return aliases.aliases.champion === versions[1] ? true : undefined;
    });
  });

  it('agrees with a recomputation in the lakehouse (one SQL query over the archive, arms recomputed with the hash macro)', async () => {
    const { Lakehouse } = await import('../../../src/workbench/lakehouse.js');
    const { lakeDir } = await import('../../../src/workbench/config.js');
    const { experimentStatsFromLake } = await import('../../../src/workbench/experiments/lakehouse-stats.js');
    const { metricCatalog } = await import('../../../src/workbench/experiments/metrics.js');
    await until('the archiver and the experiment consumer to reach the end of the log', async () => {
      const log = await json<{ consumers: { name: string; lag: number }[] }>(t.call('/v1/log', { key: t.keys.read }));
      return log.consumers.filter((c) => c.name === 'archiver' || c.name === 'experiments').every((c) => c.lag === 0) ? true : undefined;
    });
    await t.service.runners.find((r) => r.consumer.name === 'experiments')!.stop();
    const lake = await Lakehouse.open(lakeDir(t.dataDir));
    try {
      for (const key of ['checkout', 'paywall']) {
        const stored = t.service.experiments.experiments.get(key).experiment;
        const live = t.service.experiments.tracker.stats(key);
        const recomputed = await experimentStatsFromLake(lake, stored, metricCatalog());
        assert.equal(recomputed.rehashMismatches, 0, 'every logged arm is the one the hash macro gives');
        assert.deepEqual(
          recomputed.arms.map((a) => [a.arm, a.users]),
          live.arms.map((a) => [a.arm, a.users]).sort(),
        );
        for (const arm of live.arms) {
          const other = recomputed.arms.find((a) => a.arm === arm.arm)!;
          // The live sums are of deviations from shifts (for precision), the lakehouse's of the values: compare what they stand for.
          for (const [metric, sums] of Object.entries(arm.metrics)) {
            const mine = summary(sums);
            const theirs = summary(other.metrics[metric]!);
            for (const [field, value] of Object.entries(mine)) {
              const got = theirs[field as keyof typeof mine];
              assert.ok(Math.abs(got - value) <= 1e-9 * Math.max(1, Math.abs(value)), `${key} ${arm.arm} ${metric} ${field}: live ${value}, lakehouse ${got}`);
            }
          }
        }
        assert.equal(recomputed.firstExposure, live.firstExposure);
      }
    } finally {
      lake.close();
    }
  });

  it('resumes its statistics after a restart without counting anything twice', async () => {
    const before = await json<Results>(t.call('/v1/experiments/checkout/results', { key: t.keys.read }));
    const dir = t.dataDir;
    await t.service.stop();
    const again = await startTestService({ decideEveryMs: 200 }, dir);
    try {
      const after = await json<Results>(again.call('/v1/experiments/checkout/results', { key: again.keys.read }));
      assert.deepEqual(after.results.arms, before.results.arms);
      assert.deepEqual(after.results.metrics[0]!.comparisons[0]!.absolute, before.results.metrics[0]!.comparisons[0]!.absolute);
    } finally {
      await again.service.stop();
    }
  });
});

/** What a metric's sums stand for, whatever their shifts: count, means, variances and covariance. */
function summary(s: MetricSums): { n: number; meanY: number; meanX: number; varY: number; varX: number; covXY: number } {
  const n = s.n;
  const [dy, dx] = [n > 0 ? s.sumY / n : 0, n > 0 ? s.sumX / n : 0];
  const d = Math.max(1, n - 1);
  return {
    n,
    meanY: (s.shiftY ?? 0) + dy,
    meanX: (s.shiftX ?? 0) + dx,
    varY: (s.sumY2 - s.sumY * dy) / d,
    varX: (s.sumX2 - s.sumX * dx) / d,
    covXY: (s.sumXY - s.sumX * dy) / d,
  };
}
