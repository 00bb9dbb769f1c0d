import type { Command } from 'commander';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  appSource,
  checkReplayOptions,
  replayBatches,
  retailSource,
  RETAIL_FILE,
  type ReplayBatch,
  type ReplayOptions,
  type ReplaySource,
  type RetailSource,
} from '../app/replay.js';
import { SimulationConfigSchema, type SimulationConfig } from '../app/simulator.js';
import { InputError, WorkbenchError } from '../workbench/errors.js';
import type { Event } from '../workbench/event.js';
import { fnv1a32 } from '../workbench/experiments/hash.js';
import { consoleProgress, silentProgress, type Progress, type ProgressTask } from '../workbench/progress.js';
import { intOption } from './main.js';

/** The service refused the replay, or could not be reached. Says what the server said. */
export class ReplayError extends WorkbenchError {
  override readonly code: string = 'replay_failed';
  override readonly status: number = 502;
  constructor(
    message: string,
    /** The HTTP status of the answer, when there was one. */
    readonly httpStatus?: number,
    /** The server's error code (`unauthorized`, `forbidden`, `batch_too_large`, ...). */
    readonly serverCode?: string,
  ) {
    super(message);
  }
}

export interface Rejection {
  index: number;
  event_id?: string;
  reason: string;
}

export interface ReplaySummary {
  /** Events the service acknowledged: accepted + duplicates + rejected. */
  sent: number;
  accepted: number;
  duplicates: number;
  rejected: number;
  /** The first few rejections, with the batch-relative index the service gave. */
  rejections: Rejection[];
  requests: number;
  /** Requests sent again after a network error or a 5xx. */
  retries: number;
  elapsedMs: number;
  /** Stopped by the signal (Ctrl-C) before the sources ran out. */
  interrupted: boolean;
  /** Where the replay stopped on each source's own calendar. */
  dates: Record<string, string>;
}

export interface RunReplayOptions {
  /** The service's base URL, e.g. http://127.0.0.1:8080. */
  url: string;
  /** An API key with the ingest scope. */
  key: string;
  sources: ReplaySource[];
  /** Simulated seconds per real second; Infinity sends as fast as the service takes them. */
  speed: number;
  /** Events per batch (default 500; ingest takes at most 10,000): each batch goes as one request per lane holding some of its users (see `concurrency`). */
  batch?: number;
  /** Lanes, each with one request in flight (default 2): a batch is split by user across them, so each user's events arrive in order. */
  concurrency?: number;
  maxEvents?: number;
  /** Stop after this many days of the shared timeline. */
  days?: number;
  run?: string;
  lingerMs?: number;
  /** Retries of a failed request (network error, 5xx, 429) before giving up (default 5). */
  retries?: number;
  /** First backoff in ms, doubled at each retry (default 250). */
  backoffMs?: number;
  progress?: Progress;
  /** How often progress is redrawn, in ms (default 200 on a terminal, 2000 otherwise). */
  progressEveryMs?: number;
  /** Stops cleanly: no new batch is sent, the ones in flight finish (retries included). */
  signal?: AbortSignal;
  /** Stops at once: requests in flight and backoffs are abandoned. */
  abortSignal?: AbortSignal;
  /** Stamp events on one simulated calendar and drive this clock (a service in this process runs on it): see `ReplayOptions.simulated`. */
  simulated?: ReplayOptions['simulated'];
}

const MAX_BATCH = 10_000;

/**
 * Sends a replay to the service: batches of NDJSON to `POST /v1/events`, `concurrency` at a time.
 * A request that fails on the network, with a 5xx or a 429 is sent again with exponential backoff
 * (safe: ingest is idempotent by event_id); any other 4xx stops the replay with the server's code
 * and message, except a batch whose every event was rejected (400 invalid_events), which is
 * counted like any rejection. Resolves with the summary, which it also prints through `progress`.
 */
export async function runReplay(options: RunReplayOptions): Promise<ReplaySummary> {
  const batchSize = options.batch ?? 500;
  const concurrency = options.concurrency ?? 2;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > MAX_BATCH)
    throw new InputError(`the batch size must be a whole number from 1 to ${MAX_BATCH}, got ${batchSize}`);
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new InputError(`concurrency must be a whole number of at least 1, got ${concurrency}`);
  if (!options.key) throw new InputError(NO_KEY);
  const replay = {
    speed: options.speed,
    run: options.run,
    maxEvents: options.maxEvents,
    days: options.days,
    batch: batchSize,
    lingerMs: options.lingerMs,
    signal: options.signal,
    simulated: options.simulated,
  };
  checkReplayOptions(replay);
  let endpoint: string;
  try {
    endpoint = new URL('/v1/events', options.url).toString();
  } catch {
    throw new InputError(`--url ${JSON.stringify(options.url)} is not a URL (expected e.g. http://127.0.0.1:8080)`);
  }

  const progress = options.progress ?? silentProgress;
  const started = Date.now();
  const summary: ReplaySummary = {
    sent: 0,
    accepted: 0,
    duplicates: 0,
    rejected: 0,
    rejections: [],
    requests: 0,
    retries: 0,
    elapsedMs: 0,
    interrupted: false,
    dates: {},
  };
  const view = new ReplayProgress(progress, options, started);
  const client = new IngestClient(endpoint, options.key, options.retries ?? 5, options.backoffMs ?? 250, options.abortSignal);
  let failure: unknown;

  const send = async (batch: ReplayBatch) => {
    try {
      const result = await client.send(batch.events, summary);
      summary.sent += result.accepted + result.duplicates + result.rejected.length;
      summary.accepted += result.accepted;
      summary.duplicates += result.duplicates;
      summary.rejected += result.rejected.length;
      for (const r of result.rejected) if (summary.rejections.length < 5) summary.rejections.push(r);
      view.update(summary.sent, batch);
    } catch (err) {
      failure ??= err;
    }
  };

  // Each user's events go through one lane, one request at a time, so they arrive in order: two
  // requests in flight may be applied in either order, and a user the service creates from a later
  // event (a login) would lose the country and device its signup carries.
  const lanes: Promise<void>[] = Array.from({ length: concurrency }, () => Promise.resolve());
  const batches = replayBatches(options.sources, replay);
  try {
    sending: for await (const batch of batches) {
      if (failure !== undefined || options.signal?.aborted) break;
      summary.dates = batch.dates;
      for (const [lane, events] of byLane(batch.events, concurrency)) {
        await lanes[lane];
        if (failure !== undefined) break sending;
        lanes[lane] = send({ ...batch, events });
      }
    }
  } finally {
    await Promise.all(lanes);
    await batches.return(undefined);
  }
  summary.interrupted = failure === undefined && Boolean(options.signal?.aborted);
  summary.elapsedMs = Date.now() - started;
  view.finish(summary, failure !== undefined);
  for (const r of summary.rejections) progress.log(`  rejected: ${r.event_id ?? `#${r.index}`}: ${r.reason}`);
  for (const s of options.sources) {
    const skipped = (s as Partial<RetailSource>).skipped;
    if (skipped && skipped.count > 0)
      progress.log(`  ${s.name}: ${fmt(skipped.count)} lines of the file skipped (e.g. line ${skipped.first[0]?.line}: ${skipped.first[0]?.reason})`);
  }
  if (failure !== undefined) throw failure;
  return summary;
}

/** Splits a batch into `lanes` parts by user, each part in the batch's order. */
function byLane(events: readonly Event[], lanes: number): Map<number, Event[]> {
  const parts = new Map<number, Event[]>();
  for (const e of events) {
    const lane = lanes === 1 ? 0 : fnv1a32(e.user_id) % lanes;
    let part = parts.get(lane);
    if (!part) parts.set(lane, (part = []));
    part.push(e);
  }
  return parts;
}

const NO_KEY =
  'no API key: pass --key <key> or set WB_KEY. Create a key with the ingest scope where the service keeps its data: ' +
  '`wb --data-dir <dir> keys create --name replay --scope ingest` (a running service picks it up within seconds)';

interface IngestAnswer {
  accepted: number;
  duplicates: number;
  rejected: Rejection[];
}

/** POSTs batches to `/v1/events`, retrying what may be retried. */
class IngestClient {
  constructor(
    private readonly endpoint: string,
    private readonly key: string,
    private readonly retries: number,
    private readonly backoffMs: number,
    private readonly abort?: AbortSignal,
  ) {}

  async send(events: readonly Event[], counts: { requests: number; retries: number }): Promise<IngestAnswer> {
    const body = `${events.map((e) => JSON.stringify(e)).join('\n')}\n`;
    let lastProblem = '';
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) {
        counts.retries++;
        const delay = Math.min(10_000, this.backoffMs * 2 ** (attempt - 1)) * (0.75 + Math.random() * 0.5);
        await sleep(delay, undefined, this.abort ? { signal: this.abort } : undefined);
      }
      counts.requests++;
      let res: Response;
      let text: string;
      try {
        res = await fetch(this.endpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson', authorization: `Bearer ${this.key}` },
          body,
          ...(this.abort ? { signal: this.abort } : {}),
        });
        text = await res.text();
      } catch (err) {
        if (this.abort?.aborted) throw err;
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        lastProblem = `cannot reach the service at ${this.endpoint} (${cause?.code ?? cause?.message ?? (err as Error).message}); is \`wb serve\` running there?`;
        if (attempt < this.retries) continue;
        throw new ReplayError(`${lastProblem} Gave up after ${attempt + 1} attempts.`);
      }
      const answer = parseJson(text);
      if (res.ok) return answer as IngestAnswer;
      const error = (answer as { error?: { code?: string; message?: string; details?: unknown } } | undefined)?.error;
      const code = error?.code ?? 'unknown';
      const message = error?.message ?? (text.slice(0, 200) || res.statusText);
      if (res.status >= 500 || res.status === 429) {
        lastProblem = `the service answered ${res.status} ${code}: ${message}`;
        if (attempt < this.retries) continue;
        throw new ReplayError(`${lastProblem} (gave up after ${attempt + 1} attempts)`, res.status, code);
      }
      // Every event of the batch rejected: a report like any other, not a reason to stop.
      if (res.status === 400 && code === 'invalid_events' && isAnswer(error?.details)) return error.details;
      throw new ReplayError(refusal(res.status, code, message), res.status, code);
    }
  }
}

function refusal(status: number, code: string, message: string): string {
  const said = `the service refused the replay (${status} ${code}): ${message}`;
  if (status === 401) return `${said}. Pass a valid key with --key or WB_KEY; create one with \`wb keys create --name replay --scope ingest\``;
  if (status === 403) return `${said}. Use a key with the ingest scope: \`wb keys create --name replay --scope ingest\``;
  if (status === 404) return `${said}. Is --url the workbench service?`;
  return said;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isAnswer(x: unknown): x is IngestAnswer {
  const a = x as IngestAnswer | undefined;
  return typeof a?.accepted === 'number' && typeof a.duplicates === 'number' && Array.isArray(a.rejected);
}

const fmt = (n: number) => n.toLocaleString('en-US');

/**
 * Progress of a replay through `consoleProgress`: events sent, where the replay stands on each
 * source's calendar, and the recent rate. A progress task's label is fixed when it is made, so each
 * redraw draws through a fresh task with the current label (on a terminal it overwrites the bar's
 * line); the task made at the start prints the summary, with the elapsed time of the whole run.
 * The bar is over --max-events when there is one, else over the days when they are known.
 */
class ReplayProgress {
  private readonly main: ProgressTask;
  private readonly every: number;
  private readonly samples: { at: number; sent: number }[] = [];
  private lastDraw = 0;
  private days?: number;

  constructor(
    private readonly progress: Progress,
    private readonly options: RunReplayOptions,
    started: number,
  ) {
    this.main = progress.task('replay', options.maxEvents);
    const tty = Boolean(process.stderr.isTTY) && !process.env.CI;
    this.every = options.progressEveryMs ?? (tty ? 200 : 2000);
    this.samples.push({ at: started, sent: 0 });
    this.days = options.days;
  }

  update(sent: number, batch: ReplayBatch): void {
    const now = Date.now();
    this.samples.push({ at: now, sent });
    while (this.samples.length > 2 && now - this.samples[1]!.at > 5_000) this.samples.shift();
    if (now - this.lastDraw < this.every) return;
    this.lastDraw = now;
    const first = this.samples[0]!;
    const rate = now > first.at ? ((sent - first.sent) * 1000) / (now - first.at) : 0;
    const day = Math.floor(batch.offset / 86_400_000) + 1;
    const dates = Object.entries(batch.dates)
      .map(([s, d]) => `${s} ${d}`)
      .join(', ');
    const perSecond = `${fmt(Math.round(rate))} events/s`;
    if (this.options.maxEvents === undefined && this.days !== undefined) {
      // The bar is over the days: "replay 12,345 events, 5,210 events/s, retail 2010-12-12, app 2025-01-12, day [###...] 40% 12 / 30"
      this.progress.task(`replay ${fmt(sent)} events, ${perSecond}, ${dates}, day`, this.days).update(Math.min(day, this.days));
    } else {
      // "replay day 12 (retail 2010-12-12, app 2025-01-12), 5,210 events/s, sent 12,345" (a bar with --max-events)
      this.progress.task(`replay day ${day}${dates ? ` (${dates})` : ''}, ${perSecond}, sent`, this.options.maxEvents).update(sent);
    }
  }

  finish(s: ReplaySummary, failed: boolean): void {
    const rate = s.elapsedMs > 0 ? Math.round((s.sent * 1000) / s.elapsedMs) : 0;
    const reached = Object.entries(s.dates)
      .map(([src, d]) => `${src} ${d}`)
      .join(', ');
    this.main.finish(
      `sent ${fmt(s.sent)}, accepted ${fmt(s.accepted)}, duplicates ${fmt(s.duplicates)}, rejected ${fmt(s.rejected)}` +
        `${
          s.rejections.length
            ? ` (e.g. ${s.rejections
                .slice(0, 3)
                .map((r) => r.reason)
                .join('; ')})`
            : ''
        }` +
        `, ${fmt(rate)} events/s${reached ? `, reached ${reached}` : ''}${s.retries ? `, ${s.retries} retries` : ''}` +
        `${s.interrupted ? ', interrupted' : ''}${failed ? ', stopped by an error' : ''}`,
    );
  }
}

interface ReplayFlags {
  url: string;
  key?: string;
  source: string;
  speed: string;
  batch: number;
  concurrency: number;
  users: number;
  days?: number;
  seed: number;
  start: string;
  retailFile: string;
  maxEvents?: number;
  run?: string;
}

/** `wb replay`: the retail log and the simulated app, streamed through the service's ingest API. */
export function registerReplay(program: Command): void {
  const sim = SimulationConfigSchema.parse({});
  program
    .command('replay')
    .description(
      'stream the real retail log and the simulated app through POST /v1/events at a chosen speed. ' +
        'Both timelines start together (the shop on 2010-12-01, the app on --start); events are stamped with the ' +
        'wall-clock time they are sent, the original time in props.original_time. Replaying twice is idempotent; ' +
        '--run <tag> sends the same history again as new data. Ctrl-C stops after the requests in flight.',
    )
    .option('--url <url>', 'the service (env WB_URL)', process.env.WB_URL ?? 'http://127.0.0.1:8080')
    .option('--key <key>', 'an API key with the ingest scope (env WB_KEY)')
    .option('--source <source>', 'retail, app or both', 'both')
    .option('--speed <x>', 'simulated seconds per real second (86400 = a day per second; max = as fast as the service takes them)', '86400')
    .option('--batch <n>', `events per batch, split by user across the lanes (at most ${fmt(MAX_BATCH)})`, intOption('--batch', 1), 500)
    .option('--concurrency <n>', "lanes, each with one request in flight (a user's events stay in one lane, in order)", intOption('--concurrency', 1), 2)
    .option('--users <n>', 'simulated app: number of users', intOption('--users', 1), sim.users)
    .option(
      '--days <n>',
      `days to replay: the simulated app's history (default ${sim.days}), and the replay stops after that many days (default: when the sources end)`,
      intOption('--days', 1),
    )
    .option('--seed <n>', 'simulated app: random seed', intOption('--seed', 0), sim.seed)
    .option('--start <date>', 'simulated app: first day (YYYY-MM-DD)', sim.start)
    .option('--retail-file <file>', 'the retail log (CSV, gzip allowed)', RETAIL_FILE)
    .option('--max-events <n>', 'stop after this many events', intOption('--max-events', 1))
    .option('--run <tag>', 'prefix event ids and user ids with <tag>-, so the replay is new data rather than a retry')
    .action(async (flags: ReplayFlags) => {
      const key = flags.key ?? process.env.WB_KEY;
      if (!key) throw new InputError(NO_KEY);
      if (!['retail', 'app', 'both'].includes(flags.source)) throw new InputError(`--source must be retail, app or both, got ${JSON.stringify(flags.source)}`);
      const speed = flags.speed === 'max' ? Infinity : Number(flags.speed);
      if (!(speed > 0)) throw new InputError(`--speed must be a positive number (or max), got ${JSON.stringify(flags.speed)}`);
      if (flags.batch > MAX_BATCH) throw new InputError(`--batch must be at most ${fmt(MAX_BATCH)} (the service's limit per request)`);
      const parsed = SimulationConfigSchema.safeParse({ users: flags.users, days: flags.days ?? sim.days, seed: flags.seed, start: flags.start });
      if (!parsed.success) throw new InputError(`--${String(parsed.error.issues[0]!.path[0])}: ${parsed.error.issues[0]!.message}`);
      const config: SimulationConfig = parsed.data;
      const sources: ReplaySource[] = [];
      if (flags.source !== 'app') sources.push(retailSource({ file: flags.retailFile }));
      if (flags.source !== 'retail') sources.push(appSource(config));

      const progress = consoleProgress();
      const stop = new AbortController();
      const abort = new AbortController();
      const onSigint = () => {
        if (!stop.signal.aborted) {
          stop.abort();
          progress.log('\nstopping after the requests in flight (Ctrl-C again to stop at once)');
        } else abort.abort();
      };
      process.on('SIGINT', onSigint);
      progress.log(
        `replaying ${sources.map((s) => (s.name === 'app' ? `app (${config.users} users, ${config.days} days from ${config.start}, seed ${config.seed})` : `retail (${flags.retailFile})`)).join(' and ')} ` +
          `to ${flags.url} at ${speed === Infinity ? 'full speed' : `speed ${fmt(speed)}`}${flags.run ? `, run ${flags.run}` : ''}`,
      );
      try {
        const summary = await runReplay({
          url: flags.url,
          key,
          sources,
          speed,
          batch: flags.batch,
          concurrency: flags.concurrency,
          maxEvents: flags.maxEvents,
          // An explicit --days bounds the replay; without it the simulator's default does not cut the retail log.
          days: flags.days ?? (flags.source === 'app' ? config.days : undefined),
          run: flags.run,
          progress,
          signal: stop.signal,
          abortSignal: abort.signal,
        });
        if (summary.interrupted) process.exitCode = 130;
      } catch (err) {
        if (abort.signal.aborted) {
          progress.log('stopped');
          process.exitCode = 130;
          return;
        }
        throw err;
      } finally {
        process.off('SIGINT', onSigint);
      }
    });
}
