import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { runNotebook } from '../../src/workbench/notebooks/run.js';
import { tempDir } from '../helpers/tmp.js';

const { kernelIdentity } = require('../../scripts/register-kernel.cjs') as {
  kernelIdentity: (root?: string) => { name: string; displayName: string; root: string };
};
const REPO = realpathSync(resolve('.'));

describe('registering the notebook kernel (npm install, wb kernel install): one per checkout', () => {
  it("installs this checkout's kernel under a name of its own, and removes the old shared one", () => {
    const home = tempDir();
    // GIT_DIR elsewhere: this is the real checkout, whose git config the test must not change (the git part is test/cli/notebooks-git.test.ts).
    const env = { ...process.env, HOME: home, JUPYTER_DATA_DIR: join(home, 'jupyter'), GIT_DIR: join(home, 'no-git') };
    // What every checkout used to register: the last `npm install` won.
    const old = join(home, 'jupyter', 'kernels', 'plg-workbench');
    mkdirSync(old, { recursive: true });
    writeFileSync(
      join(old, 'kernel.json'),
      JSON.stringify({ argv: ['node'], display_name: 'TypeScript (plg-workbench)', metadata: { 'plg-workbench': true } }),
    );
    const r = spawnSync(process.execPath, ['scripts/register-kernel.cjs'], { encoding: 'utf8', env });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    const { name, displayName } = kernelIdentity();
    assert.match(name, /^plg-workbench-[0-9a-f]{8}$/);
    assert.equal(displayName, `TypeScript (plg-workbench: ${REPO.split('/').pop()})`);
    assert.ok(r.stdout.includes(`registered the Jupyter kernel "${displayName}" (${name}) for ${REPO}`), r.stdout);
    assert.match(r.stdout, /removed the old kernel "plg-workbench" shared by all checkouts/);
    const spec = JSON.parse(readFileSync(join(home, 'jupyter', 'kernels', name, 'kernel.json'), 'utf8'));
    assert.deepEqual(spec.argv, [process.execPath, '{resource_dir}/launch.cjs', '{connection_file}', REPO]);
    assert.equal(spec.env, undefined, 'the checkout is named in argv, never in an inherited environment variable');
    const list = spawnSync(
      '/usr/bin/python3',
      ['-c', 'import json; from jupyter_client.kernelspec import KernelSpecManager; print(json.dumps(sorted(KernelSpecManager().find_kernel_specs())))'],
      { encoding: 'utf8', env },
    );
    assert.deepEqual(JSON.parse(list.stdout), [name], `Jupyter lists this checkout's kernel only: ${list.stdout}${list.stderr}`);
  });

  it('gives two checkouts two kernels', () => {
    const a = kernelIdentity('/work/a/plg-workbench');
    const b = kernelIdentity('/work/b/plg-workbench');
    assert.notEqual(a.name, b.name);
    assert.equal(a.displayName, 'TypeScript (plg-workbench: plg-workbench)');
    assert.equal(kernelIdentity('/work/a/plg-workbench').name, a.name, 'stable for a checkout');
  });

  it('says what to do, and does not fail, where Jupyter is absent', () => {
    const r = spawnSync(process.execPath, ['scripts/register-kernel.cjs'], {
      encoding: 'utf8',
      env: { ...process.env, WB_JUPYTER_PYTHON: '/nonexistent/python3', HOME: tempDir(), GIT_DIR: '/nonexistent/git' },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Jupyter was not found, so the notebook kernel was not registered\. Install it .* and run `npx wb kernel install`/);
  });

  it("refuses to start for a notebook of another checkout (Jupyter starts kernels in the notebook's folder)", () => {
    const other = tempDir('wb-other-checkout-');
    mkdirSync(join(other, 'jupyter', 'kernels', 'plg-workbench'), { recursive: true });
    writeFileSync(join(other, 'jupyter', 'kernels', 'plg-workbench', 'launch.cjs'), '');
    writeFileSync(join(other, 'package.json'), '{"name":"plg-workbench"}');
    mkdirSync(join(other, 'notebooks'));
    const r = spawnSync(process.execPath, [join(REPO, 'jupyter', 'kernels', 'plg-workbench', 'launch.cjs'), 'connection.json', REPO], {
      cwd: join(other, 'notebooks'),
      encoding: 'utf8',
    });
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      /this kernel runs the code of .*, but the notebook is in .*wb-other-checkout-.*Pick the kernel "TypeScript \(plg-workbench: wb-other-checkout-\w+\)" or start Jupyter there with `npx wb jupyter`/,
    );
  });

  it("wb nb run uses this checkout's kernel whatever another checkout registered or exported", async () => {
    const elsewhere = tempDir('wb-elsewhere-');
    // Another checkout's spec first on JUPYTER_PATH, and its root in the environment (a terminal opened in its Jupyter).
    const spec = join(elsewhere, 'kernels', 'plg-workbench');
    mkdirSync(spec, { recursive: true });
    writeFileSync(join(spec, 'kernel.json'), JSON.stringify({ argv: ['node', '-e', 'process.exit(3)'], display_name: 'other', language: 'typescript' }));
    const nb = join(elsewhere, 'where.ipynb');
    writeFileSync(
      nb,
      JSON.stringify({
        nbformat: 4,
        nbformat_minor: 5,
        metadata: { kernelspec: { name: 'plg-workbench', display_name: 'x', language: 'typescript' } },
        cells: [{ cell_type: 'code', id: 'a', source: 'console.log(process.cwd())', metadata: {}, outputs: [], execution_count: null }],
      }),
    );
    const saved = { JUPYTER_PATH: process.env.JUPYTER_PATH, PLG_WORKBENCH_ROOT: process.env.PLG_WORKBENCH_ROOT };
    process.env.JUPYTER_PATH = elsewhere;
    process.env.PLG_WORKBENCH_ROOT = elsewhere;
    try {
      const result = await runNotebook(nb, { outDir: join(elsewhere, 'runs'), cellTimeout: 120 });
      assert.ok(result.ok, result.error?.message);
      const executed = JSON.parse(readFileSync(result.executed, 'utf8'));
      assert.equal(executed.cells[0].outputs[0].text.join('').trim(), REPO);
    } finally {
      for (const [k, v] of Object.entries(saved))
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
  });
});

describe('wb jupyter', () => {
  it("starts JupyterLab at the repository root with this checkout's kernel first on JUPYTER_PATH", () => {
    const bin = tempDir('wb-fake-jupyter-');
    const fake = join(bin, 'jupyter-lab');
    writeFileSync(fake, `#!/bin/sh\necho "cwd=$(pwd)"\necho "JUPYTER_PATH=$JUPYTER_PATH"\necho "args=$*"\nexit 7\n`);
    chmodSync(fake, 0o755);
    const r = spawnSync(process.execPath, ['bin/wb.cjs', 'jupyter', '--', '--no-browser', '--port', '8899'], {
      encoding: 'utf8',
      env: { ...process.env, PATH: `${bin}:/usr/bin:/bin`, JUPYTER_PATH: '/elsewhere/jupyter' },
    });
    assert.equal(r.status, 7, "Jupyter's exit code is wb's");
    assert.ok(r.stdout.includes(`cwd=${REPO}\n`), r.stdout);
    assert.ok(r.stdout.includes(`JUPYTER_PATH=${REPO}/jupyter:/elsewhere/jupyter\n`), r.stdout);
    assert.match(r.stdout, /^args=--no-browser --port 8899$/m);
  });

  it('says what to install where neither JupyterLab nor Notebook is', () => {
    const empty = tempDir('wb-no-jupyter-');
    assert.ok(!existsSync(join(empty, 'jupyter-lab')));
    const r = spawnSync(process.execPath, ['bin/wb.cjs', 'jupyter'], { encoding: 'utf8', env: { ...process.env, PATH: empty } });
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      /neither JupyterLab nor Jupyter Notebook is installed\. Install one: `pip install jupyterlab` \(or `pip install notebook`\); Debian\/Ubuntu: `sudo apt-get install -y jupyter-notebook`/,
    );
  });
});
