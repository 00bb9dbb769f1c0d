import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from '../helpers/tmp.js';

describe('wb serve', { timeout: 90_000 }, () => {
  it('exits with an error, instead of running on without a service, when its port is taken', async (t) => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    t.after(() => taken.close());
    const port = (taken.address() as net.AddressInfo).port;
    const child = spawn(
      process.execPath,
      [join(__dirname, '..', '..', 'bin', 'wb.cjs'), '--data-dir', tempDir('wb-serve-busy-'), 'serve', '--port', String(port), '--quiet'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c))),
      new Promise<'running'>((resolve) => (timer = setTimeout(() => resolve('running'), 60_000))),
    ]);
    clearTimeout(timer);
    if (code === 'running') child.kill('SIGKILL');
    assert.equal(code, 1, output);
    assert.match(output, /EADDRINUSE/);
  });
});
