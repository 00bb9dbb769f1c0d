import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';

/**
 * The Jupyter messaging protocol's wire format (messaging spec 5.3, "The Wire Protocol"): a message
 * is the multipart frames `[...routing ids, '<IDS|MSG>', signature, header, parent_header, metadata,
 * content, ...buffers]`, where the signature is the hex HMAC-SHA256, under the connection file's key,
 * of the four JSON frames in that order. A kernel drops a message whose signature is wrong, and so do
 * we: anything else on the kernel's ports could otherwise write into a notebook's outputs.
 */
export const DELIMITER = '<IDS|MSG>';
export const PROTOCOL_VERSION = '5.3';

export interface MessageHeader {
  msg_id: string;
  msg_type: string;
  session: string;
  username: string;
  date: string;
  version: string;
}

export interface JupyterMessage {
  header: MessageHeader;
  /** `{}` for a message that answers nothing; otherwise the header of the request it belongs to. */
  parent_header: Partial<MessageHeader>;
  metadata: Record<string, unknown>;
  content: Record<string, unknown>;
}

/** Why a set of frames is not a message we accept. */
export class WireError extends Error {}

/** The signature of the four JSON frames, as the spec computes it (empty when the key is empty: signing off). */
export function sign(key: string, frames: readonly (Buffer | string)[]): string {
  if (key === '') return '';
  const hmac = createHmac('sha256', key);
  for (const frame of frames) hmac.update(frame);
  return hmac.digest('hex');
}

/** A new message of this session, with a fresh id, answering `parent` if given. */
export function newMessage(session: string, msgType: string, content: Record<string, unknown>, parent?: MessageHeader): JupyterMessage {
  return {
    header: { msg_id: randomUUID(), msg_type: msgType, session, username: 'wb', date: new Date().toISOString(), version: PROTOCOL_VERSION },
    parent_header: parent ?? {},
    metadata: {},
    content,
  };
}

/** The frames to send on a DEALER socket (no routing ids: ZeroMQ adds the socket's own). */
export function encode(key: string, msg: JupyterMessage): Buffer[] {
  const parts = [msg.header, msg.parent_header, msg.metadata, msg.content].map((part) => Buffer.from(JSON.stringify(part)));
  return [Buffer.from(DELIMITER), Buffer.from(sign(key, parts)), ...parts];
}

/** The message in received frames (routing ids and topics before the delimiter are skipped); throws WireError. */
export function decode(key: string, frames: readonly Buffer[]): JupyterMessage {
  const at = frames.findIndex((f) => f.length === DELIMITER.length && f.toString('latin1') === DELIMITER);
  if (at === -1) throw new WireError('no <IDS|MSG> delimiter');
  if (frames.length < at + 6) throw new WireError(`${frames.length - at - 1} frames after the delimiter, 5 expected`);
  const signature = frames[at + 1]!;
  const parts = frames.slice(at + 2, at + 6);
  const expected = Buffer.from(sign(key, parts));
  if (key !== '' && (signature.length !== expected.length || !timingSafeEqual(signature, expected))) throw new WireError('bad signature');
  const [header, parent, metadata, content] = parts.map((p, i) => {
    let value: unknown;
    try {
      value = JSON.parse(p.toString('utf8'));
    } catch {
      throw new WireError(`frame ${i + 2} after the delimiter is not JSON`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new WireError(`frame ${i + 2} after the delimiter is not an object`);
    return value as Record<string, unknown>;
  }) as [Record<string, unknown>, Record<string, unknown>, Record<string, unknown>, Record<string, unknown>];
  if (typeof header.msg_type !== 'string' || typeof header.msg_id !== 'string') throw new WireError('a header without msg_type or msg_id');
  return { header: header as unknown as MessageHeader, parent_header: parent as Partial<MessageHeader>, metadata, content };
}
