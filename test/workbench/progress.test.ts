import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crossValidate } from '../../src/workbench/models/cross-validate.js';
import { trainClassifier } from '../../src/workbench/models/train.js';
import {
  consoleProgress,
  defaultProgress,
  inNotebook,
  notebookProgress,
  progressText,
  silentProgress,
  throttle,
  type Progress,
} from '../../src/workbench/progress.js';

/** A clock the test moves by hand. */
function fakeClock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

/** A progress that records what it is told, to check what library functions report. */
function recordingProgress() {
  const events: string[] = [];
  const progress: Progress = {
    log: (m) => void events.push(`log ${m}`),
    task(label, total, unit) {
      events.push(`task ${label} / ${total} ${unit}`);
      return { update: (n) => void events.push(`update ${n}`), finish: (s) => void events.push(`finish ${s}`) };
    },
  };
  return { progress, events };
}

describe('progress', () => {
  it('throttles: the first and forced draws always, others at most once per interval', () => {
    const clock = fakeClock();
    const draw = throttle(250, clock.now);
    assert.equal(draw(), true);
    assert.equal(draw(), false);
    clock.advance(249);
    assert.equal(draw(), false);
    assert.equal(draw(true), true, 'a task end is always drawn');
    clock.advance(250);
    assert.equal(draw(), true);
  });

  it('words a step as a share of the total, in the task unit', () => {
    assert.equal(progressText('training', 12, 30, 'epochs'), 'training: 40% (12 of 30 epochs)');
    assert.equal(progressText('loading', 1200, undefined, 'rows'), 'loading: 1,200 rows');
    assert.equal(progressText('reading', 3 * 1048576, 6 * 1048576, 'bytes'), 'reading: 50% (3.0 MB of 6.0 MB)');
    assert.equal(progressText('over', 40, 30, 'epochs'), 'over: 100% (40 of 30 epochs)');
  });

  it('draws one bar per task in a notebook, updated in place and throttled, ending with the summary and the time', () => {
    const clock = fakeClock();
    const displays: string[][] = [];
    const progress = notebookProgress({
      now: clock.now,
      newDisplay: () => {
        const frames: string[] = [];
        displays.push(frames);
        return { html: (h) => void frames.push(h) };
      },
    });
    const task = progress.task('training <mlp> & co', 10_000, 'epochs');
    for (let i = 1; i <= 10_000; i++) {
      task.update(i);
      clock.advance(0.1); // 10,000 epochs in one second
    }
    task.finish('best epoch 7');
    assert.equal(displays.length, 1, 'one output for the task, replaced at each draw');
    const frames = displays[0]!;
    assert.ok(frames.length >= 4 && frames.length <= 7, `a second of fast updates makes a handful of frames, not 10,000 (${frames.length})`);
    assert.match(frames[0]!, /<progress value="0" max="10000"[^>]*><\/progress> training &lt;mlp&gt; &amp; co: 0% \(0 of 10,000 epochs\)/);
    assert.match(frames[1]!, /<progress value="\d+" max="10000"[^>]*><\/progress> training &lt;mlp&gt; &amp; co: \d+% \(\d[\d,]* of 10,000 epochs\), 0\.\d s/);
    assert.match(frames.at(-1)!, /<progress value="1" max="1"[^>]*><\/progress> training &lt;mlp&gt; &amp; co: best epoch 7 \(1\.0 s\)/);

    const open = progress.task('a query', undefined, 'rows');
    open.finish();
    assert.match(displays[1]![0]!, /<progress style="width:16em"><\/progress> a query: 0 rows/, 'no total: an indeterminate bar');
  });

  it('prints a line now and then in the CLI, not one per step', () => {
    const lines: string[] = [];
    const stream = { isTTY: false, write: (s: string) => lines.push(s) } as unknown as NodeJS.WriteStream;
    const task = consoleProgress(stream).task('cross-validating', 10_000, 'folds');
    for (let i = 1; i <= 10_000; i++) task.update(i);
    task.finish('ROC AUC 0.84');
    assert.ok(lines.length <= 3, lines.join(''));
    assert.match(lines.at(-1)!, /^cross-validating: ROC AUC 0\.84 \(\d+\.\d s\)\n$/);
  });

  it('is silent by default outside a Jupyter kernel', () => {
    assert.equal(inNotebook(), false);
    assert.equal(defaultProgress(), silentProgress);
  });

  it('is reported by training (epochs) and cross-validation (folds, with each fold trained silently)', { timeout: 60_000 }, async () => {
    const rows = Array.from({ length: 200 }, (_, i) => ({ x: i % 10, y: i % 10 > 4 ? 1 : 0 }));
    const columns = [{ name: 'x', kind: 'numeric' as const }];
    const training = recordingProgress();
    const model = await trainClassifier(rows, 'y', columns, { maxEpochs: 5, patience: 100, progress: training.progress });
    model.dispose();
    assert.deepEqual(training.events.slice(0, 2), ['task training logistic on 160 rows x 1 inputs / 5 epochs', 'update 1']);
    assert.equal(training.events.filter((e) => e.startsWith('update')).length, 5);
    assert.match(training.events.at(-1)!, /^finish best epoch \d of 5, validation log loss \d\.\d{4}$/);

    const cv = recordingProgress();
    await crossValidate(rows, 'y', columns, { folds: 3, maxEpochs: 3, progress: cv.progress });
    assert.equal(cv.events[0], 'task cross-validating on 200 rows / 3 folds');
    assert.deepEqual(
      cv.events.filter((e) => e.startsWith('update')),
      ['update 1', 'update 2', 'update 3'],
      'folds only: no epoch of the folds',
    );
    assert.match(cv.events.at(-1)!, /^finish ROC AUC \d\.\d{4} ± \d\.\d{4} over 3 folds$/);
  });
});
