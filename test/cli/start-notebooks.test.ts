import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Lakehouse } from '../../src/workbench/lakehouse.js';
import { sql } from '../../src/workbench/sql.js';
import { tempDir } from '../helpers/tmp.js';
import { until } from '../helpers/wait.js';

/**
 * The quick start, then the notebooks: what a new data scientist does first. A short `npm start`
 * (300 simulated users over 60 days, replayed as fast as the service takes them) builds the
 * lakehouse, trains, starts the service and replays both sources through it, so the archive gains the
 * service's live source next to the built ones. Notebook 05 then reads the running service and its
 * live archive, as `npm start` suggests; `wb start` stops cleanly on SIGINT (Ctrl-C); and notebooks
 * 01 to 04 run on the lakehouse it leaves. Notebook 01 failed here once: it took the live source for
 * a built one and looked for its manifest entry.
 */
describe('the notebooks after npm start', { timeout: 600_000 }, () => {
  it('all pass on the lakehouse a short npm start leaves, live archive included', async () => {
    const data = tempDir('wb-start-notebooks-');
    const start = spawn(process.execPath, ['bin/wb.cjs', '--data-dir', data, 'start', '--users', '300', '--days', '60', '--speed', 'max', '--port', '0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, WB_DEBUG: '' },
    });
    const startOutput = collect(start);
    const exited = new Promise<number | null>((resolve) => start.once('close', (code) => resolve(code)));
    try {
      await until(
        'the replay of wb start to finish',
        async () => {
          if (start.exitCode !== null) assert.fail(`wb start exited with ${start.exitCode}:\n${tail(startOutput())}`);
          return /The replay is done/.test(startOutput()) ? true : undefined;
        },
        420_000,
      );
      const url = /API: +(http:\/\/127\.0\.0\.1:\d+)\//.exec(startOutput())?.[1];
      const key = /key for this run: (wb_[\w-]+)\)/.exec(startOutput())?.[1];
      assert.ok(url && key, `wb start prints the service's address and a key:\n${tail(startOutput())}`);
      const live = join(data, 'lake', 'archive', 'events', 'source=live');
      assert.ok(existsSync(live) && readdirSync(live).length > 0, 'the service archived live events next to the built sources');

      // One clock: the service ran on the replay's simulated time, so at the end of the history the
      // features it serves look like those the models were trained on (weekly as-of moments over
      // the same history, recomputed here in plain SQL). On the machine's clock the whole history
      // fell into every window: 7-day logins served at ten times the training mean.
      const lake = await Lakehouse.open(join(data, 'lake'));
      let users: string[];
      let trainingMean: number;
      try {
        users = (await lake.query<{ user_id: string }>(sql`SELECT DISTINCT user_id FROM app_events ORDER BY user_id`)).map((r) => r.user_id);
        const [row] = await lake.query<{ mean: number }>(sql`
          WITH firsts AS (SELECT user_id, min(time) AS first FROM app_events GROUP BY user_id),
               grid AS (SELECT unnest(generate_series(TIMESTAMP '2025-01-08', TIMESTAMP '2025-03-01', INTERVAL 7 DAY)) AS as_of)
          SELECT avg((SELECT count(*) FROM app_events e WHERE e.user_id = f.user_id AND e.event = 'login' AND e.time > g.as_of - INTERVAL 7 DAY AND e.time <= g.as_of)) AS mean
          FROM grid g JOIN firsts f ON f.first < g.as_of`);
        trainingMean = Number(row!.mean);
      } finally {
        lake.close();
      }
      let served = 0;
      for (const user of users) {
        const res = await fetch(`${url}/v1/features/${encodeURIComponent(user)}`, { headers: { authorization: `Bearer ${key}` } });
        const body = (await res.json()) as { at: string; values: { logins_7d: number } };
        assert.ok(body.at.startsWith('2025-03-0'), `features are read at the end of the simulated history, not at ${body.at}`);
        served += body.values.logins_7d;
      }
      const servedMean = served / users.length;
      console.log(`7-day logins: served mean ${servedMean.toFixed(2)} over ${users.length} users, training mean ${trainingMean.toFixed(2)}`);
      assert.ok(
        servedMean > trainingMean / 2 && servedMean < trainingMean * 2,
        `served 7-day logins (mean ${servedMean}) within a factor 2 of the training mean (${trainingMean})`,
      );

      const withService = await wb([
        '--data-dir',
        data,
        'nb',
        'run',
        'notebooks/05-experiment-analysis.ipynb',
        '--ci',
        '--param',
        `dataDir=${data}`,
        '--param',
        `serviceUrl=${url}`,
        '--param',
        `apiKey=${key}`,
      ]);
      assert.match(withService.output, /1 passed, 0 failed/, `notebook 05 on the running service:\n${tail(withService.output)}`);

      start.kill('SIGINT');
      assert.equal(await exited, 0, `wb start stops cleanly on Ctrl-C:\n${tail(startOutput())}`);
      assert.match(startOutput(), /stopping the service\.\.\./);

      const notebooks = readdirSync('notebooks')
        .filter((f) => f.endsWith('.ipynb') && !f.startsWith('05-'))
        .map((f) => join('notebooks', f));
      assert.ok(notebooks.length >= 4, 'notebooks 01 to 04');
      const run = await wb(['--data-dir', data, 'nb', 'run', ...notebooks, '--ci', '--param', `dataDir=${data}`]);
      assert.match(run.output, new RegExp(`${notebooks.length} passed, 0 failed`), `notebooks on the lakehouse npm start left:\n${tail(run.output)}`);
      assert.equal(run.code, 0);
      // What each part took, for whoever watches the suite's time.
      for (const line of [...startOutput().split('\n'), ...withService.output.split('\n'), ...run.output.split('\n')]) {
        if (/^(lakehouse: |replay: |\S+: succeeded|ok {5})/.test(line)) console.log(line);
      }
    } finally {
      if (start.exitCode === null && start.signalCode === null) {
        start.kill('SIGINT');
        const stopped = await Promise.race([exited.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 30_000))]);
        if (!stopped) start.kill('SIGKILL');
      }
    }
  });
});

/** Everything a child writes to stdout and stderr, as one text (progress redraws as lines). */
function collect(child: ChildProcess): () => string {
  let text = '';
  const add = (chunk: Buffer) => {
    text += chunk.toString('utf8').replaceAll('\r', '\n');
  };
  child.stdout!.on('data', add);
  child.stderr!.on('data', add);
  return () => text;
}

/** Runs `wb` to its end without blocking the event loop (wb start keeps writing meanwhile). */
async function wb(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['bin/wb.cjs', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, WB_DEBUG: '' } });
  const output = collect(child);
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  return { code, output: output() };
}

const tail = (text: string, lines = 60) =>
  text
    .split('\n')
    .filter((l) => l.trim() !== '' && !/^running .*%/.test(l))
    .slice(-lines)
    .join('\n');
