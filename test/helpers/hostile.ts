/**
 * Hostile requests for the fuzz suite (test/serving/fuzz.test.ts) and `npm run bench:fuzz`: fast-check
 * generators of events, bodies, headers, keys and admin operations, a sender over plain node:http
 * (so that headers fetch forbids can be sent), and the checks every answer must pass.
 *
 * Generated values stay small and printable: times, fresh ids, huge strings and deep nesting are
 * markers rendered when the request is sent, so a shrunk counterexample prints in a few lines and
 * replays against the clock of the moment.
 */
import fc from 'fast-check';
import http from 'node:http';
import { contentHash } from '../../src/workbench/features/definition.js';
import type { ModelBundle } from '../../src/workbench/models/bundle.js';
import type { EventLog } from '../../src/serving/pipeline/event-log.js';

// ---------------------------------------------------------------------------------------------
// A JSON model that can say what JSON.stringify cannot: own "__proto__" keys, repeated keys, -0,
// numbers out of range, text that is not JSON at all, and values that depend on the moment of sending.

const preview = (s: string, max = 80) => (s.length > max ? `${JSON.stringify(s.slice(0, max))}…(${s.length} chars)` : JSON.stringify(s));

/** JSON text put in as it is. */
export class Raw {
  constructor(readonly text: string) {}
  [fc.toStringMethod](): string {
    return `Raw(${preview(this.text)})`;
  }
}
/** An object as its list of entries: keys may be "__proto__" or repeat. */
export class Obj {
  constructor(readonly entries: readonly (readonly [string, Json])[]) {}
  [fc.toStringMethod](): string {
    return `{${this.entries.map(([k, v]) => `${preview(k)}: ${show(v)}`).join(', ')}}`;
  }
}
/** An ISO time `offsetMs` from the moment the request is sent. */
export class Stamp {
  constructor(readonly offsetMs: number) {}
  [fc.toStringMethod](): string {
    return `Stamp(now${this.offsetMs >= 0 ? '+' : ''}${this.offsetMs}ms)`;
  }
}
/** An id no earlier request used (the run's prefix and a counter). */
export class FreshId {
  constructor(readonly tag: string) {}
  [fc.toStringMethod](): string {
    return `Fresh(${this.tag})`;
  }
}
/** A string of `length` copies of `char`, built when sent. */
export class Big {
  constructor(
    readonly char: string,
    readonly length: number,
  ) {}
  [fc.toStringMethod](): string {
    return `Big(${JSON.stringify(this.char)} x ${this.length})`;
  }
}
/** Objects (or arrays) nested `depth` levels deep. */
export class Deep {
  constructor(
    readonly depth: number,
    readonly shape: 'object' | 'array',
  ) {}
  [fc.toStringMethod](): string {
    return `Deep(${this.shape} x ${this.depth})`;
  }
}
/** One of the model versions the run knows (published ones), by index; or junk when there are none. */
export class VersionRef {
  constructor(readonly index: number) {}
  [fc.toStringMethod](): string {
    return `Version#${this.index}`;
  }
}
/** A model bundle derived from the run's trained one, changed as `mutation` says. */
export class BundleRef {
  constructor(
    readonly mutation: BundleMutation,
    readonly name: string,
  ) {}
  [fc.toStringMethod](): string {
    return `Bundle(${this.mutation}, name ${JSON.stringify(this.name)})`;
  }
}

export type Json = null | boolean | number | string | Json[] | Obj | Raw | Stamp | FreshId | Big | Deep | VersionRef | BundleRef;

const show = (v: Json): string => (typeof v === 'string' ? preview(v) : Array.isArray(v) ? `[${v.map(show).join(', ')}]` : fc.stringify(v));

/** What rendering needs from the run: the clock, fresh ids, the trained bundle and known versions. */
export interface RenderContext {
  now(): number;
  fresh(tag: string): string;
  bundle?: ModelBundle;
  versions: string[];
}

export function render(v: Json, ctx: RenderContext): string {
  if (v === null || typeof v === 'boolean') return String(v);
  if (typeof v === 'number') return JSON.stringify(v) ?? 'null';
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map((x) => render(x, ctx)).join(',')}]`;
  if (v instanceof Raw) return v.text;
  if (v instanceof Obj) return `{${v.entries.map(([k, x]) => `${JSON.stringify(k)}:${render(x, ctx)}`).join(',')}}`;
  if (v instanceof Stamp) {
    const t = ctx.now() + v.offsetMs;
    return JSON.stringify(Math.abs(t) < 8.64e15 ? new Date(t).toISOString() : String(t));
  }
  if (v instanceof FreshId) return JSON.stringify(ctx.fresh(v.tag));
  if (v instanceof Big) return JSON.stringify(v.char.repeat(v.length));
  if (v instanceof Deep) return v.shape === 'object' ? '{"a":'.repeat(v.depth) + '1' + '}'.repeat(v.depth) : '['.repeat(v.depth) + ']'.repeat(v.depth);
  if (v instanceof VersionRef) return JSON.stringify(ctx.versions.length > 0 ? ctx.versions[v.index % ctx.versions.length] : '0123456789abcdef');
  return renderBundle(v, ctx);
}

// ---------------------------------------------------------------------------------------------
// Hostile scalars, keys and values.

export const PROTO_NAMES = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'isPrototypeOf'] as const;
// prettier-ignore
const ODD_STRINGS = [
  '\ud800', 'a\udfffb', '\udc00\ud800', '\u0000', 'nul\u0000inside', '\u202eevil', 'é', '😀', '\ufeffbom', '\r\n', '', ' ', '..', '../../etc/passwd',
  '%00', '<script>alert(1)</script>', "'; DROP TABLE users; --", 'NaN', 'Infinity', '-0', '1e308', 'null', 'undefined', 'true', '[object Object]', '*', 'other',
] as const;

/** Any UTF-16 code units, lone surrogates included. */
const codeUnits = fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 24 }).map((cs) => String.fromCharCode(...cs));

export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...PROTO_NAMES) },
  { weight: 3, arbitrary: fc.constantFrom(...ODD_STRINGS) },
  { weight: 2, arbitrary: codeUnits },
  { weight: 2, arbitrary: fc.string({ maxLength: 12 }) },
);

const hugeString = fc.constantFrom(new Big('x', 70_000), new Big('\u00e9', 300_000), new Big('\ud800', 1_000), new Big('y', 1_100_000));
const deepValue = fc.constantFrom(
  new Deep(64, 'object'),
  new Deep(1_000, 'object'),
  new Deep(10_000, 'object'),
  new Deep(10_000, 'array'),
  new Deep(100_000, 'array'),
);

const hostileNumber: fc.Arbitrary<Json> = fc.constantFrom<Json>(
  1e308,
  -1e308,
  5e-324,
  0,
  -1,
  2 ** 53 + 1,
  42.5,
  new Raw('-0'),
  new Raw('1e999'),
  new Raw('-1e999'),
  new Raw('123456789012345678901234567890'),
  new Raw('1e-400'),
);

const scalar: fc.Arbitrary<Json> = fc.oneof(
  { weight: 5, arbitrary: hostileString },
  { weight: 3, arbitrary: hostileNumber },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.double() },
);

export const hostileKey: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...PROTO_NAMES) },
  { weight: 4, arbitrary: fc.constantFrom('country', 'device', 'tier', 'amount', 'mrr', 'feature', 'plan', 'original_time') },
  { weight: 2, arbitrary: hostileString },
);

export const hostileValue: fc.Arbitrary<Json> = fc.letrec<{ value: Json }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 8, arbitrary: scalar },
    { weight: 2, arbitrary: fc.array(tie('value'), { maxLength: 3 }) },
    { weight: 2, arbitrary: fc.array(fc.tuple(hostileKey, tie('value')), { maxLength: 3 }).map((e) => new Obj(e)) },
    { weight: 1, arbitrary: hugeString },
    { weight: 1, arbitrary: deepValue },
  ),
})).value;

const hostileObj = (keys: fc.Arbitrary<string> = hostileKey, maxLength = 4) => fc.array(fc.tuple(keys, hostileValue), { maxLength }).map((e) => new Obj(e));

// ---------------------------------------------------------------------------------------------
// Events.

const NORMAL_EVENTS = ['login', 'purchase', 'feature_used', 'page_view', 'upgrade'] as const;
/** Names only the service writes, and names that are object keys somewhere. */
export const RESERVED_EVENT_NAMES = ['prediction', 'experiment_exposure'] as const;

const eventId: fc.Arbitrary<Json> = fc.oneof(
  { weight: 12, arbitrary: fc.constant(new FreshId('e')) },
  { weight: 2, arbitrary: fc.constantFrom('dup-1', 'dup-2') },
  { weight: 2, arbitrary: hostileString },
  { weight: 1, arbitrary: scalar },
);
const eventTime: fc.Arbitrary<Json> = fc.oneof(
  { weight: 12, arbitrary: fc.integer({ min: -120_000, max: 0 }).map((o) => new Stamp(o)) },
  {
    weight: 3,
    arbitrary: fc.constantFrom<Json>(
      new Stamp(4 * 60_000),
      new Stamp(6 * 60_000),
      new Stamp(-29 * 86_400_000),
      new Stamp(-31 * 86_400_000),
      new Stamp(1e13),
      new Stamp(-1e13),
      '2024-02-30T00:00:00Z',
      'yesterday',
      '',
      '9999-12-31T23:59:59Z',
      '0000-01-01T00:00:00Z',
      '+275760-09-13T00:00:00.000Z',
      '2026-01-01T00:00:00+99:99',
      1_700_000_000_000,
      null,
    ),
  },
  { weight: 1, arbitrary: scalar },
);
export const userId: fc.Arbitrary<Json> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('u1', 'u2', 'u3') },
  { weight: 3, arbitrary: fc.constantFrom(...PROTO_NAMES) },
  { weight: 2, arbitrary: fc.constant(new FreshId('user')) },
  { weight: 2, arbitrary: hostileString },
);
const eventName: fc.Arbitrary<Json> = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(...NORMAL_EVENTS) },
  { weight: 3, arbitrary: fc.constantFrom(...RESERVED_EVENT_NAMES, 'constructor', 'prototype', 'to_string', 'has_own_property', '__proto__', 'valueOf') },
  { weight: 1, arbitrary: hostileString },
);
const props: fc.Arbitrary<Json> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc
      .tuple(
        fc.option(hostileValue, { nil: undefined }),
        fc.option(hostileValue, { nil: undefined }),
        fc.array(fc.tuple(hostileKey, hostileValue), { maxLength: 3 }),
      )
      .map(
        ([country, device, rest]) =>
          new Obj([...(country === undefined ? [] : [['country', country] as const]), ...(device === undefined ? [] : [['device', device] as const]), ...rest]),
      ),
  },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.array(hostileValue, { maxLength: 3 }) },
  { weight: 1, arbitrary: scalar },
  { weight: 1, arbitrary: deepValue.map((d) => new Obj([['nested', d]])) },
);
const eventShape = fc.constantFrom(
  'as-is',
  'as-is',
  'as-is',
  'as-is',
  'as-is',
  'missing-field',
  'extra-field',
  'repeated-key',
  'proto-key',
  'server-fields',
  'array',
);

/**
 * Half the events are well-formed in their fields, with hostile strings only where the schema allows
 * any string (user ids, prop keys and values), so that they are accepted and reach every consumer;
 * the other half may break any field.
 */
const acceptable = fc.record({
  id: fc.constant<Json>(new FreshId('e')),
  time: fc.integer({ min: -120_000, max: 0 }).map((o): Json => new Stamp(o)),
  user: fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom<Json>('u1', 'u2', 'u3', ...PROTO_NAMES) },
    { weight: 1, arbitrary: fc.constant<Json>(new FreshId('user')) },
  ),
  name: fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom<Json>(...NORMAL_EVENTS) },
    { weight: 1, arbitrary: fc.constantFrom<Json>('constructor', 'prototype', 'to_string', 'value_of') },
  ),
  props: fc
    .array(
      fc.tuple(
        hostileKey,
        fc.oneof({ weight: 4, arbitrary: fc.constantFrom<Json>(...PROTO_NAMES, 'GB', 'ios', 3.5, 0) }, { weight: 1, arbitrary: hostileValue }),
      ),
      { maxLength: 4 },
    )
    .map((e): Json => new Obj(e)),
  shape: fc.constant('as-is'),
  drop: fc.constant(0),
  extra: fc.constant(['x', null] as [string, Json]),
});
export const hostileEvent: fc.Arbitrary<Json> = fc
  .oneof(
    acceptable,
    fc.record({
      id: eventId,
      time: eventTime,
      user: userId,
      name: eventName,
      props,
      shape: eventShape,
      drop: fc.nat(4),
      extra: fc.tuple(hostileKey, hostileValue),
    }),
  )
  .map(({ id, time, user, name, props: p, shape, drop, extra }) => {
    const entries: (readonly [string, Json])[] = [
      ['event_id', id],
      ['time', time],
      ['user_id', user],
      ['event', name],
      ['props', p],
    ];
    switch (shape) {
      case 'missing-field':
        entries.splice(drop, 1);
        break;
      case 'extra-field':
        entries.push(extra);
        break;
      case 'repeated-key':
        entries.push(entries[drop]![0] === 'event_id' ? ['event_id', new FreshId('e')] : [entries[drop]![0], extra[1]]);
        break;
      case 'proto-key':
        entries.push([
          '__proto__',
          new Obj([
            ['polluted', 'yes'],
            ['country', '__proto__'],
          ]),
        ]);
        break;
      case 'server-fields':
        entries.push(
          [
            'dims',
            new Obj([
              ['country', '__proto__'],
              ['tier', 'constructor'],
            ]),
          ],
          ['experiments', new Obj([['constructor', 'treatment']])],
          ['received_at', 'yesterday'],
        );
        break;
      case 'array':
        return entries.map(([, v]) => v);
    }
    return new Obj(entries);
  });

// ---------------------------------------------------------------------------------------------
// Bodies, headers and keys.

export type Body =
  | { kind: 'json'; value: Json }
  | { kind: 'ndjson'; lines: Json[]; crlf: boolean }
  | { kind: 'text'; text: string }
  | { kind: 'bytes'; bytes: number[] }
  /** Exactly `bytes` long (a JSON array of one event padded), to test limits. */
  | { kind: 'sized'; bytes: number }
  /** `count` small well-formed events. */
  | { kind: 'many'; count: number };

const brokenLine = fc.constantFrom<Json>(
  new Raw('{"event_id":"half'),
  new Raw('}{'),
  new Raw('\ufeff{}'),
  new Raw('[1,2'),
  new Raw('not json'),
  new Raw('{"a":1}{"b":2}'),
  new Raw('\u0000'),
  new Raw('   '),
);

/** The body limit the service uses for events (README: 5 MB), and its batch limit. */
export const EVENTS_BODY_LIMIT = 5 * 1024 * 1024;
export const EVENTS_BATCH_LIMIT = 10_000;

export const eventsBody: fc.Arbitrary<Body> = fc.oneof(
  { weight: 20, arbitrary: fc.array(hostileEvent, { minLength: 1, maxLength: 12 }).map((events): Body => ({ kind: 'json', value: events })) },
  { weight: 3, arbitrary: hostileEvent.map((e): Body => ({ kind: 'json', value: e })) },
  {
    weight: 5,
    arbitrary: fc
      .tuple(fc.array(fc.oneof({ weight: 4, arbitrary: hostileEvent }, { weight: 1, arbitrary: brokenLine }), { minLength: 1, maxLength: 10 }), fc.boolean())
      .map(([lines, crlf]): Body => ({ kind: 'ndjson', lines, crlf })),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom<Body>(
      { kind: 'text', text: '' },
      { kind: 'text', text: '[' },
      { kind: 'text', text: '{"event_id":' },
      { kind: 'text', text: 'null' },
      { kind: 'text', text: '42' },
      { kind: 'text', text: '"a string"' },
      { kind: 'text', text: '[]' },
      { kind: 'text', text: '{}' },
      { kind: 'text', text: '[[]]' },
      { kind: 'text', text: '[null]' },
    ),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom<Body>(
      { kind: 'bytes', bytes: [0x5b, 0xed, 0xa0, 0x80, 0x5d] },
      { kind: 'bytes', bytes: [0xff, 0xfe, 0x5b, 0x00, 0x5d, 0x00] },
      { kind: 'bytes', bytes: [0x5b, 0x22, 0xc0, 0xae, 0x22, 0x5d] },
    ),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom<Body>(
      { kind: 'sized', bytes: EVENTS_BODY_LIMIT },
      { kind: 'sized', bytes: EVENTS_BODY_LIMIT + 1 },
      { kind: 'sized', bytes: 2 * 1024 * 1024 },
      { kind: 'many', count: EVENTS_BATCH_LIMIT },
      { kind: 'many', count: EVENTS_BATCH_LIMIT + 1 },
      { kind: 'many', count: 500 },
    ),
  },
);

export type AuthKind =
  'scope' | 'admin' | 'none' | 'wrong' | 'revoked' | 'lower-scope' | 'lowercase-bearer' | 'basic' | 'x-api-key' | 'huge' | 'two-keys' | 'latin1';
const auth: fc.Arbitrary<AuthKind> = fc.oneof(
  { weight: 30, arbitrary: fc.constant<AuthKind>('scope') },
  { weight: 3, arbitrary: fc.constant<AuthKind>('admin') },
  {
    weight: 6,
    arbitrary: fc.constantFrom<AuthKind>('none', 'wrong', 'revoked', 'lower-scope', 'lowercase-bearer', 'basic', 'x-api-key', 'huge', 'two-keys', 'latin1'),
  },
);

/** Content types a body is sent with: mostly the right one. */
const contentType = (right: string) =>
  fc.oneof(
    { weight: 12, arbitrary: fc.constant<string | null>(right) },
    {
      weight: 2,
      arbitrary: fc.constantFrom<string | null>(
        null,
        'text/plain',
        'application/xml',
        'multipart/form-data; boundary=x',
        'application/x-www-form-urlencoded',
        'APPLICATION/JSON',
        'application/json; charset=utf-16',
        'application/json; charset=latin1',
        'application/json; charset=koi8-r',
        'application/x-ndjson',
        'application/jsonl',
        'application/json, text/plain',
        '*/*',
        'application/vnd.api+json',
      ),
    },
  );

const extraHeaders = fc.oneof(
  { weight: 12, arbitrary: fc.constant<[string, string][]>([]) },
  {
    weight: 2,
    arbitrary: fc.constantFrom<[string, string][]>(
      [['transfer-encoding', 'chunked']],
      [['content-encoding', 'gzip']],
      [['content-encoding', 'br']],
      [['content-encoding', 'x-unknown']],
      [['content-encoding', 'deflate, gzip']],
      [['x-huge', 'h'.repeat(20_000)]],
      [['x-forwarded-for', '1.2.3.4, ' + 'x'.repeat(4000)]],
      [['expect', '100-continue']],
      [['accept', 'text/html']],
      [['accept-encoding', 'gzip, br']],
      [['if-match', '*']],
      [['if-match', 'W/"1"']],
      [['if-match', '"99999999999999999999"']],
      [['if-match', '"-1"']],
      [['if-match', '"1e3"']],
      [['if-match', '"abc"']],
    ),
  },
);

// ---------------------------------------------------------------------------------------------
// Routes and their requests.

/** A route as GET /v1/openapi.json describes it. */
export interface ApiRoute {
  method: string;
  /** OpenAPI path, `/v1/experiments/{key}`. */
  template: string;
  scope?: 'ingest' | 'read' | 'admin';
  params: string[];
  query: string[];
}

export function routesOf(openapi: {
  paths: Record<string, Record<string, { 'x-required-scope'?: string; parameters?: { name: string; in: string }[] }>>;
}): ApiRoute[] {
  return Object.entries(openapi.paths).flatMap(([template, methods]) =>
    Object.entries(methods).map(([method, op]) => ({
      method: method.toUpperCase(),
      template,
      ...(op['x-required-scope'] ? { scope: op['x-required-scope'] as ApiRoute['scope'] } : {}),
      params: (op.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name),
      query: (op.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name),
    })),
  );
}

export const routeName = (r: { method: string; template: string }) => `${r.method} ${r.template}`;

export interface HostileRequest {
  route: ApiRoute;
  /** Path parameter values, as sent (already percent-encoded, possibly badly). */
  params: Record<string, string>;
  query: [string, string][];
  auth: AuthKind;
  body?: Body;
  contentType: string | null;
  headers: [string, string][];
}

export const EXPERIMENT_KEYS = ['fz-exp', 'fz-exp2', 'constructor', 'prototype', 'valueof', '__proto__', 'toString', 'hasOwnProperty'] as const;
export const MODEL_NAMES = ['fz-model', 'constructor', 'prototype', '__proto__', 'toString'] as const;
export const ALIASES = ['champion', 'challenger', 'constructor', 'prototype', '__proto__', 'toString', 'hasOwnProperty'] as const;

/** A path segment, percent-encoded the way a client would, or broken the way an attacker would. */
function encodeSegment(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const pair = c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && s.charCodeAt(i + 1) >= 0xdc00 && s.charCodeAt(i + 1) <= 0xdfff;
    if (pair) {
      out += encodeURIComponent(s.slice(i, i + 2));
      i++;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      // A lone surrogate has no UTF-8 form: send its CESU-8 bytes, which are invalid UTF-8.
      out += [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f)].map((b) => `%${b.toString(16).toUpperCase()}`).join('');
    } else out += encodeURIComponent(s[i]!);
  }
  return out;
}
const brokenSegment = fc.constantFrom('%', '%zz', '%00', '%2e%2e', '%2F', 'a%2Fb', '%C0%AE', '%ED%A0%80', '%FF', '..', '.', 'x'.repeat(3000));
const segment = (pool: readonly string[]) =>
  fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...pool, ...PROTO_NAMES).map(encodeSegment) },
    { weight: 3, arbitrary: hostileString.map(encodeSegment) },
    { weight: 1, arbitrary: brokenSegment },
  );

const PARAM_POOLS: Record<string, readonly string[]> = {
  key: EXPERIMENT_KEYS,
  name: MODEL_NAMES,
  alias: ALIASES,
  user_id: ['u1', 'u2', 'constructor', '__proto__', 'nobody-at-all'],
  run_id: ['0', 'constructor', '__proto__'],
  dag: ['no-such-dag'],
  id: ['0', '1', '-1', '1e308', '99999999999999999999'],
};
const queryValue = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '1m',
      '1h',
      'login',
      'country',
      'device',
      'all',
      '10',
      '0',
      '-1',
      '501',
      '1e308',
      'NaN',
      new Date(0).toISOString(),
      '2999-01-01T00:00:00Z',
      'yesterday',
    ),
  },
  { weight: 2, arbitrary: hostileString },
);

const expKey = fc.oneof({ weight: 5, arbitrary: fc.constantFrom<Json>(...EXPERIMENT_KEYS) }, { weight: 1, arbitrary: scalar });
const armKey = fc.constantFrom<Json>('control', 'treatment', 'constructor', 'prototype', '__proto__', 'toString', 'b');
const metricKey = fc.constantFrom<Json>('logins', 'feature_uses', 'constructor', '__proto__', 'prototype', 'tostring');
const experimentBody: fc.Arbitrary<Json> = fc
  .record({
    key: expKey,
    arms: fc.oneof(
      {
        weight: 4,
        arbitrary: fc.tuple(armKey, armKey).map(([a, b]) => [
          new Obj([
            ['key', 'control'],
            ['weight', 0.5],
          ]),
          new Obj([
            ['key', a === 'control' ? b : a],
            ['weight', 0.5],
          ]),
        ]),
      },
      {
        weight: 1,
        arbitrary: fc.array(
          fc.tuple(armKey, fc.oneof(fc.constantFrom<Json>(0.5, 1, 0, -0.1), hostileNumber)).map(
            ([k, w]) =>
              new Obj([
                ['key', k],
                ['weight', w],
              ]),
          ),
          { maxLength: 4 },
        ),
      },
      { weight: 1, arbitrary: hostileValue },
    ),
    objective: metricKey,
    exposure: fc.option(fc.constantFrom<Json>('login', 'purchase', 'prediction', 'experiment_exposure', 'constructor', '__proto__'), { nil: undefined }),
    status: fc.constantFrom<Json>('draft', 'running', 'running', 'shipped', '__proto__'),
    targeting: fc.option(
      fc
        .tuple(fc.constantFrom('country', 'device', 'tier', '__proto__', 'constructor'), fc.array(hostileString, { maxLength: 2 }))
        .map(([k, vs]) => new Obj([[k, vs]])),
      { nil: undefined },
    ),
    extra: fc.option(fc.tuple(hostileKey, hostileValue), { nil: undefined }),
    mde: fc.oneof({ weight: 4, arbitrary: fc.constant<Json>(0.05) }, { weight: 1, arbitrary: hostileNumber }),
  })
  .map(({ key, arms, objective, exposure, status, targeting, extra, mde }) => {
    const entries: (readonly [string, Json])[] = [
      ['key', key],
      ['hypothesis', 'fuzzing finds what people miss'],
      ['arms', arms],
      ['objective', objective],
      ['mde', mde],
      ['minRunDays', 0],
      ['status', status],
      [
        'guardrails',
        [
          new Obj([
            ['metric', 'feature_uses'],
            ['bad', 'decrease'],
            ['tolerance', 0.5],
          ]),
        ],
      ],
    ];
    if (exposure !== undefined) entries.push(['exposureEvent', exposure]);
    if (targeting) entries.push(['targeting', targeting]);
    if (extra) entries.push(extra);
    return new Obj(entries);
  });

const statusBody: fc.Arbitrary<Json> = fc
  .record({
    status: fc.constantFrom<Json>('draft', 'running', 'stopped', 'shipped', 'rolled_back', '__proto__', 'constructor'),
    winner: fc.option(armKey, { nil: undefined }),
    reason: fc.option(hostileString, { nil: undefined }),
  })
  .map(
    ({ status, winner, reason }) =>
      new Obj([
        ['status', status],
        ...(winner === undefined ? [] : [['winner', winner] as const]),
        ...(reason === undefined ? [] : [['reason', reason] as const]),
      ]),
  );
const ifMatch = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 6 }).map((n) => `"${n}"`) },
  { weight: 1, arbitrary: fc.constantFrom('*', 'W/"2"', '"0"', '"1.5"', '"99999999999999999999"', 'junk', '') },
);

const modelName = fc.oneof({ weight: 4, arbitrary: fc.constantFrom<Json>(...MODEL_NAMES) }, { weight: 1, arbitrary: scalar });
const aliasName = fc.oneof({ weight: 4, arbitrary: fc.constantFrom<Json>(...ALIASES) }, { weight: 1, arbitrary: scalar });
const predictBody: fc.Arbitrary<Json> = fc
  .record({
    model: modelName,
    user: userId,
    alias: fc.option(aliasName, { nil: undefined }),
    version: fc.option(
      fc.nat(3).map((i) => new VersionRef(i)),
      { nil: undefined },
    ),
    values: fc.option(hostileObj(fc.constantFrom('logins_7d', 'fz_count', '__proto__', 'constructor', 'toString')), { nil: undefined }),
  })
  .map(
    ({ model, user, alias, version, values }) =>
      new Obj([
        ['model', model],
        ['user_id', user],
        ...(alias === undefined ? [] : [['alias', alias] as const]),
        ...(version === undefined ? [] : [['version', version] as const]),
        ...(values === undefined ? [] : [['values', values] as const]),
      ]),
  );
const assignBody: fc.Arbitrary<Json> = fc
  .record({
    user: userId,
    experiment: fc.option(expKey, { nil: undefined }),
    dims: fc.option(hostileObj(fc.constantFrom('country', 'device', 'tier', '__proto__', 'constructor'), 3), { nil: undefined }),
  })
  .map(
    ({ user, experiment, dims }) =>
      new Obj([
        ['user_id', user],
        ...(experiment === undefined ? [] : [['experiment', experiment] as const]),
        ...(dims === undefined ? [] : [['dims', dims] as const]),
      ]),
  );

const featureDefinition: fc.Arbitrary<Json> = fc
  .record({
    name: fc.constantFrom<Json>('fz_logins_1h', 'constructor', 'prototype', 'to_string', '__proto__', 'hasOwnProperty', 'value_of'),
    event: fc.constantFrom<Json>('login', '*', 'constructor', 'prediction', '__proto__'),
    aggregation: fc.constantFrom<Json>('count', 'count', 'sum', 'median', '__proto__', 'constructor'),
    window: fc.constantFrom<Json>('1h', '7d', 'bogus', 'constructor', '__proto__'),
    prop: fc.option(fc.constantFrom<Json>('amount', '__proto__', 'constructor', 'toString'), { nil: undefined }),
    where: fc.option(hostileObj(fc.constantFrom('country', '__proto__', 'constructor'), 2), { nil: undefined }),
    default: fc.oneof({ weight: 3, arbitrary: fc.constant<Json>(0) }, { weight: 1, arbitrary: hostileValue }),
  })
  .map(
    ({ name, event, aggregation, window, prop, where, default: d }) =>
      new Obj([
        ['name', name],
        ['source', new Obj([['event', event], ...(where ? [['where', where] as const] : [])])],
        ['aggregation', aggregation],
        ['window', window],
        ['default', d],
        ...(prop === undefined ? [] : [['prop', prop] as const]),
      ]),
  );

export type BundleMutation =
  | 'as-is'
  | 'tampered'
  | 'rehashed-nan-weights'
  | 'rehashed-truncated-weights'
  | 'rehashed-junk-topology'
  | 'rehashed-proto-metrics'
  | 'rehashed-renamed-feature'
  | 'rehashed-no-weights'
  | 'rehashed-proto-lineage';
const bundleBody: fc.Arbitrary<Json> = fc
  .record({
    mutation: fc.constantFrom<BundleMutation>(
      'as-is',
      'tampered',
      'rehashed-nan-weights',
      'rehashed-truncated-weights',
      'rehashed-junk-topology',
      'rehashed-proto-metrics',
      'rehashed-renamed-feature',
      'rehashed-no-weights',
      'rehashed-proto-lineage',
    ),
    name: fc.constantFrom(...MODEL_NAMES),
    alias: fc.oneof({ weight: 3, arbitrary: fc.constantFrom<Json>('challenger', 'champion', 'constructor', 'prototype') }, { weight: 1, arbitrary: aliasName }),
  })
  .map(
    ({ mutation, name, alias }) =>
      new Obj([
        ['bundle', new BundleRef(mutation, name)],
        ['alias', alias],
      ]),
  );

/** The trained bundle, changed by `mutation` and (except `tampered`) hashed again so it passes the hash check. */
function renderBundle(ref: BundleRef, ctx: RenderContext): string {
  if (!ctx.bundle) return '{"format":"plg-workbench/model-bundle@1"}';
  const { version: _version, ...base } = JSON.parse(JSON.stringify(ctx.bundle)) as ModelBundle;
  const body = { ...base, name: ref.name } as Record<string, unknown> & Omit<ModelBundle, 'version'>;
  const rehash = (b: object) => JSON.stringify({ ...b, version: contentHash(b) });
  const floats = Buffer.from(base.model.weights, 'base64').length / 4;
  switch (ref.mutation) {
    case 'as-is':
      return rehash(body);
    case 'tampered':
      return JSON.stringify({ ...body, label: 'something else', version: contentHash(base) });
    case 'rehashed-nan-weights':
      return rehash({ ...body, model: { ...body.model, weights: Buffer.from(new Float32Array(floats).fill(Number.NaN).buffer).toString('base64') } });
    case 'rehashed-truncated-weights':
      return rehash({ ...body, model: { ...body.model, weights: base.model.weights.slice(0, 4) } });
    case 'rehashed-no-weights':
      return rehash({ ...body, model: { ...body.model, weights: '', weightSpecs: [] } });
    case 'rehashed-junk-topology':
      return rehash({ ...body, model: { ...body.model, topology: { class_name: 'constructor', config: { layers: '__proto__' } } } });
    case 'rehashed-proto-metrics':
      // Parsed from text so that "__proto__" is an own key, as the server sees it.
      return rehash({ ...body, metrics: JSON.parse('{"__proto__":{"polluted":1},"constructor":0.5,"auc":1e308}') as Record<string, unknown> });
    case 'rehashed-renamed-feature':
      return rehash({ ...body, features: body.features.map((f, i) => (i === 0 ? { ...f, name: 'constructor' } : f)) });
    case 'rehashed-proto-lineage':
      return rehash({ ...body, lineage: JSON.parse(`{"createdAt":"\\ud800","__proto__":{"x":1},"parent":"constructor"}`) as ModelBundle['lineage'] });
  }
}

const moveBody: fc.Arbitrary<Json> = fc
  .record({
    version: fc.oneof(
      { weight: 3, arbitrary: fc.nat(3).map((i): Json => new VersionRef(i)) },
      { weight: 1, arbitrary: fc.constantFrom<Json>('0123456789abcdef', 'constructor', '__proto__', '') },
    ),
    reason: fc.option(hostileString, { nil: undefined }),
  })
  .map(({ version, reason }) => new Obj([['version', version], ...(reason === undefined ? [] : [['reason', reason] as const])]));
const triggerBody: fc.Arbitrary<Json> = fc.oneof(
  fc.constant(new Obj([])),
  hostileObj().map((p) => new Obj([['params', p]])),
  hostileValue,
);

/** The body a route gets: its own generator for the routes that take one, hostile JSON for the others. */
function bodyFor(route: ApiRoute): fc.Arbitrary<Body | undefined> {
  const json = (value: fc.Arbitrary<Json>) =>
    fc.oneof(
      { weight: 8, arbitrary: value.map((v): Body => ({ kind: 'json', value: v })) },
      { weight: 1, arbitrary: hostileValue.map((v): Body => ({ kind: 'json', value: v })) },
      {
        weight: 1,
        arbitrary: fc.constantFrom<Body>({ kind: 'text', text: '' }, { kind: 'text', text: '{"a":' }, { kind: 'bytes', bytes: [0x7b, 0xed, 0xa0, 0x80, 0x7d] }),
      },
    );
  switch (routeName(route)) {
    case 'POST /v1/events':
      return eventsBody;
    case 'POST /v1/experiments':
    case 'PUT /v1/experiments/{key}':
      return json(experimentBody);
    case 'POST /v1/experiments/{key}/status':
      return json(statusBody);
    case 'POST /v1/assignments':
      return json(assignBody);
    case 'POST /v1/predict':
      return json(predictBody);
    case 'POST /v1/models':
      return json(bundleBody);
    case 'PUT /v1/models/{name}/aliases/{alias}':
      return json(moveBody);
    case 'POST /v1/features':
      return json(fc.array(featureDefinition, { minLength: 1, maxLength: 3 }).map((defs) => new Obj([['features', defs]])));
    case 'POST /v1/jobs/{dag}/runs':
      return json(triggerBody);
    default:
      return route.method === 'GET'
        ? fc.oneof({ weight: 9, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: hostileValue.map((v): Body => ({ kind: 'json', value: v })) })
        : json(hostileValue);
  }
}

/** Hostile requests to one route. */
export function requestTo(route: ApiRoute): fc.Arbitrary<HostileRequest> {
  const params = fc.record(Object.fromEntries(route.params.map((p) => [p, segment(PARAM_POOLS[p] ?? [])])) as Record<string, fc.Arbitrary<string>>);
  const query = fc.array(
    fc.tuple(
      fc.oneof(
        { weight: 4, arbitrary: route.query.length > 0 ? fc.constantFrom(...route.query) : fc.constant('q') },
        { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor[prototype][polluted]', '__proto__[polluted]', 'a[]') },
      ),
      queryValue,
    ),
    { maxLength: 3 },
  );
  const isNdjson = (b: Body | undefined) => b?.kind === 'ndjson';
  const needsIfMatch = /^(PUT \/v1\/experiments\/\{key\}|POST \/v1\/experiments\/\{key\}\/status)$/.test(routeName(route));
  return fc
    .record({
      params,
      query,
      auth,
      body: bodyFor(route),
      ct: fc.nat(),
      headers: extraHeaders,
      ifMatch: needsIfMatch ? fc.option(ifMatch, { nil: undefined, freq: 8 }) : fc.constant(undefined),
    })
    .chain(({ params: p, query: q, auth: a, body, headers, ifMatch: m }) =>
      contentType(isNdjson(body) ? 'application/x-ndjson' : 'application/json').map((ct): HostileRequest => ({
        route,
        params: p,
        query: q,
        auth: a,
        ...(body ? { body } : {}),
        contentType: body ? ct : null,
        headers: m === undefined ? headers : [['if-match', m], ...headers],
      })),
    )
    .map((r) => Object.assign(r, { [fc.toStringMethod]: () => describe(r) }));
}

/** Requests to every route, the ingest route (where the pipeline's bugs live) weighted up. */
export function hostileRequest(routes: readonly ApiRoute[], weights: Partial<Record<string, number>> = {}): fc.Arbitrary<HostileRequest> {
  return fc.oneof(
    ...routes.map((r) => ({
      weight: weights[routeName(r)] ?? (routeName(r) === 'POST /v1/events' ? 30 : routeName(r) === 'GET /assets/plotly.min.js' ? 1 : 3),
      arbitrary: requestTo(r),
    })),
  );
}

/** The same mix of routes, every request well-formed: the baseline a hostile run is compared with. */
export function wellFormedRequest(routes: readonly ApiRoute[]): fc.Arbitrary<HostileRequest> {
  const goodEvent = fc
    .record({
      user: fc.constantFrom('u1', 'u2', 'u3', 'u4'),
      name: fc.constantFrom(...NORMAL_EVENTS),
      country: fc.constantFrom('GB', 'US', 'DE'),
      device: fc.constantFrom('ios', 'web'),
    })
    .map(
      ({ user, name, country, device }) =>
        new Obj([
          ['event_id', new FreshId('e')],
          ['time', new Stamp(-1000)],
          ['user_id', user],
          ['event', name],
          [
            'props',
            new Obj([
              ['country', country],
              ['device', device],
              ['amount', 3.5],
            ]),
          ],
        ]),
    );
  const reads = routes.filter((r) => r.method === 'GET' && r.params.length === 0 && r.template !== '/v1/stream' && r.template !== '/assets/plotly.min.js');
  const ingest = routes.find((r) => routeName(r) === 'POST /v1/events')!;
  return fc.oneof(
    {
      weight: 30,
      arbitrary: fc.array(goodEvent, { minLength: 1, maxLength: 12 }).map((events): HostileRequest => ({
        route: ingest,
        params: {},
        query: [],
        auth: 'scope',
        body: { kind: 'json', value: events },
        contentType: 'application/json',
        headers: [],
      })),
    },
    {
      weight: 10,
      arbitrary: fc.constantFrom(...reads).map((route): HostileRequest => ({ route, params: {}, query: [], auth: 'scope', contentType: null, headers: [] })),
    },
  );
}

/** One line that says what a request is (shrunk counterexamples print with it). */
export function describe(r: HostileRequest): string {
  const path = r.route.template.replace(/\{(\w+)\}/g, (_, p: string) => r.params[p] ?? '');
  const q = r.query.length > 0 ? `?${r.query.map(([k, v]) => `${k}=${preview(v, 40)}`).join('&')}` : '';
  const body = !r.body
    ? ''
    : r.body.kind === 'json'
      ? ` body ${show(r.body.value)}`
      : r.body.kind === 'ndjson'
        ? ` ndjson [${r.body.lines.map(show).join(' \\n ')}]`
        : ` body ${JSON.stringify({ ...r.body, ...('text' in r.body ? { text: preview(r.body.text) } : {}) })}`;
  const headers = r.headers.map(([k, v]) => `${k}: ${preview(v, 30)}`).join(', ');
  const text = `${r.route.method} ${path}${q} [auth ${r.auth}${r.contentType ? `, content-type ${r.contentType}` : ''}${headers ? `, ${headers}` : ''}]${body}`;
  return text.length > 1500 ? `${text.slice(0, 1500)}…` : text;
}

// ---------------------------------------------------------------------------------------------
// Sending.

export interface Keys {
  admin: string;
  ingest: string;
  read: string;
  /** A key that was valid and has been revoked. */
  revoked: string;
}

export interface Outcome {
  route: string;
  /** HTTP status, or 0 when no answer came (reset, refused, timed out). */
  status: number;
  /** The answer's text (its first 4 KB), or the network error. */
  text: string;
  contentType?: string;
  /** Events the answer says were accepted (POST /v1/events). */
  accepted: number;
  /** Event ids sent in the request (to account for the log). */
  eventIds: string[];
  ms: number;
  /** The request could not be sent as it was (a body too large, a header too long): a reset is expected. */
  resetExpected: boolean;
  error?: string;
}

function authHeaders(kind: AuthKind, route: ApiRoute, keys: Keys): [string, string][] {
  if (!route.scope && kind === 'scope') return [];
  const right = route.scope === 'admin' ? keys.admin : route.scope === 'read' ? keys.read : route.scope === 'ingest' ? keys.ingest : keys.read;
  const lower = route.scope === 'admin' ? keys.read : route.scope === 'read' ? keys.ingest : keys.read;
  switch (kind) {
    case 'scope':
      return [['authorization', `Bearer ${right}`]];
    case 'admin':
      return [['authorization', `Bearer ${keys.admin}`]];
    case 'none':
      return [];
    case 'wrong':
      return [['authorization', `Bearer ${right.slice(0, -4)}abcd`]];
    case 'revoked':
      return [['authorization', `Bearer ${keys.revoked}`]];
    case 'lower-scope':
      return [['authorization', `Bearer ${lower}`]];
    case 'lowercase-bearer':
      return [['authorization', `bearer ${right}`]];
    case 'basic':
      return [['authorization', `Basic ${Buffer.from(`x:${right}`).toString('base64')}`]];
    case 'x-api-key':
      return [['x-api-key', right]];
    case 'huge':
      return [['authorization', `Bearer ${'k'.repeat(12_000)}`]];
    case 'two-keys':
      return [
        ['authorization', `Bearer ${keys.read} ${right}`],
        ['x-api-key', keys.revoked],
      ];
    case 'latin1':
      return [['authorization', `Bearer wb_\u00ff\u00fe_${right}`]];
  }
}

/** The value with its fresh ids drawn (once), so that the ids sent can be read back from it. */
function drawFresh(v: Json, ctx: RenderContext): Json {
  if (v instanceof FreshId) return ctx.fresh(v.tag);
  if (Array.isArray(v)) return v.map((x) => drawFresh(x, ctx));
  if (v instanceof Obj) return new Obj(v.entries.map(([k, x]) => [k, drawFresh(x, ctx)] as const));
  return v;
}

/** The event_id a server would read from an item of a batch (JSON keeps the last of repeated keys). */
function eventIdOf(item: Json): string | undefined {
  if (!(item instanceof Obj)) return undefined;
  const id = item.entries.findLast(([k]) => k === 'event_id')?.[1];
  return typeof id === 'string' ? id : undefined;
}

/** The bytes of a body, and the event ids in it. */
export function renderBody(body: Body, ctx: RenderContext): { bytes: Buffer; eventIds: string[] } {
  const eventIds: string[] = [];
  const collect = (items: Json[]) => {
    for (const item of items) {
      const id = eventIdOf(item);
      if (id !== undefined) eventIds.push(id);
    }
  };
  switch (body.kind) {
    case 'json': {
      const value = drawFresh(body.value, ctx);
      collect(Array.isArray(value) ? value : [value]);
      return { bytes: Buffer.from(render(value, ctx)), eventIds };
    }
    case 'ndjson': {
      const lines = body.lines.map((l) => drawFresh(l, ctx));
      collect(lines);
      return { bytes: Buffer.from(lines.map((l) => render(l, ctx)).join(body.crlf ? '\r\n' : '\n')), eventIds };
    }
    case 'text':
      return { bytes: Buffer.from(body.text), eventIds };
    case 'bytes':
      return { bytes: Buffer.from(body.bytes), eventIds };
    case 'sized': {
      const id = ctx.fresh('e');
      const head = `[{"event_id":${JSON.stringify(id)},"time":${JSON.stringify(new Date(ctx.now() - 1000).toISOString())},"user_id":"u1","event":"login","props":{"pad":"`;
      const tail = '"}}]';
      eventIds.push(id);
      return { bytes: Buffer.from(head + 'p'.repeat(Math.max(0, body.bytes - head.length - tail.length)) + tail), eventIds };
    }
    case 'many': {
      const time = JSON.stringify(new Date(ctx.now() - 1000).toISOString());
      const events = Array.from({ length: body.count }, (_, i) => {
        const id = ctx.fresh('e');
        eventIds.push(id);
        return `{"event_id":${JSON.stringify(id)},"time":${time},"user_id":"u${i % 7}","event":"login","props":{"country":"GB"}}`;
      });
      return { bytes: Buffer.from(`[${events.join(',')}]`), eventIds };
    }
  }
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** Sends a request over plain HTTP and reads (at most 4 KB of) the answer. Never throws. */
export function send(base: string, r: HostileRequest, keys: Keys, ctx: RenderContext, timeoutMs = 20_000): Promise<Outcome> {
  const started = performance.now();
  const path = r.route.template.replace(/\{(\w+)\}/g, (_, p: string) => r.params[p] ?? '');
  const search = r.query.length > 0 ? `?${r.query.map(([k, v]) => `${encodeSegment(k)}=${encodeSegment(v)}`).join('&')}` : '';
  const rendered = r.body ? renderBody(r.body, ctx) : undefined;
  const headers: [string, string][] = [...authHeaders(r.auth, r.route, keys), ...r.headers];
  if (r.contentType) headers.push(['content-type', r.contentType]);
  const chunked = headers.some(([k]) => k === 'transfer-encoding');
  if (rendered && !chunked) headers.push(['content-length', String(rendered.bytes.length)]);
  const resetExpected = headers.some(([, v]) => v.length > 8_000) || path.length + search.length > 8_000 || (rendered?.bytes.length ?? 0) > EVENTS_BODY_LIMIT;
  const base0: Omit<Outcome, 'status' | 'text' | 'ms'> = { route: routeName(r.route), accepted: 0, eventIds: rendered?.eventIds ?? [], resetExpected };
  return new Promise<Outcome>((resolve) => {
    let done = false;
    const finish = (o: { status: number; text: string; contentType?: string; accepted?: number; error?: string }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ ...base0, ...o, ms: performance.now() - started });
    };
    const url = new URL(base);
    const req = http.request(
      { host: url.hostname, port: url.port, method: r.route.method, path: path + search, agent, headers: Object.fromEntries(groupHeaders(headers)) },
      (res) => {
        const type = String(res.headers['content-type'] ?? '');
        // An event stream stays open: its headers are the answer.
        if (type.startsWith('text/event-stream')) {
          res.destroy();
          return finish({ status: res.statusCode ?? 0, text: '', contentType: type });
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          if (size < 4096) chunks.push(c);
          size += c.length;
        });
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8').slice(0, 4096);
          let accepted = 0;
          if (res.statusCode === 200 && base0.route === 'POST /v1/events') accepted = Number((JSON.parse(text) as { accepted?: number }).accepted ?? 0);
          finish({ status: res.statusCode ?? 0, text, contentType: type, accepted });
        });
        res.on('error', (err) => finish({ status: res.statusCode ?? 0, text: '', error: `answer cut: ${err.message}` }));
      },
    );
    const timer = setTimeout(() => {
      req.destroy(new Error(`no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => finish({ status: 0, text: '', error: `${err.code ?? ''} ${err.message}`.trim() }));
    if (rendered) {
      if (chunked) {
        // Two chunks, so that the body really arrives in parts.
        const mid = rendered.bytes.length >> 1;
        req.write(rendered.bytes.subarray(0, mid));
        req.end(rendered.bytes.subarray(mid));
      } else req.end(rendered.bytes);
    } else req.end();
  });
}

/** node:http takes a header once: repeated ones become a list. */
function groupHeaders(headers: readonly [string, string][]): Map<string, string | string[]> {
  const m = new Map<string, string | string[]>();
  for (const [k, v] of headers) {
    const had = m.get(k);
    m.set(k, had === undefined ? v : Array.isArray(had) ? [...had, v] : [had, v]);
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// What every answer must be.

/** Why an outcome breaks the contract (a 5xx, no answer, a 4xx without the JSON error body), or undefined. */
export function problemWith(o: Outcome): string | undefined {
  if (o.status === 0) return o.resetExpected ? undefined : `no answer: ${o.error}`;
  if (o.status >= 500) return `${o.status}: ${o.text.slice(0, 300)}`;
  // Node answers these itself, before Express, without a body.
  if (o.status === 431 || (o.status === 400 && o.text === '')) return undefined;
  if (o.status >= 400) {
    // Only the first 4 KB are kept: a longer answer is judged by its start.
    if (o.text.length >= 4096)
      return /^\{"error":\{"code":"[a-z_]+","message":"/.test(o.text) ? undefined : `${o.status} without { error: { code, message } }: ${o.text.slice(0, 200)}`;
    try {
      const body = JSON.parse(o.text) as { error?: { code?: unknown; message?: unknown } };
      if (typeof body.error?.code !== 'string' || typeof body.error.message !== 'string')
        return `${o.status} without { error: { code, message } }: ${o.text.slice(0, 200)}`;
    } catch {
      return `${o.status} is not JSON: ${o.text.slice(0, 200)}`;
    }
  }
  return undefined;
}

/** Counts of a run's answers, by class and by route. */
export class Tally {
  sent = 0;
  accepted = 0;
  readonly byClass = new Map<string, number>();
  readonly failures = new Map<string, { count: number; example: string; status: number; problem: string }>();
  readonly eventIds = new Set<string>();
  readonly routes = new Set<string>();

  add(r: HostileRequest, o: Outcome): string | undefined {
    this.sent++;
    this.accepted += o.accepted;
    this.routes.add(o.route);
    for (const id of o.eventIds) this.eventIds.add(id);
    const cls = o.status === 0 ? (o.resetExpected ? 'reset (expected)' : 'no answer') : `${Math.floor(o.status / 100)}xx`;
    this.byClass.set(cls, (this.byClass.get(cls) ?? 0) + 1);
    const problem = problemWith(o);
    if (problem) {
      const key = `${o.route} → ${problem.slice(0, 120)}`;
      const had = this.failures.get(key);
      if (had) had.count++;
      else this.failures.set(key, { count: 1, example: describe(r), status: o.status, problem });
    }
    return problem;
  }

  count(cls: string): number {
    return this.byClass.get(cls) ?? 0;
  }
}

// ---------------------------------------------------------------------------------------------
// The log after a run.

export interface LogAudit {
  records: number;
  /** Records whose event_id a client sent. */
  clientRecords: number;
  /** Records the service wrote itself (predictions, exposures), by event name. */
  ownRecords: Map<string, number>;
  /** event_ids found more than once. */
  repeatedIds: string[];
  /** Client records with a name only the service may write. */
  reservedFromClients: number;
  /** Records that are not JSON or lack an event_id. */
  unreadable: number;
  /** Records neither sent by the run nor written by the service (ids not sent, names not the service's): a few. */
  strangers: string[];
}

/** Reads the whole log and accounts for each record. */
export async function auditLog(log: EventLog, sentIds: ReadonlySet<string>): Promise<LogAudit> {
  const end = await log.next();
  const decoder = new TextDecoder();
  const seen = new Set<string>();
  const repeated: string[] = [];
  const own = new Map<string, number>();
  let clientRecords = 0;
  let reserved = 0;
  let unreadable = 0;
  let records = 0;
  const strangers: string[] = [];
  for (let offset = 0; offset < end;) {
    const entries = await log.read(offset, 10_000);
    if (entries.length === 0) break;
    for (const entry of entries) {
      records++;
      let e: { event_id?: unknown; event?: unknown };
      try {
        e = JSON.parse(decoder.decode(entry.payload)) as typeof e;
      } catch {
        unreadable++;
        continue;
      }
      if (typeof e.event_id !== 'string') {
        unreadable++;
        continue;
      }
      if (seen.has(e.event_id)) repeated.push(e.event_id);
      seen.add(e.event_id);
      if (sentIds.has(e.event_id)) {
        clientRecords++;
        if ((RESERVED_EVENT_NAMES as readonly unknown[]).includes(e.event)) reserved++;
      } else if (/^(prediction|exposure)-/.test(e.event_id) && (RESERVED_EVENT_NAMES as readonly unknown[]).includes(e.event))
        own.set(String(e.event), (own.get(String(e.event)) ?? 0) + 1);
      else if (strangers.length < 5) strangers.push(JSON.stringify(e).slice(0, 300));
    }
    offset = entries[entries.length - 1]!.offset + 1;
  }
  return { records, clientRecords, ownRecords: own, repeatedIds: repeated, reservedFromClients: reserved, unreadable, strangers };
}

/** Everything Object.prototype has, to tell whether a run polluted it. */
export function prototypeFingerprint(): string {
  return Reflect.ownKeys(Object.prototype)
    .map((k) => `${String(k)}:${typeof Object.getOwnPropertyDescriptor(Object.prototype, k)?.value}`)
    .sort()
    .join(',');
}

/** A fresh-id source: unique within and across runs of one process. */
export function freshIds(prefix: string): (tag: string) => string {
  let n = 0;
  return (tag) => `${prefix}-${tag}-${(n++).toString(36)}`;
}
