import { randomUUID } from 'node:crypto';
import type { Ingest } from '../pipeline/ingest.js';
import type { Scored } from './model-server.js';

/**
 * Every prediction becomes a `prediction` event in the log (model, version, score, the feature
 * values used), so that served values can be compared with an offline recomputation (the
 * training/serving skew report) and experiments can count exposures. Predictions are batched and
 * appended off the request path: a prediction never waits for the log.
 */
export class PredictionLog {
  private buffer: unknown[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly ingest: Ingest,
    private readonly onError: (err: unknown) => void,
    private readonly maxWaitMs = 100,
    private readonly maxBatch = 1000,
  ) {}

  /**
   * `overrides`: features whose value came with the request rather than from the store; `at`: when
   * the features were read (ms since the epoch, on the service's clock), the prediction event's time;
   * `eventId`: the event's id when a retry must be recognised (the precompute's, derived from its
   * trigger), else a new one.
   */
  record(userId: string, scored: Scored, overrides: string[], at: number, eventId = `prediction-${randomUUID()}`): void {
    this.buffer.push({
      event_id: eventId,
      time: new Date(at).toISOString(),
      user_id: userId,
      event: 'prediction',
      props: {
        model: scored.model.name,
        version: scored.model.version,
        alias: scored.model.alias ?? null,
        score: scored.score,
        features: scored.features,
        defaulted: scored.defaulted,
        overrides,
      },
    });
    if (this.buffer.length >= this.maxBatch) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.maxWaitMs);
  }

  /** Appends what is buffered; resolves when it is in the log. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.buffer;
    this.buffer = [];
    if (batch.length === 0) return this.flushing;
    this.flushing = this.flushing.then(async () => {
      try {
        // Internal: the service's own event name, and a prediction never creates a user (an unknown
        // user scored on request values stays unknown).
        const result = await this.ingest.ingest(batch, { internal: true });
        if (result.rejected.length > 0) {
          this.onError(new Error(`${result.rejected.length} prediction events were refused by ingest (first: ${result.rejected[0]!.reason})`));
        }
      } catch (err) {
        this.onError(err);
      }
    });
    return this.flushing;
  }
}
