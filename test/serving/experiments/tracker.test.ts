import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ExperimentTracker } from '../../../src/serving/experiments/tracker.js';
import type { EnrichedEvent } from '../../../src/workbench/event.js';
import { ExperimentSchema } from '../../../src/workbench/experiments/definition.js';
import { metricCatalog } from '../../../src/workbench/experiments/metrics.js';

const e = ExperimentSchema.parse({
  key: 'exp',
  hypothesis: 'h',
  arms: [
    { key: 'a', weight: 0.5 },
    { key: 'b', weight: 0.5 },
  ],
  objective: 'mrr',
  guardrails: [{ metric: 'logins', bad: 'decrease', tolerance: 0.1 }],
  mde: 0.05,
  status: 'running',
});
const dims = { country: 'GB', device: 'web', tier: 'free', first_seen: '2026-01-01T00:00:00.000Z' };
const at = (minutes: number) => new Date(Date.UTC(2026, 0, 10) + minutes * 60_000).toISOString();
const ev = (id: string, user: string, name: string, minutes: number, props: Record<string, unknown> = {}, arm?: string): EnrichedEvent => ({
  event_id: id,
  time: at(minutes),
  user_id: user,
  event: name,
  props,
  dims,
  experiments: arm ? { exp: arm } : {},
  received_at: at(minutes),
});

/** u1: 2 logins before exposure, then in arm a: 1 login and upgrades for 29 and "10" (text) and "ten" (not a number). u2 in arm b: nothing after. */
const events: EnrichedEvent[] = [
  ev('1', 'u1', 'login', 0),
  ev('2', 'u1', 'login', 10),
  ev('3', 'u1', 'experiment_exposure', 20, { experiment: 'exp', arm: 'a' }, 'a'),
  ev('4', 'u1', 'login', 20, {}, 'a'),
  ev('5', 'u1', 'upgrade', 30, { mrr: 29 }, 'a'),
  ev('6', 'u1', 'upgrade', 31, { mrr: '10' }, 'a'),
  ev('7', 'u1', 'upgrade', 32, { mrr: 'ten' }, 'a'),
  ev('8', 'u2', 'experiment_exposure', 40, { experiment: 'exp', arm: 'b' }, 'b'),
  ev('9', 'u2', 'login', 41),
];

const open = (dir: string, warn?: (m: string) => void) =>
  new ExperimentTracker((k) => (k === 'exp' ? e : undefined), metricCatalog(), {
    snapshotPath: join(dir, 'experiments.snapshot'),
    snapshotEveryMs: 0,
    ...(warn ? { warn } : {}),
  });

describe('the experiment statistics consumer', () => {
  it('keeps the sums a hand count gives: values in the window, the covariate before exposure, tagged events only', async () => {
    const t = open(mkdtempSync(join(tmpdir(), 'wb-tracker-')));
    await t.resumeAt();
    await t.handle(events, 0);
    const stats = t.stats('exp');
    const a = stats.arms.find((x) => x.arm === 'a')!;
    const b = stats.arms.find((x) => x.arm === 'b')!;
    assert.deepEqual(a.metrics.logins, { n: 1, sumY: 1, sumY2: 1, sumX: 2, sumX2: 4, sumXY: 2 });
    // mrr: 29 + 10 ("ten" is not a number); no upgrade before exposure.
    assert.deepEqual(a.metrics.mrr, { n: 1, sumY: 39, sumY2: 39 * 39, sumX: 0, sumX2: 0, sumXY: 0 });
    // u2's login is not tagged: not counted.
    assert.deepEqual(b.metrics.logins, { n: 1, sumY: 0, sumY2: 0, sumX: 0, sumX2: 0, sumXY: 0 });
    assert.equal(stats.firstExposure, at(20));
  });

  it('applies a batch handed again only once, and resumes from its snapshot without counting twice', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wb-tracker-'));
    const t = open(dir);
    await t.resumeAt();
    await t.handle(events.slice(0, 5), 0);
    await t.handle(events.slice(0, 5), 0);
    await t.handle(events.slice(3), 3);
    const once = open(mkdtempSync(join(tmpdir(), 'wb-tracker-')));
    await once.resumeAt();
    await once.handle(events, 0);
    assert.deepEqual(t.stats('exp'), once.stats('exp'));
    await t.close();
    const again = open(dir);
    assert.equal(await again.resumeAt(), events.length);
    await again.handle(events.slice(7), 7);
    assert.deepEqual(again.stats('exp'), once.stats('exp'));
  });

  it('sets a corrupt snapshot aside, says so, and rebuilds from the start of the log', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wb-tracker-'));
    writeFileSync(join(dir, 'experiments.snapshot'), '{"offset": 99}\nnot-a-checksum\n');
    const warnings: string[] = [];
    const t = open(dir, (m) => warnings.push(m));
    assert.equal(await t.resumeAt(), 0);
    assert.match(warnings[0]!, /fails its checksum; kept as .*corrupt/);
  });
});
