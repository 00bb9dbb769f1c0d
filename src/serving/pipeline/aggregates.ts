import { existsSync, readFileSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { EnrichedEvent } from '../../workbench/event.js';
import { renderInSlices, writeFileAtomicAsync } from '../../workbench/files.js';
import type { EventConsumer } from './consumer.js';
import { RESERVED_EVENTS } from './ingest.js';

/**
 * Live aggregates for dashboards: per event name, and per event and cohort dimension (tier, country,
 * device, first-seen week), the count and the sum of numeric props, in tumbling windows of a minute
 * and an hour, by event time. Memory is bounded: a window is dropped once it is older than its
 * retention, counted from the newest event seen. The state is snapshotted to disk with the log
 * offset it reflects, so after a restart the consumer resumes from the snapshot: nothing is counted
 * twice and nothing is lost. The snapshot is rendered a window at a time, yielding to requests,
 * while the runner waits for `handle` (the cells stand still), then written and synced on libuv's
 * threads while the next batches are counted.
 */
export const DIMENSIONS = ['tier', 'country', 'device', 'first_seen_week'] as const;
export type Dimension = (typeof DIMENSIONS)[number];

export const WINDOWS = { '1m': 60_000, '1h': 3_600_000 } as const;
export type WindowName = keyof typeof WINDOWS;
const WINDOW_NAMES = Object.keys(WINDOWS) as WindowName[];

export interface AggregateOptions {
  /** How long windows are kept, per window size, in ms. */
  retention: Record<WindowName, number>;
  /** Numeric props summed per event (e.g. `amount`, `mrr`). */
  sumProps: readonly string[];
  /** Where the snapshot lives. */
  snapshotPath: string;
  /** Snapshot at most this often (and always on close). */
  snapshotEveryMs: number;
  /**
   * Values of the event name and of the tier, country and device known to the project (the labels'
   * vocabulary): they always get cells of their own. Others are the sender's text: each window
   * admits `maxUnknownPerWindow` of them per dimension, first come, and counts the rest as `other`.
   * Without it every value is unknown.
   */
  known?: ReadonlyMap<string, ReadonlySet<string>>;
  maxUnknownPerWindow?: number;
  /**
   * Most cells kept over every window (memory, and the snapshot written on the event loop): past it,
   * new cohort cells are not made and their events count per event name only (`onDropped`).
   */
  maxCells?: number;
  onDropped?: (events: number) => void;
  /** A snapshot that could not be written (tried again at the next; a restart resumes from the last written). */
  warn?: (message: string) => void;
}

export const DEFAULT_AGGREGATES: Omit<AggregateOptions, 'snapshotPath'> = {
  retention: { '1m': 6 * 3_600_000, '1h': 7 * 86_400_000 },
  sumProps: ['amount', 'mrr'],
  snapshotEveryMs: 10_000,
};

export interface AggregatePoint {
  window: WindowName;
  /** ISO start of the window. */
  start: string;
  event: string;
  /** `all`, or one of the dimensions. */
  dimension: Dimension | 'all';
  value: string;
  count: number;
  sums: Record<string, number>;
}

interface Cell {
  count: number;
  sums: Record<string, number>;
}

/** Events of one minute, name and user dimensions, summed within a batch. */
interface Group {
  minute: number;
  event: string;
  tier: string;
  country: string;
  device: string;
  week: string;
  count: number;
  sums: Record<string, number>;
}

type Windows = Map<number, Map<string, Cell>>; // window start ms -> "event\u0000dimension\u0000value" -> cell

export class LiveAggregates implements EventConsumer {
  readonly name = 'aggregates';
  private readonly windows: Record<WindowName, Windows> = { '1m': new Map(), '1h': new Map() };
  private offset = 0;
  private newest = 0;
  private lastSnapshot = 0;
  /** The snapshot being written, if any: each file write waits for the one before, so the newest lands last. */
  private writing: Promise<void> = Promise.resolve();
  private listeners = new Set<(events: EnrichedEvent[]) => void>();
  private readonly weeks = new Map<string, string>();
  /** Per window (`1m:<start>`) and dimension, the unknown values that window admitted. */
  private readonly admitted = new Map<string, Map<string, Set<string>>>();
  private cells = 0;

  constructor(private readonly options: AggregateOptions) {}

  async resumeAt(_committed: number): Promise<number> {
    // Without a snapshot the state is empty, so it is rebuilt from the start of the log.
    if (!existsSync(this.options.snapshotPath)) return 0;
    const snap = JSON.parse(readFileSync(this.options.snapshotPath, 'utf8')) as Snapshot;
    this.offset = snap.offset;
    this.newest = snap.newest;
    for (const w of Object.keys(WINDOWS) as WindowName[]) {
      for (const [start, cells] of snap.windows[w]) {
        this.windows[w].set(start, new Map(cells));
        this.cells += cells.length;
        // What each window admitted is in its keys: the same limits hold after a restart.
        for (const [key] of cells) {
          const [event, dimension, ...rest] = key.split('\u0000') as [string, string, ...string[]];
          this.admit(w, start, 'event', event);
          if (dimension !== 'all') this.admit(w, start, dimension, rest.join('\u0000'));
        }
      }
    }
    // The snapshot is the truth: events after it are applied again, events before it never are.
    return snap.offset;
  }

  /** The log lost events these counts include: they are dropped, the snapshot too, and rebuilt from the start of the log. */
  async rewind(_end: number): Promise<number> {
    // A snapshot being written would be renamed into place after the file is removed.
    await this.writing;
    rmSync(this.options.snapshotPath, { force: true });
    for (const w of WINDOW_NAMES) this.windows[w].clear();
    this.admitted.clear();
    this.cells = 0;
    this.offset = 0;
    this.newest = 0;
    return 0;
  }

  async handle(events: EnrichedEvent[], first: number): Promise<void> {
    // Events of one minute, name and cohort are summed first and fanned out to the cells once:
    // a busy service sees many events per such group in each batch.
    const groups = new Map<string, Group>();
    for (const e of events) {
      const time = Date.parse(e.time);
      if (time > this.newest) this.newest = time;
      const minute = time - (time % WINDOWS['1m']);
      const d = e.dims;
      const week = this.week(d.first_seen);
      const key = `${minute}\u0000${e.event}\u0000${d.tier}\u0000${d.country}\u0000${d.device}\u0000${week}`;
      let group = groups.get(key);
      if (!group) groups.set(key, (group = { minute, event: e.event, tier: d.tier, country: d.country, device: d.device, week, count: 0, sums: {} }));
      group.count++;
      for (const prop of this.options.sumProps) {
        const v = e.props[prop];
        if (typeof v === 'number' && Number.isFinite(v)) group.sums[prop] = (group.sums[prop] ?? 0) + v;
      }
    }
    for (const group of groups.values()) this.add(group);
    this.offset = first + events.length;
    this.evict();
    for (const listener of this.listeners) listener(events);
    if (Date.now() - this.lastSnapshot >= this.options.snapshotEveryMs) {
      const { written } = await this.snapshot();
      written.catch((err: unknown) => this.options.warn?.(`cannot write the aggregates snapshot: ${(err as Error).message}`));
    }
  }

  async close(): Promise<void> {
    const { written } = await this.snapshot();
    await written;
  }

  /** Called after each handled batch (the dashboard's live feed). */
  onBatch(listener: (events: EnrichedEvent[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Points of one window size, optionally for one event and one dimension, from a time on. */
  query(window: WindowName, filter: { event?: string; dimension?: Dimension | 'all'; fromMs?: number } = {}): AggregatePoint[] {
    const out: AggregatePoint[] = [];
    const starts = [...this.windows[window].keys()].filter((s) => s >= (filter.fromMs ?? 0)).sort((a, b) => a - b);
    for (const start of starts) {
      for (const [key, cell] of this.windows[window].get(start)!) {
        // A cohort value is the sender's text and may itself hold \u0000: it is everything after the second separator.
        const [event, dimension, ...rest] = key.split('\u0000') as [string, Dimension | 'all', ...string[]];
        const value = rest.join('\u0000');
        if (filter.event !== undefined && event !== filter.event) continue;
        if (filter.dimension !== undefined && dimension !== filter.dimension) continue;
        out.push({ window, start: new Date(start).toISOString(), event, dimension, value, count: cell.count, sums: { ...cell.sums } });
      }
    }
    return out;
  }

  /** The newest event time seen (ms), 0 before any. */
  get newestEventTime(): number {
    return this.newest;
  }

  /** The log offset the aggregates reflect. */
  get position(): number {
    return this.offset;
  }

  private add(g: Group): void {
    // The service's own events (predictions, exposures) are not product activity of a cohort, and may
    // concern users the OLTP database does not know: they count per event name only.
    const cohort = !RESERVED_EVENTS.has(g.event);
    const maxCells = this.options.maxCells ?? 200_000;
    let dropped = false;
    for (const w of WINDOW_NAMES) {
      const size = WINDOWS[w];
      const start = g.minute - (g.minute % size);
      if (start < this.newest - this.options.retention[w]) continue; // too late to matter
      let cells = this.windows[w].get(start);
      if (!cells) this.windows[w].set(start, (cells = new Map()));
      const event = this.admit(w, start, 'event', g.event);
      const values = cohort
        ? [
            'all\u0000all',
            `tier\u0000${this.admit(w, start, 'tier', g.tier)}`,
            `country\u0000${this.admit(w, start, 'country', g.country)}`,
            `device\u0000${this.admit(w, start, 'device', g.device)}`,
            `first_seen_week\u0000${g.week}`,
          ]
        : ['all\u0000all'];
      for (const value of values) {
        const key = `${event}\u0000${value}`;
        let cell = cells.get(key);
        if (!cell) {
          // The per-event totals are bounded by the events admitted; cohort cells by the budget.
          if (this.cells >= maxCells && value !== 'all\u0000all') {
            dropped = true;
            continue;
          }
          cells.set(key, (cell = { count: 0, sums: {} }));
          this.cells++;
        }
        cell.count += g.count;
        for (const prop in g.sums) cell.sums[prop] = (cell.sums[prop] ?? 0) + g.sums[prop]!;
      }
    }
    if (dropped) this.options.onDropped?.(g.count);
  }

  /** The value itself when it is known or the window still admits it, else `other`. */
  private admit(w: WindowName, start: number, dimension: string, value: string): string {
    if (this.options.known?.get(dimension)?.has(value)) return value;
    const window = `${w}:${start}`;
    let byDimension = this.admitted.get(window);
    if (!byDimension) this.admitted.set(window, (byDimension = new Map()));
    let values = byDimension.get(dimension);
    if (!values) byDimension.set(dimension, (values = new Set()));
    if (values.has(value)) return value;
    if (values.size >= (this.options.maxUnknownPerWindow ?? 20)) return 'other';
    values.add(value);
    return value;
  }

  /** isoWeek, remembered: a user's first_seen repeats on every one of their events. */
  private week(firstSeen: string): string {
    let w = this.weeks.get(firstSeen);
    if (w === undefined) {
      w = isoWeek(firstSeen);
      if (this.weeks.size > 100_000) this.weeks.clear();
      this.weeks.set(firstSeen, w);
    }
    return w;
  }

  private evict(): void {
    for (const w of Object.keys(WINDOWS) as WindowName[]) {
      const cutoff = this.newest - this.options.retention[w];
      for (const [start, cells] of this.windows[w]) {
        if (start >= cutoff) continue;
        this.windows[w].delete(start);
        this.admitted.delete(`${w}:${start}`);
        this.cells -= cells.size;
      }
    }
  }

  /**
   * Renders the state as it stands (resolving once rendered: the caller keeps it still until then)
   * and queues the file's write, whose outcome `written` gives (in an object: an async function's
   * promise of a promise would wait for both).
   */
  private async snapshot(): Promise<{ written: Promise<void> }> {
    this.lastSnapshot = Date.now();
    const text = await renderInSlices(snapshotPieces(this.offset, this.newest, this.windows));
    const path = this.options.snapshotPath;
    const written = this.writing.then(async () => {
      await mkdir(dirname(path), { recursive: true });
      await writeFileAtomicAsync(path, text);
    });
    this.writing = written.catch(() => undefined);
    return { written };
  }
}

interface Snapshot {
  offset: number;
  newest: number;
  windows: Record<WindowName, [number, [string, Cell][]][]>;
}

/** The snapshot's JSON (`Snapshot`) in pieces: one window's cells at a time. */
function* snapshotPieces(offset: number, newest: number, windows: Record<WindowName, Windows>): Generator<string> {
  yield `{"offset":${JSON.stringify(offset)},"newest":${JSON.stringify(newest)},"windows":{`;
  let w = 0;
  for (const name of WINDOW_NAMES) {
    yield `${w++ === 0 ? '' : ','}${JSON.stringify(name)}:[`;
    let i = 0;
    for (const [start, cells] of windows[name]) yield `${i++ === 0 ? '' : ','}${JSON.stringify([start, [...cells]])}`;
    yield ']';
  }
  yield '}}';
}

/** The Monday (UTC) of the week of an instant, as YYYY-MM-DD: the cohort of a first-seen time. */
export function isoWeek(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return 'unknown';
  const day = (d.getUTCDay() + 6) % 7;
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - day)).toISOString().slice(0, 10);
}
