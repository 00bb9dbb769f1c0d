/**
 * Notebook benchmark (npm run bench:notebooks), both engines in the same run:
 * - the per-notebook overhead: `wb nb run` of a notebook of one trivial cell, the fixed cost of the
 *   CLI, a tslab kernel and the report, with the Node engine (goal: at most 2.5 s) and with the
 *   Jupyter engine (nbclient and nbconvert in Python, the baseline); median of BENCH_REPEAT (3) runs;
 * - the suite: `wb nb run notebooks/*.ipynb --ci` with the Node engine and the default --jobs (the
 *   cores), as CI runs it; then every notebook one at a time, `wb nb run <notebook> --ci` with each
 *   engine in turn (which goes first alternates), summed per engine: the Jupyter engine one at a
 *   time is what CI ran before, the baseline. Alternating keeps a busy spell of a shared machine from
 *   falling on one engine only. BENCH_SUITE=0 skips it;
 * - notebook 02 alone, end to end with the Node engine (its run in the loop above): the time to build
 *   and evaluate a model offline (goal: under 30 s).
 * The Jupyter engine's figures are left out, with a note, where Jupyter is not installed. Ends with
 * one JSON line of the figures.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { findJupyterPython } from '../src/workbench/notebooks/run.js';

const wb = (...args: string[]) => {
  const t = performance.now();
  const r = spawnSync(process.execPath, ['bin/wb.cjs', ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`wb ${args.join(' ')} failed with exit ${r.status}`);
  return (performance.now() - t) / 1000;
};
const round = (s: number) => Math.round(s * 100) / 100;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function jupyterInstalled(): boolean {
  try {
    findJupyterPython();
    return true;
  } catch {
    return false;
  }
}

function main(): void {
  const dir = mkdtempSync(join(tmpdir(), 'wb-bench-nb-'));
  const repeat = Number(process.env.BENCH_REPEAT ?? 3);
  const withSuite = process.env.BENCH_SUITE !== '0';
  const jupyter = jupyterInstalled();
  if (!jupyter) console.log('Jupyter (nbclient, nbconvert) is not installed: the Jupyter engine is left out of this run');
  try {
    if (withSuite && !existsSync('.wb/ci/lake/manifest.json')) wb('lake', 'build', '--data-dir', '.wb/ci', '--users', '300', '--days', '60');
    const notebooks = readdirSync('notebooks')
      .filter((f) => f.endsWith('.ipynb'))
      .sort()
      .map((f) => join('notebooks', f));
    const trivial = join(dir, 'trivial.ipynb');
    writeFileSync(
      trivial,
      JSON.stringify({
        nbformat: 4,
        nbformat_minor: 5,
        metadata: { kernelspec: { name: 'plg-workbench', display_name: 'TypeScript (plg-workbench)', language: 'typescript' } },
        cells: [{ cell_type: 'code', id: 'a', metadata: {}, source: '1 + 1', outputs: [], execution_count: null }],
      }),
    );
    // Alternate the engines, so that a busy moment of the machine does not fall on one engine only.
    const overhead = { node: [] as number[], jupyter: [] as number[] };
    for (let i = 0; i < repeat; i++) {
      overhead.node.push(wb('nb', 'run', trivial, '--out', join(dir, 'runs'), '--engine', 'node'));
      if (jupyter) overhead.jupyter.push(wb('nb', 'run', trivial, '--out', join(dir, 'runs'), '--engine', 'jupyter'));
    }
    const nodeOverhead = median(overhead.node);
    const jupyterOverhead = jupyter ? median(overhead.jupyter) : null;

    let suite: { node_parallel: number; node: number[]; jupyter: number[] | null; propensity: number } | null = null;
    if (withSuite) {
      const out = ['--ci', '--out', join(dir, 'runs')];
      const nodeParallel = wb('nb', 'run', ...notebooks, ...out, '--engine', 'node');
      const serial = { node: [] as number[], jupyter: [] as number[] };
      for (const [i, notebook] of notebooks.entries()) {
        const engines = !jupyter ? (['node'] as const) : i % 2 === 0 ? (['node', 'jupyter'] as const) : (['jupyter', 'node'] as const);
        for (const engine of engines) serial[engine].push(wb('nb', 'run', notebook, ...out, '--engine', engine));
      }
      // Time to build and evaluate a model offline: notebook 02 alone, end to end (kernel start included).
      const propensity = notebooks.findIndex((n) => n.endsWith('02-purchase-propensity.ipynb'));
      suite = { node_parallel: nodeParallel, node: serial.node, jupyter: jupyter ? serial.jupyter : null, propensity: serial.node[propensity]! };
    }
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

    const figures = {
      bench: 'notebooks',
      repeat,
      overhead_node_seconds: round(nodeOverhead),
      overhead_node_runs: overhead.node.map(round),
      overhead_jupyter_seconds: jupyterOverhead === null ? null : round(jupyterOverhead),
      overhead_jupyter_runs: overhead.jupyter.map(round),
      overhead_node_to_jupyter_ratio: jupyterOverhead === null ? null : round(nodeOverhead / jupyterOverhead),
      overhead_goal_seconds: 2.5,
      overhead_goal_met: nodeOverhead <= 2.5,
      ...(suite === null
        ? {}
        : {
            notebooks: notebooks.length,
            jobs: availableParallelism(),
            suite_node_parallel_seconds: round(suite.node_parallel),
            suite_node_serial_seconds: round(sum(suite.node)),
            suite_jupyter_serial_seconds: suite.jupyter === null ? null : round(sum(suite.jupyter)),
            suite_node_parallel_to_jupyter_ratio: suite.jupyter === null ? null : round(suite.node_parallel / sum(suite.jupyter)),
            suite_node_serial_to_jupyter_ratio: suite.jupyter === null ? null : round(sum(suite.node) / sum(suite.jupyter)),
            notebook_node_seconds: suite.node.map(round),
            notebook_jupyter_seconds: suite.jupyter?.map(round) ?? null,
            notebook_02_seconds: round(suite.propensity),
            notebook_02_goal_seconds: 30,
            notebook_02_goal_met: suite.propensity < 30,
          }),
    };
    console.log(
      `\none-cell notebook: Node engine ${figures.overhead_node_seconds} s (goal <= 2.5 s)` +
        (jupyterOverhead === null ? '' : `, Jupyter engine ${figures.overhead_jupyter_seconds} s: ratio ${figures.overhead_node_to_jupyter_ratio}`),
    );
    if (suite !== null) {
      console.log(
        `${notebooks.length} notebooks: Node engine ${figures.suite_node_parallel_seconds} s with ${figures.jobs} jobs, ${figures.suite_node_serial_seconds} s one at a time` +
          (suite.jupyter === null
            ? ''
            : `; Jupyter engine one at a time ${figures.suite_jupyter_serial_seconds} s: ratio ${figures.suite_node_parallel_to_jupyter_ratio} ` +
              `(one at a time: ${figures.suite_node_serial_to_jupyter_ratio})`),
      );
      console.log(`notebook 02 (build the training set, train, evaluate, publish) end to end: ${figures.notebook_02_seconds} s (goal < 30 s)`);
    }
    console.log(JSON.stringify(figures));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
