import { IntegrityError, WorkbenchError } from '../errors.js';
import { defaultProgress, type Progress } from '../progress.js';
import { checkBundle, type ModelBundle } from './bundle.js';
import type { PublishOutcome } from './registry.js';

/** Where and how `publish` publishes: the service URL, an admin key and the alias to move. */
export interface PublishOptions {
  /** The service; default WB_URL or http://127.0.0.1:8080. */
  url?: string;
  /** An admin key; default WB_ADMIN_KEY. */
  key?: string;
  /** The alias to move to the new version; default `challenger`. */
  alias?: string;
  reason?: string;
  /** Where the steps (check, upload) are shown; default a bar in a notebook, nothing elsewhere. */
  progress?: Progress;
}

/**
 * The service's answer to `publish`: the version registered, the alias it now holds, and whether
 * anything changed: publishing a bundle the registry already holds, to an alias already on it, writes
 * nothing (`unchanged`), and `message` says so (`unchanged: version <v> of <name> is already <alias>`).
 */
export interface PublishResult extends PublishOutcome {
  features_added: string[];
}

/**
 * A refusal from the service, with its HTTP status and stable error code.
 *
 * @example
 * ```ts
 * try {
 *   await publish(bundle, { url: serviceUrl, key: adminKey });
 * } catch (e) {
 *   if (e instanceof PublishError) console.log(e.status, e.code, e.message);
 * }
 * ```
 */
export class PublishError extends WorkbenchError {
  constructor(
    override readonly status: number,
    override readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Publishes a bundle to the serving service (from a notebook or a job): the service verifies it,
 * registers its features with the online store and moves the alias. Resolves once the alias points
 * at the new version. A bundle the registry already holds, sent to an alias already on it, changes
 * nothing: the answer has `unchanged: true` and a `message` saying so.
 *
 * @example
 * ```ts
 * const result = await publish(bundle, { url: 'http://127.0.0.1:8080', key: adminKey, alias: 'challenger' });
 * console.log(result.message); // "stored app-churn 5d0c...; challenger: (none) -> 5d0c...", or "unchanged: ..." the second time
 * ```
 */
export async function publish(bundle: ModelBundle, options: PublishOptions = {}): Promise<PublishResult> {
  const task = (options.progress ?? defaultProgress()).task(`publishing ${bundle?.name} ${bundle?.version}`, 2, 'steps');
  // The service's own checks, made here first: a bundle it would refuse is refused before the upload,
  // with the status and code the service would answer (a changed bundle: bundle_integrity).
  try {
    await checkBundle(bundle);
  } catch (err) {
    if (!(err instanceof WorkbenchError) || (err.status !== 400 && !(err instanceof IntegrityError))) throw err;
    throw new PublishError(
      400,
      err instanceof IntegrityError ? 'bundle_integrity' : err.code,
      `publishing ${bundle?.name} ${bundle?.version} refused before upload (400): ${err.message}`,
    );
  }
  task.update(1);
  const url = (options.url ?? process.env.WB_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
  const key = options.key ?? process.env.WB_ADMIN_KEY;
  if (!key)
    throw new PublishError(
      401,
      'unauthorized',
      'publishing needs an admin key: pass { key } or set WB_ADMIN_KEY (create one with `wb keys create --scope admin`)',
    );
  let res: Response;
  try {
    res = await fetch(`${url}/v1/models`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ bundle, alias: options.alias ?? 'challenger', ...(options.reason ? { reason: options.reason } : {}) }),
    });
  } catch (err) {
    throw new PublishError(503, 'unreachable', `cannot reach the service at ${url} (${(err as Error).message}): start it with \`npx wb serve\` or set WB_URL`);
  }
  const body = (await res.json().catch(() => ({}))) as PublishResult & { error?: { code: string; message: string } };
  if (!res.ok)
    throw new PublishError(
      res.status,
      body.error?.code ?? 'error',
      `publishing ${bundle.name} ${bundle.version} failed (${res.status}): ${body.error?.message ?? res.statusText}`,
    );
  task.finish(body.message ?? `${body.alias} -> ${body.name} ${body.version}`);
  return body;
}
