import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { NotebookError } from '../../../src/workbench/errors.js';
import { readNotebook } from '../../../src/workbench/notebooks/notebook.js';
import { PLOTLY_SCRIPT_PATH } from '../../../src/workbench/display.js';
import { REPORT_PLOTLY_SCRIPT, runNotebook } from '../../../src/workbench/notebooks/run.js';
import { writeNotebook } from '../../helpers/notebooks.js';
import { tempDir } from '../../helpers/tmp.js';

/** Writes a notebook whose first code cell is the parameters cell. */
function notebook(dir: string, name: string, cells: string[]): string {
  return writeNotebook(
    dir,
    name,
    cells.map((source, i) => (i === 0 ? { source, tags: ['parameters'] } : source)),
    { n: 5 },
  );
}

const outputText = (path: string) => JSON.stringify(readNotebook(path).cells.map((c) => c.outputs));

it("inlines in reports the plotly.js the notebooks' figures are drawn with", () => {
  assert.equal(REPORT_PLOTLY_SCRIPT, PLOTLY_SCRIPT_PATH);
});

describe('wb nb run (a real Jupyter kernel)', { timeout: 180_000 }, () => {
  const dir = tempDir();
  const out = join(dir, 'runs');

  it('runs a notebook with injected parameters, importing src/, and writes the executed notebook and an HTML report', async () => {
    const path = notebook(dir, 'ok', [
      'const n = 2;',
      "import { sql } from './src/workbench/index';\nconsole.log(`answer=${n * 21} sql=${sql`SELECT ${'it' + \"'s\"}`}`);",
    ]);
    const result = await runNotebook(path, { params: { n: '3' }, outDir: out, cellTimeout: 120 });
    assert.equal(result.ok, true, result.error?.message);
    assert.match(outputText(result.executed), /answer=63 sql=SELECT 'it''s'/);
    assert.ok(existsSync(result.report));
    assert.match(readFileSync(result.report, 'utf8'), /answer=63/);
    assert.doesNotMatch(readFileSync(result.report, 'utf8'), /console\.log/, 'the report hides code by default');

    const ci = await runNotebook(path, { ci: true, outDir: out, cellTimeout: 120 });
    assert.match(outputText(ci.executed), /answer=105/, 'CI parameters come from the notebook metadata');
  });

  it('reports a failing cell with its number, its source and the real error', async () => {
    const path = notebook(dir, 'fails', [
      'const n = 1;',
      'console.log("before");',
      'const label = "boom";\nthrow new Error(`${label} at ${n}`);',
      'console.log("never");',
    ]);
    const result = await runNotebook(path, { outDir: out, cellTimeout: 120 });
    assert.equal(result.ok, false);
    assert.ok(result.error instanceof NotebookError);
    assert.equal(result.error.cell, 3);
    assert.match(result.error.message, /fails\.ipynb, cell 3 failed:\n {4}const label = "boom";\n {4}throw new Error/);
    assert.match(result.error.detail, /Error: boom at 1/);
    const executed = readNotebook(result.executed);
    assert.match(JSON.stringify(executed.cells[1]!.outputs), /before/, 'cells before the failure keep their outputs');
    assert.deepEqual(executed.cells[3]!.outputs, [], 'cells after the failure do not run');
  });

  it('reports a type error as the compiler gave it', async () => {
    const path = notebook(dir, 'types', ['const n = 1;', "const s: number = 'text';"]);
    const result = await runNotebook(path, { outDir: out, cellTimeout: 120 });
    assert.equal(result.ok, false);
    assert.match(result.error!.message, /cell 2 failed[\s\S]*Type 'string' is not assignable to type 'number'/);
  });

  it('stops a cell that runs past the timeout', async () => {
    const path = notebook(dir, 'slow', ['const n = 1;', 'await new Promise((r) => setTimeout(r, 60_000));']);
    const started = Date.now();
    const result = await runNotebook(path, { outDir: out, cellTimeout: 3 });
    assert.equal(result.ok, false);
    assert.match(result.error!.message, /cell 2 failed[\s\S]*timed out: the cell ran longer than 3 s/);
    assert.ok(Date.now() - started < 45_000);
  });

  it('refuses bad input before starting a kernel', async () => {
    const path = notebook(dir, 'params', ['const n = 1;', 'n']);
    await assert.rejects(runNotebook(path, { params: { m: '2' }, outDir: out }), /unknown parameter "m"/);
    const broken = join(dir, 'broken.ipynb');
    writeFileSync(broken, '{ not json');
    await assert.rejects(runNotebook(broken, { outDir: out }), /broken\.ipynb: not valid JSON/);
  });
});
