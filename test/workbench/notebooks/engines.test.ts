import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import Ajv from 'ajv';
import { NotebookError } from '../../../src/workbench/errors.js';
import { readNotebook } from '../../../src/workbench/notebooks/notebook.js';
import { findJupyterPython, runNotebook, type Engine, type RunResult } from '../../../src/workbench/notebooks/run.js';
import { writeNotebook } from '../../helpers/notebooks.js';
import { tempDir } from '../../helpers/tmp.js';

/** nbformat's own JSON schema (test/fixtures/nbformat, BSD-3-Clause); draft-04, which Ajv reads once `$schema` is left out. */
const { $schema: _draft, ...schema } = JSON.parse(
  readFileSync(join(__dirname, '..', '..', 'fixtures', 'nbformat', 'nbformat.v4.5.schema.json'), 'utf8'),
) as Record<string, unknown>;
const validateNbformat = new Ajv({ strict: false, allErrors: true }).compile(schema);

function assertValidNotebook(path: string): void {
  const ok = validateNbformat(JSON.parse(readFileSync(path, 'utf8')));
  assert.ok(ok, `${path} is not valid nbformat 4.5: ${JSON.stringify(validateNbformat.errors?.slice(0, 3))}`);
}

/** Every kind of output the workbench's notebooks make: text, stderr, tables, markdown, figures, a bar updated in place, an image. */
const CONFORMANCE_CELLS = [
  { source: '# Conformance\n\nEvery *kind* of output, and `code`.\n\n| a | b |\n|---|--:|\n| 1 | 2 |', markdown: true },
  { source: 'const n = 2;', tags: ['parameters'] },
  { source: 'console.log(`n=${n}`, "<escaped>");\nconsole.error("a warning");\nn * 21' },
  {
    source:
      "import { show, displayMarkdown, notebookProgress } from './src/workbench/index';\n" +
      "show([{ country: 'GB', revenue: 10 }, { country: 'FR', revenue: 4 }], { caption: 'Revenue' });\n" +
      "displayMarkdown('## A card\\n\\n| metric | value |\\n| --- | ---: |\\n| AUC | 0.74 |');",
  },
  { source: "show({ data: [{ type: 'bar', x: ['GB', 'FR'], y: [10, 4] }], layout: { title: { text: 'revenue' } } });" },
  { source: "const task = notebookProgress().task('counting', 3, 'steps');\nfor (let i = 1; i <= 3; i++) task.update(i);\ntask.finish('counted');" },
  {
    source:
      "import * as tslab from 'tslab';\ntslab.display.png(Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64'));",
  },
  { source: 'throw new Error(`stopped at n=${n}`);' },
  { source: 'console.log("never runs");' },
];

/** Outputs with what legitimately differs between two runs made the same (random plot ids, elapsed times). */
function comparableOutputs(path: string): unknown[] {
  const normalise = (s: string) =>
    s
      .replace(/wb-plot-[0-9a-f]+/g, 'wb-plot-ID')
      .replace(/\(\d+(\.\d+)? s\)/g, '(T s)')
      .replace(/\(\d+(\.\d+)? ms\)/g, '(T ms)');
  const text = (v: unknown) => normalise(Array.isArray(v) ? v.join('') : String(v));
  return readNotebook(path).cells.map((cell) =>
    ((cell.outputs ?? []) as Record<string, unknown>[]).map((o) => ({
      ...o,
      ...(o.text === undefined ? {} : { text: text(o.text) }),
      ...(o.data === undefined ? {} : { data: Object.fromEntries(Object.entries(o.data as Record<string, unknown>).map(([k, v]) => [k, text(v)])) }),
    })),
  );
}

/** What a reader sees in a report's body: its text, without markup, scripts or styles (nbconvert titles every page "Notebook"). */
function visibleText(html: string): string {
  return html
    .replace(/<head>[\s\S]*<\/head>/, ' ')
    .replace(/<(script|style)\b[\s\S]*?<\/\1>/g, ' ')
    .replace(/<[^>]+>/g, ' ')
    .replace(/&#182;|¶/g, ' ')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;|&#34;/g, '"')
    .replace(/&#39;|&#x27;/g, "'")
    .replace(/&amp;/g, '&')
    .replace(/\(\d+(\.\d+)? s\)/g, '(T s)')
    .replace(/\s+/g, ' ')
    .trim();
}

const jupyterMissing = (): string | null => {
  try {
    findJupyterPython();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
};

/** Whether Jupyter opens the notebook trusted: `jupyter trust <file>` (nbformat's own check) finds it already signed. */
function trustedByJupyter(path: string, dataDir: string): boolean {
  const python = findJupyterPython();
  const r = spawnSync(python, ['-c', 'import sys\nfrom nbformat.sign import main\nsys.argv[0] = "jupyter-trust"\nmain()', path], {
    encoding: 'utf8',
    env: { ...process.env, JUPYTER_DATA_DIR: dataDir },
  });
  assert.equal(r.status, 0, r.stderr);
  return /Notebook already signed/.test(r.stdout);
}

describe('both engines, one conformance suite', { timeout: 240_000 }, () => {
  const dir = tempDir();
  // Both engines sign what they ran for the user's Jupyter: here a Jupyter of the test's own.
  const jupyterData = join(dir, 'jupyter-data');
  mkdirSync(jupyterData);
  process.env.JUPYTER_DATA_DIR = jupyterData;
  const path = writeNotebook(dir, 'conformance', CONFORMANCE_CELLS, { n: 4 });
  const results = new Map<Engine, RunResult>();

  const runWith = async (engine: Engine, t: TestContext): Promise<RunResult | undefined> => {
    if (engine === 'jupyter') {
      const missing = jupyterMissing();
      if (missing) {
        // The Jupyter engine is optional: a machine with Node alone runs the Node engine's half.
        console.warn(`\n*** SKIPPING the Jupyter engine's conformance run: ${missing} ***\n`);
        t.skip(`Jupyter is not installed`);
        return undefined;
      }
    }
    const result = await runNotebook(path, { engine, ci: true, outDir: join(dir, engine), cellTimeout: 120 });
    results.set(engine, result);
    return result;
  };

  for (const engine of ['node', 'jupyter'] as const) {
    it(`${engine}: runs every output kind, stops at the failing cell with its real error, writes valid nbformat 4 and a report`, async (t) => {
      const result = await runWith(engine, t);
      if (!result) return;
      assert.equal(result.ok, false);
      assert.ok(result.error instanceof NotebookError);
      assert.equal(result.error.cell, 9, 'the failing cell, counted from 1 with the injected parameters cell');
      assert.match(result.error.detail, /Error: stopped at n=4/);
      assertValidNotebook(result.executed);
      const outputs = comparableOutputs(result.executed);
      assert.match(JSON.stringify(outputs[3]), /n=4 <escaped>\\n.*a warning\\n.*84\\n/, 'CI parameters injected, stdout and stderr in order');
      assert.deepEqual(outputs.at(-1), [], 'no cell runs after the failure');
      const bar = JSON.stringify(outputs[6]);
      assert.equal((bar.match(/wb-progress/g) ?? []).length, 1, `one progress output, updated in place: ${bar}`);
      assert.match(bar, /value=\\"1\\" max=\\"1\\"[^<]*<\/progress> counting: counted/);
      const html = readFileSync(result.report, 'utf8');
      assert.match(html, /<h2 id="A-card">A card/);
      assert.match(html, /<td[^>]*>GB<\/td>/);
      assert.equal(html.split('plotly.js v').length - 1, 1);
      assert.match(html, /<img src="data:image\/png;base64,iVBOR/);
      if (jupyterMissing() === null) assert.ok(trustedByJupyter(result.executed, jupyterData), 'Jupyter opens the executed notebook trusted');
    });
  }

  it('both engines write the same outputs and the same report text', async (t) => {
    const node = results.get('node');
    const jupyter = results.get('jupyter');
    if (!node || !jupyter) return t.skip('needs both engines');
    assert.deepEqual(comparableOutputs(node.executed), comparableOutputs(jupyter.executed));
    assert.equal(visibleText(readFileSync(node.report, 'utf8')), visibleText(readFileSync(jupyter.report, 'utf8')));
  });

  it('node: a kernel that dies fails its cell with the exit code, keeping what the cell printed', async () => {
    const dying = writeNotebook(
      dir,
      'dies',
      [{ source: 'console.log("before");' }, { source: 'console.log("last words");\nawait new Promise((r) => setTimeout(r, 100));\nprocess.exit(7);' }],
      { n: 4 },
    );
    const result = await runNotebook(dying, { outDir: join(dir, 'node'), cellTimeout: 60 });
    assert.equal(result.ok, false);
    assert.ok(result.error instanceof NotebookError);
    assert.equal(result.error.cell, 2);
    assert.match(result.error.detail, /the kernel died \(exit code 7\)/);
    assert.match(JSON.stringify(readNotebook(result.executed).cells[1]!.outputs), /last words/);
    assertValidNotebook(result.executed);
  });
});
