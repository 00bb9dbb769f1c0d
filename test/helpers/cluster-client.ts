import { sleep } from './wait.js';

/** An answer of the service: its status (0 when no answer came) and its JSON body. */
export interface Answer<T> {
  status: number;
  json: T;
}

/** What the client was answered for one user's assignment. */
export interface AssignedUser {
  arm: string;
  reason: string;
  /** Whether the first request failed (it may have reached an instance that was then killed). */
  firstTryFailed: boolean;
}

/** A request that did not get a 200, with when (ms since the load started) and what came back. */
export interface Failure {
  kind: 'events' | 'predict' | 'assign';
  at: number;
  status: number;
  body: string;
}

export interface LoadOptions {
  /** The proxy's URL. */
  url: string;
  /** A key with the ingest and read scopes (admin). */
  key: string;
  /** The model /v1/predict asks for (its default alias), and the features it reads. */
  model: { name: string; features: string[] };
  /** The experiment users are assigned to; its control arm is the first of `arms`. */
  experiment: { key: string; arms: string[] };
  /** Concurrent senders of event batches (default 2). */
  eventWorkers?: number;
  /** Events of other users in each batch, beside the experiment users' logins (default 20). */
  batchSize?: number;
  /** Pause between a worker's requests, ms (default 20): the machine is shared, the point is correctness. */
  pauseMs?: number;
  /** How many login events an assigned user sends, by arm (default 3 or 4 in control, 6 or 7 otherwise). */
  logins?: (arm: string, n: number) => number;
}

/**
 * A client of a cluster behind a proxy, sending at once: batches of events with unique event_ids
 * (a failed batch is sent again, with the same ids, until it is taken), predictions (a failure is
 * retried once and the retry must succeed) and assignments of new users to an experiment (retried
 * until answered), each assigned user then sending logins, more in the treatment arms. It keeps
 * what it was answered, for the test to compare with what the engines hold.
 */
export class ClusterLoad {
  /** Acknowledged events: event_id -> event name. */
  readonly acknowledged = new Map<string, string>();
  /** Users assigned through the API and what they were answered. */
  readonly assigned = new Map<string, AssignedUser>();
  readonly failures: Failure[] = [];
  /** Requests that failed on their first try, by kind. */
  readonly firstTryFailures = { events: 0, predict: 0, assign: 0 };
  /** Event batches and predictions answered. */
  batches = 0;
  predictions = 0;
  /** Things the client saw that the test must fail on (a retried prediction that failed, a bad answer). */
  readonly problems: string[] = [];
  /** Users assigned when the experiment had shipped (answered its winner, not stored). */
  shippedAnswers = 0;

  private readonly started = Date.now();
  private stopped = false;
  private abandoned = false;
  private readonly logins: ReturnType<typeof loginEvent>[] = [];
  private readonly workers: Promise<void>[] = [];
  private batch = 0;
  private users = 0;

  constructor(private readonly options: LoadOptions) {}

  start(): this {
    for (let w = 0; w < (this.options.eventWorkers ?? 2); w++) this.workers.push(this.guard(() => this.sendEvents(w)));
    this.workers.push(this.guard(() => this.predict()));
    this.workers.push(this.guard(() => this.assign()));
    return this;
  }

  /** Stops sending: each worker finishes the request it has in hand (a batch until it is taken). */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.workers);
  }

  /** Stops at once, retrying nothing (a failed test's cleanup: the cluster may be gone). */
  async abandon(): Promise<void> {
    this.abandoned = true;
    await this.stop();
  }

  /** Ms since the load started. */
  elapsed(): number {
    return Date.now() - this.started;
  }

  private async guard(work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (err) {
      this.problems.push(`a worker stopped: ${(err as Error).stack ?? String(err)}`);
    }
  }

  private async call<T>(path: string, body: unknown): Promise<Answer<T>> {
    try {
      const r = await fetch(`${this.options.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.options.key}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(20_000),
      });
      const text = await r.text();
      let json: unknown = {};
      try {
        json = JSON.parse(text);
      } catch {
        json = { text };
      }
      return { status: r.status, json: json as T };
    } catch (err) {
      // No answer at all: fetch names the socket's fate (closed, reset) in its cause.
      const cause = (err as Error).cause;
      return { status: 0, json: { error: `${(err as Error).message}${cause instanceof Error ? `: ${cause.message}` : ''}` } as T };
    }
  }

  private fail(kind: Failure['kind'], answer: Answer<unknown>): void {
    this.failures.push({ kind, at: this.elapsed(), status: answer.status, body: JSON.stringify(answer.json).slice(0, 300) });
  }

  private async sendEvents(worker: number): Promise<void> {
    const { batchSize = 20, pauseMs = 20 } = this.options;
    while (!this.stopped) {
      const b = ++this.batch;
      const time = new Date(Date.now() - 1000).toISOString();
      const events = [
        ...Array.from({ length: batchSize }, (_, i) => ({
          event_id: `ev-${b}-${i}`,
          time,
          user_id: `g-${(b * batchSize + i) % 97}`,
          event: 'page_view',
          props: { country: 'GB', device: worker % 2 ? 'ios' : 'web' },
        })),
        ...this.logins.splice(0, 40),
      ];
      // The same body until it is taken: a retry is recognised by event_id, wherever it lands.
      for (let tries = 1; ; tries++) {
        const r = await this.call<{ accepted?: number; duplicates?: number; rejected?: unknown[] }>('/v1/events', events);
        if (r.status === 200) {
          const { accepted = 0, duplicates = 0, rejected = [] } = r.json;
          if (accepted + duplicates !== events.length || rejected.length > 0) this.problems.push(`batch ${b}: ${JSON.stringify(r.json).slice(0, 300)}`);
          if (tries === 1 && duplicates > 0) this.problems.push(`batch ${b}: ${duplicates} duplicates on its first try`);
          for (const e of events) this.acknowledged.set(e.event_id, e.event);
          this.batches++;
          break;
        }
        this.fail('events', r);
        if (tries === 1) this.firstTryFailures.events++;
        if (this.abandoned) return;
        if (tries >= 50) throw new Error(`batch ${b} was refused 50 times, last ${r.status} ${JSON.stringify(r.json)}`);
        await sleep(100);
      }
      await sleep(pauseMs);
    }
  }

  private async predict(): Promise<void> {
    const { name, features } = this.options.model;
    let n = 0;
    while (!this.stopped) {
      n++;
      // Values for every feature: a user the instance has not seen yet is still scored.
      const body = { model: name, user_id: `g-${n % 97}`, values: Object.fromEntries(features.map((f) => [f, n % 6])) };
      let r = await this.call<{ score?: unknown }>('/v1/predict', body);
      if (r.status !== 200) {
        this.fail('predict', r);
        this.firstTryFailures.predict++;
        await sleep(100);
        r = await this.call<{ score?: unknown }>('/v1/predict', body);
        if (r.status !== 200) {
          this.fail('predict', r);
          this.problems.push(`prediction ${n}: the retry failed too (${r.status} ${JSON.stringify(r.json).slice(0, 300)})`);
        }
      }
      if (r.status === 200) {
        if (typeof r.json.score !== 'number') this.problems.push(`prediction ${n}: no score in ${JSON.stringify(r.json)}`);
        this.predictions++;
      }
      await sleep(this.options.pauseMs ?? 20);
    }
  }

  private async assign(): Promise<void> {
    const { key, arms } = this.options.experiment;
    const logins = this.options.logins ?? ((arm, n) => (arm === arms[0] ? 3 : 6) + (n % 2));
    while (!this.stopped) {
      const n = ++this.users;
      const user = `x-${n}`;
      let firstTryFailed = false;
      for (let tries = 1; ; tries++) {
        const r = await this.call<{ arms?: { experiment: string; arm: string; reason: string }[] }>('/v1/assignments', { user_id: user, experiment: key });
        const answer = r.status === 200 ? r.json.arms?.find((a) => a.experiment === key) : undefined;
        if (answer) {
          this.assigned.set(user, { arm: answer.arm, reason: answer.reason, firstTryFailed });
          if (answer.reason === 'shipped') this.shippedAnswers++;
          else for (let k = 0; k < logins(answer.arm, n); k++) this.logins.push(loginEvent(user, k));
          break;
        }
        this.fail('assign', r);
        if (tries === 1) {
          firstTryFailed = true;
          this.firstTryFailures.assign++;
        }
        if (this.abandoned) return;
        if (tries >= 50) throw new Error(`the assignment of ${user} was refused 50 times, last ${r.status} ${JSON.stringify(r.json)}`);
        await sleep(100);
      }
      await sleep(this.options.pauseMs ?? 20);
    }
  }
}

/** A login of an assigned user, after the answer (so after the exposure). */
function loginEvent(user: string, k: number) {
  return { event_id: `login-${user}-${k}`, time: new Date().toISOString(), user_id: user, event: 'login', props: { country: 'GB', device: 'web' } };
}
