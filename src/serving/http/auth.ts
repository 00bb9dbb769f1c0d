import type { RequestHandler } from 'express';
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
    const header = req.get('authorization');
    const key = header?.startsWith('Bearer ') ? header.slice(7).trim() : req.get('x-api-key')?.trim();
    if (!key)
      throw unauthorized(`this route needs an API key with the ${scope} scope: send "Authorization: Bearer <key>" (create one with \`wb keys create\`)`);
    const info = keys.verify(key);
    if (!info) throw unauthorized('the API key is not valid (unknown, revoked or mistyped)');
    if (!hasScope(info, scope)) throw forbidden(`the key "${info.name}" lacks the ${scope} scope (it has: ${info.scopes.join(', ')})`);
    req.apiKey = info;
    next();
  };
}
