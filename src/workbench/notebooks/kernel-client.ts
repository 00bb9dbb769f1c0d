import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Dealer, Subscriber } from 'zeromq';
import { WorkbenchError } from '../errors.js';
import { kernelArgv, type KernelSpec } from './kernel-spec.js';
import { decode, encode, newMessage, WireError, type JupyterMessage, type MessageHeader } from './wire.js';

/**
 * A Jupyter client for one kernel, in TypeScript: starts the kernel from its spec with a connection
 * file (fresh ports and key), speaks the messaging protocol over ZeroMQ (shell and control as DEALER
 * sockets, IOPub as SUB), runs code, interrupts, and shuts the kernel down. What nbclient and
 * jupyter_client do for `wb nb run --engine jupyter`, without Python.
 */

export interface KernelExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The kernel could not be started, or stopped before it answered. */
export class KernelStartError extends WorkbenchError {
  /** The kernel listened on every port but never answered: a wedged start, worth one more try. */
  wedged = false;
}

export interface KernelStartOptions {
  spec: KernelSpec;
  /** The kernel's working directory. */
  cwd: string;
  /** The kernel's environment (the spec's own `env` is added to it). */
  env?: NodeJS.ProcessEnv;
  /** Longest wait for the kernel's first answer (default 60 s: tslab loads the TypeScript compiler first). */
  startTimeoutMs?: number;
  /**
   * Once every port listens, how long the kernel has to answer before it is taken as wedged, killed
   * and started once more (default 20 s; a healthy tslab answers within a few).
   */
  answerTimeoutMs?: number;
  /** Told when a wedged kernel is restarted. */
  onRestart?: (reason: string) => void;
}

export interface ExecuteOptions {
  /** Every IOPub message this request caused, in order, also those that arrive after its reply. */
  onMessage: (msg: JupyterMessage) => void;
  /** Longest the code may run; then the kernel is interrupted (default: no limit). */
  timeoutMs?: number;
  /** After an interrupt, how long the kernel has to answer before it is killed (default 5 s). */
  interruptGraceMs?: number;
}

export type ExecuteOutcome =
  /** The kernel's execute_reply: `ok`, `error`, or `abort` (skipped after an earlier error). */
  | { status: 'ok' | 'error' | 'abort'; reply: JupyterMessage }
  /** Ran past the timeout; `interrupted` when the kernel then stopped the code and answered, else it was killed. */
  | { status: 'timeout'; interrupted: boolean }
  /** The kernel's process ended before it answered. */
  | { status: 'dead'; exit: KernelExit };

/** How long the IOPub `idle` may lag the shell reply: the two come on different sockets (nbclient waits 4 s too). */
const IOPUB_AFTER_REPLY_MS = 4_000;
/**
 * How often a socket retries its connection while the kernel has not bound its ports yet (ZeroMQ's
 * default is 100 ms): tslab binds them only after loading TypeScript, and every retry interval lost
 * there is start-up time. Loopback connections refused this often cost nothing worth counting.
 */
const RECONNECT_MS = 10;
const SHUTDOWN_GRACE_MS = 3_000;

/**
 * Kernels this process started and has not seen exit: killed if wb exits first, never left behind.
 * A kernel gets Ctrl-C too (same process group) and tslab takes it as an interrupt and lives on, so a
 * signal that ends wb must end its kernels: they are killed, then the signal is raised again.
 */
const live = new Map<ChildProcess, string>();
const killLive = () => {
  for (const [child, connectionDir] of live) {
    child.kill('SIGKILL');
    rmSync(connectionDir, { recursive: true, force: true });
  }
};
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const onStopSignal = (signal: NodeJS.Signals) => {
  killLive();
  for (const s of STOP_SIGNALS) process.removeListener(s, onStopSignal);
  // Whatever else listens still runs; with nobody else, the default action ends the process as it would have.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
};
function track(child: ChildProcess, connectionDir: string): void {
  if (live.size === 0) {
    process.on('exit', killLive);
    for (const s of STOP_SIGNALS) process.on(s, onStopSignal);
  }
  live.set(child, connectionDir);
  child.once('exit', () => {
    live.delete(child);
    if (live.size > 0) return;
    process.removeListener('exit', killLive);
    for (const s of STOP_SIGNALS) process.removeListener(s, onStopSignal);
  });
}

const sleep = (ms: number) => new Promise<'timeout'>((resolve) => setTimeout(resolve, ms, 'timeout').unref());

/** Whether something listens on each of these loopback ports (a connection opened and closed at once). */
async function allListening(ports: readonly number[]): Promise<boolean> {
  const open = await Promise.all(
    ports.map(
      (port) =>
        new Promise<boolean>((resolve) => {
          const socket = tcpConnect({ host: '127.0.0.1', port });
          socket.once('connect', () => {
            socket.destroy();
            resolve(true);
          });
          socket.once('error', () => resolve(false));
        }),
    ),
  );
  return open.every(Boolean);
}

/** `n` distinct free TCP ports on the loopback, each held until all are found (so none repeats). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const server = createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const address = s.address();
    if (address === null || typeof address === 'string') throw new Error('no TCP address');
    return address.port;
  });
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

export class KernelClient {
  /** The kernel_info_reply content (language_info and the protocol version). */
  info: Record<string, unknown> = {};
  /** Resolves when the kernel's process ends, however it ends. */
  readonly exited: Promise<KernelExit>;
  private exit: KernelExit | null = null;
  private readonly session = randomUUID();
  private readonly shell = new Dealer({ linger: 0, reconnectInterval: RECONNECT_MS });
  private readonly control = new Dealer({ linger: 0, reconnectInterval: RECONNECT_MS });
  private readonly iopub = new Subscriber({ linger: 0, reconnectInterval: RECONNECT_MS });
  private readonly replies = new Map<string, (msg: JupyterMessage) => void>();
  private readonly listeners = new Map<string, (msg: JupyterMessage) => void>();
  private iopubSeen = false;
  private stderr = '';
  private closed = false;

  private constructor(
    private readonly child: ChildProcess,
    private readonly spec: KernelSpec,
    private readonly key: string,
    private readonly connectionDir: string,
    ports: { shell: number; iopub: number; control: number },
    /** Every port of the connection file: the kernel binds them all before it is asked anything. */
    private readonly allPorts: readonly number[],
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => resolve((this.exit = { code, signal })));
      child.once('error', (err) => {
        this.stderr += `${err.message}\n`;
        resolve((this.exit = { code: null, signal: null }));
      });
    });
    const keep = (d: string) => (this.stderr = (this.stderr + d).slice(-8000));
    child.stderr?.setEncoding('utf8').on('data', keep);
    child.stdout?.setEncoding('utf8').on('data', keep);
    this.shell.connect(`tcp://127.0.0.1:${ports.shell}`);
    this.control.connect(`tcp://127.0.0.1:${ports.control}`);
    this.iopub.connect(`tcp://127.0.0.1:${ports.iopub}`);
    this.iopub.subscribe();
    void this.receive(this.shell, (msg) => this.replies.get(String(msg.parent_header.msg_id))?.(msg));
    void this.receive(this.control, (msg) => this.replies.get(String(msg.parent_header.msg_id))?.(msg));
    void this.receive(this.iopub, (msg) => {
      this.iopubSeen = true;
      this.listeners.get(String(msg.parent_header.msg_id))?.(msg);
    });
  }

  /**
   * Starts a kernel and waits until it answers on shell and publishes on IOPub. A kernel that
   * listens but never answers (tslab can lose its message loop while it starts) is restarted once.
   */
  static async start(options: KernelStartOptions): Promise<KernelClient> {
    try {
      return await KernelClient.startOnce(options);
    } catch (err) {
      if (!(err instanceof KernelStartError && err.wedged)) throw err;
      options.onRestart?.(err.message);
      return KernelClient.startOnce(options);
    }
  }

  private static async startOnce(options: KernelStartOptions): Promise<KernelClient> {
    const [shell, iopub, stdin, control, hb] = (await freePorts(5)) as [number, number, number, number, number];
    const key = randomBytes(32).toString('hex');
    const dir = mkdtempSync(join(tmpdir(), 'wb-kernel-'));
    const connectionFile = join(dir, 'connection.json');
    const connection = {
      shell_port: shell,
      iopub_port: iopub,
      stdin_port: stdin,
      control_port: control,
      hb_port: hb,
      ip: '127.0.0.1',
      key,
      transport: 'tcp',
      signature_scheme: 'hmac-sha256',
      kernel_name: options.spec.name,
    };
    // 0600: the key lets whoever reads it run code in the kernel.
    writeFileSync(connectionFile, JSON.stringify(connection), { mode: 0o600 });
    const [command, ...args] = kernelArgv(options.spec, connectionFile) as [string, ...string[]];
    const child = spawn(command, args, { cwd: options.cwd, env: { ...(options.env ?? process.env), ...options.spec.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    track(child, dir);
    const client = new KernelClient(child, options.spec, key, dir, { shell, iopub, control }, [shell, iopub, stdin, control, hb]);
    try {
      await client.waitReady(options.startTimeoutMs ?? 60_000, options.answerTimeoutMs ?? 20_000);
    } catch (err) {
      await client.shutdown();
      throw err;
    }
    return client;
  }

  /** The end of what the kernel's process wrote to stdout and stderr (its own messages, not the cells'). */
  get log(): string {
    return this.stderr;
  }

  get alive(): boolean {
    return this.exit === null;
  }

  /**
   * Runs `code` and waits for its reply and for IOPub's `idle` after it (the reply may come first: the
   * two travel on different sockets). Messages the request causes later still reach `onMessage`, up
   * to the kernel's shutdown.
   */
  async execute(code: string, options: ExecuteOptions): Promise<ExecuteOutcome> {
    const msg = newMessage(this.session, 'execute_request', {
      code,
      silent: false,
      store_history: true,
      user_expressions: {},
      allow_stdin: false,
      stop_on_error: true,
    });
    let idle!: () => void;
    const idleSeen = new Promise<void>((resolve) => (idle = resolve));
    this.listeners.set(msg.header.msg_id, (m) => {
      options.onMessage(m);
      if (m.header.msg_type === 'status' && m.content.execution_state === 'idle') idle();
    });
    const replied = this.reply(this.shell, msg).then(async (reply) => {
      await Promise.race([idleSeen, sleep(IOPUB_AFTER_REPLY_MS)]);
      return reply;
    });
    const died = this.exited.then((exit) => ({ status: 'dead' as const, exit }));
    const answered = replied.then((reply) => ({ status: replyStatus(reply), reply }));
    const first = await Promise.race([answered, died, ...(options.timeoutMs === undefined ? [] : [sleep(options.timeoutMs)])]);
    if (first !== 'timeout') return first;

    await this.interrupt();
    const afterInterrupt = await Promise.race([answered, died, sleep(options.interruptGraceMs ?? 5_000)]);
    if (afterInterrupt === 'timeout' || afterInterrupt.status === 'dead') {
      this.kill();
      return { status: 'timeout', interrupted: false };
    }
    return { status: 'timeout', interrupted: true };
  }

  /** Interrupts the running code the way the spec says: SIGINT, or an interrupt_request on control. */
  async interrupt(): Promise<void> {
    if (!this.alive) return;
    if (this.spec.interruptMode === 'message') await this.send(this.control, newMessage(this.session, 'interrupt_request', {}));
    else this.child.kill('SIGINT');
  }

  /** Ends the kernel's process at once. */
  kill(): void {
    if (this.alive) this.child.kill('SIGKILL');
  }

  /**
   * Asks the kernel to shut down (shutdown_request on control), kills it if it has not exited within
   * the grace period, then closes the sockets and removes the connection file. Safe to call twice.
   */
  async shutdown(graceMs = SHUTDOWN_GRACE_MS): Promise<KernelExit> {
    if (this.alive) {
      await this.send(this.control, newMessage(this.session, 'shutdown_request', { restart: false })).catch(() => {});
      if ((await Promise.race([this.exited, sleep(graceMs)])) === 'timeout') {
        this.child.kill('SIGTERM');
        if ((await Promise.race([this.exited, sleep(1_000)])) === 'timeout') this.kill();
      }
    }
    const exit = await this.exited;
    if (!this.closed) {
      this.closed = true;
      this.shell.close();
      this.control.close();
      this.iopub.close();
      rmSync(this.connectionDir, { recursive: true, force: true });
    }
    return exit;
  }

  private async waitReady(timeoutMs: number, answerTimeoutMs: number): Promise<void> {
    let deadline = Date.now() + timeoutMs;
    const notReady = () => {
      if (!this.alive) return new KernelStartError(`the kernel stopped before it answered (${describeExit(this.exit!)})${this.logTail()}`);
      if (Date.now() > deadline) return new KernelStartError(`the kernel did not answer within ${Math.round(timeoutMs / 1000)} s${this.logTail()}`);
      return undefined;
    };
    // tslab binds its sockets one after another and handles what reaches a bound one at once: a
    // reply it publishes on a socket still binding fails (EBUSY, "Socket is blocked by a bind
    // operation") and ends its message loop, and the kernel never answers again (a CI run waited
    // 60 s on one). So nothing is sent until every port of the connection file listens.
    while (!(await allListening(this.allPorts))) {
      const err = notReady();
      if (err) throw err;
      await sleep(25);
    }
    let info: JupyterMessage | null = null;
    const answerBy = Date.now() + answerTimeoutMs;
    deadline = Math.min(deadline, answerBy);
    // Repeat kernel_info_request until both its reply and some IOPub message arrive: a SUB socket
    // misses what is published before its subscription reaches the kernel (ZeroMQ's slow joiner),
    // so outputs are trusted only once IOPub has been heard.
    while (info === null || !this.iopubSeen) {
      if (!this.alive) throw new KernelStartError(`the kernel stopped before it answered (${describeExit(this.exit!)})${this.logTail()}`);
      if (Date.now() > deadline) {
        const err = new KernelStartError(
          Date.now() > answerBy
            ? `the kernel listened on every port but did not answer within ${Math.round(answerTimeoutMs / 1000)} s${this.logTail()}`
            : `the kernel did not answer within ${Math.round(timeoutMs / 1000)} s${this.logTail()}`,
        );
        err.wedged = Date.now() > answerBy;
        throw err;
      }
      const request = newMessage(this.session, 'kernel_info_request', {});
      const answer: JupyterMessage | null | 'timeout' = await Promise.race([
        this.reply(this.shell, request),
        this.exited.then(() => null),
        sleep(info === null ? 1_000 : 250),
      ]);
      if (answer !== null && answer !== 'timeout') {
        info = answer;
        this.info = answer.content;
      }
    }
  }

  /** Sends `msg` and resolves with the reply on the same socket (it never rejects; the caller races it). */
  private reply(socket: Dealer, msg: JupyterMessage): Promise<JupyterMessage> {
    const id = msg.header.msg_id;
    const answer = new Promise<JupyterMessage>((resolve) =>
      this.replies.set(id, (m) => {
        this.replies.delete(id);
        resolve(m);
      }),
    );
    void this.send(socket, msg).catch(() => {});
    return answer;
  }

  private async send(socket: Dealer, msg: JupyterMessage): Promise<void> {
    if (this.closed) return;
    await socket.send(encode(this.key, msg));
  }

  private async receive(socket: Dealer | Subscriber, handle: (msg: JupyterMessage) => void): Promise<void> {
    try {
      for await (const frames of socket) {
        let msg: JupyterMessage;
        try {
          msg = decode(this.key, frames);
        } catch (err) {
          if (err instanceof WireError) continue; // not signed with our key, or not Jupyter: never an output
          throw err;
        }
        handle(msg);
      }
    } catch {
      // the socket was closed at shutdown
    }
  }

  private logTail(): string {
    const tail = this.stderr.trim();
    return tail ? `:\n${tail.slice(-2000)}` : '';
  }
}

const replyStatus = (reply: JupyterMessage): 'ok' | 'error' | 'abort' => {
  const status = reply.content.status;
  return status === 'ok' || status === 'abort' ? status : 'error';
};

export const describeExit = (exit: KernelExit): string => (exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`);

export type { JupyterMessage, MessageHeader };
