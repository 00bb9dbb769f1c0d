import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ExperimentTracker } from '../../../src/serving/experiments/tracker.js';
import type { EnrichedEvent } from '../../../src/workbench/event.js';
import { metricCatalog } from '../../../src/workbench/experiments/metrics.js';
import type { MetricSums } from '../../../src/workbench/experiments/results.js';
import { cuped } from '../../../src/workbench/stats/cuped.js';
import { moments } from '../../../src/workbench/stats/two-sample.js';
import { Random } from '../../../src/workbench/random.js';
import { mrrExperiment } from '../../helpers/experiments.js';
import { until } from '../../helpers/wait.js';

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

/** The raw sums (of the values, not of their deviations from the shifts) the tracker's shifted sums stand for. */
function raw(s: MetricSums): Omit<MetricSums, 'shiftY' | 'shiftX'> {
  const [ky, kx] = [s.shiftY ?? 0, s.shiftX ?? 0];
  return {
    n: s.n,
    sumY: s.sumY + s.n * ky,
    sumY2: s.sumY2 + 2 * ky * s.sumY + s.n * ky * ky,
    sumX: s.sumX + s.n * kx,
    sumX2: s.sumX2 + 2 * kx * s.sumX + s.n * kx * kx,
    sumXY: s.sumXY + kx * s.sumY + ky * s.sumX + s.n * kx * ky,
  };
}

const open = (dir: string, warn?: (m: string) => void) =>
  new ExperimentTracker((k) => (k === 'exp' ? mrrExperiment : undefined), metricCatalog(), {
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
    assert.deepEqual(raw(a.metrics.logins!), { n: 1, sumY: 1, sumY2: 1, sumX: 2, sumX2: 4, sumXY: 2 });
    // mrr: 29 + 10 ("ten" is not a number); no upgrade before exposure.
    assert.deepEqual(raw(a.metrics.mrr!), { n: 1, sumY: 39, sumY2: 39 * 39, sumX: 0, sumX2: 0, sumXY: 0 });
    // u2's login is not tagged: not counted.
    assert.deepEqual(raw(b.metrics.logins!), { n: 1, sumY: 0, sumY2: 0, sumX: 0, sumX2: 0, sumXY: 0 });
    assert.equal(stats.firstExposure, at(20));
  });

  it('reads the definitions again for an exposure to an experiment it does not know yet, instead of dropping it', async () => {
    // Created on another instance a moment ago: this one learns of it only when it reads the definitions again.
    let known = false;
    let refreshes = 0;
    const t = new ExperimentTracker((k) => (known && k === 'exp' ? mrrExperiment : undefined), metricCatalog(), {
      snapshotPath: join(mkdtempSync(join(tmpdir(), 'wb-tracker-')), 'experiments.snapshot'),
      refresh: async () => {
        refreshes++;
        known = true;
      },
    });
    await t.resumeAt();
    await t.handle(events, 0);
    assert.equal(refreshes, 1);
    assert.equal(t.exposed('exp', 'u1'), true);
    const full = open(mkdtempSync(join(tmpdir(), 'wb-tracker-')));
    await full.resumeAt();
    await full.handle(events, 0);
    assert.deepEqual(t.stats('exp'), full.stats('exp'), 'the same statistics as an instance that knew it all along');

    // A key that is not an experiment makes the definitions be read once, not on every batch.
    const stray = [
      ev('s1', 'u3', 'experiment_exposure', 50, { experiment: 'nope', arm: 'a' }),
      ev('s2', 'u4', 'experiment_exposure', 51, { experiment: 'nope', arm: 'a' }),
    ];
    await t.handle(stray.slice(0, 1), events.length);
    await t.handle(stray.slice(1), events.length + 1);
    assert.equal(refreshes, 2);
    assert.equal(t.exposed('nope', 'u3'), false);
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

  it('renders a large snapshot a few milliseconds at a time, and counts the next batches while the last is written', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wb-tracker-'));
    const t = open(dir);
    await t.resumeAt();
    // 20,000 users with 20 logins each in their history (kept for pre-exposure covariates): megabytes of JSON.
    const history: EnrichedEvent[] = [];
    for (let u = 0; u < 20_000; u++) for (let k = 0; k < 20; k++) history.push(ev(`h${u}-${k}`, `user-${u}`, 'login', k));
    // Rendered in time slices: a timer due meanwhile runs before the snapshot is done.
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 1);
    await t.handle(history, 0);
    clearInterval(ticker);
    assert.ok(ticks > 0, 'the event loop turned while the snapshot was rendered');
    // The exposures and upgrades arrive while that snapshot is written (on libuv's threads): counted,
    // and in the next snapshot, which lands after it; the file ends with every batch.
    await t.handle(events, history.length);
    await t.close();
    const again = open(dir);
    assert.equal(await again.resumeAt(), history.length + events.length);
    const once = open(mkdtempSync(join(tmpdir(), 'wb-tracker-')));
    await once.resumeAt();
    await once.handle(events, 0);
    assert.deepEqual(again.stats('exp'), once.stats('exp'));
  });

  it('does not render its snapshot again for batches that changed only the offset, until a change or on close', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wb-tracker-'));
    const t = new ExperimentTracker((k) => (k === 'exp' ? mrrExperiment : undefined), metricCatalog(), {
      snapshotPath: join(dir, 'experiments.snapshot'),
      // Each pause below passes the interval; the ten intervals after which the offset alone is
      // written (1 s) stay well ahead of the two of them, however slow the machine.
      snapshotEveryMs: 100,
    });
    const onDisk = () => (JSON.parse(readFileSync(join(dir, 'experiments.snapshot'), 'utf8').trimEnd().split('\n')[0]!) as { offset: number }).offset;
    const pause = () => new Promise((r) => setTimeout(r, 110));
    await t.resumeAt();
    await t.handle(events, 0);
    const reached = (offset: number) => async () => (existsSync(join(dir, 'experiments.snapshot')) && onDisk() === offset ? true : undefined);
    await until('the first snapshot', reached(events.length));
    // Predictions (no metric has a covariate) and events no metric counts: nothing changes.
    let offset = events.length;
    for (let k = 0; k < 2; k++) {
      await pause();
      await t.handle([ev(`p${k}`, 'u3', 'prediction', 50 + k, { model: 'churn', score: 0.5 }), ev(`v${k}`, 'u3', 'page_view', 50 + k)], offset);
      offset += 2;
    }
    await pause();
    assert.equal(onDisk(), events.length, 'no snapshot for the offset alone');
    // A login of u1, in arm a: its logins metric moves, and the next batch past the interval writes it.
    await t.handle([ev('l9', 'u1', 'login', 60, {}, 'a')], offset);
    offset += 1;
    await until('the snapshot after a change', reached(offset));
    await t.handle([ev('p9', 'u3', 'prediction', 61, { model: 'churn', score: 0.5 })], offset);
    await t.close();
    assert.equal(onDisk(), offset + 1, 'close writes the offset');
  });

  it('sets a corrupt snapshot aside, says so, and rebuilds from the start of the log', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wb-tracker-'));
    writeFileSync(join(dir, 'experiments.snapshot'), '{"offset": 99}\nnot-a-checksum\n');
    const warnings: string[] = [];
    const t = open(dir, (m) => warnings.push(m));
    assert.equal(await t.resumeAt(), 0);
    assert.match(warnings[0]!, /fails its checksum; kept as .*corrupt/);
  });

  it('keeps the variance of a metric whose mean is large against its spread (mean 1e8), as a two-pass computation gives it', async () => {
    // mrr of 1e8 + N(0, 1.2) per user, and logins whose pre-period count is about 1e8 too: raw sums of squares (1e19) leave no digit of a variance of 1.44.
    const r = new Random(13);
    const big: EnrichedEvent[] = [];
    const values: Record<string, number[]> = { a: [], b: [] };
    for (let u = 0; u < 2000; u++) {
      const arm = u % 2 === 0 ? 'a' : 'b';
      const user = `big${u}`;
      big.push(ev(`e${u}`, user, 'experiment_exposure', 100 + u * 0.01, { experiment: 'exp', arm }, arm));
      const v = 1e8 + r.normal(0, 1.2);
      values[arm]!.push(v);
      big.push(ev(`m${u}`, user, 'upgrade', 100 + u * 0.01 + 0.005, { mrr: v }, arm));
    }
    big.sort((x, y) => x.time.localeCompare(y.time));
    const t = open(mkdtempSync(join(tmpdir(), 'wb-tracker-')));
    await t.resumeAt();
    await t.handle(big, 0);
    for (const arm of ['a', 'b']) {
      const s = t.stats('exp').arms.find((x) => x.arm === arm)!.metrics.mrr!;
      const m = moments({ n: s.n, sum: s.sumY, sumSquares: s.sumY2, shift: s.shiftY! });
      const xs = values[arm]!;
      const mean = xs.reduce((acc, v) => acc + (v - 1e8), 0) / xs.length + 1e8;
      const twoPass = xs.reduce((acc, v) => acc + (v - mean) ** 2, 0) / (xs.length - 1);
      assert.equal(m.n, 1000);
      assert.ok(Math.abs(m.variance - twoPass) <= 1e-9 * twoPass, `${arm}: ${m.variance} vs two-pass ${twoPass}`);
      assert.ok(Math.abs(m.mean - mean) <= 1e-14 * mean, `${arm}: ${m.mean} vs ${mean}`);
    }
    // The engine reads the shifted sums the same way everywhere (CUPED too).
    const [sa, sb] = ['a', 'b'].map((arm) => t.stats('exp').arms.find((x) => x.arm === arm)!.metrics.mrr!);
    assert.ok(Math.abs(cuped([sa!, sb!]).arms[0]!.mean - 1e8) < 1);
  });
});
