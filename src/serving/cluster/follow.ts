import type { AliasMove } from '../../workbench/models/registry.js';
import type { ApiKeyStore } from '../auth/keys.js';
import type { StoredExperiment } from '../experiments/experiments.js';
import type { Logger } from '../observability/logger.js';
import { MAX_DETAIL_CHARS, type ChangeFeed, type ChangeTopic } from './changes.js';

/** What an instance keeps in memory from shared state, and re-reads when told it changed. */
export interface Followed {
  /** The keys the service authenticates with. */
  keys?: Pick<ApiKeyStore, 'reload'>;
  /** The model server: its aliases are followed; moves made through its registry are announced. */
  models?: { refresh(): Promise<void>; registry: { onAliasMoved(listener: (move: AliasMove) => void): () => void } };
  /** The experiments cache: re-read on a change; changes saved through it are announced. */
  experiments?: { refresh(): Promise<void>; onSaved(listener: (e: StoredExperiment) => void): () => void };
  logger: Pick<Logger, 'warn' | 'error'>;
}

export interface Following {
  readonly feed: ChangeFeed;
  /** Resolves when no refresh runs (tests, and `close`). */
  idle(): Promise<void>;
  /** Re-reads everything followed, as after a missed notification; resolves when done. */
  resync(): Promise<void>;
  /** Stops following and announcing, waits for a refresh in flight, and closes the feed. */
  close(): Promise<void>;
}

/**
 * Wires an instance to the change feed: announces the alias moves and experiment changes made here,
 * and re-reads keys, aliases and experiments when any instance announces a change of them (or when
 * the feed says notifications may have been missed). The periodic refreshes of each part go on
 * beside it, as the fallback. Takes ownership of `feed`: `close` closes it.
 */
export function followChanges(feed: ChangeFeed, followed: Followed): Following {
  const { logger } = followed;
  const undo: (() => void)[] = [];
  const refreshes: Refresh[] = [];
  const follow = (topic: ChangeTopic, run: () => Promise<void> | void) => {
    const refresh = coalesced(run, (err) => logger.error({ err, topic }, `cannot re-read ${topic} after a change notification; keeping what was loaded`));
    refreshes.push(refresh);
    undo.push(feed.subscribe(topic, () => refresh.kick()));
  };
  const announce = (topic: ChangeTopic, detail: string) =>
    void feed
      .publish(topic, detail.slice(0, MAX_DETAIL_CHARS))
      .catch((err: unknown) => logger.warn({ err, topic, detail }, 'cannot announce a change; other instances see it at their next periodic refresh'));

  const { keys, models, experiments } = followed;
  if (keys) follow('keys', () => keys.reload());
  if (models) {
    // refresh() shares a pass already in flight, which may have read the aliases before the move: a second pass reads after it.
    follow('aliases', async () => {
      await models.refresh();
      await models.refresh();
    });
    undo.push(models.registry.onAliasMoved((move) => move.unchanged || announce('aliases', `${move.name}/${move.alias}`)));
  }
  if (experiments) {
    follow('experiments', () => experiments.refresh());
    undo.push(experiments.onSaved((e) => announce('experiments', e.experiment.key)));
  }

  const idle = async () => {
    await Promise.all(refreshes.map((r) => r.idle()));
  };
  let closing: Promise<void> | undefined;
  return {
    feed,
    idle,
    resync: async () => {
      for (const r of refreshes) r.kick();
      await idle();
    },
    close: () =>
      (closing ??= (async () => {
        for (const u of undo) u();
        await idle();
        await feed.close();
      })()),
  };
}

interface Refresh {
  kick(): void;
  idle(): Promise<void>;
}

/** Runs `run` now, or once more after the run in flight if there is one (that run may have read before the change). */
function coalesced(run: () => Promise<void> | void, onError: (err: unknown) => void): Refresh {
  let running: Promise<void> | undefined;
  let again = false;
  const kick = (): void => {
    if (running) {
      again = true;
      return;
    }
    running = (async () => {
      try {
        await run();
      } catch (err) {
        onError(err);
      }
    })().finally(() => {
      running = undefined;
      if (again) {
        again = false;
        kick();
      }
    });
  };
  const idle = async (): Promise<void> => {
    while (running) await running;
  };
  return { kick, idle };
}
