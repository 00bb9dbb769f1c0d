import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { readCheckedSnapshot, renderInSlices, writeCheckedSnapshotInSlices, writeFileAtomicAsync } from '../../src/workbench/files.js';
import { tempDir } from '../helpers/tmp.js';

/** Files in a directory other than `keep`: a temporary sibling left behind shows here. */
const others = (dir: string, ...keep: string[]) => readdirSync(dir).filter((f) => !keep.includes(f));

describe('atomic writes', () => {
  it('write text, bytes or pieces in one piece, and leave no temporary file', async () => {
    const dir = tempDir();
    const path = join(dir, 'f.json');
    await writeFileAtomicAsync(path, 'old');
    await writeFileAtomicAsync(path, new TextEncoder().encode('bytes'));
    assert.equal(readFileSync(path, 'utf8'), 'bytes');
    await writeFileAtomicAsync(path, ['{"a":', '1', ',"é":"ü"}']);
    assert.deepEqual(JSON.parse(readFileSync(path, 'utf8')), { a: 1, é: 'ü' });
    assert.deepEqual(others(dir, 'f.json'), []);
  });

  it('leave the old file and no temporary one when the rename fails', async () => {
    const dir = tempDir();
    // A directory where the file should go: the rename over it fails after the temporary file is written.
    const path = join(dir, 'taken');
    mkdirSync(path);
    writeFileSync(join(path, 'inside'), 'x');
    await assert.rejects(writeFileAtomicAsync(path, 'new'), /EISDIR|ENOTEMPTY|EEXIST/);
    await assert.rejects(writeCheckedSnapshotInSlices(path, ['new']), /EISDIR|ENOTEMPTY|EEXIST/);
    assert.deepEqual(others(dir, 'taken'), []);
    assert.deepEqual(readdirSync(path), ['inside']);
  });

  it('write a checked snapshot from pieces, read back whole, and from rendered pieces the same', async () => {
    const dir = tempDir();
    const path = join(dir, 's.snapshot');
    // Enough to be hashed and written in several chunks.
    const pieces = Array.from({ length: 50_000 }, (_, i) => `${i === 0 ? '[' : ','}${JSON.stringify({ i, text: `ü${i}` })}`).concat(']');
    await writeCheckedSnapshotInSlices(path, pieces);
    const read = readCheckedSnapshot(path);
    assert.ok(read && 'body' in read);
    assert.equal(read.body, pieces.join(''));
    const rendered = await renderInSlices(pieces, 0);
    assert.ok(rendered.length > 1, 'joined into a few large strings');
    assert.equal(rendered.join(''), pieces.join(''));
    await writeCheckedSnapshotInSlices(path, rendered);
    assert.deepEqual(readCheckedSnapshot(path), read);
    assert.deepEqual(others(dir, 's.snapshot'), []);
  });

  it('render and write in time slices: timers due meanwhile run', async () => {
    const dir = tempDir();
    const pieces = function* () {
      for (let i = 0; i < 200_000; i++) yield `${JSON.stringify({ i, values: [i, i / 3, `v${i}`] })},`;
    };
    for (const work of [() => renderInSlices(pieces()), () => writeCheckedSnapshotInSlices(join(dir, 'x.snapshot'), pieces())]) {
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 1);
      await work();
      clearInterval(ticker);
      assert.ok(ticks > 0, 'the event loop turned during the work');
    }
  });
});
