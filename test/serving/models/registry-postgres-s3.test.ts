import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { BlobStoreError, DirectoryBlobStore, openBlobStore } from '../../../src/serving/cluster/blob-store/index.js';
import { PostgresRegistryStore } from '../../../src/serving/models/registry-postgres.js';
import { IntegrityError } from '../../../src/workbench/errors.js';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { createBundle, type ModelBundle } from '../../../src/workbench/models/bundle.js';
import { columnsFor } from '../../../src/workbench/models/preprocess.js';
import { ModelRegistry } from '../../../src/workbench/models/registry.js';
import { trainClassifier } from '../../../src/workbench/models/train.js';
import { postgresTestSchema } from '../../helpers/servers.js';
import { tempDir } from '../../helpers/tmp.js';

const env = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };

describe('the blob store setting', () => {
  it('opens a directory by default, a path, or refuses what it cannot use with why', async () => {
    const dir = tempDir('wb-blob-setting-');
    const byDefault = await openBlobStore(undefined, join(dir, 'blobs'), env);
    assert.ok(byDefault instanceof DirectoryBlobStore);
    assert.equal(byDefault.location, join(dir, 'blobs'));
    assert.equal((await openBlobStore(`file://${join(dir, 'other')}`, dir, env)).location, join(dir, 'other'));
    const refused = async (spec: string, pattern: RegExp, e: NodeJS.ProcessEnv = env) =>
      assert.rejects(openBlobStore(spec, dir, e), (err: unknown) => err instanceof BlobStoreError && pattern.test(err.message));
    await refused('gs://bucket/x', /use a directory, file:\/\/<dir> or s3:\/\//);
    await refused('s3://bucket/x/', /\?endpoint=/);
    await refused('s3://bucket/x/?endpoint=http://127.0.0.1:1', /set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/, {});
    await refused('s3://key:secret@bucket/x/?endpoint=http://127.0.0.1:1', /not in the URL/);
  });
});

// s3rver (an S3-compatible server from npm) behind a SigV4-checking front, as in the blob store's tests.
describe('the shared model registry with its bundles in S3 (s3rver)', { timeout: 120_000 }, () => {
  const pgSchema = postgresTestSchema('wb_registry_s3');
  let url = '';
  let schema = '';
  let skip: string | undefined;
  let child: ChildProcess | undefined;
  let port = 0;
  const opened: ModelRegistry[] = [];
  let bundle: ModelBundle;
  // Made here, not in `before`: a directory made in a hook would be removed when the hook ends.
  const s3dir = tempDir('wb-s3rver-');

  before(async () => {
    const available = await pgSchema.open(async (u, s) => ((url = u), (schema = s), true));
    if (typeof available === 'string') return void (skip = available);
    child = spawn(process.execPath, ['--openssl-legacy-provider', '--import', 'tsx', join(__dirname, '..', 'cluster', 's3rver-child.ts'), s3dir], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    port = await new Promise<number>((resolve, reject) => {
      child!.once('error', reject);
      child!.once('exit', (code) => reject(new Error(`the s3rver child exited (${code}) before it listened`)));
      createInterface({ input: child!.stdout! }).once('line', (line) => resolve((JSON.parse(line) as { port: number }).port));
    });
    const features = featureSet([{ name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 }]);
    const rows = Array.from({ length: 60 }, (_, i) => ({ logins_7d: i % 7, bought: i % 3 === 0 ? 1 : 0 }));
    const model = await trainClassifier(rows, 'bought', columnsFor(features), { seed: 1, maxEpochs: 2 });
    bundle = await createBundle('churn', model, features);
    model.dispose();
  });
  after(async () => {
    for (const r of opened) await r.close().catch(() => undefined);
    if (child && child.exitCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    }
  });

  it('stores a bundle through one instance and serves it from another, refusing one changed in the bucket', async (t) => {
    if (skip) return t.skip(skip);
    const spec = `s3://wb-test/registry-${process.pid}/?endpoint=http://127.0.0.1:${port}`;
    const open = async () => {
      const store = await PostgresRegistryStore.open(url, await openBlobStore(spec, tempDir(), env), { schema });
      const registry = await ModelRegistry.openShared(store, tempDir('wb-registry-cache-'));
      opened.push(registry);
      return registry;
    };
    const a = await open();
    const b = await open();
    const outcome = await a.publish(bundle, 'champion', { by: 'test' });
    assert.equal(outcome.stored, true);
    await b.reload();
    assert.equal(b.resolve('churn', 'champion'), bundle.version);
    assert.deepEqual(b.get(bundle.version), bundle);

    // Rewritten whole in the bucket (its own checksum agrees with the new bytes): a new instance refuses it.
    const blobs = await openBlobStore(spec, tempDir(), env);
    await blobs.put(`registry/bundles/${bundle.version}.json`, Buffer.from(JSON.stringify({ ...bundle, label: 'other' })));
    const c = await open();
    assert.throws(
      () => c.get(bundle.version),
      (err: unknown) => err instanceof IntegrityError && /the registry recorded; it was changed after it was stored/.test(err.message),
    );
    const [entry] = c.list('churn');
    assert.ok(entry && 'error' in entry, 'listed as unreadable');
    assert.deepEqual(entry.aliases, ['champion']);
  });
});
