import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, beforeEach, describe, it, type TestContext } from 'node:test';
import { BlobKeyError, type BlobStore } from '../../../src/serving/cluster/blob-store/index.js';
import { IntegrityError } from '../../../src/workbench/errors.js';

export interface BlobStoreHarness {
  store: BlobStore;
  /** Changes the stored bytes of `key` behind the store's back, as a disk or a third party could. */
  corrupt(key: string): Promise<void>;
}

/**
 * What a test server cannot do that the real service does. s3rver writes an object's file in place,
 * so a read racing a put can be torn or hang: the race test is not run against it (atomic replace is
 * S3's own contract, which the S3 store relies on), rather than run and skipped.
 */
export interface TestServerLimits {
  tornReplace?: boolean;
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/**
 * What every BlobStore must do; run once per implementation. `open` returns a fresh, empty store, or
 * a string: the reason to skip.
 */
export function blobStoreConformance(name: string, open: () => Promise<BlobStoreHarness | string>, limits: TestServerLimits = {}): void {
  describe(`BlobStore conformance: ${name}`, () => {
    let h: BlobStoreHarness;
    let skipped: string | undefined;
    before(async () => {
      const opened = await open();
      if (typeof opened === 'string') skipped = opened;
      else h = opened;
    });
    beforeEach((t) => {
      if (skipped) (t as TestContext).skip(skipped);
    });
    after(async () => {
      await h?.store.close();
    });

    it('gets back exactly what it put: empty, every byte value, several MiB; an absent key is undefined', async () => {
      const every = Uint8Array.from({ length: 256 }, (_, i) => i);
      const big = randomBytes(6 * 1024 * 1024 + 13);
      await h.store.put('rt/empty', new Uint8Array(0));
      await h.store.put('rt/every', every);
      await h.store.put('rt/big.bin', big);
      assert.deepEqual(Buffer.from((await h.store.get('rt/empty'))!), Buffer.alloc(0));
      assert.deepEqual(Buffer.from((await h.store.get('rt/every'))!), Buffer.from(every));
      assert.equal(sha((await h.store.get('rt/big.bin'))!), sha(big));
      assert.equal(await h.store.get('rt/absent'), undefined);
      assert.equal(await h.store.get('nowhere/at/all'), undefined);
    });

    it('replaces an object on a second put', async () => {
      await h.store.put('replace/x', Buffer.from('first version, longer than the second'));
      await h.store.put('replace/x', Buffer.from('second'));
      assert.equal(Buffer.from((await h.store.get('replace/x'))!).toString(), 'second');
    });

    it('takes a stream of chunks: a Node Readable and an async generator', async () => {
      const parts = [randomBytes(70_000), randomBytes(1), randomBytes(300_000)];
      await h.store.put('stream/readable', Readable.from(parts));
      async function* gen() {
        for (const p of parts) yield new Uint8Array(p);
      }
      await h.store.put('stream/generator', gen());
      const whole = Buffer.concat(parts);
      assert.equal(sha((await h.store.get('stream/readable'))!), sha(whole));
      assert.equal(sha((await h.store.get('stream/generator'))!), sha(whole));
    });

    it('leaves the old object whole when a streamed put fails halfway, and nothing new to list', async () => {
      await h.store.put('failing/x', Buffer.from('the old object'));
      async function* broken() {
        yield randomBytes(100_000);
        throw new Error('the source died');
      }
      await assert.rejects(h.store.put('failing/x', broken()), /the source died/);
      await assert.rejects(h.store.put('failing/new', broken()), /the source died/);
      assert.equal(Buffer.from((await h.store.get('failing/x'))!).toString(), 'the old object');
      assert.equal(await h.store.get('failing/new'), undefined);
      assert.deepEqual(await h.store.list('failing/'), ['failing/x']);
      // A chunk that is not bytes is refused rather than stored as garbage.
      await assert.rejects(h.store.put('failing/strings', Readable.from(['text, not bytes'])), /yields bytes/);
    });

    it('lists by string prefix, sorted, across "directories"', async () => {
      const keys = ['ls/date=2025-01-02/part-0.parquet', 'ls/date=2025-01-01/part-1.parquet', 'ls/date=2025-01-01/part-0.parquet', 'ls/b', 'ls/bc/d', 'lsx'];
      for (const k of keys) await h.store.put(k, Buffer.from(k));
      assert.deepEqual(await h.store.list('ls/'), [
        'ls/b',
        'ls/bc/d',
        'ls/date=2025-01-01/part-0.parquet',
        'ls/date=2025-01-01/part-1.parquet',
        'ls/date=2025-01-02/part-0.parquet',
      ]);
      assert.deepEqual(await h.store.list('ls/b'), ['ls/b', 'ls/bc/d']);
      assert.deepEqual(await h.store.list('ls/date=2025-01-01/'), ['ls/date=2025-01-01/part-0.parquet', 'ls/date=2025-01-01/part-1.parquet']);
      assert.deepEqual(await h.store.list('ls/date=2025-01-0'), keys.filter((k) => k.startsWith('ls/date')).sort());
      assert.deepEqual(await h.store.list('ls'), [...keys].sort());
      assert.deepEqual(await h.store.list('no-such-prefix/'), []);
      const all = await h.store.list();
      for (const k of keys) assert.ok(all.includes(k), k);
      assert.deepEqual(all, [...all].sort());
    });

    it('lists more keys than one S3 page (1000)', async () => {
      const keys = Array.from({ length: 1_050 }, (_, i) => `many/k${String(i).padStart(5, '0')}`);
      for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((k) => h.store.put(k, Buffer.from('x'))));
      assert.deepEqual(await h.store.list('many/'), keys);
    });

    it('deletes, and deleting an absent key is no error', async () => {
      await h.store.put('del/a', Buffer.from('a'));
      await h.store.put('del/b', Buffer.from('b'));
      await h.store.delete('del/a');
      await h.store.delete('del/a');
      await h.store.delete('del/never');
      assert.equal(await h.store.get('del/a'), undefined);
      assert.deepEqual(await h.store.list('del/'), ['del/b']);
    });

    it('refuses keys that could leave the store or mean different things in different places', async () => {
      const bad: [unknown, RegExp][] = [
        ['../../etc/passwd', /path traversal/],
        ['a/../../b', /path traversal/],
        ['a/..', /path traversal/],
        ['/etc/passwd', /absolute/],
        ['C:/windows', /absolute/],
        ['a\\..\\b', /backslash/],
        ['a\0b', /NUL/],
        ['', /empty/],
        ['a//b', /empty segment/],
        ['a/', /empty segment/],
        ['./a', /'\.' segment/],
        ['.hidden', /not starting with \./],
        ['é', /letters, digits/],
        ['a b', /letters, digits/],
        ['x'.repeat(513), /limit is 512/],
        [42, /not a string/],
      ];
      for (const [key, reason] of bad) {
        for (const op of [() => h.store.put(key as string, Buffer.from('x')), () => h.store.get(key as string), () => h.store.delete(key as string)]) {
          await assert.rejects(op(), (err: unknown) => {
            assert.ok(err instanceof BlobKeyError, `${JSON.stringify(key)}: ${String(err)}`);
            assert.match(err.message, reason);
            return true;
          });
        }
      }
      await assert.rejects(h.store.list('../'), BlobKeyError);
      await assert.rejects(h.store.list('/'), BlobKeyError);
      // The longest allowed key works.
      const longest = Array.from({ length: 4 }, () => 'k'.repeat(127)).join('/');
      assert.equal(longest.length, 511);
      await h.store.put(longest, Buffer.from('deep'));
      assert.equal(Buffer.from((await h.store.get(longest))!).toString(), 'deep');
    });

    it('refuses to return bytes that differ from what was put, naming the key', async () => {
      await h.store.put('integrity/x', randomBytes(10_000));
      await h.corrupt('integrity/x');
      await assert.rejects(h.store.get('integrity/x'), (err: unknown) => {
        assert.ok(err instanceof IntegrityError, String(err));
        assert.match(err.message, /integrity\/x/);
        return true;
      });
      // Writing it again heals it.
      await h.store.put('integrity/x', Buffer.from('fresh'));
      assert.equal(Buffer.from((await h.store.get('integrity/x'))!).toString(), 'fresh');
    });

    if (!limits.tornReplace)
      it('never lets a reader see part of an object while it is replaced', async () => {
        const versions = [randomBytes(2 * 1024 * 1024), randomBytes(3 * 1024 * 1024)];
        const hashes = versions.map(sha);
        await h.store.put('atomic/x', versions[0]!);
        let writing = true;
        const writer = (async () => {
          try {
            for (let i = 1; i <= 12; i++) await h.store.put('atomic/x', versions[i % 2]!);
          } finally {
            writing = false;
          }
        })();
        let reads = 0;
        try {
          while (writing) {
            const got = await h.store.get('atomic/x');
            assert.ok(got, 'the object never disappears while it is replaced');
            assert.ok(hashes.includes(sha(got)), `read ${got.byteLength} bytes that are neither version`);
            reads++;
          }
        } finally {
          await writer;
        }
        assert.ok(reads > 0);
        assert.equal(sha((await h.store.get('atomic/x'))!), hashes[0], 'the last put (12, even) wins');
      });

    it('keeps concurrent puts of different keys apart', async () => {
      const bodies = Array.from({ length: 20 }, (_, i) => randomBytes(1000 + i));
      await Promise.all(bodies.map((b, i) => h.store.put(`par/k${i}`, b)));
      for (const [i, b] of bodies.entries()) assert.equal(sha((await h.store.get(`par/k${i}`))!), sha(b));
    });
  });
}
