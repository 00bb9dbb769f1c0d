import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { featureSet } from '../../../src/workbench/features/definition.js';
import { createBundle, type ModelBundle } from '../../../src/workbench/models/bundle.js';
import { columnsFor } from '../../../src/workbench/models/preprocess.js';
import { ModelRegistry, type UnreadableVersion, type VersionEntry } from '../../../src/workbench/models/registry.js';
import { trainClassifier, type Classifier } from '../../../src/workbench/models/train.js';
import { tempDir } from '../../helpers/tmp.js';
import { rehashed } from './hostile.js';

const features = featureSet([
  { name: 'logins_7d', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 },
  { name: 'spend_30d', source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: '30d', default: 0 },
]);
const rows = Array.from({ length: 200 }, (_, i) => ({ logins_7d: i % 9, spend_30d: (i * 13) % 70, bought: i % 9 > 4 ? 1 : 0 }));

const wb = (...args: string[]) => {
  const r = spawnSync(process.execPath, ['bin/wb.cjs', ...args], { encoding: 'utf8', env: { ...process.env, WB_DEBUG: '' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

/** A registry holding four versions of `propensity` (champion on the first), then damaged on disk. */
describe('a registry with damaged files', { timeout: 60_000 }, () => {
  let model: Classifier;
  let good: ModelBundle;
  let truncated: ModelBundle;
  let changed: ModelBundle;
  let unloadable: ModelBundle;
  const dataDir = tempDir('wb-registry-');
  let registry: ModelRegistry;
  // A distinct source per day: createdAt alone is outside the version's hash, the same model would be one version.
  const at = (day: number) => ({ lineage: { source: `test day ${day}`, createdAt: `2026-11-${String(day).padStart(2, '0')}T00:00:00.000Z` } });
  before(async () => {
    model = await trainClassifier(rows, 'bought', columnsFor(features), { seed: 1, maxEpochs: 3 });
    good = await createBundle('propensity', model, features, at(1));
    truncated = await createBundle('propensity', model, features, at(2));
    changed = await createBundle('propensity', model, features, at(3));
    // Intact and well-formed, so `put` stores it, but tfjs does not know its layer.
    unloadable = rehashed(await createBundle('propensity', model, features, at(4)), (b) => (b.model.topology.config.layers[0].class_name = 'NoSuchLayer'));
    registry = ModelRegistry.open(join(dataDir, 'registry'));
    for (const b of [good, truncated, changed, unloadable]) registry.put(b);
    registry.setAlias('propensity', 'champion', good.version);
    registry.setAlias('propensity', 'challenger', changed.version);
    const path = (b: ModelBundle) => join(dataDir, 'registry', 'bundles', `${b.version}.json`);
    const text = readFileSync(path(truncated), 'utf8');
    writeFileSync(path(truncated), text.slice(0, text.length / 2));
    writeFileSync(path(changed), readFileSync(path(changed), 'utf8').replace('"label":"bought"', '"label":"b0ught"'));
  });
  after(() => model?.dispose());

  it('lists every readable version, and each unreadable one with its version and why', () => {
    const list = registry.list();
    const byVersion = new Map<string, VersionEntry>(list.map((v) => [v.version, v]));
    assert.deepEqual(
      list.map((v) => v.version),
      [unloadable.version, good.version, ...[changed.version, truncated.version].sort()],
      'readable newest first, then the unreadable (by version)',
    );
    assert.deepEqual((byVersion.get(good.version) as { aliases: string[] }).aliases, ['champion']);
    const cut = byVersion.get(truncated.version) as UnreadableVersion;
    assert.match(cut.error, /^integrity: .*\.json is not valid JSON \(.*\): the file was damaged after it was written/);
    assert.equal(cut.name, undefined, 'a truncated file says no name, and no alias points at it');
    const edited = byVersion.get(changed.version) as UnreadableVersion;
    assert.match(edited.error, /^integrity: .*hashes to [0-9a-f]{16}, not to its version/);
    assert.deepEqual([edited.name, edited.aliases], ['propensity', ['challenger']]);
    // By name: the damaged version of that model is listed too (the truncated one has no known name).
    assert.deepEqual(
      registry.list('propensity').map((v) => v.version),
      [unloadable.version, good.version, changed.version],
    );
  });

  it('refuses to move an alias to a changed, unreadable, unloadable or foreign version with a 409, and the alias stays', async () => {
    const historyBefore = registry.history().length;
    const cases: [string, () => unknown, RegExp][] = [
      ['changed', () => registry.setAlias('propensity', 'champion', changed.version), /hashes to [0-9a-f]{16}, not to its version/],
      ['truncated', () => registry.setAlias('propensity', 'champion', truncated.version), /is not valid JSON/],
      ['unloadable', () => registry.moveAlias('propensity', 'champion', unloadable.version), /Unknown layer: NoSuchLayer/],
      ['of another model', () => registry.setAlias('other-model', 'champion', good.version), /it is a version of propensity, not of other-model/],
    ];
    for (const [what, move, why] of cases) {
      await assert.rejects(
        async () => move(),
        (err: Error & { code?: string; status?: number }) => {
          assert.deepEqual([err.status, err.code], [409, 'alias_refused'], `${what}: ${err.message}`);
          assert.match(err.message, why, what);
          assert.match(err.message, /^cannot point .* at [0-9a-f]{16}: .*; (champion stays at [0-9a-f]{16}|champion stays unset)$/s, what);
          return true;
        },
      );
    }
    assert.equal(registry.resolve('propensity', 'champion'), good.version);
    assert.equal(registry.history().length, historyBefore, 'no move recorded');
    assert.throws(
      () => registry.setAlias('propensity', 'champion', '0123456789abcdef'),
      (err: Error & { status?: number }) => err.status === 404,
    );
  });

  it('`wb models list` lists them marked and exits 0 (1 with --strict); `wb models alias` refuses the damaged one', () => {
    const list = wb('--data-dir', dataDir, 'models', 'list');
    assert.equal(list.code, 0, list.err);
    const lines = list.out.trim().split('\n');
    assert.equal(lines.length, 4);
    assert.match(
      lines.find((l) => l.includes(good.version))!,
      /^propensity\s+[0-9a-f]{16}\s+2026-11-01T00:00:00\s+logistic\s+champion/,
    );
    assert.match(
      lines.find((l) => l.includes(changed.version))!,
      /^! propensity\s+[0-9a-f]{16}\s+UNREADABLE\s+challenger\s+integrity: .*not to its version/,
    );
    assert.match(
      lines.find((l) => l.includes(truncated.version))!,
      /^! \?\s+[0-9a-f]{16}\s+UNREADABLE\s+-\s+integrity: .*not valid JSON/,
    );
    assert.match(list.err, /2 versions in .* cannot be read \(marked !\)/);
    assert.equal(wb('--data-dir', dataDir, 'models', 'list', '--strict').code, 1);
    const json = JSON.parse(wb('--data-dir', dataDir, 'models', 'list', '--json').out) as VersionEntry[];
    assert.equal(json.filter((v) => 'error' in v).length, 2);

    const refused = wb('--data-dir', dataDir, 'models', 'alias', 'propensity', 'champion', changed.version);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /^error: cannot point propensity champion at [0-9a-f]{16}: integrity: .*; champion stays at /);
    const unloadableMove = wb('--data-dir', dataDir, 'models', 'alias', 'propensity', 'champion', unloadable.version);
    assert.equal(unloadableMove.code, 1);
    assert.match(unloadableMove.err, /Unknown layer: NoSuchLayer.*champion stays at/s);
    assert.equal(ModelRegistry.open(join(dataDir, 'registry')).resolve('propensity', 'champion'), good.version);
  });

  it('reads an alias history whose last append a crash cut short, and names a damaged line elsewhere', () => {
    const path = join(dataDir, 'registry', 'alias-history.jsonl');
    const intact = readFileSync(path, 'utf8');
    const moves = registry.history().length;
    try {
      writeFileSync(path, `${intact}{"at":"2026-11-29T00:0`);
      assert.equal(registry.history().length, moves, 'the torn last line is not a move');
      writeFileSync(path, `{"at":"2026-11-29T00:0\n${intact}`);
      assert.throws(
        () => registry.history(),
        (err: Error & { code?: string }) => err.code === 'integrity' && /alias-history\.jsonl:1 is not a JSON alias move/.test(err.message),
      );
    } finally {
      writeFileSync(path, intact);
    }
  });
});

/** What a service calls while it answers requests: the same checks and records, no synchronous fsync. */
describe("a registry's writes for a server", { timeout: 60_000 }, () => {
  it('stores bundles and moves aliases as the synchronous calls do, one move after the other, refusing what they refuse', async () => {
    const model = await trainClassifier(rows, 'bought', columnsFor(features), { seed: 2, maxEpochs: 2 });
    try {
      const versions = await Promise.all(
        [1, 2, 3].map((day) =>
          createBundle('propensity', model, features, { lineage: { source: `async day ${day}`, createdAt: `2026-11-0${day}T00:00:00.000Z` } }),
        ),
      );
      const root = join(tempDir('wb-registry-async-'), 'registry');
      const registry = ModelRegistry.open(root);
      const moved: string[] = [];
      registry.onAliasMoved((m) => moved.push(`${m.alias}->${m.to}`));
      for (const b of versions) assert.equal((await registry.putAsync(b)).version, b.version);
      assert.deepEqual(
        readdirSync(join(root, 'bundles')).sort(),
        versions.map((b) => `${b.version}.json`).sort(),
        'each bundle stored once, no temporary file left',
      );
      assert.equal(registry.get(versions[0]!.version).version, versions[0]!.version, 'a stored bundle reads back verified');
      // Started together: each reads the table the previous one wrote, so none is lost.
      const moves = await Promise.all([
        registry.setAliasAsync('propensity', 'champion', versions[0]!.version, { by: 'a' }),
        registry.setAliasAsync('propensity', 'challenger', versions[1]!.version, { by: 'b' }),
        registry.setAliasAsync('propensity', 'champion', versions[2]!.version, { by: 'c' }),
        registry.setAliasAsync('propensity', 'champion', versions[2]!.version, { by: 'd' }),
      ]);
      assert.deepEqual(
        moves.map((m) => [m.from, m.to, m.unchanged ?? false]),
        [
          [null, versions[0]!.version, false],
          [null, versions[1]!.version, false],
          [versions[0]!.version, versions[2]!.version, false],
          [versions[2]!.version, versions[2]!.version, true],
        ],
      );
      const reopened = ModelRegistry.open(root);
      assert.deepEqual({ ...reopened.aliases('propensity') }, { champion: versions[2]!.version, challenger: versions[1]!.version });
      assert.deepEqual(
        reopened.history('propensity').map((m) => m.by),
        ['a', 'b', 'c'],
        'every move recorded in order; the unchanged one is not',
      );
      assert.deepEqual(moved, [`champion->${versions[0]!.version}`, `challenger->${versions[1]!.version}`, `champion->${versions[2]!.version}`]);
      await assert.rejects(
        registry.setAliasAsync('propensity', 'Champion!', versions[0]!.version),
        (err: Error & { code?: string }) => err.code === 'bad_input',
      );
      await assert.rejects(registry.setAliasAsync('propensity', 'champion', '0123456789abcdef'), (err: Error & { code?: string }) => err.code === 'not_found');
      // A refused move does not stop the ones after it.
      assert.equal((await registry.setAliasAsync('propensity', 'champion', versions[0]!.version)).to, versions[0]!.version);
      await assert.rejects(registry.putAsync({ ...versions[0]!, label: 'changed' }), (err: Error & { code?: string }) => err.code === 'integrity');
    } finally {
      model.dispose();
    }
  });
});
