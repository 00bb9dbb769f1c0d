import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { EventSchema } from '../../src/workbench/event.js';
import type { Command } from 'commander';
import { buildProgram, commandOf } from '../../src/cli/main.js';
import { tempDir } from '../helpers/tmp.js';

const wb = (...args: string[]) => {
  const r = spawnSync(process.execPath, ['bin/wb.cjs', ...args], { encoding: 'utf8', env: { ...process.env, WB_DEBUG: '' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('the wb command', () => {
  const dir = tempDir();

  it('has --help on every subcommand', () => {
    // Every command of the tree, so a new one cannot be forgotten here; the root through the real binary.
    const root = wb('--help');
    assert.equal(root.code, 0, root.err);
    assert.match(root.out, /^Usage: wb /);
    const walk = (command: Command, path: string[]): string[][] => [path, ...command.commands.flatMap((c) => walk(c, [...path, c.name()]))];
    const commands = walk(buildProgram(), []);
    assert.ok(commands.length > 40, `the tree has ${commands.length} commands`);
    for (const path of commands) {
      let command: Command = buildProgram();
      for (const name of path) command = command.commands.find((c) => c.name() === name)!;
      const help = command.helpInformation();
      assert.match(help, new RegExp(`^Usage: wb${path.length ? ` ${path.join(' ')}` : ''} `), path.join(' '));
      if (path.length > 0) assert.ok(command.description().length > 0, `wb ${path.join(' ')} has a description`);
    }
  });

  it('loads only the command it runs, and lists every command as the loaded tree would', () => {
    // The root help from the stand-ins is the full tree's, word for word (names, usage terms, descriptions, order).
    const full = buildProgram();
    assert.equal(buildProgram(null).helpInformation(), full.helpInformation());
    for (const command of full.commands) {
      const lazy = buildProgram(command.name());
      assert.equal(lazy.helpInformation(), full.helpInformation(), command.name());
      const loaded = lazy.commands.find((c) => c.name() === command.name())!;
      assert.equal(loaded.helpInformation(), command.helpInformation(), `wb ${command.name()} is the real command`);
      assert.deepEqual(
        loaded.commands.map((c) => c.name()),
        command.commands.map((c) => c.name()),
      );
    }

    assert.equal(commandOf(['node', 'wb', 'nb', 'run', 'x.ipynb', '--out', 'o']), 'nb');
    assert.equal(commandOf(['node', 'wb', '--data-dir', 'sql', 'lake', 'info']), 'lake', '--data-dir takes its value');
    assert.equal(commandOf(['node', 'wb', '--data-dir=d', '--debug', 'keys', 'list']), 'keys');
    assert.equal(commandOf(['node', 'wb', 'help', 'models']), 'models');
    assert.equal(commandOf(['node', 'wb', '--help']), null);
    assert.equal(commandOf(['node', 'wb', 'nope']), null);
    assert.equal(commandOf(['node', 'wb', '--data-dir']), null, 'a missing value is for the real parse to report');

    // `wb nb` starts without DuckDB, tfjs, Arrow or the service: what made every notebook run a second slower.
    const nb = join(dir, 'clean.ipynb');
    writeFileSync(nb, JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [] }));
    const probe = spawnSync(
      process.execPath,
      [
        '-e',
        `require('tsx/cjs');
         require('./src/cli/main.ts').main(['node', 'wb', 'nb', 'diff', ${JSON.stringify(nb)}, ${JSON.stringify(nb)}]).then(() => {
           const heavy = Object.keys(require.cache).filter((f) => /node_modules[\\/](@duckdb|@tensorflow|apache-arrow|express)[\\/]|src[\\/]serving[\\/]/.test(f));
           console.log(JSON.stringify(heavy));
         });`,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(probe.status, 0, probe.stderr);
    assert.match(probe.stdout, /no differences between/);
    assert.deepEqual(JSON.parse(probe.stdout.trim().split('\n').pop()!), []);
  });

  it('answers bad input with one clear line and a non-zero exit', () => {
    const missing = wb('--data-dir', dir, 'lake', 'build', '--retail', join(dir, 'nope.csv.gz'));
    assert.equal(missing.code, 2);
    assert.match(missing.err, /^error: --retail .*nope\.csv\.gz: no such file/);
    assert.doesNotMatch(missing.err, /at .*\.ts:\d+/, 'no stack trace');

    const badUsers = wb('lake', 'build', '--users', '0');
    assert.notEqual(badUsers.code, 0);
    assert.match(badUsers.err, /--users must be a whole number of at least 1/);

    const noLake = wb('--data-dir', join(dir, 'empty'), 'lake', 'info');
    assert.equal(noLake.code, 1);
    assert.match(noLake.err, /^error: no lakehouse at .*wb lake build/);

    const unknownParam = wb('nb', 'run', 'notebooks/01-lakehouse-tour.ipynb', '--param', 'nope=1');
    assert.equal(unknownParam.code, 2);
    assert.match(unknownParam.err, /unknown parameter "nope": the notebook's parameters are dataDir, topN, cohortMonths/);
  });

  it('fails the notebook check when a notebook holds outputs, and strips it clean', () => {
    const nb = join(dir, 'dirty.ipynb');
    writeFileSync(
      nb,
      JSON.stringify({
        nbformat: 4,
        nbformat_minor: 5,
        metadata: {},
        cells: [{ cell_type: 'code', source: '1', metadata: {}, outputs: [{ output_type: 'stream', name: 'stdout', text: '1' }], execution_count: 1 }],
      }),
    );
    const dirty = wb('nb', 'check', nb);
    assert.equal(dirty.code, 2);
    assert.match(dirty.err, /dirty\.ipynb: cells 1 hold outputs or execution counts/);
    assert.equal(wb('nb', 'strip', nb).code, 0);
    assert.equal(wb('nb', 'check', nb).code, 0);
  });

  it('creates, starts and tracks an experiment, with its history, refusing a stale version and bad definitions', () => {
    const data = join(dir, 'exp');
    const file = join(dir, 'onboarding.json');
    const def = {
      key: 'onboarding',
      hypothesis: 'a checklist helps',
      arms: [
        { key: 'control', weight: 0.5 },
        { key: 'checklist', weight: 0.5 },
      ],
      objective: 'logins',
      mde: 0.05,
    };
    writeFileSync(file, JSON.stringify(def));
    const created = wb('--data-dir', data, 'experiments', 'create', file);
    assert.equal(created.code, 0, created.err);
    assert.match(created.out, /created onboarding \(version 1, draft\)/);
    writeFileSync(file, JSON.stringify({ ...def, mde: 0.1 }));
    assert.equal(wb('--data-dir', data, 'experiments', 'update', file, '--version', '1').code, 0);
    const stale = wb('--data-dir', data, 'experiments', 'update', file, '--version', '1');
    assert.notEqual(stale.code, 0);
    assert.match(stale.err, /was changed by someone else: it is at version 2/);
    const started = wb('--data-dir', data, 'experiments', 'status', 'onboarding', 'running', '--reason', 'launch');
    assert.match(started.out, /onboarding: running \(version 3\)/);
    const history = wb('--data-dir', data, 'experiments', 'history', 'onboarding');
    assert.match(history.out, /v1 .* created\n.*v2 .* changed mde\n.*v3 .* status draft -> running: launch/);
    writeFileSync(
      file,
      JSON.stringify({
        ...def,
        key: 'other',
        arms: [
          { key: 'a', weight: 0.7 },
          { key: 'b', weight: 0.7 },
        ],
      }),
    );
    const bad = wb('--data-dir', data, 'experiments', 'create', file);
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /arm weights add up to 1\.4, not 1/);
    assert.match(wb('--data-dir', data, 'experiments', 'list').out, /onboarding\s+running\s+v3/);
  });

  it('writes the simulated app as NDJSON events', () => {
    const r = wb('app', 'simulate', '--users', '5', '--days', '3', '--seed', '9');
    assert.equal(r.code, 0, r.err);
    const events = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.ok(events.length >= 5);
    for (const e of events) assert.equal(EventSchema.safeParse(e).success, true);
    assert.match(r.err, new RegExp(`${events.length} events written`));
  });
});

describe('a build killed half-way', { timeout: 120_000 }, () => {
  it('leaves the previous lakehouse readable and the next build completes', async () => {
    const dir = tempDir();
    const first = wb('--data-dir', dir, 'lake', 'build', '--users', '50', '--days', '10');
    assert.equal(first.code, 0, first.err);

    const child = spawn(process.execPath, ['bin/wb.cjs', '--data-dir', dir, 'lake', 'build', '--force', '--users', '50', '--days', '10'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 3000)); // inside the rebuild of the retail archive
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));

    const info = wb('--data-dir', dir, 'lake', 'info');
    assert.equal(info.code, 0, info.err);
    assert.match(info.out, /all files match their checksums/);
    assert.match(info.out, /events\/retail: 405,766 events/);

    const next = wb('--data-dir', dir, 'lake', 'build', '--users', '50', '--days', '10');
    assert.equal(next.code, 0, next.err);
    assert.match(next.out, /retail +541,909 lines +405,766 +136,143 +yes/);
  });
});
