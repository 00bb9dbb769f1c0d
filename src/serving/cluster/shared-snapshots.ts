import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { IntegrityError } from '../../workbench/errors.js';
import { writeFileAtomicAsync } from '../../workbench/files.js';
import type { Logger } from '../observability/logger.js';
import { blobKey, type BlobStore } from './blob-store/store.js';

/**
 * The read models' snapshots in the blob store, so that a new instance starts from another's
 * offset instead of replaying the whole shared log. Every instance consumes the same log into the
 * same read models, so one instance's snapshot is a valid start for any other: the holder of one
 * singleton lease copies its snapshot files as they are on disk (`publish`), and an instance whose
 * own dir lacks one fetches it (`seed`) before its consumers start. A snapshot is only ever a start:
 * the consumer replays the log from its offset, so an older copy costs time, never correctness.
 *
 *   snapshots/consumers/aggregates.json            the dashboard aggregates (JSON, no checksum of its own)
 *   snapshots/consumers/experiments.snapshot       the experiment statistics (checksummed)
 *   snapshots/features/online-<set>.snapshot       the in-memory feature store of one feature set (checksummed)
 */
const PREFIX = 'snapshots/';
export const AGGREGATES_SNAPSHOT = 'consumers/aggregates.json';
export const EXPERIMENTS_SNAPSHOT = 'consumers/experiments.snapshot';
/** The in-memory feature store's snapshot of one feature set (the name `openFeatureStore` gives it). */
export const featuresSnapshot = (setVersion: string): string => `features/online-${setVersion}.snapshot`;
const FEATURES = /^online-[0-9a-f]{16}\.snapshot$/;

/** One snapshot written into the instance dir from the blob store. */
export interface SeededSnapshot {
  name: string;
  /** The log offset the consumer resumes from. */
  offset: number;
  bytes: number;
}

export interface SnapshotSeeding {
  seeded: SeededSnapshot[];
  /** Snapshots the blob store has none of (the consumer replays the log). */
  absent: string[];
  /** Snapshots that could not be fetched or were refused (the consumer replays the log). */
  failed: { name: string; error: string }[];
}

export interface SnapshotPublication {
  copied: string[];
  /** Feature snapshots this publisher copied before and no longer has (a set no longer served): removed from the store. */
  removed: string[];
}

export class SharedSnapshots {
  /** What this instance last copied of each name: the file's identity then, so an unchanged file is not copied again. */
  private readonly copied = new Map<string, string>();
  private publishing: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    readonly blobs: BlobStore,
    private readonly instanceDir: string,
    private readonly options: { features: boolean; logger?: Pick<Logger, 'info' | 'warn'>; namespace?: string | undefined },
  ) {
    this.prefix = `${options.namespace ? `${blobKey(options.namespace)}/` : ''}${PREFIX}`;
  }

  /** `snapshots/`, under the deployment's namespace (the OLTP schema) when there is one. */
  private readonly prefix: string;

  /**
   * For each of `names` the instance dir does not have, fetches it (the store checks its SHA-256),
   * checks it the way its consumer will read it, and writes it into place atomically. Never throws:
   * a snapshot that cannot be had is left absent, and its consumer replays the log. Call it before
   * the consumers start: a consumer reads its snapshot once, on start.
   */
  async seed(names: readonly string[]): Promise<SnapshotSeeding> {
    const out: SnapshotSeeding = { seeded: [], absent: [], failed: [] };
    for (const name of names) {
      const path = join(this.instanceDir, name);
      try {
        if (await exists(path)) continue;
        const bytes = await this.blobs.get(`${this.prefix}${name}`);
        if (!bytes) {
          out.absent.push(name);
          continue;
        }
        const offset = snapshotOffset(name, bytes);
        await mkdir(dirname(path), { recursive: true });
        await writeFileAtomicAsync(path, bytes);
        out.seeded.push({ name, offset, bytes: bytes.byteLength });
      } catch (err) {
        out.failed.push({ name, error: (err as Error).message });
      }
    }
    const { logger } = this.options;
    if (out.seeded.length > 0) logger?.info({ seeded: out.seeded, from: this.blobs.location }, 'read-model snapshots seeded from the blob store');
    for (const f of out.failed)
      logger?.warn(
        { snapshot: f.name, from: this.blobs.location },
        `snapshot ${f.name} cannot be seeded from the blob store (${f.error}); its consumer replays the log`,
      );
    return out;
  }

  /**
   * Copies this instance's snapshot files that changed since its last copy, one at a time, each as
   * it is on disk (they are replaced by rename, so a read gets one whole version). Concurrent calls
   * wait for the one running.
   */
  publish(): Promise<SnapshotPublication> {
    const run = this.publishing.then(() => this.copyChanged());
    this.publishing = run.catch(() => undefined);
    return run;
  }

  /** Publishes every `everyMs` while `held()` (this instance holds the publishing lease); failures are logged. */
  startPublishing(held: () => boolean, everyMs = 60_000): void {
    this.timer = setInterval(() => {
      if (!held() || this.closed) return;
      this.publish().then(
        (p) => {
          if (p.copied.length > 0 || p.removed.length > 0) this.options.logger?.info({ ...p, to: this.blobs.location }, 'read-model snapshots published');
        },
        (err: unknown) => this.options.logger?.warn({ err }, `read-model snapshots cannot be published to the blob store (${(err as Error).message})`),
      );
    }, everyMs).unref();
  }

  /** Stops publishing and waits for a copy in progress (before the blob store closes). */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.publishing;
  }

  /** The shared snapshot files this instance has now. */
  private async local(): Promise<string[]> {
    const names = [AGGREGATES_SNAPSHOT, EXPERIMENTS_SNAPSHOT];
    if (this.options.features) {
      const files = await readdir(join(this.instanceDir, 'features')).catch(() => [] as string[]);
      for (const f of files.sort()) if (FEATURES.test(f)) names.push(`features/${f}`);
    }
    return names;
  }

  private async copyChanged(): Promise<SnapshotPublication> {
    const out: SnapshotPublication = { copied: [], removed: [] };
    const present = new Set<string>();
    for (const name of await this.local()) {
      const path = join(this.instanceDir, name);
      const info = await stat(path).catch(() => undefined);
      if (!info) continue;
      present.add(name);
      // Taken before the read: a file replaced in between is copied again next time, never skipped.
      const identity = `${info.ino}:${info.size}:${info.mtimeMs}`;
      if (this.copied.get(name) === identity) continue;
      const bytes = await readFile(path);
      await this.blobs.put(`${this.prefix}${name}`, bytes);
      this.copied.set(name, identity);
      out.copied.push(name);
    }
    for (const name of [...this.copied.keys()]) {
      if (present.has(name)) continue;
      this.copied.delete(name);
      if (!name.startsWith('features/')) continue; // a consumer's own snapshot comes back; it is not removed meanwhile
      await this.blobs.delete(`${this.prefix}${name}`);
      out.removed.push(name);
    }
    return out;
  }
}

/**
 * The offset a snapshot resumes its consumer from, checked the way the consumer reads it, so that a
 * damaged copy is refused here (the consumer replays) instead of failing the consumer's start:
 * a checksummed snapshot must pass its checksum (the last line: the SHA-256 of what precedes it);
 * the aggregates' JSON, which has none, must parse and have the snapshot's fields.
 */
export function snapshotOffset(name: string, bytes: Uint8Array): number {
  const text = Buffer.from(bytes).toString('utf8');
  let offset: unknown;
  if (name.endsWith('.snapshot')) {
    const cut = text.trimEnd().lastIndexOf('\n');
    const body = text.slice(0, cut);
    if (cut < 0 || createHash('sha256').update(body).digest('hex') !== text.slice(cut + 1).trim())
      throw new IntegrityError(`snapshot ${name} fails its checksum`);
    // The offset is among the first fields: the head is enough, however large the body.
    offset = Number(/^\{[^[{]*?"offset":(\d+)/.exec(body.slice(0, 4096))?.[1] ?? NaN);
  } else {
    let snap: { offset?: unknown; newest?: unknown; windows?: Record<string, unknown> };
    try {
      snap = JSON.parse(text) as typeof snap;
    } catch (err) {
      throw new IntegrityError(`snapshot ${name} is not JSON: ${(err as Error).message}`);
    }
    if (typeof snap?.newest !== 'number' || !Array.isArray(snap.windows?.['1m']) || !Array.isArray(snap.windows?.['1h']))
      throw new IntegrityError(`snapshot ${name} is not an aggregates snapshot`);
    offset = snap.offset;
  }
  if (!Number.isSafeInteger(offset) || (offset as number) < 0) throw new IntegrityError(`snapshot ${name} names no offset`);
  return offset as number;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
}
