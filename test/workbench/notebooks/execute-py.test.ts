import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { REPO_ROOT } from '../../../src/workbench/notebooks/kernel-spec.js';
import { findJupyterPython } from '../../../src/workbench/notebooks/run.js';
import { tempDir } from '../../helpers/tmp.js';
import { WEDGED_ONCE_KERNEL } from '../../helpers/wedged-kernel.js';

describe('the Jupyter engine (execute.py with nbclient)', { timeout: 180_000 }, () => {
  it('starts again, once, a kernel that listens but never answers, and says so', (t: TestContext) => {
    let python: string;
    try {
      python = findJupyterPython();
    } catch (err) {
      if (process.env.CI) throw err;
      return t.skip(`SKIPPED: ${(err as Error).message}`);
    }
    const dir = tempDir('wb-execute-py-');
    const kernels = join(dir, 'jupyter', 'kernels', 'wb-wedge-once');
    mkdirSync(kernels, { recursive: true });
    const launcher = join(REPO_ROOT, 'jupyter', 'kernels', 'plg-workbench', 'launch.cjs');
    writeFileSync(
      join(kernels, 'kernel.json'),
      JSON.stringify({
        argv: [process.execPath, '-e', WEDGED_ONCE_KERNEL, '{connection_file}', join(dir, 'started-once'), process.execPath, launcher, '{connection_file}'],
        display_name: 'wedged once',
        language: 'typescript',
      }),
    );
    const input = join(dir, 'in.ipynb');
    const nb = {
      nbformat: 4,
      nbformat_minor: 5,
      metadata: { kernelspec: { name: 'wb-wedge-once', display_name: 'wedged once', language: 'typescript' } },
      cells: [{ id: 'c1', cell_type: 'code', source: 'console.log(6 * 7)', metadata: {}, outputs: [], execution_count: null }],
    };
    writeFileSync(input, JSON.stringify(nb));
    const out = join(dir, 'out.ipynb');
    const r = spawnSync(
      python,
      [join(REPO_ROOT, 'src', 'workbench', 'notebooks', 'execute.py'), input, out, join(dir, 'out.html'), 'wb-wedge-once', '60', '0'],
      {
        cwd: REPO_ROOT,
        encoding: 'utf8',
        env: {
          ...process.env,
          JUPYTER_PATH: join(dir, 'jupyter'),
          PATH: [dirname(process.execPath), process.env.PATH].join(':'),
          WB_KERNEL_ANSWER_TIMEOUT: '3',
          PYDEVD_DISABLE_FILE_VALIDATION: '1',
        },
        timeout: 150_000,
      },
    );
    const summary = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { status?: string };
    assert.equal(summary.status, 'ok', r.stdout + r.stderr);
    const restarts = r.stderr.split('\n').filter((l) => l.startsWith('{"restart": '));
    assert.equal(restarts.length, 1, r.stderr);
    assert.match(restarts[0]!, /didn't respond in 3 seconds/);
    const executed = JSON.parse(readFileSync(out, 'utf8')) as { cells: { outputs: { text?: string[] }[] }[] };
    assert.deepEqual(executed.cells[0]!.outputs[0]!.text, ['42\n']);
  });
});
