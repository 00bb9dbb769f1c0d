import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { diffNotebooks } from '../../src/workbench/notebooks/diff.js';
import { parseNotebook } from '../../src/workbench/notebooks/notebook.js';
import { tempDir } from '../helpers/tmp.js';

const { cleanNotebookText } = require('../../scripts/notebook-clean.cjs') as { cleanNotebookText: (text: string) => string };

const REPO = resolve('.');
const home = tempDir('wb-git-home-');
// No user or system git config leaks in; commits need an identity.
const env = {
  ...process.env,
  HOME: home,
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_AUTHOR_NAME: 't',
  GIT_AUTHOR_EMAIL: 't@example.com',
  GIT_COMMITTER_NAME: 't',
  GIT_COMMITTER_EMAIL: 't@example.com',
  WB_JUPYTER_PYTHON: '/nonexistent/python3', // the kernel part of the postinstall is tested elsewhere
};

function run(cmd: string, args: string[], cwd: string, input?: string) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', input, maxBuffer: 1 << 28 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
const git = (cwd: string, ...args: string[]) => {
  const r = run('git', args, cwd);
  assert.equal(r.status, 0, `git ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

/** A project clone: the real scripts and .gitattributes; `npm install`'s postinstall run in it. */
function cloneWithPostinstall(dir: string): string {
  mkdirSync(join(dir, 'notebooks'), { recursive: true });
  cpSync(join(REPO, 'scripts'), join(dir, 'scripts'), { recursive: true });
  cpSync(join(REPO, '.gitattributes'), join(dir, '.gitattributes'));
  git(dir, 'init', '-q');
  return run(process.execPath, ['scripts/register-kernel.cjs'], dir).stdout;
}

/** Saves the notebook as Jupyter would after running it: through nbformat, with outputs and session metadata. */
function saveAsJupyterWithOutputs(path: string, marker: string) {
  const script = `
import sys, nbformat
from nbformat.v4 import new_output, new_code_cell
nb = nbformat.read(sys.argv[1], as_version=4)
for i, cell in enumerate(nb.cells):
    if cell.cell_type == "code":
        cell.outputs = [new_output("stream", name="stdout", text=sys.argv[2] + "\\n"), new_output("display_data", data={"text/html": "<b>" + "x" * 5000 + "</b>"})]
        cell.execution_count = i + 1
        cell.metadata["execution"] = {"iopub.status.busy": sys.argv[2]}
        cell.metadata["scrolled"] = True
nb.metadata.kernelspec.name = "plg-workbench-0123abcd"
nb.metadata.kernelspec.display_name = "TypeScript (plg-workbench: elsewhere)"
nb.metadata.language_info["version"] = "5.0.4"
nb.metadata["widgets"] = {"state": sys.argv[2]}
nb.cells.insert(2, new_code_cell("const injected = 1;", metadata={"tags": ["injected-parameters"]}))
nbformat.write(nb, sys.argv[1])
`;
  const r = spawnSync('/usr/bin/python3', ['-c', script, path, marker], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

describe('notebooks in a real git repository (the clean filter npm install configures)', () => {
  const clone = tempDir('wb-git-clone-');
  const firstInstall = cloneWithPostinstall(clone);
  const committed = readFileSync(join(REPO, 'notebooks', '03-telco-churn.ipynb'), 'utf8');
  const clean = cleanNotebookText(committed);
  const file = join(clone, 'notebooks', 'nb.ipynb');

  it('configures the filter once: the real postinstall, idempotent, in .git/config', () => {
    assert.match(firstInstall, /git now strips notebook outputs on commit/);
    const config = git(clone, 'config', '--local', '--get-regexp', 'wb-notebook');
    assert.match(config, /^filter\.wb-notebook\.clean .*node.* scripts\/notebook-clean\.cjs --stdin$/m);
    assert.match(config, /^filter\.wb-notebook\.required true$/m);
    assert.match(config, /^filter\.wb-notebook\.smudge cat$/m);
    assert.match(config, /^diff\.wb-notebook\.textconv .* --textconv$/m);
    const again = run(process.execPath, ['scripts/register-kernel.cjs'], clone);
    assert.equal(again.status, 0);
    assert.doesNotMatch(again.stdout, /git/, 'a second install says nothing about git');
    assert.equal(git(clone, 'config', '--local', '--get-regexp', 'wb-notebook'), config);
  });

  it('commits a notebook saved with outputs without them, and stays clean when it is saved again', () => {
    writeFileSync(file, committed);
    saveAsJupyterWithOutputs(file, 'first run');
    assert.ok(readFileSync(file, 'utf8').includes('x'.repeat(5000)), 'the working file holds outputs');
    git(clone, 'add', '-A');
    git(clone, 'commit', '-qm', 'a notebook');
    const blob = git(clone, 'show', 'HEAD:notebooks/nb.ipynb');
    assert.equal(blob, clean, 'git holds exactly the clean notebook: no outputs, no run metadata, the stable kernelspec');
    saveAsJupyterWithOutputs(file, 'second run, other outputs');
    // git status's size fast-path skips filters, so it may list the file until `git add` refreshes the
    // index (a known git limitation: gitgitgadget/git#1256); git diff and what a commit would hold do not.
    assert.equal(git(clone, 'diff'), '', 'new outputs are not a change');
    git(clone, 'add', '-A');
    assert.equal(git(clone, 'diff', '--cached'), '', 'nothing to commit');
    assert.equal(git(clone, 'status', '--porcelain'), '');
  });

  it('diffs notebooks as cells in git diff (textconv) and in wb nb diff (against HEAD)', () => {
    const nb = JSON.parse(readFileSync(file, 'utf8'));
    const cell = nb.cells.find((c: { cell_type: string; tags?: string[]; metadata: { tags?: string[] } }) => c.cell_type === 'code' && !c.metadata.tags);
    const oldFirst = (cell.source[0] as string).replace(/\n$/, '');
    cell.source[0] = '// a changed first line\n';
    writeFileSync(file, JSON.stringify(nb, null, 1));
    const diff = git(clone, 'diff');
    assert.match(diff, new RegExp(`^ ──── code cell ${cell.id}$`, 'm'));
    assert.ok(diff.includes(`\n-${oldFirst}\n+// a changed first line\n`), diff);
    assert.doesNotMatch(diff, /"source": \[|"outputs"|x{100}/, 'no JSON, no outputs');

    const wb = run(process.execPath, [join(REPO, 'bin', 'wb.cjs'), 'nb', 'diff', 'notebooks/nb.ipynb'], clone);
    assert.equal(wb.status, 0, wb.stderr);
    assert.match(wb.stdout, /^--- notebooks\/nb\.ipynb \(HEAD\)\n\+\+\+ notebooks\/nb\.ipynb \(working tree\)$/m);
    assert.match(wb.stdout, new RegExp(`^## cell \\d+ \\(code, id ${cell.id}\\): modified\\n@@ -1,\\d+ \\+1,\\d+ @@\\n-.*\\n\\+// a changed first line$`, 'm'));
    assert.match(
      wb.stdout,
      /^## cell \d+ \(code, id \w+, tags injected-parameters\): added\n\+const injected = 1;\n {2}outputs: 2 outputs: stream stdout \(1 line\), text\/html$/m,
    );
    assert.match(wb.stdout, /outputs: none -> 2 outputs: stream stdout \(1 line\), text\/html/);
    assert.doesNotMatch(wb.stdout, /x{100}/, 'outputs are summarised, not dumped');
  });

  it('lets a notebook that is not valid JSON (a merge conflict) through as it is', () => {
    const conflicted = join(clone, 'notebooks', 'conflict.ipynb');
    writeFileSync(conflicted, '<<<<<<< HEAD\n{"cells": []}\n=======\n');
    const add = run('git', ['add', 'notebooks/conflict.ipynb'], clone);
    assert.equal(add.status, 0, add.stderr);
    assert.match(add.stderr, /notebook left as it is/);
    assert.equal(git(clone, 'show', ':notebooks/conflict.ipynb'), '<<<<<<< HEAD\n{"cells": []}\n=======\n');
  });

  it('keeps a filter the user configured themselves', () => {
    const own = tempDir('wb-git-own-');
    mkdirSync(join(own, 'notebooks'));
    git(own, 'init', '-q');
    git(own, 'config', '--local', 'filter.wb-notebook.clean', 'my-cleaner');
    cpSync(join(REPO, 'scripts'), join(own, 'scripts'), { recursive: true });
    const out = run(process.execPath, ['scripts/register-kernel.cjs'], own).stdout;
    assert.match(out, /kept your own git config \(filter\.wb-notebook\.clean=my-cleaner\)/);
    assert.equal(git(own, 'config', '--local', '--get', 'filter.wb-notebook.clean').trim(), 'my-cleaner');
  });

  it('says nothing and changes nothing outside a clone of its own (an npm tarball, a copy inside another repository)', () => {
    const tarball = tempDir('wb-git-none-');
    cpSync(join(REPO, 'scripts'), join(tarball, 'scripts'), { recursive: true });
    const alone = run(process.execPath, ['scripts/register-kernel.cjs'], tarball);
    assert.equal(alone.status, 0, alone.stderr);
    assert.doesNotMatch(alone.stdout + alone.stderr, /git/i);

    const outer = tempDir('wb-git-outer-');
    git(outer, 'init', '-q');
    cpSync(join(REPO, 'scripts'), join(outer, 'node_modules', 'plg-workbench', 'scripts'), { recursive: true });
    const nested = run(process.execPath, ['node_modules/plg-workbench/scripts/register-kernel.cjs'], outer);
    assert.equal(nested.status, 0, nested.stderr);
    assert.equal(run('git', ['config', '--local', '--get-regexp', 'wb-notebook'], outer).stdout, '', "the outer repository's config is untouched");
  });
});

describe('wb nb diff of two notebooks', () => {
  const nb = (cells: object[]) => parseNotebook(JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells }), 'x');
  const code = (id: string, source: string, outputs: object[] = []) => ({ cell_type: 'code', id, source, metadata: {}, outputs, execution_count: null });

  it('aligns cells by id: a moved-in cell is added, not every later cell modified', () => {
    const a = nb([code('a', 'const x = 1;\nconst y = 2;'), code('b', 'show(x);')]);
    const b = nb([
      code('new', 'const z = 0;'),
      code('a', 'const x = 1;\nconst y = 3;'),
      code('b', 'show(x);', [{ output_type: 'stream', name: 'stdout', text: '1\n' }]),
    ]);
    assert.equal(
      diffNotebooks(a, b, { a: 'old', b: 'new' }),
      [
        '--- old',
        '+++ new',
        '## cell 1 (code, id new): added',
        '+const z = 0;',
        '## cell 2 (code, id a): modified',
        '@@ -1,2 +1,2 @@',
        ' const x = 1;',
        '-const y = 2;',
        '+const y = 3;',
        '## cell 3 (code, id b): modified',
        '  outputs: none -> 1 output: stream stdout (1 line)',
        '',
      ].join('\n'),
    );
    assert.equal(diffNotebooks(a, a, { a: 'x', b: 'y' }), '');
  });
});
