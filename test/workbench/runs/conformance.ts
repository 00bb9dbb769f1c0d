import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { storeUnderTest } from '../../helpers/servers.js';
import { ConflictError, InputError, NotFoundError } from '../../../src/workbench/errors.js';
import { startRun } from '../../../src/workbench/runs/run.js';
import { modelRef, type NewRun, type TrackingStore } from '../../../src/workbench/runs/store.js';

const newRun = (id: string, over: Partial<NewRun> = {}): NewRun => ({
  id,
  name: 'churn',
  source: 'notebooks/04-app-churn.ipynb',
  description: null,
  startedAt: '2025-03-01T10:00:00.000Z',
  gitCommit: 'abc123',
  dataSnapshot: 'lakehouse 0123 (built 2025-03-01)',
  params: new Map(),
  ...over,
});

/** The behaviour every run store must have; run once per implementation. */
export function trackingConformance(name: string, open: () => Promise<TrackingStore | string>): void {
  describe(`run store conformance: ${name}`, () => {
    const subject = storeUnderTest(open);

    it('migrates twice without harm and starts empty', async () => {
      await subject.store.migrate();
      assert.deepEqual(await subject.store.listRuns(), []);
    });

    it('records a run: parameters with their JSON types, metrics by step, artefacts, status and times', async () => {
      await subject.store.createRun(
        newRun('00000000000000a1', {
          params: new Map<string, string | number | boolean | null>([
            ['learningRate', 0.03],
            ['lr_text', '0.03'],
            ['early', true],
            ['none', null],
          ]),
        }),
      );
      const at = '2025-03-01T10:01:00.000Z';
      await subject.store.logMetrics('00000000000000a1', [
        { key: 'loss', step: 0, value: 0.7, at },
        { key: 'loss', step: 1, value: 0.5, at },
        { key: 'loss', step: 2, value: 0.45, at },
        { key: 'roc_auc', step: 0, value: 0.81, at },
        { key: 'undefined_auc', step: 0, value: Number.NaN, at },
        { key: 'inf', step: 0, value: Number.POSITIVE_INFINITY, at },
      ]);
      // A step logged again replaces its value.
      await subject.store.logMetrics('00000000000000a1', [{ key: 'roc_auc', step: 0, value: 0.82, at }]);
      await subject.store.putArtifact('00000000000000a1', {
        name: 'model',
        ref: modelRef('churn', '0123456789abcdef'),
        value: { version: '0123456789abcdef' },
        at,
      });
      await subject.store.putArtifact('00000000000000a1', { name: 'gate', ref: null, value: { passed: true, reasons: [] }, at });
      await subject.store.endRun('00000000000000a1', 'finished', '2025-03-01T10:05:00.000Z');

      const run = await subject.store.getRun('00000000000000a1');
      assert.equal(run.status, 'finished');
      assert.equal(run.startedAt, '2025-03-01T10:00:00.000Z');
      assert.equal(run.endedAt, '2025-03-01T10:05:00.000Z');
      assert.equal(run.gitCommit, 'abc123');
      assert.equal(run.dataSnapshot, 'lakehouse 0123 (built 2025-03-01)');
      assert.deepEqual({ ...run.params }, { learningRate: 0.03, lr_text: '0.03', early: true, none: null });
      assert.equal(run.metrics.loss, 0.45, 'the value at the highest step');
      assert.equal(run.metrics.roc_auc, 0.82);
      assert.ok(Number.isNaN(run.metrics.undefined_auc), 'NaN is kept as NaN');
      assert.equal(run.metrics.inf, Number.POSITIVE_INFINITY);
      assert.deepEqual(
        run.artifacts.map((a) => [a.name, a.ref]),
        [
          ['gate', null],
          ['model', 'model:churn@0123456789abcdef'],
        ],
      );
      assert.deepEqual(
        (await subject.store.metricHistory('00000000000000a1', 'loss')).map((p) => [p.step, p.value]),
        [
          [0, 0.7],
          [1, 0.5],
          [2, 0.45],
        ],
      );
    });

    it('keeps names that are object keys or SQL as plain data', async () => {
      const evil = "x'); DROP TABLE tracking_runs; --";
      await subject.store.createRun(
        newRun('00000000000000b2', {
          name: evil,
          params: new Map<string, string | number | boolean | null>([
            ['__proto__', 'polluted?'],
            ['constructor', 1],
            [evil, evil],
          ]),
        }),
      );
      await subject.store.logMetrics('00000000000000b2', [{ key: '__proto__', step: 0, value: 1, at: '2025-03-01T10:00:00Z' }]);
      await subject.store.putArtifact('00000000000000b2', {
        name: '__proto__',
        ref: null,
        value: JSON.parse('{"__proto__": {"x": 1}}'),
        at: '2025-03-01T10:00:00Z',
      });
      const run = await subject.store.getRun('00000000000000b2');
      assert.equal(run.name, evil);
      assert.equal(run.params['__proto__'], 'polluted?');
      assert.equal(run.params.constructor, 1);
      assert.equal(run.params[evil], evil);
      assert.equal(Object.getPrototypeOf(run.params), null);
      assert.equal(run.metrics['__proto__'], 1);
      const value = run.artifacts[0]!.value as Record<string, unknown>;
      assert.deepEqual(Object.keys(value), ['__proto__'], 'a __proto__ key in an artefact is an own key');
      assert.equal(({} as Record<string, unknown>).x, undefined, 'Object.prototype untouched');
      assert.equal((await subject.store.listRuns({ name: evil })).length, 1);
    });

    it('refuses writes to a run that ended or does not exist, and a parameter changed after it was logged', async () => {
      await assert.rejects(subject.store.logMetrics('00000000000000a1', [{ key: 'x', step: 0, value: 1, at: '2025-03-01T10:00:00Z' }]), ConflictError);
      await assert.rejects(subject.store.endRun('00000000000000a1', 'failed', '2025-03-01T11:00:00Z'), ConflictError);
      await assert.rejects(subject.store.putArtifact('ffffffffffffffff', { name: 'a', ref: null, value: 1, at: '2025-03-01T10:00:00Z' }), NotFoundError);
      await subject.store.createRun(newRun('00000000000000c3', { params: new Map([['seed', 1]]) }));
      await subject.store.logParams('00000000000000c3', new Map<string, number>([['seed', 1]]));
      await subject.store.logParams('00000000000000c3', new Map<string, number>([['epochs', 20]]));
      await assert.rejects(subject.store.logParams('00000000000000c3', new Map<string, number>([['seed', 2]])), /keeps its first value/);
      assert.deepEqual({ ...(await subject.store.getRun('00000000000000c3')).params }, { seed: 1, epochs: 20 });
    });

    it('finds a run by a unique prefix, and says when a prefix is ambiguous', async () => {
      assert.equal((await subject.store.getRun('00000000000000c')).id, '00000000000000c3');
      await assert.rejects(subject.store.getRun('0000'), (err: unknown) => err instanceof InputError && /is the start of \d+ runs/.test(err.message));
      await assert.rejects(subject.store.getRun('abcd'), NotFoundError);
      await assert.rejects(subject.store.getRun("0000' OR 1=1 --"), InputError);
    });

    it('lists runs newest first, by name, status and artefact ref', async () => {
      await subject.store.createRun(newRun('00000000000000d4', { name: 'other', startedAt: '2025-03-02T00:00:00.000Z' }));
      await subject.store.createRun(newRun('00000000000000e5', { startedAt: '2025-02-01T00:00:00.000Z' }));
      assert.deepEqual(
        (await subject.store.listRuns({ name: 'churn' })).map((r) => r.id),
        ['00000000000000c3', '00000000000000a1', '00000000000000e5'],
        'same start: by id, descending',
      );
      assert.deepEqual(
        (await subject.store.listRuns({ limit: 2 })).map((r) => r.id),
        ['00000000000000d4', '00000000000000c3'],
      );
      assert.deepEqual(
        (await subject.store.listRuns({ status: 'finished' })).map((r) => r.id),
        ['00000000000000a1'],
      );
      assert.deepEqual(
        (await subject.store.listRuns({ ref: modelRef('churn', '0123456789abcdef') })).map((r) => r.id),
        ['00000000000000a1'],
      );
      await assert.rejects(subject.store.listRuns({ limit: 0 }), InputError);
      await assert.rejects(subject.store.listRuns({ limit: 1_000_000 }), InputError);
    });

    it('bounds what a run holds', async () => {
      await subject.store.createRun(newRun('00000000000000f6'));
      const many = Array.from({ length: 1001 }, (_, i) => ({ key: 'm', step: i, value: i, at: '2025-03-01T10:00:00Z' }));
      await assert.rejects(subject.store.logMetrics('00000000000000f6', many), /at most 1000/);
      for (let i = 0; i < 100; i++) await subject.store.putArtifact('00000000000000f6', { name: `a${i}`, ref: null, value: i, at: '2025-03-01T10:00:00Z' });
      await assert.rejects(
        subject.store.putArtifact('00000000000000f6', { name: 'one-more', ref: null, value: 1, at: '2025-03-01T10:00:00Z' }),
        /100 artefacts/,
      );
      await subject.store.putArtifact('00000000000000f6', { name: 'a0', ref: null, value: 'replaced', at: '2025-03-01T10:00:00Z' });
    });

    it('records through startRun: concurrent runs, steps per metric, the model artefact, and hostile input refused at the edge', async () => {
      const [a, b] = await Promise.all([
        startRun({ name: 'concurrent', params: { lr: 0.1 }, source: 'test', dataSnapshot: 'snap-1', store: subject.store }),
        startRun({ name: 'concurrent', params: JSON.parse('{"lr": 0.2, "__proto__": "x"}') as Record<string, number>, source: 'test', store: subject.store }),
      ]);
      await Promise.all([
        ...[0, 1, 2].map((i) => a.log({ loss: 1 / (i + 1) }, { step: i })),
        ...[0, 1, 2].map((i) => b.log(new Map([['loss', 2 / (i + 1)]]), { step: i })),
      ]);
      await a.log({ roc_auc: 0.7 });
      await a.log({ roc_auc: 0.75 });
      await b.artifact('notes', { text: '<b>not html</b>' });
      await assert.rejects(a.log({ bad: Number('x') ? 1 : ('nope' as unknown as number) }), InputError);
      await assert.rejects(a.artifact('big', 'x'.repeat(1_100_000)), /more than 1000000/);
      await assert.rejects(a.artifact('inf', { x: Number.POSITIVE_INFINITY }), /JSON cannot keep/);
      await assert.rejects(a.logParams({ lr: 0.5 }), ConflictError);
      await assert.rejects(startRun({ name: 'x'.repeat(201), store: subject.store }), /more than 200/);
      await assert.rejects(startRun({ name: 'ok', params: { s: 'a\u0000b' }, store: subject.store }), /NUL/);
      await assert.rejects(startRun({ name: 'ok', params: { s: '\ud800' }, store: subject.store }), /lone UTF-16 surrogate/);
      await assert.rejects(startRun({ name: 'ok', params: { n: Number.NaN }, store: subject.store }), /finite number/);
      const endedA = await a.end();
      const endedB = await b.end('failed');
      assert.equal(endedA.status, 'finished');
      assert.equal(endedB.status, 'failed');
      assert.equal(endedA.metrics.loss, 1 / 3);
      assert.equal(endedB.metrics.loss, 2 / 3);
      assert.equal(endedA.metrics.roc_auc, 0.75);
      assert.deepEqual(
        (await subject.store.metricHistory(a.id, 'roc_auc')).map((p) => [p.step, p.value]),
        [
          [0, 0.7],
          [1, 0.75],
        ],
        'without a step, a metric goes to its next step',
      );
      assert.equal(endedA.dataSnapshot, 'snap-1');
      assert.equal(endedB.params['__proto__'], 'x');
      assert.deepEqual({ ...(endedB.artifacts[0]!.value as object) }, { text: '<b>not html</b>' });
      await assert.rejects(a.end(), ConflictError);
      assert.equal(a.ended, true);
    });
  });
}
