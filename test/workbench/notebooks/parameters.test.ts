import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InputError } from '../../../src/workbench/errors.js';
import { cellSource, type Notebook } from '../../../src/workbench/notebooks/notebook.js';
import { findParameterCell, injectParameters, parseParamFlags } from '../../../src/workbench/notebooks/parameters.js';

const notebook = (paramSource: string): Notebook => ({
  nbformat: 4,
  nbformat_minor: 5,
  metadata: {},
  cells: [
    { cell_type: 'markdown', source: '# t', metadata: {} },
    { cell_type: 'code', source: paramSource, metadata: { tags: ['parameters'] }, outputs: [], execution_count: null },
    { cell_type: 'code', source: 'console.log(users)', metadata: {}, outputs: [], execution_count: null },
  ],
});

describe('notebook parameters', () => {
  const nb = notebook(
    "// defaults\nconst users = 2_000;\nlet name: string = 'it\\'s';\nconst live = false; // comment\nconst rate = -0.5;\nconst path = \"a\\\\b\";",
  );

  it('reads the defaults of the cell tagged parameters', () => {
    assert.deepEqual(findParameterCell(nb, 'x.ipynb'), { index: 1, defaults: { users: 2000, name: "it's", live: false, rate: -0.5, path: 'a\\b' } });
  });

  it('injects values after it, converted to the type of each default', () => {
    const out = injectParameters(nb, parseParamFlags(['users=300', 'live=true', 'name=a=b', 'rate=1e-3']), 'x.ipynb');
    assert.equal(out.cells.length, 4);
    const injected = out.cells[2]!;
    assert.deepEqual(injected.metadata, { tags: ['injected-parameters'] });
    assert.equal(cellSource(injected), '// Parameters injected by wb nb run\nconst users = 300;\nconst live = true;\nconst name = "a=b";\nconst rate = 0.001;');
    const again = injectParameters(out, { users: 5 }, 'x.ipynb');
    assert.equal(again.cells.length, 4, 'a second injection replaces the first');
  });

  it('refuses unknown parameters, listing the known ones', () => {
    assert.throws(
      () => injectParameters(nb, { userz: '1' }, 'x.ipynb'),
      (err: Error) =>
        err instanceof InputError &&
        /x\.ipynb, cell 2: unknown parameter "userz": the notebook's parameters are users, name, live, rate, path/.test(err.message),
    );
  });

  it('refuses values of the wrong type and flags that are not key=value', () => {
    assert.throws(() => injectParameters(nb, { users: 'many' }, 'x.ipynb'), /parameter users must be a number, got "many"/);
    assert.throws(() => injectParameters(nb, { live: 'yes' }, 'x.ipynb'), /parameter live must be true or false/);
    assert.throws(() => parseParamFlags(['users']), /--param "users" is not key=value/);
  });

  it('refuses a parameters cell it cannot read, and params for a notebook without one', () => {
    assert.throws(() => findParameterCell(notebook('const users = compute();'), 'y.ipynb'), /y\.ipynb, cell 2: the parameters cell must hold lines like/);
    const plain = { ...nb, cells: [nb.cells[0]!, nb.cells[2]!] };
    assert.throws(() => injectParameters(plain, { users: '1' }, 'z.ipynb'), /z\.ipynb: --param users given, but the notebook has no cell tagged "parameters"/);
    assert.equal(injectParameters(plain, {}, 'z.ipynb'), plain);
  });
});
