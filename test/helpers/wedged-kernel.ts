/**
 * Stand-in kernels for the notebook engines' restart tests, as `node -e` scripts whose first
 * argument is the connection file. They bind every port the file names and answer nothing: what a
 * kernel wedged at start looks like to a client.
 */

/** Wedged every time it starts. */
export const WEDGED_KERNEL = `
  const c = JSON.parse(require('node:fs').readFileSync(process.argv[1], 'utf8'));
  for (const p of [c.shell_port, c.iopub_port, c.stdin_port, c.control_port, c.hb_port]) require('node:net').createServer(() => {}).listen(p, '127.0.0.1');`;

/**
 * Wedged on its first start and the real kernel on the next: arguments `<connection file> <marker
 * file> <real kernel's argv...>` (the marker, absent at first, records the first start; the real
 * argv's `{connection_file}` is replaced).
 */
export const WEDGED_ONCE_KERNEL = `
  const fs = require('node:fs'), net = require('node:net'), { spawn } = require('node:child_process');
  const [file, marker, ...real] = process.argv.slice(1);
  if (!fs.existsSync(marker)) {
    fs.writeFileSync(marker, '');
    const c = JSON.parse(fs.readFileSync(file, 'utf8'));
    for (const p of [c.shell_port, c.iopub_port, c.stdin_port, c.control_port, c.hb_port]) net.createServer(() => {}).listen(p, '127.0.0.1');
  } else {
    const k = spawn(real[0], real.slice(1).map((a) => a.replaceAll('{connection_file}', file)), { stdio: 'inherit' });
    for (const s of ['SIGTERM', 'SIGINT']) process.on(s, () => k.kill(s));
    k.on('exit', (code) => process.exit(code ?? 1));
  }`;
