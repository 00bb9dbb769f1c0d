import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decode, DELIMITER, encode, newMessage, sign, WireError } from '../../../src/workbench/notebooks/wire.js';

describe('the Jupyter wire format', () => {
  // Reference computed with Python's hmac module (what jupyter_client's Session.sign does):
  // hmac.new(b'secret-key', digestmod=hashlib.sha256), updated with the four frames in order.
  const frames = ['{"msg_id":"1","msg_type":"status"}', '{}', '{}', '{"execution_state":"idle"}'];
  const reference = 'b64afc2c9e31ce5ec0ed3774c93ffa66e80a709e6d69b883aef55a341775b1b5';

  it('signs the four JSON frames with HMAC-SHA256, as jupyter_client does', () => {
    assert.equal(sign('secret-key', frames), reference);
    assert.equal(sign('', frames), '', 'an empty key turns signing off, as the spec says');
  });

  it('decodes a signed message after its routing ids, and refuses a wrong signature or a missing frame', () => {
    const raw = [Buffer.from('router-id'), Buffer.from(DELIMITER), Buffer.from(reference), ...frames.map((f) => Buffer.from(f))];
    const msg = decode('secret-key', raw);
    assert.equal(msg.header.msg_type, 'status');
    assert.deepEqual(msg.content, { execution_state: 'idle' });
    assert.throws(() => decode('another-key', raw), WireError);
    const tampered = [...raw];
    tampered[6] = Buffer.from('{"execution_state":"busy"}');
    assert.throws(() => decode('secret-key', tampered), /bad signature/);
    assert.throws(() => decode('secret-key', raw.slice(0, 6)), /4 frames after the delimiter, 5 expected/);
    assert.throws(() => decode('secret-key', raw.slice(2)), /no <IDS\|MSG> delimiter/);
  });

  it('encodes what it decodes, answering a parent', () => {
    const request = newMessage('session-1', 'execute_request', { code: '1 + 1' });
    const reply = newMessage('session-1', 'execute_reply', { status: 'ok' }, request.header);
    const back = decode('k', encode('k', reply));
    assert.deepEqual(back, JSON.parse(JSON.stringify(reply)));
    assert.equal(back.parent_header.msg_id, request.header.msg_id);
    assert.equal(back.header.version, '5.3');
  });
});
