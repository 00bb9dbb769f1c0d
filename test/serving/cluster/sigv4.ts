import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * An independent SigV4 check (written from AWS's description, not from aws4's code) for the S3 test
 * server: s3rver checks only the access key id of a V4 request, so without this a wrong signature
 * would pass. Returns what is wrong, or undefined when the request is correctly signed.
 */
export function verifySigV4(
  req: { method: string; url: string; headers: Record<string, string | string[] | undefined>; body: Uint8Array },
  secrets: ReadonlyMap<string, string>,
  now = Date.now(),
): string | undefined {
  const header = (name: string) => {
    const v = req.headers[name];
    return Array.isArray(v) ? v.join(',') : v;
  };
  const auth = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(
    header('authorization') ?? '',
  );
  if (!auth) return 'no AWS4-HMAC-SHA256 Authorization header';
  const [, keyId, day, region, service, signedHeaders, signature] = auth as unknown as [string, string, string, string, string, string, string];
  const secret = secrets.get(keyId);
  if (secret === undefined) return `unknown access key ${keyId}`;
  const amzDate = header('x-amz-date') ?? '';
  if (!/^\d{8}T\d{6}Z$/.test(amzDate) || !amzDate.startsWith(day)) return 'x-amz-date is missing or not the credential day';
  const at = Date.UTC(
    +amzDate.slice(0, 4),
    +amzDate.slice(4, 6) - 1,
    +amzDate.slice(6, 8),
    +amzDate.slice(9, 11),
    +amzDate.slice(11, 13),
    +amzDate.slice(13, 15),
  );
  if (Math.abs(now - at) > 15 * 60_000) return 'x-amz-date is more than 15 minutes away';
  const payload = header('x-amz-content-sha256');
  if (!payload) return 'no x-amz-content-sha256';
  if (payload !== 'UNSIGNED-PAYLOAD' && payload !== sha256(req.body)) return 'the body does not match x-amz-content-sha256';
  const names = signedHeaders.split(';');
  if (!names.includes('host')) return 'host is not signed';

  const [rawPath = '', rawQuery = ''] = req.url.split(/\?(.*)/s);
  const uri = rawPath
    .split('/')
    .map((s) => rfc3986(decodeURIComponent(s)))
    .join('/');
  const query = rawQuery
    .split('&')
    .filter(Boolean)
    .map((pair) => {
      const [k = '', v = ''] = pair.split(/=(.*)/s);
      return [rfc3986(decodeURIComponent(k)), rfc3986(decodeURIComponent(v))] as const;
    })
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const headers = names.map((n) => `${n}:${(header(n) ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const canonical = [req.method, uri, query, headers, signedHeaders, payload].join('\n');
  const scope = `${day}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(Buffer.from(canonical))].join('\n');
  let key: Buffer = hmac(`AWS4${secret}`, day);
  for (const part of [region, service, 'aws4_request']) key = hmac(key, part);
  const expected = hmac(key, toSign);
  return timingSafeEqual(expected, Buffer.from(signature, 'hex')) ? undefined : 'the signature does not match';
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const hmac = (key: string | Buffer, text: string) => createHmac('sha256', key).update(text, 'utf8').digest();
const rfc3986 = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
