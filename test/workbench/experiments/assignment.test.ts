import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DuckDb } from '../../../src/workbench/duckdb.js';
import { assign, checkExperiment, type Experiment, type ExperimentInput } from '../../../src/workbench/experiments/definition.js';
import { hashBucket } from '../../../src/workbench/experiments/hash.js';
import { ASSIGNMENT_MACROS } from '../../../src/workbench/experiments/macros.js';
import { sql } from '../../../src/workbench/sql.js';

const metrics = new Set(['conversion', 'revenue', 'errors']);
const base: ExperimentInput = {
  key: 'churn-offer',
  hypothesis: 'a discount offer to users at risk lowers churn',
  arms: [
    { key: 'control', weight: 0.5 },
    { key: 'offer', weight: 0.5 },
  ],
  objective: 'conversion',
  guardrails: [{ metric: 'revenue', bad: 'decrease', tolerance: 0.02 }],
  mde: 0.05,
  status: 'running',
};
const make = (over: Partial<ExperimentInput> = {}, others: Experiment[] = []) => checkExperiment({ ...base, ...over }, { metrics, others });

describe('experiment definitions', () => {
  it('refuse weights that do not add up, bad coverage, unknown metrics and overlapping namespaces, naming the problem', () => {
    assert.throws(
      () =>
        make({
          arms: [
            { key: 'a', weight: 0.5 },
            { key: 'b', weight: 0.4 },
          ],
        }),
      /experiment churn-offer: arms: arm weights add up to 0.9, not 1/,
    );
    assert.throws(() => make({ coverage: 1.2 }), /coverage: coverage is a share of users, from 0 to 1/);
    assert.throws(() => make({ objective: 'nps' }), /unknown metric nps \(metrics: conversion, revenue, errors\)/);
    assert.throws(() => make({ guardrails: [{ metric: 'latency', bad: 'increase', tolerance: 0.1 }] }), /unknown metric latency/);
    assert.throws(
      () =>
        make({
          arms: [
            { key: 'a', weight: 0.5 },
            { key: 'a', weight: 0.5 },
          ],
        }),
      /arm keys repeat/,
    );
    const first = make({ key: 'first', namespace: { name: 'pricing', range: [0, 0.5] } });
    assert.throws(
      () => make({ key: 'second', namespace: { name: 'pricing', range: [0.4, 1] } }, [first]),
      /range \[0.4, 1\) overlaps running experiment first \[0, 0.5\)/,
    );
    assert.equal(make({ key: 'third', namespace: { name: 'pricing', range: [0.5, 1] } }, [first]).key, 'third');
    assert.equal(
      make({ key: 'fourth', namespace: { name: 'pricing', range: [0.2, 0.6] } }, [{ ...first, status: 'stopped' }]).key,
      'fourth',
      'a stopped experiment frees its range',
    );
  });

  it('make a model experiment compare aliases of one model, with the champion as control, not enrolling on predictions', () => {
    const arms = (control: string, other = 'churn') => [
      { key: 'control', weight: 0.5, model: { name: 'churn', alias: control } },
      { key: 'challenger', weight: 0.5, model: { name: other, alias: 'challenger' } },
    ];
    assert.equal(make({ arms: arms('champion') }).arms[1]!.model?.alias, 'challenger');
    assert.throws(() => make({ arms: arms('champion', 'propensity') }), /the arms serve different models \(churn, propensity\)/);
    assert.throws(() => make({ arms: arms('stable') }), /the control \(first\) arm serves the champion alias/);
    assert.throws(() => make({ arms: [arms('champion')[0]!, { key: 'plain', weight: 0.5 }] }), /every arm names its alias/);
    assert.throws(() => make({ arms: arms('champion'), exposureEvent: 'prediction' }), /cannot enroll users on their predictions/);
    assert.throws(() => make({ status: 'shipped' }), /a shipped experiment names its winning arm/);
  });
});

describe('assignment', () => {
  const users = Array.from({ length: 20_000 }, (_, i) => ({ user_id: `u${i}`, dims: { country: i % 3 === 0 ? 'GB' : 'US', device: 'web', tier: 'free' } }));

  it('splits by weight, respects targeting and namespaces, and leaves out users of a stopped experiment', () => {
    const e = make({
      arms: [
        { key: 'control', weight: 0.7 },
        { key: 'offer', weight: 0.3 },
      ],
    });
    const arms = users.map((u) => assign(e, u));
    const share = arms.filter((a) => a === 'offer').length / users.length;
    assert.ok(Math.abs(share - 0.3) < 0.015, `offer share ${share}`);
    const gbOnly = make({ targeting: { country: ['GB'] } });
    assert.ok(users.every((u) => (assign(gbOnly, u) !== undefined) === (u.dims.country === 'GB')));
    const half = make({ namespace: { name: 'pricing', range: [0, 0.5] } });
    const inHalf = users.filter((u) => assign(half, u) !== undefined).length / users.length;
    assert.ok(Math.abs(inHalf - 0.5) < 0.015, `namespace share ${inHalf}`);
    assert.ok(users.every((u) => assign({ ...e, status: 'stopped' }, u) === undefined));
  });

  it('is deterministic and the same in the lakehouse: the DuckDB macros agree user for user', async () => {
    const experiments = [
      make({ key: 'two-arms' }),
      make({
        key: 'three-uneven',
        arms: [
          { key: 'a', weight: 0.2 },
          { key: 'b', weight: 0.3 },
          { key: 'c', weight: 0.5 },
        ],
        coverage: 0.8,
        seed: 'séed ✓',
      }),
      make({ key: 'v1-hash', hashVersion: 1, coverage: 0.5 }),
    ];
    const db = await DuckDb.open();
    try {
      for (const m of ASSIGNMENT_MACROS) await db.run(m);
      await db.run(sql`CREATE TABLE u (user_id VARCHAR)`);
      await db.append(
        'u',
        ['VARCHAR'],
        users.map((u) => [u.user_id]),
      );
      for (const e of experiments) {
        const r = await db.query(
          sql`SELECT user_id, wb_arm(wb_hash(${e.seed ?? e.key}, user_id, ${e.hashVersion}), ${e.arms.map((a) => a.weight)}, ${e.coverage}) AS arm FROM u ORDER BY rowid`,
        );
        const [ids, arms] = r.columns as [string[], number[]];
        ids.forEach((id, i) => {
          const expected = assign(e, { user_id: id });
          const got = arms[i] === -1 ? undefined : e.arms[Number(arms[i])]!.key;
          assert.equal(got, expected, `${e.key}: user ${id} (bucket ${hashBucket(e.seed ?? e.key, id, e.hashVersion)})`);
        });
      }
    } finally {
      db.close();
    }
  });
});
