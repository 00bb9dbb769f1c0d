import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { cellsWithOutputs, readNotebook, stripNotebook, writeNotebook } from '../../../src/workbench/notebooks/notebook.js';
import { tempDir } from '../../helpers/tmp.js';

describe('notebook files', () => {
  const dir = tempDir();

  it('strips outputs, execution counts and timing, keeping everything else', () => {
    const path = join(dir, 'dirty.ipynb');
    writeFileSync(path, JSON.stringify({
      nbformat: 4, nbformat_minor: 5, metadata: { kernelspec: { name: 'plg-workbench' } },
      cells: [
        { cell_type: 'markdown', source: ['# Title'], metadata: {} },
        { cell_type: 'code', id: 'c1', source: ['1 + 1'], metadata: { tags: ['x'], execution: { 'iopub.status.busy': 't' } }, outputs: [{ output_type: 'execute_result', data: { 'text/plain': '2' } }], execution_count: 3 },
        { cell_type: 'code', source: '', metadata: {}, outputs: [], execution_count: null },
      ],
    }));
    const nb = readNotebook(path);
    assert.deepEqual(cellsWithOutputs(nb), [1]);
    writeNotebook(path, stripNotebook(nb));
    const clean = readNotebook(path);
    assert.deepEqual(cellsWithOutputs(clean), []);
    assert.deepEqual(clean.cells[1], { cell_type: 'code', id: 'c1', source: ['1 + 1'], metadata: { tags: ['x'] }, outputs: [], execution_count: null });
    assert.deepEqual(clean.metadata, { kernelspec: { name: 'plg-workbench' } });
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

  it('finds every committed notebook clean', () => {
    for (const file of ['notebooks/01-lakehouse-tour.ipynb']) assert.deepEqual(cellsWithOutputs(readNotebook(file)), [], file);
  });
});
