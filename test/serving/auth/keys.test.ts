import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { KeyStore, hasScope } from '../../../src/serving/auth/keys.js';
import { tempDir } from '../../helpers/tmp.js';

describe('API keys', () => {
  it('creates keys shown once, stores only their hash, and verifies them', () => {
    const path = join(tempDir(), 'keys.json');
    const store = KeyStore.open(path);
    const { key, info } = store.create('ingest bot', ['ingest']);
    assert.match(key, /^wb_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    const file = readFileSync(path, 'utf8');
    // The secret is base64url and may hold '_' itself: take everything after the id.
    const secret = key.slice('wb_'.length + 12 + 1);
    assert.equal(secret.length, 43);
    assert.ok(!file.includes(secret), 'the secret is not on disk');
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(KeyStore.open(path).verify(key), info);
    assert.equal(store.verify(`${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`), undefined);
    assert.equal(store.verify('wb_nonsense'), undefined);
    assert.equal(store.verify(''), undefined);
  });

  it('applies scopes, with admin including the others', () => {
    const store = KeyStore.open(join(tempDir(), 'keys.json'));
    const reader = store.create('dash', ['read']).info;
    const admin = store.create('ops', ['admin']).info;
    assert.equal(hasScope(reader, 'read'), true);
    assert.equal(hasScope(reader, 'ingest'), false);
    assert.equal(hasScope(admin, 'ingest'), true);
    assert.throws(() => store.create('x', ['write']), /unknown scope "write": use ingest, read, admin/);
    assert.throws(() => store.create('x', []), /at least one scope/);
    assert.throws(() => store.create(' ', ['read']), /needs a name/);
  });

  it('revokes keys, and a reload sees changes made by another process', () => {
    const path = join(tempDir(), 'keys.json');
    const service = KeyStore.open(path);
    const cli = KeyStore.open(path);
    const { key, info } = cli.create('temp', ['read']);
    assert.equal(service.verify(key), undefined, 'not yet loaded');
    service.reload();
    assert.deepEqual(service.verify(key), info);
    cli.revoke(info.id);
    service.reload();
    assert.equal(service.verify(key), undefined);
    assert.throws(() => cli.revoke('000000000000'), /no key with id/);
  });

  it('refuses a key file that was tampered with', () => {
    const path = join(tempDir(), 'keys.json');
    writeFileSync(path, JSON.stringify({ format: 1, keys: [{ id: 'x', name: 'n', scopes: ['root'], sha256: 'zz', created_at: '', revoked_at: null }] }));
    assert.throws(() => KeyStore.open(path), /is not a valid key file/);
  });
});
