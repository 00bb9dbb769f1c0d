/**
 * Notebook suite benchmark (npm run bench:notebooks): the total time of
 * `wb nb run notebooks/*.ipynb --ci`, against a baseline measured in the same run: a notebook of one
 * trivial cell run the same way, which is the fixed cost of starting Jupyter and a tslab kernel.
 * Goal: the suite under 60 s. Also notebook 02 alone, end to end: the time to build and evaluate a
 * model offline (goal: under 30 s). Ends with one JSON line of the figures.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const wb = (...args: string[]) => {
  const t = performance.now();
  const r = spawnSync(process.execPath, ['bin/wb.cjs', ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`wb ${args.join(' ')} failed with exit ${r.status}`);
  return (performance.now() - t) / 1000;
};

function main(): void {
  const dir = mkdtempSync(join(tmpdir(), 'wb-bench-nb-'));
  try {
    if (!existsSync('.wb/ci/lake/manifest.json')) wb('lake', 'build', '--data-dir', '.wb/ci', '--users', '300', '--days', '60');
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
    const baseline = wb('nb', 'run', trivial, '--out', join(dir, 'runs'));
    const suite = wb('nb', 'run', ...notebooks, '--ci', '--out', join(dir, 'runs'));
    // Time to build and evaluate a model offline: notebook 02 alone, end to end (kernel start included).
    const propensity = wb('nb', 'run', 'notebooks/02-purchase-propensity.ipynb', '--ci', '--out', join(dir, 'runs'));
    const figures = {
      bench: 'notebooks',
      notebooks: notebooks.length,
      suite_seconds: Math.round(suite * 10) / 10,
      baseline_one_trivial_cell_seconds: Math.round(baseline * 10) / 10,
      suite_to_baseline_ratio: Math.round((suite / baseline) * 100) / 100,
      goal_seconds: 60,
      goal_met: suite < 60,
      notebook_02_seconds: Math.round(propensity * 10) / 10,
      notebook_02_goal_seconds: 30,
      notebook_02_goal_met: propensity < 30,
    };
    console.log(
      `\n${notebooks.length} notebooks in ${figures.suite_seconds} s (goal < 60 s); a one-cell notebook takes ${figures.baseline_one_trivial_cell_seconds} s: ratio ${figures.suite_to_baseline_ratio}`,
    );
    console.log(`notebook 02 (build the training set, train, evaluate, publish) end to end: ${figures.notebook_02_seconds} s (goal < 30 s)`);
    console.log(JSON.stringify(figures));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
