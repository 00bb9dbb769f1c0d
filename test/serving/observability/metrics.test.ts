import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { COUNTRIES, labelVocabulary } from '../../../src/serving/observability/label-vocabulary.js';
import { Metrics } from '../../../src/serving/observability/metrics.js';
import { event, startTestService, type TestService } from '../../helpers/service.js';
import { until } from '../../helpers/wait.js';

/** Debian's (the prometheus package, which CI installs), else one on PATH. */
const PROMTOOL = [
  '/usr/bin/promtool',
  ...(process.env.PATH ?? '')
    .split(delimiter)
    .filter(Boolean)
    .map((dir) => join(dir, 'promtool')),
].find((path) => existsSync(path));

describe('metrics', () => {
  it('caps the distinct values of a label, counting the rest as other', () => {
    const m = new Metrics();
    const values = Array.from({ length: 250 }, (_, i) => m.label('model', `m${i}`));
    assert.equal(new Set(values).size, 201);
    assert.equal(values[199], 'm199');
    assert.equal(values[200], 'other');
    assert.equal(m.label('model', 'm5'), 'm5', 'a value already seen keeps its name');
  });

  it('gives label slots only to values the project knows: made-up countries, devices, tiers and event names are other at once', () => {
    const m = new Metrics({ eventNames: ['checkout'] });
    for (let i = 0; i < 300; i++) {
      assert.equal(m.label('country', `Atlantis-${i}`), 'other');
      assert.equal(m.label('device', `toaster-${i}`), 'other');
      assert.equal(m.label('event', `made_up_${i}`), 'other');
    }
    assert.equal(m.label('tier', 'platinum'), 'other');
    assert.equal(m.label('country', 'NZ'), 'NZ');
    assert.equal(m.label('country', 'New Zealand'), 'New Zealand');
    assert.equal(m.label('country', 'EIRE'), 'EIRE', "the retail log's own spellings are known");
    assert.equal(m.label('country', 'Unspecified'), 'other', 'a name that is not a country is not');
    assert.equal(m.label('country', 'Bosnia and Herzegovina'), 'Bosnia and Herzegovina');
    assert.equal(m.label('country', 'unknown'), 'unknown', "the service's placeholder is known");
    assert.equal(m.label('device', 'android'), 'android');
    assert.equal(m.label('tier', 'pro'), 'pro');
    for (const name of ['login', 'purchase', 'return', 'subscription_cancelled', 'prediction', 'experiment_exposure', 'checkout'])
      assert.equal(m.label('event', name), name);
    assert.equal(m.label('country', '__proto__'), 'other');
  });

  it('ships every ISO 3166-1 alpha-2 code, and every country the shipped retail log names (its non-countries are quarantined)', () => {
    assert.equal(Object.keys(COUNTRIES).length, 249);
    const countries = labelVocabulary().get('country')!;
    // data/online-retail-uci/online_retail.csv.gz, its Country column (all 38 values).
    const retail = [
      'Australia',
      'Austria',
      'Bahrain',
      'Belgium',
      'Brazil',
      'Canada',
      'Channel Islands',
      'Cyprus',
      'Czech Republic',
      'Denmark',
      'EIRE',
      'European Community',
      'Finland',
      'France',
      'Germany',
      'Greece',
      'Hong Kong',
      'Iceland',
      'Israel',
      'Italy',
      'Japan',
      'Lebanon',
      'Lithuania',
      'Malta',
      'Netherlands',
      'Norway',
      'Poland',
      'Portugal',
      'RSA',
      'Saudi Arabia',
      'Singapore',
      'Spain',
      'Sweden',
      'Switzerland',
      'USA',
      'United Arab Emirates',
      'United Kingdom',
      'Unspecified',
    ];
    assert.deepEqual(
      retail.filter((c) => !countries.has(c)),
      ['Channel Islands', 'European Community', 'Unspecified'],
    );
    assert.deepEqual(
      ['GB', 'US', 'DE', 'FR', 'NL', 'IN'].filter((c) => !countries.has(c)),
      [],
      "the simulator's countries",
    );
  });
});

describe('metrics of a running service', { timeout: 60_000 }, () => {
  let t: TestService;
  before(async () => {
    t = await startTestService();
  });
  after(async () => {
    await t?.stop();
  });
  const scrape = async () => (await t.call('/metrics', { key: t.keys.read })).text();

  it('keeps a real new country labelled as itself after one key sent 300 made-up ones', async () => {
    const fake = Array.from({ length: 300 }, (_, i) =>
      event(`fake-${i}`, { user_id: `fake-user-${i}`, props: { country: `Fakeland ${i}`, device: `gadget-${i}` } }),
    );
    assert.equal((await t.post('/v1/events', fake)).status, 200);
    assert.equal((await t.post('/v1/events', [event('real-nz', { user_id: 'kiwi', props: { country: 'NZ', device: 'ios' } })])).status, 200);
    const text = await until('the metrics consumer', async () => {
      const m = await scrape();
      return /wb_events_total\{event="login",country="NZ",device="ios"\} 1\b/.test(m) ? m : undefined;
    });
    assert.match(text, /wb_events_total\{event="login",country="other",device="other"\} 300\b/);
    const countries = new Set([...text.matchAll(/wb_events_total\{[^}]*country="([^"]*)"/g)].map((m) => m[1]));
    assert.deepEqual([...countries].sort(), ['NZ', 'other']);
  });

  it('passes promtool check metrics', async (ctx) => {
    if (!PROMTOOL) {
      assert.ok(!process.env.CI, "promtool is missing: CI installs Debian's prometheus package for it (.ci/run)");
      console.warn('\n*** SKIPPED: promtool is not installed, so /metrics was not checked (apt-get install --no-install-recommends prometheus) ***\n');
      return ctx.skip('promtool is not installed');
    }
    await t.post('/v1/events', [
      event('p-1', { user_id: 'prom-1', props: { country: 'FR', device: 'web' } }),
      event('p-2', { user_id: 'prom-1', event: 'purchase', props: { amount: 12.5 } }),
      { nonsense: true },
    ]);
    await t.post('/v1/events', [event('p-1')]);
    await t.call('/nowhere');
    const text = await until('the new events in /metrics', async () => {
      const m = await scrape();
      return /wb_events_total\{event="purchase",country="FR",device="web"\} 1\b/.test(m) ? m : undefined;
    });
    assert.match(text, /# TYPE wb_timeseries_dropped_total counter/);
    const check = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(check.status, 0, `promtool check metrics:\n${check.stdout}${check.stderr}`);
  });
});
