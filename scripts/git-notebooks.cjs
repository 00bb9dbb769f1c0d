// Makes this clone git-clean for notebooks (run by `npm install` through register-kernel.cjs, and by
// `wb kernel install`): .gitattributes (committed) sends *.ipynb through the driver `wb-notebook`, and
// this writes the driver into the clone's own .git/config:
//   filter.wb-notebook.clean     strips outputs and volatile metadata on the way into git (like nbstripout)
//   filter.wb-notebook.required  a failing filter stops `git add` rather than letting outputs in
//   filter.wb-notebook.smudge    `cat`: checkout writes notebooks as they are (required needs one)
//   diff.wb-notebook.textconv    `git diff` shows cells as text, outputs summarised
// Idempotent. Outside a git clone of this project (an npm tarball, a copy inside someone else's
// repository) it says nothing and changes nothing; a value the user set themselves is left alone.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const DRIVER = 'wb-notebook';
// Relative to the top of the work tree, where git runs filters: each `git worktree` uses its own copy,
// and a commit from before this script existed has no .gitattributes, hence no filter to run.
const CLEANER = 'scripts/notebook-clean.cjs';

/** Quoted for the POSIX shell git runs filters with. */
const shellQuote = (s) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

function git(root, args) {
  const r = spawnSync('git', ['-C', root, ...args], { encoding: 'utf8' });
  return { ok: r.status === 0, out: (r.stdout || '').trim(), missing: Boolean(r.error) };
}

/** The values this project wants; the absolute node keeps GUI git clients (no nvm on PATH) working. */
function wantedConfig(node = process.execPath) {
  const run = `${shellQuote(node)} ${CLEANER}`;
  return [
    [`filter.${DRIVER}.clean`, `${run} --stdin`],
    // Safe because the cleaner never fails on content (it passes a broken notebook through as it is):
    // only a missing node or script makes git refuse, which is what keeps outputs out.
    [`filter.${DRIVER}.required`, 'true'],
    // A required filter needs both directions: checkout passes notebooks through as they are.
    [`filter.${DRIVER}.smudge`, 'cat'],
    [`diff.${DRIVER}.textconv`, `${run} --textconv`],
  ];
}

const ours = (value) => value.includes(CLEANER) || value === 'true' || value === 'cat';

/**
 * Configures the clone at `root`. Returns what it did: 'not-a-clone' (silent), 'configured',
 * 'unchanged', or 'kept-user-config' (a value of the user's was left and reported).
 */
function configureGitNotebooks({ root = path.resolve(__dirname, '..'), quiet = false, node } = {}) {
  const top = git(root, ['rev-parse', '--show-toplevel']);
  if (top.missing || !top.ok || !sameDir(top.out, root)) return 'not-a-clone';
  let changed = false;
  const kept = [];
  for (const [key, value] of wantedConfig(node)) {
    const current = git(root, ['config', '--get', key]);
    if (current.ok && current.out === value) continue;
    if (current.ok && !ours(current.out)) {
      kept.push(`${key}=${current.out}`);
      continue;
    }
    if (!git(root, ['config', '--local', key, value]).ok) {
      if (!quiet) console.log(`plg-workbench: could not set ${key} in the git config; notebooks are not stripped on commit.`);
      return 'failed';
    }
    changed = true;
  }
  if (kept.length > 0) {
    if (!quiet) console.log(`plg-workbench: kept your own git config (${kept.join('; ')}); the notebook filter ${DRIVER} was not installed over it.`);
    return 'kept-user-config';
  }
  if (changed && !quiet) console.log(`plg-workbench: git now strips notebook outputs on commit and diffs notebooks by cell (driver ${DRIVER} in .git/config).`);
  return changed ? 'configured' : 'unchanged';
}

function sameDir(a, b) {
  try {
    return fs.realpathSync(a) === fs.realpathSync(b);
  } catch {
    return false;
  }
}

module.exports = { configureGitNotebooks, wantedConfig, DRIVER };
if (require.main === module) configureGitNotebooks();
