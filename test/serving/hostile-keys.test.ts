import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Browser } from 'playwright-core';
import { assign, ExperimentSchema, MetricSchema, type ExperimentInput } from '../../src/workbench/experiments/definition.js';
import { featureSet } from '../../src/workbench/features/definition.js';
import { createBundle } from '../../src/workbench/models/bundle.js';
import { columnsFor } from '../../src/workbench/models/preprocess.js';
import { publish } from '../../src/workbench/models/publish.js';
import { trainClassifier } from '../../src/workbench/models/train.js';
import { launchBrowser } from '../helpers/browser.js';
import { startTestService, type TestService } from '../helpers/service.js';
import { until } from '../helpers/wait.js';

const waitFor = (what: string, condition: () => Promise<boolean>, timeoutMs = 20_000) =>
  until(what, async () => ((await condition()) ? true : undefined), timeoutMs);

/**
 * Every name Object.prototype answers to, sent as every field that can become a key, through every
 * route: the service must keep answering (never a 5xx), leave Object.prototype alone, keep its
 * consumers moving and count the senders, draw its pages, and start again on what it wrote.
 */
const HOSTILE = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty'] as const;
/** Of those, the ones an experiment, arm, metric, model, alias or feature name may be (lower-case rules). */
const NAMEABLE = ['constructor', 'prototype'] as const;
const XSS = '<img src=x onerror="window.__xss=1">';

const q = JSON.stringify;
/** Props written as JSON text: an object literal with `__proto__:` would set a prototype, not send a key. */
const hostileProps = (country: string, extra = '') =>
  `{"country":${q(country)},"device":${q(country)},"constructor":{"__proto__":{"polluted":1}},"prototype":"p","toString":1,"hasOwnProperty":"h"${extra}}`;
const eventJson = (id: string, user: string, name: string, props: string, ageMs = 1000) =>
  `{"event_id":${q(id)},"time":${q(new Date(Date.now() - ageMs).toISOString())},"user_id":${q(user)},"event":${q(name)},"props":${props}}`;

const PROTOTYPE_NAMES = Object.getOwnPropertyNames(Object.prototype).sort();
const OBJECT_NAMES = Object.getOwnPropertyNames(Object).sort();
function assertPrototypeUntouched(when: string): void {
  assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), PROTOTYPE_NAMES, `Object.prototype gained or lost properties ${when}`);
  assert.deepEqual(Object.getOwnPropertyNames(Object).sort(), OBJECT_NAMES, `Object gained or lost properties ${when}`);
  const probe = {} as Record<string, unknown>;
  assert.equal(probe.polluted, undefined, `({}).polluted ${when}`);
  assert.equal(probe.constructor, Object, `({}).constructor ${when}`);
  assert.equal(Object.getPrototypeOf(probe), Object.prototype, `the prototype of {} ${when}`);
  assert.equal(typeof probe.toString, 'function', `({}).toString ${when}`);
  assert.equal(typeof probe.hasOwnProperty, 'function', `({}).hasOwnProperty ${when}`);
}

const metrics = [
  MetricSchema.parse({ key: 'constructor', kind: 'mean', event: 'login', prop: 'toString', preExposureDays: 0, description: 'the toString prop of logins' }),
  MetricSchema.parse({ key: 'prototype', kind: 'conversion', event: 'prototype', preExposureDays: 0 }),
];

const experiment: ExperimentInput = {
  key: 'constructor',
  hypothesis: 'keys named like Object.prototype members work like any other',
  arms: [
    { key: 'constructor', weight: 0.5 },
    { key: 'prototype', weight: 0.5 },
  ],
  targeting: { country: [...HOSTILE, XSS, 'GB'] },
  exposureEvent: 'login',
  objective: 'constructor',
  guardrails: [{ metric: 'prototype', bad: 'increase', tolerance: 5 }],
  mde: 0.05,
  minRunDays: 0,
  status: 'running',
};

describe('keys named like Object.prototype members, through every route', { timeout: 180_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'wb-hostile-'));
  let t: TestService;
  let browser: Browser | string;
  let modelVersion = '';
  const admin = (path: string, body: string, method = 'POST') =>
    t.call(path, { method, key: t.keys.admin, body, headers: { 'content-type': 'application/json' } });
  const ingest = (body: string, path = '/v1/events') =>
    t.call(path, { method: 'POST', key: t.keys.ingest, body, headers: { 'content-type': 'application/json' } });
  const read = (path: string) => t.call(path, { key: t.keys.read });
  const json = async <T>(res: Response | Promise<Response>) => (await (await res).json()) as T;
  const lagIsZero = async () => (await json<{ consumers: { name: string; lag: number }[] }>(read('/v1/log'))).consumers.every((c) => c.lag === 0);
  const usersPerArm = async () =>
    (await json<{ results: { arms: { arm: string; users: number }[] } }>(read('/v1/experiments/constructor/results'))).results.arms;

  before(async () => {
    t = await startTestService({ metrics, decideEveryMs: 300 }, dir);
    browser = await launchBrowser();
  });
  after(async () => {
    if (typeof browser !== 'string') await browser?.close();
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('takes the names as experiment, arm and metric keys where the key rules allow them, and refuses the others with the rule', async () => {
    const created = await admin('/v1/experiments', q(experiment));
    assert.equal(created.status, 201, await created.clone().text());
    for (const word of HOSTILE.filter((w) => !(NAMEABLE as readonly string[]).includes(w))) {
      for (const [over, rule] of [
        [{ key: word }, /experiment keys are lower-case letters/],
        [
          {
            key: 'hostile-arms',
            arms: [
              { key: 'control', weight: 0.5 },
              { key: word, weight: 0.5 },
            ],
          },
          /arm keys are lower-case letters/,
        ],
        [{ key: 'hostile-metric', objective: word }, /objective: metric keys are lower-case letters/],
      ] as const) {
        const res = await admin('/v1/experiments', q({ ...experiment, ...over }));
        assert.equal(res.status, 400, `${q(over)}: ${res.status}`);
        assert.match((await json<{ error: { message: string } }>(res)).error.message, rule);
      }
    }
    // A metric that does not exist, named like a member of Object.prototype: unknown, not found on Object.
    const unknown = await admin(
      '/v1/experiments',
      q({ ...experiment, key: 'unknown-metric', guardrails: [{ metric: 'valueof', bad: 'increase', tolerance: 1 }] }),
    );
    assert.equal(unknown.status, 400);
    assert.match((await json<{ error: { message: string } }>(unknown)).error.message, /unknown metric valueof/);
    // A change and a status request name the experiment in the path.
    const changed = await t.call('/v1/experiments/constructor', {
      method: 'PUT',
      key: t.keys.admin,
      body: q({ ...experiment, hypothesis: 'changed' }),
      headers: { 'content-type': 'application/json', 'if-match': '"1"' },
    });
    assert.equal(changed.status, 200, await changed.clone().text());
    for (const word of HOSTILE) {
      const status = await admin(`/v1/experiments/${word}/status`, q({ status: 'stopped', reason: word }));
      assert.ok(status.status >= 400 && status.status < 500, `status of ${word}: ${status.status}`);
      const jobs = await admin(`/v1/jobs/${word}/runs`, q({ params: { [word]: word } }));
      assert.ok(jobs.status >= 400 && jobs.status < 500, `a run of the DAG ${word}: ${jobs.status}`);
    }
    assertPrototypeUntouched('after creating experiments');
  });

  it('publishes a model, aliases and features named like Object.prototype members, and serves them', async () => {
    const features = featureSet([
      { name: 'constructor', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 },
      { name: 'prototype', source: { event: 'login', where: { toString: 1 } }, aggregation: 'count', window: '7d', default: 0 },
    ]);
    const model = await trainClassifier(
      Array.from({ length: 40 }, (_, i) => ({ constructor: i % 5, prototype: i % 3, y: i % 2 })),
      'y',
      columnsFor(features),
      { maxEpochs: 2 },
    );
    const bundle = await createBundle('constructor', model, features);
    model.dispose();
    modelVersion = (await publish(bundle, { url: t.service.url, key: t.keys.admin, alias: 'champion' })).version;
    for (const alias of NAMEABLE) {
      const moved = await admin(`/v1/models/constructor/aliases/${alias}`, q({ version: modelVersion, reason: alias }), 'PUT');
      assert.equal(moved.status, 200, await moved.clone().text());
    }
    for (const alias of ['__proto__', 'toString', 'hasOwnProperty']) {
      assert.equal((await admin(`/v1/models/constructor/aliases/${alias}`, q({ version: modelVersion }), 'PUT')).status, 400, alias);
    }
    // A model experiment whose arms serve the aliases.
    const modelExperiment = {
      ...experiment,
      key: 'prototype',
      exposureEvent: undefined,
      targeting: {},
      arms: [
        { key: 'constructor', weight: 0.5, model: { name: 'constructor', alias: 'champion' } },
        { key: 'prototype', weight: 0.5, model: { name: 'constructor', alias: 'constructor' } },
      ],
    };
    assert.equal((await admin('/v1/experiments', q(modelExperiment))).status, 201);
    assertPrototypeUntouched('after publishing');
  });

  it('ingests the names as user ids, event ids, event names, props keys and the country and device of new users', async () => {
    const events: string[] = [];
    for (const word of HOSTILE) {
      events.push(eventJson(word, word, 'login', hostileProps(word)));
      events.push(eventJson(`${word}-login-2`, word, 'login', hostileProps(word)));
      for (const name of NAMEABLE) events.push(eventJson(`${word}-${name}`, word, name, hostileProps(word, `,${q(word)}:${q(word)}`)));
    }
    events.push(eventJson('xss-1', 'xss-user', 'login', hostileProps(XSS)));
    const res = await ingest(`[${events.join(',')}]`);
    assert.equal(res.status, 200, await res.clone().text());
    const answer = await json<{ accepted: number; rejected: unknown[] }>(res);
    assert.equal(answer.accepted + answer.rejected.length, events.length, q(answer));
    assert.equal(answer.accepted, events.length, `every event is taken: ${q(answer.rejected)}`);
    // A `__proto__` prop: taken (the key cannot survive validation) or refused by name, never stored in a prototype.
    const proto = await ingest(
      `[${HOSTILE.map((w) => eventJson(`${w}-proto-prop`, w, 'prototype', `{"__proto__":{"polluted":"props"},"country":"x"}`)).join(',')}]`,
    );
    assert.equal(proto.status, 200, await proto.clone().text());
    const protoAnswer = await json<{ accepted: number; rejected: { reason: string }[] }>(proto);
    assert.equal(protoAnswer.accepted + protoAnswer.rejected.length, HOSTILE.length);
    for (const r of protoAnswer.rejected) assert.match(r.reason, /__proto__/);
    // NDJSON too, and a user entering through the API with hostile dimensions.
    const ndjson = await t.call('/v1/events', {
      method: 'POST',
      key: t.keys.ingest,
      body: HOSTILE.map((w) => eventJson(`nd-${w}`, w, 'login', hostileProps(w))).join('\n'),
      headers: { 'content-type': 'application/x-ndjson' },
    });
    assert.equal(ndjson.status, 200, `NDJSON: ${await ndjson.clone().text()}`);
    assert.equal((await json<{ accepted: number }>(ndjson)).accepted, HOSTILE.length);
    for (const word of HOSTILE) {
      const res = await ingest(q({ user_id: `api-${word}`, experiment: 'constructor', dims: { country: word, device: word, tier: word } }), '/v1/assignments');
      assert.equal(res.status, 200, `assignment of api-${word}: ${await res.clone().text()}`);
      const arms = (await json<{ arms: { arm: string }[] }>(res)).arms;
      assert.ok(['constructor', 'prototype'].includes(arms[0]!.arm), q(arms));
      const existing = await ingest(q({ user_id: word }), '/v1/assignments');
      assert.equal(existing.status, 200, `assignment of ${word}`);
    }
    assertPrototypeUntouched('after ingesting');
  });

  it('serves features and predictions for hostile users, feature names and values keys', async () => {
    await waitFor('every consumer to catch up', lagIsZero);
    for (const word of HOSTILE) {
      const features = await read(`/v1/features/${encodeURIComponent(word)}`);
      assert.equal(features.status, 200, `features of ${word}`);
      const values = (await json<{ values: Record<string, number> }>(features)).values;
      assert.equal(values.constructor, 3, `${word}'s logins, own value of the feature named constructor: ${q(values)}`);
      assert.equal(values.prototype, 3, `${word}'s logins with toString = 1`);
      for (const alias of [undefined, ...NAMEABLE]) {
        const body = `{"model":"constructor",${alias ? `"alias":${q(alias)},` : ''}"user_id":${q(word)},"values":{"__proto__":1,"toString":2,"hasOwnProperty":3}}`;
        const res = await t.call('/v1/predict', { method: 'POST', key: t.keys.read, body, headers: { 'content-type': 'application/json' } });
        assert.equal(res.status, 200, `predict for ${word} (${alias}): ${await res.clone().text()}`);
        const scored = await json<{ score: number; features: Record<string, number> }>(res);
        assert.ok(Number.isFinite(scored.score));
        assert.deepEqual(Object.keys(scored.features).sort(), ['constructor', 'prototype']);
      }
      // Model names and aliases that do not exist are a clean 4xx, never found on Object.prototype.
      const unknownTargets = [
        ...(word === 'constructor' ? [] : [[word, undefined] as const]),
        ['constructor', word] as const,
        ['prototype', 'champion'] as const,
      ];
      for (const [model, alias] of unknownTargets) {
        const res = await t.call('/v1/predict', {
          method: 'POST',
          key: t.keys.read,
          body: q({ model, ...(alias ? { alias } : {}), user_id: word }),
          headers: { 'content-type': 'application/json' },
        });
        const expected = NAMEABLE.includes(alias as never) ? 200 : model === 'constructor' && alias !== undefined ? 400 : 404;
        assert.ok(
          res.status === expected || (res.status >= 400 && res.status < 500 && expected !== 200),
          `predict ${model}@${alias}: ${res.status} ${await res.text()}`,
        );
      }
    }
    // Feature names follow their rule; a filter on `__proto__` (which no event can carry) is refused, not silently dropped.
    const feature = (name: string, where: string) =>
      `{"name":${q(name)},"source":{"event":"login","where":${where}},"aggregation":"count","window":"7d","default":0}`;
    for (const word of ['__proto__', 'toString', 'hasOwnProperty']) {
      const res = await admin('/v1/features', `{"features":[${feature(word, '{}')}]}`);
      assert.equal(res.status, 400, `a feature named ${word}`);
      assert.match((await json<{ error: { message: string } }>(res)).error.message, /feature names are lower_snake_case/);
    }
    const proto = await admin('/v1/features', `{"features":[${feature('proto_filter', '{"__proto__":1}')}]}`);
    assert.equal(proto.status, 400);
    assert.match((await json<{ error: { message: string } }>(proto)).error.message, /source\.where\.__proto__: prop names are/);
    const filtered = await admin('/v1/features', `{"features":[${feature('hostile_filter', '{"toString":1,"hasOwnProperty":"h","prototype":"p"}')}]}`);
    assert.equal(filtered.status, 200, await filtered.clone().text());
    const values = (await json<{ values: Record<string, number> }>(read('/v1/features/constructor'))).values;
    assert.equal(values.hostile_filter, 3, `logins of constructor whose props match the filter: ${q(values)}`);
    assertPrototypeUntouched('after features and predictions');
  });

  it('answers every read route with the names as path parts and query parameters, never with a 5xx', async () => {
    const doc = await json<{ paths: Record<string, Record<string, unknown>> }>(t.call('/v1/openapi.json'));
    const gets = Object.keys(doc.paths).filter((p) => doc.paths[p]!.get);
    assert.ok(gets.length >= 15, gets.join(' '));
    const hostileQuery = `__proto__[polluted]=1&constructor[prototype][polluted]=1&toString=x&hasOwnProperty=y&event=constructor&since=${encodeURIComponent(new Date(0).toISOString())}`;
    const checked: string[] = [];
    for (const path of gets) {
      for (const word of path.includes('{') ? HOSTILE : ['']) {
        const filled = path.replace(/\{[^}]+\}/g, encodeURIComponent(word));
        for (const query of ['', `?${hostileQuery}`, `?dimension=${encodeURIComponent(word)}&window=${encodeURIComponent(word)}`]) {
          const controller = new AbortController();
          const res = await t.call(`${filled}${query}`, { key: t.keys.read, signal: controller.signal });
          // The stream stays open: its first snapshot is enough.
          const body = path === '/v1/stream' ? (await res.body!.getReader().read()).value : await res.text();
          controller.abort();
          assert.ok(res.status < 500, `GET ${filled}${query}: ${res.status} ${typeof body === 'string' ? body.slice(0, 300) : ''}`);
          checked.push(filled);
        }
      }
    }
    const results = await json<{ results: { experiment: string; metrics: { metric: string }[] } }>(read('/v1/experiments/constructor/results'));
    assert.equal(results.results.experiment, 'constructor');
    assert.deepEqual(
      results.results.metrics.map((m) => m.metric),
      ['constructor', 'prototype'],
    );
    const history = await json<{ history?: unknown[] } | unknown[]>(read('/v1/experiments/constructor/history'));
    assert.ok(history);
    const model = await json<{ aliases: Record<string, string> }>(read('/v1/models/constructor'));
    assert.deepEqual(Object.keys(model.aliases).sort(), ['champion', 'constructor', 'prototype']);
    for (const word of HOSTILE) if (word !== 'constructor') assert.equal((await read(`/v1/models/${word}`)).status, 404, `the model ${word}`);
    assertPrototypeUntouched(`after ${checked.length} reads`);
  });

  it('keeps the experiments consumer moving and counts the hostile users in the results', async () => {
    await waitFor('every consumer to catch up', lagIsZero);
    const e = ExperimentSchema.parse(experiment);
    // The hostile users entered on their first login; api-* users entered through the API.
    const expected = new Map<string, number>();
    for (const user of [...HOSTILE, ...HOSTILE.map((w) => `api-${w}`), 'xss-user']) {
      const arm = assign(e, { user_id: user, dims: { country: user === 'xss-user' ? XSS : user.replace(/^api-/, '') } })!;
      expected.set(arm, (expected.get(arm) ?? 0) + 1);
    }
    await waitFor('11 users in the experiment', async () => (await usersPerArm()).reduce((s, a) => s + a.users, 0) === 11);
    for (const a of await usersPerArm()) assert.equal(a.users, expected.get(a.arm) ?? 0, `users in arm ${a.arm}`);
    // Two waves of ordinary users, so the objective has a lift over time.
    for (const wave of [0, 1]) {
      const events: string[] = [];
      for (let i = 0; i < 80; i++) {
        const user = `gb-${i}`;
        const n = (assign(e, { user_id: user, dims: { country: 'GB' } }) === 'prototype' ? 4 : 2) + (i % 3);
        for (let k = 0; k < n; k++) events.push(eventJson(`gb-${wave}-${i}-${k}`, user, 'login', hostileProps('GB'), (wave ? 2_000 : 8_000) - k * 10));
      }
      assert.equal((await ingest(`[${events.join(',')}]`)).status, 200);
      await new Promise((r) => setTimeout(r, 1_100));
    }
    await waitFor('91 users in the experiment', async () => (await usersPerArm()).reduce((s, a) => s + a.users, 0) === 91);
    await waitFor('every consumer to catch up', lagIsZero);
    assertPrototypeUntouched('after the experiment counted its users');
  });

  it('draws the dashboard and the experiment page, showing the names as text', async (ctx: TestContext) => {
    if (typeof browser === 'string') return ctx.skip(browser);
    const errors: string[] = [];
    const page = await browser.newPage();
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${t.service.url}/dashboard#key=${encodeURIComponent(t.keys.read)}`);
    await page.waitForSelector('#chart .main-svg', { timeout: 20_000 });
    await page.waitForSelector('td[data-event="constructor"]', { timeout: 10_000 });
    assert.match((await page.textContent('#status')) ?? '', /^live:/);
    // A line per country, the hostile ones included, named as sent.
    await page.waitForFunction(`document.querySelectorAll('#chart .legend .traces').length >= ${HOSTILE.length + 2}`, undefined, { timeout: 10_000 });
    const legend = await page.$$eval('#chart .legend .traces .legendtext', (nodes) => nodes.map((n) => n.textContent));
    for (const word of [...HOSTILE, XSS, 'GB']) assert.ok(legend.includes(word), `legend shows ${word}: ${q(legend)}`);
    assert.match((await page.textContent('#experiments')) ?? '', /constructor/);
    assert.equal(await page.evaluate('typeof window.__xss'), 'undefined', 'no markup from data runs');
    assert.equal(await page.$('#chart img, #events img, #experiments img'), null);

    const exp = await browser.newPage();
    exp.on('pageerror', (e) => errors.push(e.message));
    await exp.goto(`${t.service.url}/experiments/constructor#key=${encodeURIComponent(t.keys.read)}`);
    await exp.waitForSelector('#arms td[data-arm="prototype"]', { timeout: 10_000 });
    await exp.waitForSelector('#chart-constructor .main-svg', { timeout: 15_000 });
    assert.match((await exp.textContent('#title')) ?? '', /^experiment constructor \(running\)/);
    assert.ok(await exp.$('#metrics tr[data-metric="prototype"]'), 'the guard-rail named prototype has its row');
    const armUsers = await exp.$$eval('#arms td[data-arm]', (cells) => cells.map((c) => Number(c.textContent)));
    assert.equal(
      armUsers.reduce((s, n) => s + n, 0),
      91,
    );
    assert.deepEqual(errors, []);
    // Open streams would hold the graceful stop of the next test.
    await page.close();
    await exp.close();
    assertPrototypeUntouched('after the pages were drawn');
  });

  it('starts again on the same data dir (snapshots hold the names) and answers as before', async () => {
    const before = await usersPerArm();
    await t.stop();
    assertPrototypeUntouched('after the stop');
    t = await startTestService({ metrics, decideEveryMs: 300 }, dir);
    await waitFor('every consumer to catch up', lagIsZero);
    assert.deepEqual(await usersPerArm(), before);
    const controller = new AbortController();
    const stream = await t.call('/v1/stream', { key: t.keys.read, signal: controller.signal });
    const first = new TextDecoder().decode((await stream.body!.getReader().read()).value);
    controller.abort();
    assert.match(first, /"__proto__"/, 'the dashboard snapshot carries the hostile country');
    for (const word of HOSTILE) {
      assert.equal((await read(`/v1/features/${encodeURIComponent(word)}`)).status, 200);
      assert.ok((await read(`/v1/experiments/${word}/results`)).status < 500);
    }
    const predicted = await t.call('/v1/predict', {
      method: 'POST',
      key: t.keys.read,
      body: q({ model: 'constructor', alias: 'prototype', user_id: 'constructor' }),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(predicted.status, 200);
    assert.equal((await json<{ aggregates?: unknown; points: unknown[] }>(read('/v1/aggregates?dimension=country'))).points.length > 0, true);
    assertPrototypeUntouched('after the restart');
  });
});
