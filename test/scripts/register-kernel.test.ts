import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from '../helpers/tmp.js';

describe('registering the notebook kernel (npm install, wb kernel install)', () => {
  it('installs a copy of the spec into Jupyter that points back at this repository', () => {
    const home = tempDir();
    const env = { ...process.env, HOME: home, JUPYTER_DATA_DIR: join(home, 'jupyter') };
    const r = spawnSync(process.execPath, ['bin/wb.cjs', 'kernel', 'install'], { encoding: 'utf8', env });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /registered the Jupyter kernel "TypeScript \(plg-workbench\)"/);
    const spec = JSON.parse(readFileSync(join(home, 'jupyter', 'kernels', 'plg-workbench', 'kernel.json'), 'utf8'));
    assert.equal(spec.env.PLG_WORKBENCH_ROOT, resolve('.'));
    assert.deepEqual(spec.argv, ['node', '{resource_dir}/launch.cjs', '{connection_file}']);
    const list = spawnSync('/usr/bin/python3', ['-c', 'import json; from jupyter_client.kernelspec import KernelSpecManager; print(json.dumps(sorted(KernelSpecManager().find_kernel_specs())))'], { encoding: 'utf8', env });
    assert.ok(JSON.parse(list.stdout).includes('plg-workbench'), `Jupyter lists the kernel: ${list.stdout}${list.stderr}`);
  });

  it('says what to do, and does not fail, where Jupyter is absent', () => {
    const r = spawnSync(process.execPath, ['scripts/register-kernel.cjs'], { encoding: 'utf8', env: { ...process.env, WB_JUPYTER_PYTHON: '/nonexistent/python3' } });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Jupyter was not found, so the notebook kernel was not registered\. Install it .* and run `npx wb kernel install`/);
  });
});
