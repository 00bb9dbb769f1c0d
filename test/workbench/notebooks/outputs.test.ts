import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OutputCollector } from '../../../src/workbench/notebooks/outputs.js';
import { newMessage } from '../../../src/workbench/notebooks/wire.js';

const msg = (type: string, content: Record<string, unknown>) => newMessage('s', type, content);
const html = (text: string, displayId?: string) => ({
  data: { 'text/html': text },
  metadata: {},
  ...(displayId ? { transient: { display_id: displayId } } : {}),
});

describe('outputs from IOPub messages (nbclient semantics)', () => {
  it('keeps every output type, in order, with nbformat fields', () => {
    const c = new OutputCollector();
    c.handle(0, msg('status', { execution_state: 'busy' }));
    c.handle(0, msg('stream', { name: 'stdout', text: 'a\n' }));
    c.handle(0, msg('display_data', html('<b>x</b>')));
    c.handle(0, msg('execute_result', { data: { 'text/plain': '2' }, metadata: {}, execution_count: 4 }));
    c.handle(0, msg('error', { ename: 'TypeError', evalue: 'nope', traceback: ['line 1', 'line 2'] }));
    c.handle(0, msg('execute_input', { code: '1', execution_count: 4 }));
    assert.deepEqual(c.cell(0), [
      { output_type: 'stream', name: 'stdout', text: 'a\n' },
      { output_type: 'display_data', data: { 'text/html': '<b>x</b>' }, metadata: {} },
      { output_type: 'execute_result', data: { 'text/plain': '2' }, metadata: {}, execution_count: 4 },
      { output_type: 'error', ename: 'TypeError', evalue: 'nope', traceback: ['line 1', 'line 2'] },
    ]);
  });

  it('clears at once, or with wait just before the next output', () => {
    const c = new OutputCollector();
    c.handle(0, msg('stream', { name: 'stdout', text: 'old' }));
    c.handle(0, msg('clear_output', { wait: false }));
    assert.deepEqual(c.cell(0), []);
    c.handle(0, msg('stream', { name: 'stdout', text: '10%' }));
    c.handle(0, msg('clear_output', { wait: true }));
    assert.equal(c.cell(0).length, 1, 'a waiting clear keeps the output until the next one');
    c.handle(0, msg('stream', { name: 'stdout', text: '20%' }));
    assert.deepEqual(c.cell(0), [{ output_type: 'stream', name: 'stdout', text: '20%' }]);
  });

  it('updates a display in place, in whichever cell showed it, and an output that arrives after its cell ended', () => {
    const c = new OutputCollector();
    c.handle(0, msg('display_data', html('0/3', 'bar')));
    c.handle(1, msg('stream', { name: 'stdout', text: 'next cell' }));
    c.handle(1, msg('update_display_data', html('3/3', 'bar')));
    assert.deepEqual(c.cell(0), [{ output_type: 'display_data', data: { 'text/html': '3/3' }, metadata: {} }]);
    assert.equal(c.cell(1).length, 1, 'the update is no output of the cell that sent it');
    // A second display_data under the same id updates the first and shows itself too (nbclient does the same).
    c.handle(1, msg('display_data', html('again', 'bar')));
    assert.deepEqual(
      [...c.cell(0), ...c.cell(1)].map((o) => ('data' in o ? o.data['text/html'] : o.output_type)),
      ['again', 'stream', 'again'],
    );
    // Cleared outputs are no longer updated.
    c.handle(0, msg('clear_output', {}));
    c.handle(1, msg('update_display_data', html('final', 'bar')));
    assert.deepEqual(c.cell(0), []);
    c.handle(0, msg('stream', { name: 'stderr', text: 'late' }));
    assert.deepEqual(c.cell(0), [{ output_type: 'stream', name: 'stderr', text: 'late' }], 'a late output still goes to the cell that caused it');
  });
});
