import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import net from 'node:net';
import { delimiter, join } from 'node:path';
import { until } from './wait.js';

/** HAProxy's path on this machine (PATH, then the sbin folders Debian installs it in), or undefined. */
export function findHaproxy(): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/sbin', '/usr/local/sbin']) {
    try {
      accessSync(join(dir, 'haproxy'), constants.X_OK);
      return join(dir, 'haproxy');
    } catch {
      // not here
    }
  }
  return undefined;
}

/** A TCP port free on 127.0.0.1 a moment ago. */
export const freePort = () =>
  new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });

/** Whether a process with this pid is running. */
export const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** A `wb cluster up` the tests started, once it printed its proxy and every instance. */
export interface StartedCluster {
  child: ChildProcess;
  /** Everything it printed so far (stdout and stderr). */
  readonly output: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  proxy: string;
  haproxyPid: number;
  instances: { name: string; pid: number; url: string }[];
}

/**
 * Starts `wb cluster up` on a free port (its output collected) and waits until it printed the
 * `cluster up:` line and a line for each instance; fails with that output if it exits first.
 */
export async function startCluster(options: {
  dataDir: string;
  instances: number;
  oltp: string;
  eventLog: string;
  timeoutMs?: number;
}): Promise<StartedCluster> {
  const port = await freePort();
  const wb = join(__dirname, '..', '..', 'bin', 'wb.cjs');
  const args = ['--data-dir', options.dataDir, 'cluster', 'up', '--instances', String(options.instances), '--port', String(port)];
  const child = spawn(process.execPath, [wb, ...args, '--oltp', options.oltp, '--event-log', options.eventLog], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const instanceLine = /^ {2}(wb\d+) pid (\d+) (http:\/\/\S+)/gm;
  await until(
    'the cluster to be up',
    async () => {
      if (child.exitCode !== null) throw new Error(`wb cluster up exited with ${child.exitCode}:\n${output}`);
      // The instances' lines may come after the `cluster up:` line, in a later chunk of output.
      return /^cluster up: /m.test(output) && [...output.matchAll(instanceLine)].length === options.instances ? true : undefined;
    },
    options.timeoutMs ?? 180_000,
  );
  return {
    child,
    get output() {
      return output;
    },
    exited,
    proxy: `http://127.0.0.1:${port}`,
    haproxyPid: Number(/haproxy pid (\d+)/.exec(output)?.[1]),
    instances: [...output.matchAll(instanceLine)].map((m) => ({ name: m[1]!, pid: Number(m[2]), url: m[3]! })),
  };
}
