import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { writeFileAtomicAsync } from '../../workbench/files.js';
import type { EventLog } from './event-log.js';

const OffsetsSchema = z.record(z.string(), z.number().int().nonnegative());

/**
 * The committed offsets of this instance's own consumers (its read models: dashboard aggregates,
 * experiment statistics, the monitor, the in-memory feature store), in a file of the instance dir
 * beside their snapshots. A log shared by several instances (JetStream) keeps one offset per
 * consumer name: two instances' `aggregates` would overwrite each other's, and a new instance
 * would resume at another's position and miss what came before it.
 */
export class InstanceOffsets {
  private readonly offsets = new Map<string, number>();
  private writing: Promise<void> = Promise.resolve();

  private constructor(private readonly path: string) {}

  /** A file that does not parse is ignored (with `warn`): each consumer finds its position from its snapshot, or rebuilds. */
  static open(path: string, warn?: (message: string) => void): InstanceOffsets {
    const store = new InstanceOffsets(path);
    if (!existsSync(path)) return store;
    try {
      for (const [name, offset] of Object.entries(OffsetsSchema.parse(JSON.parse(readFileSync(path, 'utf8'))))) store.offsets.set(name, offset);
    } catch (err) {
      warn?.(`the consumers' offsets in ${path} cannot be read (${(err as Error).message}); each consumer resumes from its own state`);
    }
    return store;
  }

  has(consumer: string): boolean {
    return this.offsets.has(consumer);
  }

  committed(consumer: string): number {
    return this.offsets.get(consumer) ?? 0;
  }

  /** Durable when it resolves: the whole file written aside, then renamed over the old one. */
  commit(consumer: string, offset: number): Promise<void> {
    this.offsets.set(consumer, offset);
    // One write at a time, each with every consumer's latest offset.
    // Off the event loop: an fsync each second per consumer held requests for as long as the disk took.
    const write = this.writing.then(async () => {
      await mkdir(dirname(this.path), { recursive: true });
      await writeFileAtomicAsync(this.path, JSON.stringify(Object.fromEntries(this.offsets)));
    });
    this.writing = write.catch(() => undefined);
    return write;
  }
}

/**
 * The shared log as one of this instance's consumers sees it: records from the log, committed
 * offsets from the instance's file. `fallback`: a consumer with no offset there yet reads the log's
 * (an upgrade from a single instance whose file log kept them; never a shared log's, which may be
 * another instance's). Closing it leaves the log open: its owner closes it.
 */
export function withInstanceOffsets(log: EventLog, offsets: InstanceOffsets, options: { fallback?: boolean } = {}): EventLog {
  return {
    get kind() {
      return log.kind;
    },
    get recovered() {
      return log.recovered;
    },
    append: (payloads) => log.append(payloads),
    read: (from, max) => log.read(from, max),
    next: () => log.next(),
    waitFor: (offset, timeoutMs) => log.waitFor(offset, timeoutMs),
    commit: (consumer, offset) => offsets.commit(consumer, offset),
    committed: async (consumer) => (options.fallback && !offsets.has(consumer) ? log.committed(consumer) : offsets.committed(consumer)),
    close: async () => undefined,
  };
}
