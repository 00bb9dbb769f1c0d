import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  cellsWithOutputs,
  cleanNotebookFile,
  formatNotebook,
  parseNotebook,
  readNotebook,
  stripNotebook,
  writeNotebook,
} from '../../../src/workbench/notebooks/notebook.js';
import { tempDir } from '../../helpers/tmp.js';

describe('notebook files', () => {
  const dir = tempDir();

  it('strips outputs, execution counts and timing, keeping everything else', () => {
    const path = join(dir, 'dirty.ipynb');
    writeFileSync(
      path,
      JSON.stringify({
        nbformat: 4,
        nbformat_minor: 5,
        metadata: { kernelspec: { name: 'plg-workbench' } },
        cells: [
          { cell_type: 'markdown', source: ['# Title'], metadata: {} },
          {
            cell_type: 'code',
            id: 'c1',
            source: ['1 + 1'],
            metadata: { tags: ['x'], execution: { 'iopub.status.busy': 't' } },
            outputs: [{ output_type: 'execute_result', data: { 'text/plain': '2' } }],
            execution_count: 3,
          },
          { cell_type: 'code', source: '', metadata: {}, outputs: [], execution_count: null },
        ],
      }),
    );
    const nb = readNotebook(path);
    assert.deepEqual(cellsWithOutputs(nb), [1]);
    writeNotebook(path, stripNotebook(nb));
    const clean = readNotebook(path);
    assert.deepEqual(cellsWithOutputs(clean), []);
    assert.deepEqual(JSON.parse(JSON.stringify(clean.cells[1])), {
      cell_type: 'code',
      execution_count: null,
      id: 'c1',
      metadata: { tags: ['x'] },
      outputs: [],
      source: ['1 + 1'],
    });
    assert.deepEqual({ ...clean.metadata }, { kernelspec: { display_name: 'TypeScript (plg-workbench)', language: 'typescript', name: 'plg-workbench' } });
    assert.ok(readFileSync(path, 'utf8').endsWith('}\n'));
  });

  it('names the file and the problem when a notebook is not valid', () => {
    const broken = join(dir, 'broken.ipynb');
    writeFileSync(broken, '{"cells": [');
    assert.throws(() => readNotebook(broken), /broken\.ipynb: not valid JSON/);
    const wrong = join(dir, 'wrong.ipynb');
    writeFileSync(wrong, JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [{ cell_type: 'code' }] }));
    assert.throws(() => readNotebook(wrong), /wrong\.ipynb: not a Jupyter notebook \(nbformat 4\): cells\.0\.source/);
    assert.throws(() => readNotebook(join(dir, 'absent.ipynb')), /absent\.ipynb: no such notebook/);
  });

  it('finds every committed notebook clean, byte for byte (stripping one changes nothing)', () => {
    for (const file of readdirSync('notebooks').filter((f) => f.endsWith('.ipynb'))) {
      const { text, clean } = cleanNotebookFile(join('notebooks', file));
      assert.equal(clean, text, `${file}: run \`npx wb nb strip\``);
    }
  });

  it("writes what nbformat (Jupyter's writer) writes, so saving a clean notebook in Jupyter changes no byte", () => {
    const path = join(dir, 'roundtrip.ipynb');
    writeFileSync(path, cleanNotebookFile('notebooks/03-telco-churn.ipynb').clean);
    const r = spawnSync('/usr/bin/python3', ['-c', 'import sys, nbformat; nbformat.write(nbformat.read(sys.argv[1], as_version=4), sys.argv[1])', path], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(path, 'utf8'), cleanNotebookFile('notebooks/03-telco-churn.ipynb').clean);
  });

  it('drops what a run or a Jupyter session adds, and keeps what an author wrote', () => {
    const nb = parseNotebook(
      JSON.stringify({
        nbformat: 4,
        nbformat_minor: 5,
        metadata: {
          kernelspec: { name: 'plg-workbench-0a1b2c3d', display_name: 'TypeScript (plg-workbench: other)', language: 'typescript' },
          language_info: { name: 'typescript', version: '5.0', file_extension: '.ts', mimetype: 'text/typescript', codemirror_mode: 'ts' },
          widgets: {},
          'plg-workbench': { ci_parameters: { b: 1, a: 2 } },
          title: 'T',
        },
        cells: [
          { cell_type: 'code', source: 'const a = 1;', metadata: { tags: ['parameters'] }, outputs: [], execution_count: null },
          { cell_type: 'code', source: 'const a = 2;', metadata: { tags: ['injected-parameters'] }, outputs: [], execution_count: 1 },
          { cell_type: 'markdown', source: 'x\u2028y\nz', metadata: { collapsed: true, jupyter: { source_hidden: true }, slideshow: { slide_type: 'slide' } } },
          {
            cell_type: 'code',
            source: 'const __proto__ = 1;',
            metadata: { __proto__: { polluted: true }, scrolled: true, ExecuteTime: {} },
            outputs: [],
            execution_count: null,
          },
        ],
      }),
      'inline',
    );
    const text = formatNotebook(stripNotebook(nb));
    const clean = JSON.parse(text);
    assert.deepEqual(clean.metadata, {
      kernelspec: { display_name: 'TypeScript (plg-workbench)', language: 'typescript', name: 'plg-workbench' },
      language_info: { file_extension: '.ts', mimetype: 'text/typescript', name: 'typescript' },
      'plg-workbench': { ci_parameters: { a: 2, b: 1 } },
      title: 'T',
    });
    assert.equal(clean.cells.length, 3, 'the cell wb nb run injected is gone');
    assert.deepEqual(clean.cells[1].metadata, { slideshow: { slide_type: 'slide' } });
    assert.deepEqual(clean.cells[1].source, ['x\u2028', 'y\n', 'z'], "split as Python's splitlines does");
    assert.deepEqual(clean.cells[2].metadata, {});
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});
