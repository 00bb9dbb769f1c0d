import assert from 'node:assert/strict';
import { after, beforeEach, describe, it, type TestContext } from 'node:test';
import { StoreMovedError, type OnlineStore } from '../../../src/serving/features/store.js';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { OnlineFeatures, type UserState } from '../../../src/workbench/features/online.js';

const features = featureSet([
  { name: 'views_1h', source: { event: 'view' }, aggregation: 'count', window: '1h', default: 0 },
  { name: 'last_items', source: { event: 'view' }, aggregation: 'last_n', prop: 'item', n: 2, window: 'lifetime', default: [] },
]);
const compiled = new OnlineFeatures(features);
const T = Date.UTC(2026, 10, 27, 12, 0, 0);

function stateOf(...items: string[]): UserState {
  const s = compiled.emptyState();
  items.forEach((item, i) => compiled.update(s, { event_id: `${item}-${i}`, time: T + i * 1000, user_id: 'x', event: 'view', props: { item } }));
  return s;
}

/**
 * What every OnlineStore must do. `open` opens the same store each time (after the previous handle
 * is closed), or returns a string: the reason to skip.
 */
export function onlineStoreConformance(name: string, open: () => Promise<OnlineStore | string>): void {
  describe(`OnlineStore conformance: ${name}`, () => {
    let store: OnlineStore;
    let skipped: string | undefined;
    const reopen = async () => {
      await store.close();
      const again = await open();
      if (typeof again === 'string') throw new Error(again);
      store = again;
    };
    beforeEach(async (t) => {
      if (skipped) return (t as TestContext).skip(skipped);
      if (!store) {
        const opened = await open();
        if (typeof opened === 'string') {
          skipped = opened;
          return (t as TestContext).skip(skipped);
        }
        store = opened;
      }
      await store.reset('set-a');
    });
    after(async () => {
      await store?.close();
    });

    it('starts a feature set empty at offset 0', async () => {
      assert.deepEqual(await store.position(), { setVersion: 'set-a', offset: 0 });
      assert.equal((await store.get(['u1'])).size, 0);
      assert.equal(await store.size(), 0);
    });

    it('keeps the states of a batch with the offset after it, and reads back what was written', async () => {
      await store.write(
        new Map([
          ['u1', stateOf('a', 'b')],
          ['u2', stateOf('c')],
        ]),
        10,
      );
      const got = await store.get(['u1', 'u2', 'nobody']);
      assert.deepEqual([...got.keys()].sort(), ['u1', 'u2']);
      assert.deepEqual({ ...compiled.read(got.get('u1'), T + 60_000).values }, { views_1h: 2, last_items: ['b', 'a'] });
      assert.deepEqual(await store.position(), { setVersion: 'set-a', offset: 10 });
      assert.equal(await store.size(), 2);
    });

    it('refuses a write whose batch was read where the store no longer stands, and changes nothing', async () => {
      await store.write(new Map([['u1', stateOf('a')]]), 10, 0);
      await assert.rejects(
        store.write(
          new Map([
            ['u1', stateOf('b')],
            ['u2', stateOf('c')],
          ]),
          20,
          0,
        ),
        (err: Error) => {
          assert.ok(err instanceof StoreMovedError, String(err));
          assert.deepEqual(err.position, { setVersion: 'set-a', offset: 10 });
          assert.match(err.message, /read at offset 0, the store stands at 10/);
          return true;
        },
      );
      assert.deepEqual(await store.position(), { setVersion: 'set-a', offset: 10 });
      assert.deepEqual([...(await store.get(['u1', 'u2'])).keys()], ['u1']);
      assert.deepEqual({ ...compiled.read(await store.peek('u1'), T + 60_000).values }, { views_1h: 1, last_items: ['a'] });
      await store.write(new Map([['u2', stateOf('c')]]), 20, 10);
      assert.deepEqual(await store.position(), { setVersion: 'set-a', offset: 20 });
    });

    it('peeks at one state without copying, and answers undefined for an unknown user', async () => {
      await store.write(new Map([['u1', stateOf('a', 'b')]]), 1);
      assert.deepEqual({ ...compiled.read(await store.peek('u1'), T + 60_000).values }, { views_1h: 2, last_items: ['b', 'a'] });
      assert.equal(await store.peek('nobody'), undefined);
    });

    it('does not change a stored state until it is written back', async () => {
      await store.write(new Map([['u1', stateOf('a')]]), 1);
      const s = (await store.get(['u1'])).get('u1')!;
      compiled.update(s, { event_id: 'z', time: T + 5000, user_id: 'u1', event: 'view', props: { item: 'z' } });
      assert.equal(compiled.read((await store.get(['u1'])).get('u1'), T + 60_000).values.views_1h, 1);
    });

    it('removes a user whose state is gone, and forgets everything on reset', async () => {
      await store.write(
        new Map([
          ['u1', stateOf('a')],
          ['u2', stateOf('b')],
        ]),
        2,
      );
      await store.write(new Map([['u1', undefined]]), 3);
      assert.deepEqual([...(await store.get(['u1', 'u2'])).keys()], ['u2']);
      await store.reset('set-b');
      assert.equal(await store.size(), 0);
      assert.deepEqual(await store.position(), { setVersion: 'set-b', offset: 0 });
    });

    it('keeps flushed states and their offset across a close and reopen', async () => {
      await store.write(new Map([['u1', stateOf('a', 'b', 'c')]]), 42);
      await store.flush();
      await reopen();
      assert.deepEqual(await store.position(), { setVersion: 'set-a', offset: 42 });
      assert.deepEqual(compiled.read((await store.get(['u1'])).get('u1'), T + 60_000).values.last_items, ['c', 'b']);
    });
  });
}
