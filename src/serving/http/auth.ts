import type { RequestHandler } from 'express';
import type { IncomingHttpHeaders } from 'node:http';
import { hasScope, type ApiKeyInfo, type ApiKeyStore, type Scope } from '../auth/keys.js';
import { forbidden, unauthorized } from '../errors.js';

declare module 'express-serve-static-core' {
  interface Request {
    apiKey?: ApiKeyInfo;
  }
}

/** Requires a valid key with `scope`, from `Authorization: Bearer <key>` or `X-API-Key: <key>`. */
export function requireScope(keys: Pick<ApiKeyStore, 'verify'>, scope: Scope): RequestHandler {
  return (req, _res, next) => {
    req.apiKey = authorize(keys, scope, req.headers);
    next();
  };
}

/** The key a request's headers carry, when valid and with `scope`; else a 401 or 403 saying why. */
export function authorize(keys: Pick<ApiKeyStore, 'verify'>, scope: Scope, headers: IncomingHttpHeaders): ApiKeyInfo {
  const header = headers.authorization;
  const apiKey = headers['x-api-key'];
  const key = header?.startsWith('Bearer ') ? header.slice(7).trim() : (Array.isArray(apiKey) ? apiKey[0] : apiKey)?.trim();
  if (!key) throw unauthorized(`this route needs an API key with the ${scope} scope: send "Authorization: Bearer <key>" (create one with \`wb keys create\`)`);
  const info = keys.verify(key);
  if (!info) throw unauthorized('the API key is not valid (unknown, revoked or mistyped)');
  if (!hasScope(info, scope)) throw forbidden(`the key "${info.name}" lacks the ${scope} scope (it has: ${info.scopes.join(', ')})`);
  return info;
}
