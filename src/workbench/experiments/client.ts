import { hasOwn } from '../dict.js';
import { InputError, NotFoundError, WorkbenchError } from '../errors.js';
import { ExperimentSchema, MetricSchema, type Experiment, type ExperimentInput, type ExperimentStatus, type Metric } from './definition.js';
import type { ExperimentReport } from './results.js';

/** An experiment as the service stores it: the definition, its version and who changed it last. */
export type StoredExperimentView = Experiment & { version: number; updated_at: string; updated_by: string };

/**
 * The service refused a request: its status and stable code travel with the message.
 *
 * @example
 * ```ts
 * try {
 *   await client.get('no-such-experiment');
 * } catch (e) {
 *   if (e instanceof ServiceError) console.log(e.status, e.code); // 404 not_found
 * }
 * ```
 */
export class ServiceError extends WorkbenchError {
  constructor(
    override readonly status: number,
    override readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The experiment API from a notebook or a job, with typed answers: create and change experiments
 * (admin key), read their definitions and live results (read key).
 *
 * @example
 * ```ts
 * const client = new ExperimentClient('http://127.0.0.1:8080', apiKey);
 * const report = await client.results('churn-offer');
 * show(report.results.arms);
 * ```
 */
export class ExperimentClient {
  private readonly base: string;
  constructor(
    url: string,
    private readonly key: string,
  ) {
    if (!/^https?:\/\//.test(url)) throw new InputError(`the service URL must start with http:// or https://, not ${JSON.stringify(url)}`);
    this.base = url.replace(/\/$/, '');
  }

  async list(): Promise<StoredExperimentView[]> {
    return (await this.call<{ experiments: StoredExperimentView[] }>('GET', '/v1/experiments')).experiments.map(view);
  }

  async get(key: string): Promise<StoredExperimentView> {
    return view(await this.call<StoredExperimentView>('GET', `/v1/experiments/${encodeURIComponent(key)}`));
  }

  async create(experiment: ExperimentInput): Promise<StoredExperimentView> {
    return view(await this.call<StoredExperimentView>('POST', '/v1/experiments', experiment));
  }

  async setStatus(key: string, status: ExperimentStatus, options: { reason?: string; winner?: string; version?: number } = {}): Promise<StoredExperimentView> {
    const version = options.version ?? (await this.get(key)).version;
    const body = { status, reason: options.reason ?? '', ...(options.winner ? { winner: options.winner } : {}) };
    return view(await this.call<StoredExperimentView>('POST', `/v1/experiments/${encodeURIComponent(key)}/status`, body, version));
  }

  /** The metric definitions the service computes with (a notebook recomputing results needs the same). */
  async metrics(): Promise<Metric[]> {
    return (await this.call<{ metrics: unknown[] }>('GET', '/v1/metrics')).metrics.map((m) => MetricSchema.parse(m));
  }

  /** Waits until these consumers have read to the end of the event log (what was sent is counted and archived). */
  async waitForConsumers(names: readonly string[], timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const log = await this.call<{ consumers: { name: string; lag: number }[] }>('GET', '/v1/log');
      const unknown = names.filter((n) => !log.consumers.some((c) => c.name === n));
      if (unknown.length > 0)
        throw new InputError(`the service has no consumer ${unknown.join(', ')} (it has: ${log.consumers.map((c) => c.name).join(', ')})`);
      const behind = log.consumers.filter((c) => names.includes(c.name) && c.lag > 0);
      if (behind.length === 0) return;
      if (Date.now() > deadline)
        throw new ServiceError(504, 'timeout', `consumers still behind after ${timeoutMs / 1000} s: ${behind.map((c) => `${c.name} ${c.lag}`).join(', ')}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  async results(key: string): Promise<ExperimentReport> {
    return this.call<ExperimentReport>('GET', `/v1/experiments/${encodeURIComponent(key)}/results`);
  }

  private async call<T>(method: string, path: string, body?: unknown, version?: number): Promise<T> {
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.key}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...(version !== undefined ? { 'if-match': `"${version}"` } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const answer = (await res.json().catch(() => ({}))) as T & { error?: { code: string; message: string } };
    if (res.status === 404) throw new NotFoundError(answer.error?.message ?? `${path}: not found`);
    if (!res.ok) throw new ServiceError(res.status, answer.error?.code ?? 'service_error', `${method} ${path}: ${res.status} ${answer.error?.message ?? ''}`);
    return answer;
  }
}

/** The definition part parsed again, so its fields have their types and defaults. */
function view(v: StoredExperimentView): StoredExperimentView {
  const { version, updated_at, updated_by, ...rest } = v as StoredExperimentView & Record<string, unknown>;
  const definition = ExperimentSchema.parse(Object.fromEntries(Object.entries(rest).filter(([k]) => hasOwn(ExperimentSchema.shape, k))));
  return { ...definition, version, updated_at, updated_by };
}
