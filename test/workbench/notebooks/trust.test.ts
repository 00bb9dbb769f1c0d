import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { formatNotebook, type Notebook } from '../../../src/workbench/notebooks/notebook.js';
import { jupyterDataDir, notebookSignature, pythonStr, trustNotebook, UnsignableError } from '../../../src/workbench/notebooks/trust.js';
import { tempDir } from '../../helpers/tmp.js';

/** A Python with nbformat (Debian's first: the python3 first on PATH may lack it), or null. */
const python = [process.env.WB_JUPYTER_PYTHON, '/usr/bin/python3', 'python3']
  .filter((p): p is string => Boolean(p))
  .find((py) => spawnSync(py, ['-c', 'import nbformat.sign'], { stdio: 'ignore' }).status === 0);

function needPython(t: TestContext): boolean {
  if (python) return true;
  // Jupyter is optional: on a machine with Node alone the Node side is still tested above.
  console.warn("\n*** SKIPPING the comparison with nbformat's own signatures: no Python with nbformat ***\n");
  t.skip('no Python with nbformat');
  return false;
}

function py(code: string, options: { args?: string[]; env?: NodeJS.ProcessEnv; input?: string } = {}): string {
  const r = spawnSync(python!, ['-c', code, ...(options.args ?? [])], { encoding: 'utf8', input: options.input, env: { ...process.env, ...options.env } });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

/** A notebook with what the signature must treat as nbformat does: every output kind, lines, numbers, keys past U+FFFF, transient fields. */
function trickyNotebook(variant = 'a'): Notebook {
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {
      kernelspec: { name: 'plg-workbench', display_name: 'TypeScript (plg-workbench)', language: 'typescript' },
      signature: 'sha256:stale', // transient: nbformat drops it before hashing
      orig_nbformat: 3,
      numbers: { half: 0.5, tiny: 1e-7, big: 1e21, count: 42, negative: -2.5e-5, huge: 1.2345e17, zero: -0, third: 0.1 + 0.2 },
      flags: [true, false, null],
      '\uffff': 'last in UTF-16 order, before the emoji by code point',
      '\u{1F600}': 'grin',
      é: 'accent',
      Z: 'capital',
    },
    cells: [
      {
        cell_type: 'markdown',
        id: 'm1',
        metadata: {},
        source: '# Title\n\n![x](attachment:x.png)',
        attachments: { 'x.png': { 'image/png': 'iVBORw0KGgo=', 'text/plain': ['an ', 'image'] } },
      },
      {
        cell_type: 'code',
        id: 'c1',
        metadata: { trusted: true, tags: ['parameters'], execution: { 'iopub.status.busy': '2026-01-31T12:00:00.000Z' } },
        source: 'const n = 2;\nconsole.log(n);\n',
        execution_count: 1,
        outputs: [
          { output_type: 'stream', name: 'stdout', text: `two\nlines ${variant}\n` },
          {
            output_type: 'display_data',
            metadata: { 'application/json': { expanded: false } },
            data: {
              'text/html': '<table>\n<tr><td>1</td></tr>\n</table>',
              'text/plain': 'a table',
              'application/json': { rows: [1, 2.5, 'x'] },
              'application/vnd.custom+json': ['kept', 'as a list'],
              'image/svg+xml': '<svg>\n</svg>',
              'image/png': 'iVBORw0KGgo=',
            },
          },
          { output_type: 'execute_result', execution_count: 1, metadata: {}, data: { 'text/plain': '84' } },
          { output_type: 'error', ename: 'Error', evalue: 'stopped', traceback: ['Error: stopped', '    at <anonymous>'] },
        ],
      },
    ],
  };
}

describe('trusting an executed notebook for Jupyter', () => {
  const dir = tempDir();

  it("prints numbers as Python's str() of what it reads from JSON.stringify's text", async (t) => {
    // Python 3's own answers: [str(v) for v in json.loads(text)] for the text JSON.stringify writes.
    const cases: [number, string][] = [
      [0.5, '0.5'],
      [1e-7, '1e-07'],
      [1e21, '1e+21'],
      [1.5e300, '1.5e+300'],
      [5e-324, '5e-324'],
      [0.1 + 0.2, '0.30000000000000004'],
      [123.456, '123.456'],
      [-2.5e-5, '-2.5e-05'],
      [0.0001, '0.0001'],
      [0.00001, '1e-05'],
      [1e16, '10000000000000000'], // JSON.stringify writes the digits: an int to Python
      [1.2345e17, '123450000000000000'],
      [-0, '0'],
      [1.7976931348623157e308, '1.7976931348623157e+308'],
      [1e15 + 0.3, '1000000000000000.2'],
    ];
    for (const [x, expected] of cases) assert.equal(pythonStr(x), expected, String(x));
    if (!needPython(t)) return;
    // And a few thousand doubles of every magnitude, against Python itself.
    const xs = Array.from({ length: 3000 }, (_, i) => (Math.random() - 0.3) * 10 ** ((i % 40) - 20) * (i % 7 === 0 ? 1e200 : 1));
    const theirs = JSON.parse(
      py('import json, sys; print(json.dumps([str(v) for v in json.loads(sys.stdin.read())]))', { input: JSON.stringify(xs) }),
    ) as string[];
    assert.deepEqual(
      xs.map(pythonStr).filter((s, i) => s !== theirs[i]),
      [],
    );
  });

  it('computes the signature nbformat computes for the same file (compute_signature over what nbformat.read gives)', (t) => {
    if (!needPython(t)) return;
    const file = join(dir, 'tricky.ipynb');
    const text = formatNotebook(trickyNotebook());
    writeFileSync(file, text);
    const secret = Buffer.from('a secret\nwith a newline\n');
    const secretFile = join(dir, 'secret');
    writeFileSync(secretFile, secret);
    // What `jupyter trust` hashes: the file as nbformat.read gives it (lines rejoined, transient fields dropped).
    const theirs = py(
      'import sys, nbformat\nfrom nbformat.sign import NotebookNotary\n' +
        'notary = NotebookNotary(secret=open(sys.argv[1], "rb").read(), db_file=":memory:")\n' +
        'print(notary.compute_signature(nbformat.read(sys.argv[2], as_version=nbformat.NO_CONVERT)))',
      { args: [secretFile, file] },
    );
    assert.match(theirs, /^[0-9a-f]{64}$/);
    assert.equal(notebookSignature(text, secret), theirs);
    assert.notEqual(notebookSignature(formatNotebook(trickyNotebook('b')), secret), theirs, 'an output changed is another signature');
  });

  it('stores the signature where `jupyter trust` finds it, and finds what Jupyter signed', async (t) => {
    if (!needPython(t)) return;
    const data = join(dir, 'jupyter-data');
    mkdirSync(data);
    const file = join(dir, 'signed.ipynb');
    const text = formatNotebook(trickyNotebook());
    writeFileSync(file, text);

    // No key yet: made as Jupyter makes it, private to the user.
    assert.deepEqual(await trustNotebook(text, data), { signed: true, database: join(data, 'nbsignatures.db') });
    assert.equal(statSync(join(data, 'notebook_secret')).mode & 0o777, 0o600);
    assert.match(readFileSync(join(data, 'notebook_secret'), 'utf8'), /^([A-Za-z0-9+/=]{76}\n){18}$/, "base64.encodebytes of 1024 random bytes, Python's key");
    // `jupyter trust <file>` (nbformat's TrustNotebookApp), against this data directory.
    const trust = (path: string) =>
      py('import sys\nfrom nbformat.sign import main\nsys.argv[0] = "jupyter-trust"\nmain()', { args: [path], env: { JUPYTER_DATA_DIR: data } });
    assert.match(trust(file), /Notebook already signed/);

    // Signing again refreshes the row; Jupyter's own signature of another notebook is one we compute too.
    await trustNotebook(text, data);
    const other = join(dir, 'other.ipynb');
    const otherText = formatNotebook(trickyNotebook('b'));
    writeFileSync(other, otherText);
    assert.match(trust(other), /Signing notebook/);
    const db = new Database(join(data, 'nbsignatures.db'), { readonly: true });
    try {
      const rows = db.prepare('SELECT algorithm, signature, last_seen FROM nbsignatures ORDER BY id').all() as {
        algorithm: string;
        signature: string;
        last_seen: string;
      }[];
      const secret = readFileSync(join(data, 'notebook_secret'));
      assert.deepEqual(
        rows.map((r) => [r.algorithm, r.signature]),
        [
          ['sha256', notebookSignature(text, secret)],
          ['sha256', notebookSignature(otherText, secret)],
        ],
      );
      assert.match(rows[0]!.last_seen, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00:00$/, "Python's form of a UTC datetime");
    } finally {
      db.close();
    }
  });

  it('signs nothing on a machine without a Jupyter data directory, and nothing Jupyter could not read', async () => {
    const missing = join(dir, 'no-jupyter');
    assert.deepEqual(await trustNotebook(formatNotebook(trickyNotebook()), missing), { signed: false, reason: `no Jupyter data directory at ${missing}` });
    assert.equal(existsSync(missing), false);

    const nb = trickyNotebook();
    nb.cells[0]!.source = 'half a pair: \ud83d';
    assert.throws(() => notebookSignature(formatNotebook(nb), Buffer.from('k')), UnsignableError);
  });

  it("finds the data directory where jupyter_core's jupyter_data_dir() does", () => {
    assert.equal(jupyterDataDir({ JUPYTER_DATA_DIR: '/x/data' }, 'linux'), '/x/data');
    assert.equal(jupyterDataDir({ XDG_DATA_HOME: '/x/share' }, 'linux'), '/x/share/jupyter');
    assert.match(jupyterDataDir({}, 'linux'), /\/\.local\/share\/jupyter$/);
    assert.match(jupyterDataDir({}, 'darwin'), /\/Library\/Jupyter$/);
  });
});
