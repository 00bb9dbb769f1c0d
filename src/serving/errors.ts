import type { ErrorRequestHandler } from 'express';
import type { ServerResponse } from 'node:http';
import type { z } from 'zod';
import { WorkbenchError } from '../workbench/errors.js';

/**
 * HTTP errors, each with its status and a stable `code` that clients can switch on. Every route
 * throws these (or a workbench error, which carries its own status); `errorHandler` is the one place
 * that turns them into `{ "error": { "code", "message", "details"? } }`.
 */
export class HttpError extends WorkbenchError {
  constructor(
    override readonly status: number,
    override readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

export const badRequest = (code: string, message: string, details?: unknown) => new HttpError(400, code, message, details);
export const unauthorized = (message: string) => new HttpError(401, 'unauthorized', message);
export const forbidden = (message: string) => new HttpError(403, 'forbidden', message);
export const notFound = (message: string) => new HttpError(404, 'not_found', message);
export const payloadTooLarge = (message: string) => new HttpError(413, 'payload_too_large', message);
export const unavailable = (message: string) => new HttpError(503, 'unavailable', message);

/** A route's query parameters through its schema, or a 400 naming the parameter and what is wrong. */
export function parseQuery<S extends z.ZodType>(schema: S, query: unknown): z.infer<S> {
  const q = schema.safeParse(query);
  if (q.success) return q.data;
  const issue = q.error.issues[0]!;
  throw badRequest('bad_query', `query parameter ${issue.path.join('.')}: ${issue.message}`);
}

/** A request body (or path part) through its schema, or a 400 naming the field, what is wrong and what to send. */
export function parseBody<S extends z.ZodType>(schema: S, input: unknown, hint: string): z.infer<S> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  throw badRequest('bad_body', `${issue.path.join('.') || 'body'}: ${issue.message} (${hint})`);
}

export interface ErrorLogger {
  error(obj: object, msg: string): void;
}

/** Maps any error to a JSON answer. Unknown errors are 500s, logged with their stack, never leaked. */
export function errorHandler(log: ErrorLogger): ErrorRequestHandler {
  return (err, req, res, _next) => writeError(res, err, log, { method: req.method, path: req.path });
}

/** What `errorHandler` answers, on a bare Node response (a route served before Express: `fastPredict`). */
export function writeError(res: ServerResponse, err: unknown, log: ErrorLogger, request: { method?: string; path: string }): void {
  const mapped = mapError(err);
  if (mapped.status >= 500) log.error({ err, ...request }, 'request failed');
  if (res.headersSent) return void res.end();
  const text = JSON.stringify({ error: { code: mapped.code, message: mapped.message, ...(mapped.details === undefined ? {} : { details: mapped.details }) } });
  res.writeHead(mapped.status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function mapError(err: unknown): { status: number; code: string; message: string; details?: unknown } {
  if (err instanceof HttpError) return { status: err.status, code: err.code, message: err.message, details: err.details };
  if (err instanceof WorkbenchError && err.status < 500) return { status: err.status, code: err.code, message: err.message };
  // Errors raised by Express's body parsers carry a status and a type.
  const e = err as { status?: number; type?: string; message?: string; limit?: number };
  if (e?.type === 'entity.too.large') return { status: 413, code: 'payload_too_large', message: `the body is larger than the limit of ${e.limit} bytes` };
  if (e?.type === 'entity.parse.failed') return { status: 400, code: 'malformed_json', message: `the body is not valid JSON: ${e.message}` };
  if (e?.type === 'encoding.unsupported' || e?.type === 'charset.unsupported') return { status: 415, code: 'unsupported_encoding', message: String(e.message) };
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) return { status: e.status, code: 'bad_request', message: String(e.message) };
  return { status: 500, code: 'internal', message: 'internal error (logged on the server)' };
}
