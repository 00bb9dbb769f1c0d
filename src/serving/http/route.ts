import type { RequestHandler } from 'express';
import type { z } from 'zod';
import type { Scope } from '../auth/keys.js';

/**
 * A route as data: what Express registers and what the OpenAPI description is generated from, so
 * the two cannot drift apart (and a test compares the description with Express's own router).
 */
export interface Route {
  method: 'get' | 'post' | 'put' | 'delete';
  /** Express path syntax: `/v1/features/:user_id`. */
  path: string;
  summary: string;
  /** The scope a key needs; routes without one are public (health, docs, the dashboard page). */
  scope?: Scope;
  /** Body schema (for documentation; the handler validates). */
  body?: { contentTypes: string[]; schema?: z.ZodType; description?: string };
  query?: z.ZodObject;
  /** What a success looks like, per status. */
  responses: Record<number, string>;
  /** Middleware before the handler (body parsers). */
  before?: RequestHandler[];
  handler: RequestHandler;
}
