import type { Request } from 'express';
import type { EventLimits } from '../../workbench/event.js';
import { badRequest, HttpError } from '../errors.js';
import { TimeSlices } from '../../workbench/time-slices.js';
import { Unparsable } from '../pipeline/ingest.js';

/**
 * The body of `POST /v1/events`, read as bytes and parsed here, item by item in time slices: a
 * whole-body JSON.parse of a few MB of tiny or deeply nested values holds the event loop for up to
 * seconds, and one item too deep or too large must be refused alone, not fail the batch.
 */
export const JSON_TYPES = ['application/json'];
export const NDJSON_TYPES = ['application/x-ndjson', 'application/jsonl'];
/** Bytes decoded per slice: a few hundred microseconds of work. */
const DECODE_CHUNK = 256 * 1024;
/** Characters scanned between looks at the clock. */
const SCAN_STEP = 16 * 1024;
/**
 * An item whose raw text is over this many times the event size limit is refused unparsed (whitespace
 * and escapes may shrink the rest to fit): parsing it could hold the event loop, and it cannot fit.
 */
const RAW_SLACK = 2;

/** The items of a request body: parsed values, or Unparsable for what could not be parsed. */
export async function batchOf(req: Request, maxEvents: number, limits: EventLimits): Promise<unknown[]> {
  const type = req.get('content-type') ?? '';
  const media = type.split(';')[0]!.trim().toLowerCase();
  const ndjson = NDJSON_TYPES.includes(media);
  if (!ndjson && !JSON_TYPES.includes(media))
    throw new HttpError(415, 'unsupported_media_type', 'send events as application/json (an array of events) or application/x-ndjson (one event per line)');
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(type)?.[1]?.toLowerCase();
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
    throw new HttpError(415, 'unsupported_encoding', `the body's charset ${JSON.stringify(charset)} is not supported: send UTF-8`);
  }
  if (!Buffer.isBuffer(req.body) || req.body.length === 0)
    throw badRequest('empty_body', `the body is empty: send ${ndjson ? 'one event per line' : 'an array of events'}`);
  const slices = new TimeSlices();
  const text = await decodeUtf8(req.body, slices);
  return ndjson ? ndjsonItems(text, maxEvents, limits, slices) : jsonItems(text, maxEvents, limits, slices);
}

/**
 * UTF-8 bytes as text, a chunk per slice; invalid bytes become U+FFFD, as body-parser did. The parts
 * are joined into one flat string: the scanner reads it character by character, which is slow on a
 * string built by `+=`.
 */
async function decodeUtf8(body: Buffer, slices: TimeSlices): Promise<string> {
  const decoder = new TextDecoder('utf-8');
  const parts: string[] = [];
  for (let at = 0; at < body.length; at += DECODE_CHUNK) {
    const pause = slices.pause();
    if (pause) await pause;
    parts.push(decoder.decode(body.subarray(at, at + DECODE_CHUNK), { stream: at + DECODE_CHUNK < body.length }));
  }
  return parts.length === 1 ? parts[0]! : parts.join('');
}

/** NDJSON: one item per non-blank line; a line that is not JSON, or is too long, is rejected on its own. */
async function ndjsonItems(text: string, maxEvents: number, limits: EventLimits, slices: TimeSlices): Promise<unknown[]> {
  const lines: [start: number, end: number, line: number][] = [];
  let lineNo = 0;
  for (let start = 0; start < text.length;) {
    const pause = slices.pause();
    if (pause) await pause;
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    lineNo++;
    const first = skipBlank(text, start);
    if (first < end) {
      // Counted first and refused whole: no line of an oversized batch is parsed.
      if (lines.length === maxEvents) throw tooLarge(lines.length + 1 + (await countNonBlankLines(text, end + 1, slices)), maxEvents);
      lines.push([first, end, lineNo]);
    }
    start = end + 1;
  }
  // A line that is not JSON is rejected on its own: the other lines stand.
  return parseSpans(
    text,
    lines,
    limits,
    slices,
    (i) => `line ${lines[i]![2]}`,
    (i, err) => new Unparsable(`line ${lines[i]![2]} is not valid JSON: ${err.message}`),
  );
}

/**
 * Each span of the text parsed on its own, in time slices; one over the limits is refused unparsed.
 * `unparsable` says what a span that is not JSON becomes (or throws, failing the whole body).
 */
async function parseSpans(
  text: string,
  spans: readonly (readonly [start: number, end: number, ...rest: number[]])[],
  limits: EventLimits,
  slices: TimeSlices,
  name: (i: number) => string,
  unparsable: (i: number, err: Error) => Unparsable,
): Promise<unknown[]> {
  const items: unknown[] = [];
  // The clock is read once per SCAN_STEP characters rather than per item (it cost as much as the
  // depth check of a small event); a span is at most RAW_SLACK times the event limit when parsed.
  let sinceClock = SCAN_STEP;
  for (let i = 0; i < spans.length; i++) {
    const [start, end] = spans[i]!;
    if ((sinceClock += end - start + 1) >= SCAN_STEP) {
      sinceClock = 0;
      const pause = slices.pause();
      if (pause) await pause;
    }
    // A slice shares the text's characters: searches in it stop at the item's end.
    const item = text.slice(start, end);
    const refused = refusedUnparsed(text, start, end, item, limits, name, i);
    if (refused) {
      items.push(refused);
      continue;
    }
    try {
      items.push(JSON.parse(item) as unknown);
    } catch (err) {
      items.push(unparsable(i, err as Error));
    }
  }
  return items;
}

async function countNonBlankLines(text: string, from: number, slices: TimeSlices): Promise<number> {
  let n = 0;
  for (let start = from; start < text.length;) {
    const pause = slices.pause();
    if (pause) await pause;
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    if (!isBlank(text, start, end)) n++;
    start = end + 1;
  }
  return n;
}

/**
 * A JSON body: an array of items, or one object. The text is scanned for the array's items (strings,
 * escapes and bracket depth, never recursion), the items are counted against the batch limit before
 * any is parsed, and each is then parsed on its own; all in time slices. As with a whole-body parse,
 * a body that is not valid JSON is refused whole (400 malformed_json); an item too large to be an
 * event is refused on its own, unparsed.
 */
async function jsonItems(text: string, maxEvents: number, limits: EventLimits, slices: TimeSlices): Promise<unknown[]> {
  let at = skipBlank(text, 0);
  if (at === text.length) throw badRequest('empty_body', 'the body is empty: send an array of events');
  const open = text.charCodeAt(at);
  if (open !== 0x5b /* [ */ && open !== 0x7b /* { */)
    throw malformed(`expected an array of events or one event at position ${at}, found ${describe(text, at)}`);
  const single = open === 0x7b;
  const close = single ? 0x7d /* } */ : 0x5d; /* ] */
  const spans: [start: number, end: number][] = [];
  let depth = 0;
  // Where the current item of the array starts, or -1 between items.
  let itemStart = single ? at : -1;
  let closedAt = -1;
  while (closedAt < 0) {
    if (at >= text.length) throw malformed('the body ends before its last array or object is closed');
    const pause = slices.pause();
    if (pause) await pause;
    for (const stop = Math.min(text.length, at + SCAN_STEP); at < stop; at++) {
      const c = text.charCodeAt(at);
      if (c === 0x22 /* " */) {
        if (depth === 1 && !single && itemStart < 0) itemStart = at;
        at = stringEnd(text, at);
        if (at < 0) throw malformed('the body ends inside a string');
      } else if (c === 0x5b || c === 0x7b) {
        if (depth === 1 && !single && itemStart < 0) itemStart = at;
        depth++;
      } else if (c === 0x5d || c === 0x7d) {
        depth--;
        if (depth > 0) continue;
        if (c !== close) throw malformed(`${text[at]} at position ${at} closes ${single ? 'an object' : 'an array'}`);
        if (single) spans.push([itemStart, at + 1]);
        else if (itemStart >= 0) spans.push([itemStart, trimEnd(text, itemStart, at)]);
        else if (spans.length > 0) throw malformed(`a trailing comma before position ${at}`);
        closedAt = at;
        break;
      } else if (depth === 1 && !single) {
        if (c === 0x2c /* , */) {
          if (itemStart < 0) throw malformed(`an empty item before position ${at}`);
          if (spans.length === maxEvents) throw tooLarge(spans.length + 1 + (await countItems(text, at + 1, slices)), maxEvents);
          spans.push([itemStart, trimEnd(text, itemStart, at)]);
          itemStart = -1;
        } else if (itemStart < 0 && !isBlankCode(c)) itemStart = at;
      }
    }
  }
  const after = skipBlank(text, closedAt + 1);
  if (after !== text.length) throw malformed(`unexpected ${describe(text, after)} after the end of the JSON value`);
  if (spans.length > maxEvents) throw tooLarge(spans.length, maxEvents);
  // The array was scanned whole, so an item that does not parse means the body is not JSON.
  return parseSpans(
    text,
    spans,
    limits,
    slices,
    (i) => `item ${i}`,
    (i, err) => {
      throw malformed(`item ${i} (at position ${spans[i]![0]}): ${err.message}`);
    },
  );
}

/** The position of the quote that closes the string opening at `open`, or -1. */
function stringEnd(text: string, open: number): number {
  for (let q = open + 1; ; q++) {
    q = text.indexOf('"', q);
    if (q < 0) return -1;
    let backslashes = 0;
    while (text.charCodeAt(q - 1 - backslashes) === 0x5c) backslashes++;
    if (backslashes % 2 === 0) return q;
  }
}

/** Items of a JSON array from a position on, counted as the scanner counts them (for the batch-too-large message). */
async function countItems(text: string, from: number, slices: TimeSlices): Promise<number> {
  let n = 1;
  let depth = 1;
  for (let at = from; at < text.length && depth > 0;) {
    const pause = slices.pause();
    if (pause) await pause;
    for (const stop = Math.min(text.length, at + SCAN_STEP); at < stop && depth > 0; at++) {
      const c = text.charCodeAt(at);
      if (c === 0x22) {
        at = stringEnd(text, at);
        if (at < 0) return n;
      } else if (c === 0x5b || c === 0x7b) depth++;
      else if (c === 0x5d || c === 0x7d) depth--;
      else if (c === 0x2c && depth === 1) n++;
    }
  }
  return n;
}

/**
 * An item refused on its raw text, before parsing: too large to be an event, or nested deeper than
 * props may be (JSON.parse of deep nesting costs tens of ms per item). Names the event_id when the
 * item's top level shows one.
 */
function refusedUnparsed(
  text: string,
  start: number,
  end: number,
  item: string,
  limits: EventLimits,
  name: (i: number) => string,
  i: number,
): Unparsable | undefined {
  const maxChars = limits.maxEventBytes * RAW_SLACK;
  if (end - start > maxChars) {
    const { eventId } = topLevel(text, start, Math.min(end, start + maxChars), -1);
    return new Unparsable(
      `${name(i)}: ${end - start} characters of JSON, over ${RAW_SLACK} times the limit of ${limits.maxEventBytes} bytes per event; not parsed`,
      {
        ...(eventId === undefined ? {} : { event_id: eventId }),
        field: 'event',
        limit: { name: 'maxEventBytes', value: limits.maxEventBytes },
      },
    );
  }
  // The event is one level and props another: props' own levels start at the second.
  const maxDepth = limits.maxPropsDepth + 1;
  // Nesting deeper than `maxDepth` takes more opening brackets than that: most events have a few,
  // counted by indexOf far faster than the walk below reads them character by character.
  if (!bracketsOver(item, maxDepth)) return undefined;
  const tooDeep = depthOver(text, start, end, maxDepth);
  if (tooDeep < 0) return undefined;
  const { eventId, keyAt } = topLevel(text, start, end, tooDeep);
  const field = keyAt ?? 'event';
  return new Unparsable(`${field}: nested deeper than the limit of ${limits.maxPropsDepth} levels (props and what it holds); not parsed`, {
    ...(eventId === undefined ? {} : { event_id: eventId }),
    field,
    limit: { name: 'maxPropsDepth', value: limits.maxPropsDepth },
  });
}

/** Whether `item` holds more than `max` opening brackets, in strings or out. */
function bracketsOver(item: string, max: number): boolean {
  let n = 0;
  for (let at = item.indexOf('{'); at >= 0; at = item.indexOf('{', at + 1)) if (++n > max) return true;
  for (let at = item.indexOf('['); at >= 0; at = item.indexOf('[', at + 1)) if (++n > max) return true;
  return false;
}

/** Where the bracket depth of [start, end) first goes over `max`, or -1. */
function depthOver(text: string, start: number, end: number, max: number): number {
  let depth = 0;
  for (let at = start; at < end; at++) {
    const c = text.charCodeAt(at);
    if (c === 0x22) {
      at = stringEnd(text, at);
      if (at < 0 || at >= end) return -1;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return at;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return -1;
}

/**
 * From an object's raw text: its top-level `event_id` string, and the top-level key whose value holds
 * position `at` (when `at` >= 0). Keys and values longer than 300 characters are skipped.
 */
function topLevel(text: string, start: number, end: number, at: number): { eventId?: string; keyAt?: string } {
  const found: { eventId?: string; keyAt?: string } = {};
  if (text.charCodeAt(start) !== 0x7b) return found;
  let depth = 0;
  let lastKey: string | undefined;
  for (let i = start; i < end; i++) {
    if (i === at) found.keyAt = lastKey;
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const from = i;
      i = stringEnd(text, i);
      if (i < 0 || i >= end) break;
      if (depth !== 1 || i - from > 300) continue;
      let value: unknown;
      try {
        value = JSON.parse(text.slice(from, i + 1));
      } catch {
        break;
      }
      if (text.charCodeAt(skipBlank(text, i + 1)) === 0x3a /* : */) lastKey = String(value);
      else if (lastKey === 'event_id' && typeof value === 'string' && value.length <= 128 && found.eventId === undefined) found.eventId = value;
    } else if (c === 0x5b || c === 0x7b) depth++;
    else if (c === 0x5d || c === 0x7d) depth--;
  }
  return found;
}

const isBlankCode = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 || c === 0xfeff;

function isBlank(text: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (!isBlankCode(text.charCodeAt(i))) return false;
  return true;
}

function skipBlank(text: string, at: number): number {
  while (at < text.length && isBlankCode(text.charCodeAt(at))) at++;
  return at;
}

function trimEnd(text: string, start: number, end: number): number {
  while (end > start && isBlankCode(text.charCodeAt(end - 1))) end--;
  return end;
}

function describe(text: string, at: number): string {
  return at >= text.length ? 'the end of the body' : JSON.stringify(text.slice(at, at + 10));
}

const malformed = (why: string) => badRequest('malformed_json', `the body is not valid JSON: ${why}`);
const tooLarge = (count: number, maxEvents: number) => badRequest('batch_too_large', `the batch holds ${count} events; the limit is ${maxEvents} per request`);
