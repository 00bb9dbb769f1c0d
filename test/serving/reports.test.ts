import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join, resolve } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import pino from 'pino';
import type { Browser } from 'playwright-core';
import { publishReport, reportsDir, type ReportMeta } from '../../src/workbench/notebooks/gallery.js';
import { REPO_ROOT, runNotebook } from '../../src/workbench/notebooks/run.js';
import { launchBrowser } from '../helpers/browser.js';
import { startTestService, type TestService } from '../helpers/service.js';
import { tempDir } from '../helpers/tmp.js';

/** A small notebook: a heading, a parameters cell, a result, and HTML whose script tries to reach the page around it. */
function writeNotebook(dir: string, name: string, fail: boolean): string {
  const path = join(dir, `${name}.ipynb`);
  const probe =
    '<div id="probe">not run</div><script>var p = document.getElementById("probe");' +
    'try { p.textContent = "leaked " + parent.localStorage.getItem("wb-read-key"); } catch (e) { p.textContent = "blocked"; }</script>';
  const cells = [
    { cell_type: 'markdown', source: `Intro text\n\n# ${name === 'weekly' ? 'Weekly revenue' : 'Broken run'}\n\nMore text.` },
    { cell_type: 'code', metadata: { tags: ['parameters'] }, source: 'const n = 2;\nconst region = "EU";' },
    { cell_type: 'code', source: 'console.log(`answer=${n * 21} region=${region}`);' },
    { cell_type: 'code', source: `import * as tslab from 'tslab';\ntslab.display.html(${JSON.stringify(probe)});` },
    ...(fail ? [{ cell_type: 'code', source: 'throw new Error("boom in the report");' }] : []),
  ];
  writeFileSync(
    path,
    JSON.stringify({
      nbformat: 4,
      nbformat_minor: 5,
      metadata: { kernelspec: { name: 'plg-workbench', display_name: 'TypeScript (plg-workbench)', language: 'typescript' } },
      cells: cells.map((c, i) => ({ metadata: {}, ...c, id: `c${i}`, ...(c.cell_type === 'code' ? { outputs: [], execution_count: null } : {}) })),
    }),
  );
  return path;
}

/** A GET whose path reaches the server byte for byte (fetch would resolve `..` first). */
function rawGet(url: string, path: string, key: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolvePromise, reject) => {
    const req = request({ hostname, port, path, headers: { authorization: `Bearer ${key}` } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolvePromise({ status: res.statusCode!, body }));
    });
    req.on('error', reject).end();
  });
}

describe('the report gallery: published notebook runs served at /reports', { timeout: 300_000 }, () => {
  const dir = tempDir();
  const dataDir = join(dir, 'data');
  const logged: { msg: string; report?: string }[] = [];
  let t: TestService;
  let browser: Browser | string;
  let ok: ReportMeta;
  let failed: ReportMeta;

  before(async () => {
    const runs = join(dir, 'runs');
    const first = await runNotebook(writeNotebook(dir, 'weekly', false), { params: { n: '3' }, outDir: runs, cellTimeout: 120 });
    assert.equal(first.ok, true, first.error?.message);
    ok = publishReport(dataDir, { result: first, startedAt: new Date(Date.now() - 5000), gitCommit: 'abc1234def5678+dirty' });
    const second = await runNotebook(writeNotebook(dir, 'broken', true), { outDir: runs, cellTimeout: 120 });
    assert.equal(second.ok, false);
    failed = publishReport(dataDir, { result: second, startedAt: new Date(Date.now() - 3000), gitCommit: 'fedcba9876543' });
    const logger = pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line) as { msg: string; report?: string }) });
    t = await startTestService({ logger }, dataDir);
    browser = await launchBrowser();
  });
  after(async () => {
    if (typeof browser !== 'string') await browser?.close();
    await t?.stop();
  });

  it('lists the runs newest first with title, parameters, time, commit, status and duration', async () => {
    const res = await t.call('/v1/reports', { key: t.keys.read });
    assert.equal(res.status, 200);
    const { reports } = (await res.json()) as { reports: ReportMeta[] };
    assert.deepEqual(
      reports.map((r) => r.id),
      [failed.id, ok.id],
    );
    const [newest, oldest] = reports as [ReportMeta, ReportMeta];
    assert.equal(oldest.title, 'Weekly revenue', 'the title is the first heading');
    assert.deepEqual(oldest.parameters, [
      { name: 'n', value: 3 },
      { name: 'region', value: 'EU' },
    ]);
    assert.equal(oldest.status, 'ok');
    assert.equal(oldest.gitCommit, 'abc1234def5678+dirty');
    assert.ok(oldest.seconds > 0 && Date.parse(oldest.finishedAt) > Date.parse(oldest.startedAt));
    assert.equal(newest.title, 'Broken run');
    assert.equal(newest.status, 'failed');
    assert.match(newest.error ?? '', /boom in the report/);
    assert.match(ok.id, /^\d{8}-\d{6}-\d{3}-[0-9a-f]{8}$/);
  });

  it('serves a report only with a read key, checked against its hash', async () => {
    assert.equal((await t.call('/v1/reports')).status, 401);
    assert.equal((await t.call(`/v1/reports/${ok.id}`)).status, 401);
    assert.equal((await t.call('/v1/reports', { key: t.keys.ingest })).status, 403);
    const res = await t.call(`/v1/reports/${ok.id}`, { key: t.keys.read });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    assert.equal(res.headers.get('content-security-policy'), 'sandbox allow-scripts');
    assert.match(await res.text(), /answer=63 region=EU/);
    // The pages themselves are public and hold no data.
    for (const page of ['/reports', `/reports/${ok.id}`]) assert.equal((await t.call(page)).status, 200);
    const paths = ((await (await t.call('/v1/openapi.json')).json()) as { paths: Record<string, unknown> }).paths;
    for (const p of ['/reports', '/v1/reports', '/v1/reports/{id}']) assert.ok(p in paths, `${p} in OpenAPI`);
  });

  it('refuses ids that are not report ids, and never reads outside the folder', async () => {
    const absolute = encodeURIComponent(join(dataDir, 'keys.json'));
    for (const id of ['..%2F..%2Fkeys.json', '..%2Fkeys.json', '%2Fetc%2Fpasswd', absolute, 'nope', `${ok.id}%2F..%2F..%2Fkeys.json`, `${ok.id}%00`]) {
      const res = await t.call(`/v1/reports/${id}`, { key: t.keys.read });
      assert.equal(res.status, 400, id);
      const body = (await res.json()) as { error: { code: string; message: string } };
      assert.match(body.error.message, /not a report id/);
    }
    assert.equal((await t.call('/v1/reports/20990101-000000-000-deadbeef', { key: t.keys.read })).status, 404);
    for (const path of ['/v1/reports/../../keys.json', '/v1/reports/../keys.json', `/v1/reports/${ok.id}/../../keys.json`, '/v1/reports//etc/passwd']) {
      const res = await rawGet(t.service.url, path, t.keys.read);
      assert.ok(res.status === 400 || res.status === 404, `${path}: ${res.status}`);
      assert.doesNotMatch(res.body, /test-admin|root:/, path);
    }
    // A report folder whose report.html links elsewhere (the hash matching the target) is refused too.
    const keysFile = join(dataDir, 'keys.json');
    const linked = join(reportsDir(dataDir), '20000101-000000-000-0000aaaa');
    mkdirSync(linked);
    symlinkSync(keysFile, join(linked, 'report.html'));
    const content = readFileSync(keysFile);
    const sha256 = createHash('sha256').update(content).digest('hex');
    writeFileSync(join(linked, 'meta.json'), JSON.stringify({ ...ok, id: '20000101-000000-000-0000aaaa', sha256, bytes: content.length }));
    const res = await t.call('/v1/reports/20000101-000000-000-0000aaaa', { key: t.keys.read });
    assert.equal(res.status, 409);
    assert.doesNotMatch(await res.text(), /test-admin/);
  });

  it('shows both in Chromium, and one report in a sandboxed frame whose scripts cannot reach the page', async (ctx: TestContext) => {
    if (typeof browser === 'string') return ctx.skip(browser);
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${t.service.url}/reports#key=${encodeURIComponent(t.keys.read)}`);
    await page.waitForSelector(`tr[data-report="${ok.id}"]`, { timeout: 10_000 });
    assert.equal(page.url(), `${t.service.url}/reports`, 'the key is taken out of the address bar');
    const rows = await page.$$eval('#list tbody tr', (trs) =>
      trs.map((tr) => [tr.getAttribute('data-report'), tr.querySelector('a')?.textContent, tr.querySelector('.status')?.textContent]),
    );
    assert.deepEqual(
      rows.filter(([id]) => id === ok.id || id === failed.id),
      [
        [failed.id, 'Broken run', 'failed'],
        [ok.id, 'Weekly revenue', 'ok'],
      ],
    );
    assert.match((await page.textContent(`tr[data-report="${ok.id}"]`)) ?? '', /n=3, region="EU"[\s\S]*abc1234def \(modified\)/);

    await page.click(`tr[data-report="${ok.id}"] a`);
    await page.waitForURL(`${t.service.url}/reports/${ok.id}`);
    const frame = page.frameLocator('#frame');
    await frame.locator('text=answer=63 region=EU').waitFor({ timeout: 15_000 });
    assert.equal(await page.getAttribute('#frame', 'sandbox'), 'allow-scripts');
    await frame.locator('#probe:not(:text("not run"))').waitFor({ timeout: 10_000 });
    assert.equal(await frame.locator('#probe').textContent(), 'blocked', "the report's script ran but could not read the page's key");
    assert.match((await page.textContent('#heading')) ?? '', /Weekly revenue/);
    assert.deepEqual(errors, []);
  });

  it('refuses a report changed after it was published, and logs it', async () => {
    const file = join(reportsDir(dataDir), ok.id, 'report.html');
    writeFileSync(file, readFileSync(file, 'utf8').replace('answer=63', 'answer=99'));
    const res = await t.call(`/v1/reports/${ok.id}`, { key: t.keys.read });
    assert.equal(res.status, 409);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'report_changed');
    assert.match(body.error.message, /changed after it was published/);
    assert.ok(
      logged.some((l) => l.report === ok.id && /refused to serve a report/.test(l.msg)),
      'the refusal is logged',
    );
    // The other report is still served.
    assert.equal((await t.call(`/v1/reports/${failed.id}`, { key: t.keys.read })).status, 200);
  });
});

describe('wb nb run --publish on a real notebook (the CI lake)', { timeout: 300_000 }, () => {
  it('adds the run to the gallery in the data dir', async () => {
    const dir = tempDir();
    const wb = (...args: string[]) => promisify(execFile)('node', [join(REPO_ROOT, 'bin', 'wb.cjs'), ...args], { cwd: REPO_ROOT, maxBuffer: 64 * 1024 * 1024 });
    if (!existsSync(join(REPO_ROOT, '.wb', 'ci', 'lake'))) await wb('lake', 'build', '--data-dir', '.wb/ci', '--users', '300', '--days', '60');
    const dataDir = join(dir, 'data');
    // The notebook reads the CI lake through its CI parameters; the gallery goes to this run's own data dir.
    // A failing run is published too (as failed): this checks publishing, the notebook's own health is tested elsewhere.
    const run = await wb('--data-dir', dataDir, 'nb', 'run', 'notebooks/01-lakehouse-tour.ipynb', '--ci', '--out', join(dir, 'runs'), '--publish').then(
      ({ stdout }) => ({ stdout, ok: true }),
      (err: { stdout: string; stderr: string }) => ({ stdout: `${err.stdout}\n${err.stderr}`, ok: false }),
    );
    const { stdout } = run;
    const id = /published to the gallery: \/reports\/(\S+)/.exec(stdout)?.[1];
    assert.ok(id, stdout);
    assert.deepEqual(readdirSync(reportsDir(dataDir)), [id], 'one report folder, no staging left behind');
    const meta = JSON.parse(readFileSync(join(reportsDir(dataDir), id, 'meta.json'), 'utf8')) as ReportMeta;
    assert.equal(meta.status, run.ok ? 'ok' : 'failed', stdout);
    if (!run.ok) console.log(`# notebook 01 failed (published as failed):\n${stdout}`);
    assert.equal(meta.notebook, 'notebooks/01-lakehouse-tour.ipynb');
    assert.ok(meta.parameters.some((p) => p.name === 'dataDir' && p.value === '.wb/ci'));
    assert.match(meta.gitCommit ?? '', /^[0-9a-f]{40}(\+dirty)?$/);
    assert.ok(meta.title.length > 0 && meta.title !== '01-lakehouse-tour', `a heading as title: ${meta.title}`);
    const t = await startTestService({}, resolve(dataDir));
    try {
      const { reports } = (await (await t.call('/v1/reports', { key: t.keys.read })).json()) as { reports: ReportMeta[] };
      assert.deepEqual(
        reports.map((r) => r.id),
        [id],
      );
      assert.equal((await t.call(`/v1/reports/${id}`, { key: t.keys.read })).status, 200);
    } finally {
      await t.stop();
    }
  });
});
