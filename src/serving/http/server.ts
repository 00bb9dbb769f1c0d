import { Server, type IncomingMessage, type ServerResponse } from 'node:http';

/** The drain deadline and the slow-client timeouts (ms). */
export interface HttpLimits {
  drainMs: number;
  headersMs: number;
  requestMs: number;
  keepAliveMs: number;
}

/** The drain deadline and the slow-client timeouts, with their defaults, checked before anything is opened. */
export function httpLimits(config: { drainMs?: number; timeouts?: { headersMs?: number; requestMs?: number; keepAliveMs?: number } }): HttpLimits {
  const t = config.timeouts ?? {};
  const limits = { drainMs: config.drainMs ?? 10_000, headersMs: t.headersMs ?? 10_000, requestMs: t.requestMs ?? 60_000, keepAliveMs: t.keepAliveMs ?? 5_000 };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isFinite(value) || value < 0)
      throw new RangeError(`${name === 'drainMs' ? name : `timeouts.${name}`} must be a number of milliseconds of at least 0, got ${value}`);
  }
  if (limits.requestMs > 0 && limits.headersMs > limits.requestMs) {
    throw new RangeError(`timeouts.headersMs (${limits.headersMs}) must not exceed timeouts.requestMs (${limits.requestMs}): the head is part of the request`);
  }
  return limits;
}

/**
 * The HTTP server with its limits against slow clients (a head or body sent a byte at a time), and
 * the requests in flight, so that stop() can end event streams and say what its deadline cut.
 */
export function httpServer(
  app: (req: IncomingMessage, res: ServerResponse) => void,
  { headersMs, requestMs, keepAliveMs }: HttpLimits,
): { server: Server; inFlight: Set<ServerResponse> } {
  const checked = [headersMs, requestMs].filter((ms) => ms > 0);
  const server = new TrackedServer(
    {
      headersTimeout: headersMs,
      requestTimeout: requestMs,
      keepAliveTimeout: keepAliveMs,
      // How often those limits are checked (Node's default is 30 s): a tenth of the shortest, within 50 ms to 1 s.
      connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(Math.min(...checked, 10_000) / 10))),
    },
    app,
  );
  server.keepAliveTimeout = keepAliveMs;
  return { server, inFlight: server.inFlight };
}

/** An HTTP server that knows its requests in flight, seen as it emits them: the app stays its one request listener. */
class TrackedServer extends Server {
  readonly inFlight = new Set<ServerResponse>();

  override emit(event: string, ...args: unknown[]): boolean {
    if (event === 'request') {
      const res = args[1] as ServerResponse;
      this.inFlight.add(res);
      res.once('close', () => this.inFlight.delete(res));
    }
    return super.emit(event, ...args);
  }
}
