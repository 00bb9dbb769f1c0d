import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppSimulator, FEATURES, simulateHistory, streamSimulation } from '../../src/app/simulator.js';
import { EventSchema, type Event } from '../../src/workbench/event.js';

describe('the simulated app', () => {
  it('is reproducible: the same seed gives the same data, another seed other data', () => {
    const a = simulateHistory({ seed: 7, users: 50, days: 30 });
    const b = simulateHistory({ seed: 7, users: 50, days: 30 });
    const c = simulateHistory({ seed: 8, users: 50, days: 30 });
    assert.deepEqual(a, b);
    assert.notDeepEqual(a.events, c.events);
  });

  it('gives each user the same history whatever the number of other users', () => {
    const small = simulateHistory({ seed: 3, users: 10, days: 20 });
    const large = simulateHistory({ seed: 3, users: 30, days: 20 });
    const first = (h: typeof small) => h.events.filter((e) => e.user_id === 'u000004');
    assert.deepEqual(first(small), first(large));
  });

  it('emits events in the contract shape, in time order, with unique ids, within the period', () => {
    const { events, users } = simulateHistory({ seed: 1, users: 100, days: 40, start: '2025-02-01' });
    const ids = new Set<string>();
    let last = '';
    for (const e of events) {
      assert.equal(EventSchema.safeParse(e).success, true, JSON.stringify(e));
      assert.ok(e.time >= last, 'time order');
      last = e.time;
      ids.add(e.event_id);
    }
    assert.equal(ids.size, events.length);
    assert.ok(events[0]!.time >= '2025-02-01T00:00:00.000Z' && last < '2025-03-13T00:00:00.000Z');
    assert.equal(events.filter((e) => e.event === 'signup').length, users.length);
    const upgraded = new Set(events.filter((e) => e.event === 'upgrade').map((e) => e.user_id));
    assert.deepEqual(new Set(users.filter((u) => u.tier === 'pro').map((u) => u.user_id)), upgraded);
  });

  it('churns users at the rate its ground truth states (a simulation with a known truth)', () => {
    // For free users alive on a day, the chance of churning by the end of it is their churn_hazard;
    // summed over user-days, expected churns must match observed churns within sampling error.
    const sim = new AppSimulator({ seed: 11, users: 3000, days: 60 });
    const days = [...sim.days()];
    const truth = sim.truth();
    const start = Date.parse(`${sim.config.start}T00:00:00Z`);
    let expected = 0;
    let variance = 0;
    let observed = 0;
    for (const u of truth.users) {
      const signupDay = Math.floor((Date.parse(sim.currentUsers().find((x) => x.user_id === u.user_id)!.first_seen) - start) / 86_400_000);
      const churnDay = u.churned_at ? Math.floor((Date.parse(u.churned_at) - start) / 86_400_000) : Infinity;
      const upgradeDay = u.upgraded_at ? Math.floor((Date.parse(u.upgraded_at) - start) / 86_400_000) : Infinity;
      for (let d = signupDay + 1; d < days.length && d <= churnDay && d < upgradeDay; d++) {
        expected += u.churn_hazard;
        variance += u.churn_hazard * (1 - u.churn_hazard);
        if (d === churnDay) observed++;
      }
    }
    const z = (observed - expected) / Math.sqrt(variance);
    assert.ok(Math.abs(z) < 4, `observed ${observed} churns, expected ${expected.toFixed(1)} (z = ${z.toFixed(2)})`);
    assert.ok(observed > 100, 'enough churn to test');
  });

  it('makes features that keep users show up as lower churn among their heavy users', () => {
    const { truth } = simulateHistory({ seed: 5, users: 4000, days: 10 });
    for (const f of FEATURES) {
      const heavy = truth.users.filter((u) => u.usage[f] > 0.5);
      const light = truth.users.filter((u) => u.usage[f] <= 0.5);
      const mean = (xs: typeof heavy) => xs.reduce((s, u) => s + u.churn_30d, 0) / xs.length;
      // Usage correlates with engagement, which lowers churn for everyone; `exports` (+0.6) is the
      // only feature whose own effect pushes the other way, and it is weaker than engagement.
      assert.ok(mean(heavy) < mean(light), `${f}: heavy users churn less`);
    }
  });

  it('refuses a configuration it cannot simulate', () => {
    assert.throws(() => new AppSimulator({ users: 0 }), /users/);
    assert.throws(() => new AppSimulator({ start: '2025-02-30x' }), /start/);
  });

  it('streams the same events as the batch, paced by the speed', async () => {
    const config = { seed: 2, users: 20, days: 3 };
    const batch = simulateHistory(config).events;
    const started = Date.now();
    const streamed = [];
    const seen: string[] = [];
    for await (const e of streamSimulation(config, { speed: 86_400 * 10 }, (users) => void seen.push(...users.map((u) => u.user_id)))) streamed.push(e);
    const elapsed = Date.now() - started;
    assert.deepEqual(streamed, batch);
    assert.ok(elapsed >= 150 && elapsed < 5000, `3 simulated days at 10 days/s take about 0.3 s, took ${elapsed} ms`);
    assert.equal(new Set(seen).size, new Set(batch.map((e) => e.user_id)).size, 'every user is announced before their events');

    const wall = streamSimulation(config, { speed: 1e9, clock: 'wall' });
    const first = await wall.next();
    assert.ok(Math.abs(Date.parse(first.value!.time) - Date.now()) < 1000, 'wall clock stamps events now');
    await wall.return(undefined);
  });
});

describe('experiments in the simulator', () => {
  it('changes only exposed treatment users, by the stated effect, assigning them as the platform does', async () => {
    const { ExperimentSchema, assign } = await import('../../src/workbench/experiments/definition.js');
    const e = ExperimentSchema.parse({
      key: 'sim-exp',
      hypothesis: 'h',
      arms: [
        { key: 'control', weight: 0.5 },
        { key: 'keep', weight: 0.5 },
      ],
      exposureEvent: 'login',
      objective: 'logins',
      mde: 0.05,
      status: 'running',
    });
    const run = (treated: boolean) => {
      const sim = new AppSimulator({ users: 600, days: 60, seed: 5 });
      if (treated) sim.runTreatments([{ experiment: e, fromDay: 20, effects: { keep: { churnLogOdds: -3, loginLogOdds: 1 } } }]);
      const events: Event[] = [];
      for (const day of sim.days()) events.push(...day.events);
      return events;
    };
    const plain = run(false);
    const treated = run(true);
    const byUser = (events: Event[]) => {
      const m = new Map<string, string[]>();
      for (const x of events) m.set(x.user_id, [...(m.get(x.user_id) ?? []), x.event_id]);
      return m;
    };
    const a = byUser(plain);
    const b = byUser(treated);
    let controlUsers = 0;
    let keepLogins = [0, 0];
    for (const [user, ids] of a) {
      if (assign(e, { user_id: user }) === 'control') {
        controlUsers++;
        assert.deepEqual(b.get(user), ids, `control user ${user} is untouched`);
      } else {
        keepLogins = [
          keepLogins[0]! + plain.filter((x) => x.user_id === user && x.event === 'login').length,
          keepLogins[1]! + treated.filter((x) => x.user_id === user && x.event === 'login').length,
        ];
      }
    }
    assert.ok(controlUsers > 200);
    assert.ok(keepLogins[1]! > keepLogins[0]! * 1.1, `treated users log in more: ${keepLogins[0]} -> ${keepLogins[1]}`);
  });
});

describe('a harmful treatment in the simulator', () => {
  it('takes logins away from its exposed users', async () => {
    const { ExperimentSchema, assign } = await import('../../src/workbench/experiments/definition.js');
    const e = ExperimentSchema.parse({
      key: 'nag',
      hypothesis: 'h',
      arms: [
        { key: 'control', weight: 0.5 },
        { key: 'nag', weight: 0.5 },
      ],
      exposureEvent: 'login',
      objective: 'logins',
      mde: 0.05,
      status: 'running',
    });
    const logins = (treated: boolean) => {
      const sim = new AppSimulator({ users: 400, days: 40, seed: 9 });
      if (treated) sim.runTreatments([{ experiment: e, fromDay: 10, effects: { nag: { loginLogOdds: -1.5 } } }]);
      let n = 0;
      for (const day of sim.days())
        n += day.events.filter(
          (x) => x.event === 'login' && assign(e, { user_id: x.user_id }) === 'nag' && Date.parse(x.time) >= Date.parse('2025-01-12T00:00:00Z'),
        ).length;
      return n;
    };
    const before = logins(false);
    const after = logins(true);
    assert.ok(after < before * 0.85, `nagged users log in less: ${before} -> ${after}`);
  });
});
