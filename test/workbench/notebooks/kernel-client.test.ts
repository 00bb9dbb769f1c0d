import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { KernelClient, type ExecuteOutcome } from '../../../src/workbench/notebooks/kernel-client.js';
import { findKernelSpec, REPO_ROOT } from '../../../src/workbench/notebooks/kernel-spec.js';
import type { JupyterMessage } from '../../../src/workbench/notebooks/wire.js';
import { WEDGED_KERNEL, WEDGED_ONCE_KERNEL } from '../../helpers/wedged-kernel.js';

const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH}` };
const start = () => KernelClient.start({ spec: findKernelSpec(), cwd: REPO_ROOT, env });

/** Runs code, returning the outcome and every IOPub message it caused (the list keeps growing after). */
async function run(kernel: KernelClient, code: string, timeoutMs?: number): Promise<{ outcome: ExecuteOutcome; messages: JupyterMessage[] }> {
  const messages: JupyterMessage[] = [];
  const outcome = await kernel.execute(code, { onMessage: (m) => messages.push(m), timeoutMs, interruptGraceMs: 3_000 });
  return { outcome, messages };
}
const streamText = (messages: JupyterMessage[]) =>
  messages
    .filter((m) => m.header.msg_type === 'stream')
    .map((m) => m.content.text)
    .join('');

describe('the Jupyter client, against the real tslab kernel', { timeout: 120_000 }, () => {
  let kernel: KernelClient;
  before(async () => {
    kernel = await start();
  });
  after(async () => {
    await kernel?.shutdown();
  });

  it('answers kernel_info, then runs cells in order with their stream and display outputs, between busy and idle', async () => {
    assert.equal((kernel.info.language_info as { name?: string }).name, 'typescript');
    const first = await run(kernel, 'const x = 20;\nconsole.log("x is", x);\nconsole.error("to stderr");');
    assert.equal(first.outcome.status, 'ok');
    assert.equal(streamText(first.messages), 'x is 20\nto stderr\n');
    assert.deepEqual(
      first.messages.filter((m) => m.header.msg_type === 'stream').map((m) => m.content.name),
      ['stdout', 'stderr'],
    );
    assert.equal(first.messages[0]!.content.execution_state, 'busy');
    assert.equal(first.messages.at(-1)!.content.execution_state, 'idle', 'execute returns only once IOPub said idle');

    const second = await run(
      kernel,
      "import * as tslab from 'tslab';\ntslab.display.html('<b>bold</b>');\nconst d = tslab.newDisplay();\nd.text('0%');\nd.text('100%');\nx + 1",
    );
    assert.equal(second.outcome.status, 'ok');
    assert.equal('reply' in second.outcome && second.outcome.reply.content.execution_count, 2);
    const types = second.messages.map((m) => m.header.msg_type).filter((t) => t !== 'status');
    assert.deepEqual(types, ['display_data', 'display_data', 'update_display_data', 'stream']);
    assert.deepEqual(second.messages.find((m) => m.header.msg_type === 'display_data')!.content.data, { 'text/html': '<b>bold</b>' });
    assert.equal(streamText(second.messages), '21\n', 'a state carried from the first cell');
  });

  it('reports an error as the reply status, with the error text on stderr', async () => {
    const { outcome, messages } = await run(kernel, 'throw new Error("boom");');
    assert.equal(outcome.status, 'error');
    assert.match(streamText(messages), /Error: boom/);
    await new Promise((r) => setTimeout(r, 300)); // tslab aborts what was queued behind a failure for 200 ms
    assert.equal((await run(kernel, '1')).outcome.status, 'ok', 'the kernel goes on after a failed cell');
  });

  it('hands over output that arrives after the reply, to the request the kernel names as its parent', async () => {
    const early = await run(kernel, 'void setTimeout(() => console.log("late"), 300);\n"sync"');
    assert.equal(early.outcome.status, 'ok');
    assert.equal(streamText(early.messages), 'sync\n');
    const waiting = await run(kernel, 'await new Promise((r) => setTimeout(r, 800));');
    // tslab sends what a timer prints to the request running when it fires, as Jupyter shows it.
    assert.equal(streamText(waiting.messages), 'late\n');
    // Output after a cell's idle, with no other cell running, still reaches that cell's listener.
    const lonely = await run(kernel, 'void setTimeout(() => console.log("after idle"), 200);');
    assert.equal(streamText(lonely.messages), '');
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(streamText(lonely.messages), 'after idle\n');
  });

  it('interrupts a cell that runs past its timeout; the kernel lives on', async () => {
    const started = Date.now();
    const loop = await run(kernel, 'while (true) {}', 1_000);
    assert.deepEqual(loop.outcome, { status: 'timeout', interrupted: true });
    assert.ok(Date.now() - started < 5_000);
    assert.match(streamText(loop.messages), /interrupted/i);
    await new Promise((r) => setTimeout(r, 300)); // tslab aborts what comes within 200 ms of a failure
    const pending = await run(kernel, 'await new Promise(() => {});', 1_000);
    assert.deepEqual(pending.outcome, { status: 'timeout', interrupted: true });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(streamText((await run(kernel, 'console.log(x)')).messages), '20\n');
    assert.ok(kernel.alive);
  });
});

describe('a kernel that cannot be interrupted, or dies', { timeout: 120_000 }, () => {
  it('is killed when it does not answer the interrupt', async () => {
    const kernel = await start();
    try {
      // A kernel deaf to SIGINT (tslab's own handler removed, after an await: the synchronous part of a
      // cell runs with Node's SIGINT listeners set aside and put back): only killing it ends the cell.
      const deaf = "await null;\nprocess.removeAllListeners('SIGINT');\nprocess.on('SIGINT', () => {});\nawait new Promise(() => {});";
      const { outcome } = await run(kernel, deaf, 1_000);
      assert.deepEqual(outcome, { status: 'timeout', interrupted: false });
      const exit = await kernel.exited;
      assert.equal(exit.signal, 'SIGKILL');
    } finally {
      await kernel.shutdown();
    }
  });

  it('reports a kernel whose process ends during a cell, with what it printed first', async () => {
    const kernel = await start();
    try {
      const { outcome, messages } = await run(kernel, 'console.log("bye");\nawait new Promise((r) => setTimeout(r, 100));\nprocess.exit(3);');
      assert.equal(outcome.status, 'dead');
      assert.deepEqual('exit' in outcome && outcome.exit, { code: 3, signal: null });
      assert.equal(streamText(messages), 'bye\n');
      assert.equal(kernel.alive, false);
    } finally {
      await kernel.shutdown();
    }
  });

  it('shuts a kernel down cleanly: it exits by itself, and its connection file is gone', async () => {
    const kernel = await start();
    const file = (kernel as unknown as { connectionDir: string }).connectionDir;
    assert.ok(existsSync(file));
    const started = Date.now();
    const exit = await kernel.shutdown();
    assert.deepEqual(exit, { code: 0, signal: null }, 'exited on the shutdown_request, not killed');
    assert.ok(Date.now() - started < 2_500);
    assert.ok(!existsSync(file));
    await kernel.shutdown(); // twice is harmless
  });

  it('starts again, once, a kernel that listens on every port but never answers', async () => {
    // A stand-in that wedges on its first start (binds every port of the connection file, answers
    // nothing) and is the real tslab on the second.
    const real = findKernelSpec();
    const marker = join(mkdtempSync(join(tmpdir(), 'wb-wedged-')), 'started-once');
    const spec = { ...real, argv: [process.execPath, '-e', WEDGED_ONCE_KERNEL, '{connection_file}', marker, ...real.argv] };
    const restarts: string[] = [];
    const wedgedThenReal = await KernelClient.start({ spec, cwd: REPO_ROOT, env, answerTimeoutMs: 1_500, onRestart: (r) => restarts.push(r) });
    try {
      assert.equal(restarts.length, 1);
      assert.match(restarts[0]!, /listened on every port but did not answer within 2 s/);
      assert.equal(streamText((await run(wedgedThenReal, 'console.log(6 * 7)')).messages), '42\n');
    } finally {
      await wedgedThenReal.shutdown();
    }
    // Wedged every time: one restart, then the second failure is the answer.
    const always: string[] = [];
    await assert.rejects(
      KernelClient.start({
        spec: { ...real, argv: [process.execPath, '-e', WEDGED_KERNEL, '{connection_file}'] },
        cwd: REPO_ROOT,
        env,
        answerTimeoutMs: 1_000,
        onRestart: (r) => always.push(r),
      }),
      /the kernel listened on every port but did not answer within 1 s/,
    );
    assert.equal(always.length, 1);
  });

  it('says why a kernel could not start', async () => {
    const spec = { ...findKernelSpec(), argv: [process.execPath, '-e', 'console.error("no kernel here"); process.exit(5)'] };
    await assert.rejects(KernelClient.start({ spec, cwd: REPO_ROOT, env }), /the kernel stopped before it answered \(exit code 5\):\nno kernel here/);
  });
});
