import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { IntegrityError } from '../../workbench/errors.js';
import { lakeLayout, sourceDir } from '../../workbench/lakehouse/layout.js';
import { LIVE_SOURCE, type StagedBatch } from '../../workbench/lakehouse/live.js';
import { blobKey, sha256Hex, type BlobStore } from './blob-store/store.js';

/**
 * The live Parquet archive in the blob store, for instances that share no disk. The archiver's holder
 * puts each batch's files, then one commit record naming them with their SHA-256 and the offsets
 * they hold; the record is what makes a batch part of the archive (files without one are a crashed
 * holder's leftovers, replaced when the batch is written again). Every instance's lakehouse is a
 * local copy (`sync`): committed files are fetched, checked against the record, and moved in whole.
 *
 *   lake/archive/events/source=live/date=<d>/part-<first>-<last>.parquet   the files, as in the lakehouse
 *   lake/archive/events/source=live/_commits/<first>-<last>.json           one record per batch
 *
 * Under `<namespace>/` when one is given (the OLTP schema: deployments on other schemas may share the
 * blob store).
 */
const ROOT = 'lake/archive/events/source=live';
const PART = /^part-(\d{12})-(\d{12})\.parquet$/;
const DATE = /^date=\d{4}-\d{2}-\d{2}$/;

const commitSchema = z.object({
  first: z.number().int().nonnegative(),
  last: z.number().int().nonnegative(),
  files: z.array(
    z.object({ date: z.string().regex(DATE), name: z.string().regex(PART), sha256: z.string().regex(/^[0-9a-f]{64}$/), bytes: z.number().int().nonnegative() }),
  ),
});
export type ArchiveCommit = z.infer<typeof commitSchema>;

/** What `sync` did to a local lakehouse. */
export interface ArchiveSync {
  /** Batches committed in the blob store. */
  batches: number;
  /** Files fetched (missing locally, or a different size). */
  fetched: number;
  /** Bytes fetched. */
  bytes: number;
  /** Local files no commit names (a batch another instance set aside on a rewind), moved to the lake's quarantine. */
  setAside: string[];
  /** The offset after the last one committed: where the copy ends. */
  end: number;
}

export class SharedArchive {
  /** Commit records are written once and never changed (a rewind removes them): each is read once. */
  private readonly known = new Map<string, ArchiveCommit>();

  private readonly root: string;
  private readonly commitsPrefix: string;
  private readonly quarantine: string;

  constructor(
    readonly blobs: BlobStore,
    options: { namespace?: string | undefined } = {},
  ) {
    const ns = options.namespace ? `${blobKey(options.namespace)}/` : '';
    this.root = `${ns}${ROOT}`;
    this.commitsPrefix = `${this.root}/_commits/`;
    this.quarantine = `${ns}lake/quarantine/live-log-recovery`;
  }

  /** The committed batches, in offset order. */
  async commits(): Promise<ArchiveCommit[]> {
    const keys = await this.blobs.list(this.commitsPrefix);
    const present = new Set(keys);
    for (const key of this.known.keys()) if (!present.has(key)) this.known.delete(key);
    for (const key of keys) {
      if (this.known.has(key)) continue;
      const bytes = await this.blobs.get(key);
      if (!bytes) continue; // removed by a rewind since the listing
      let commit: ArchiveCommit;
      try {
        commit = commitSchema.parse(JSON.parse(Buffer.from(bytes).toString('utf8')));
      } catch (err) {
        throw new IntegrityError(`archive commit ${key} in ${this.blobs.location} is not a commit record: ${(err as Error).message}`);
      }
      if (key !== `${this.commitsPrefix}${rangeName(commit.first, commit.last)}.json`)
        throw new IntegrityError(`archive commit ${key} names offsets ${commit.first}-${commit.last}`);
      this.known.set(key, commit);
    }
    return [...this.known.values()].sort((a, b) => a.first - b.first);
  }

  /** The offset after the last one committed (0 for an empty archive). */
  async end(): Promise<number> {
    return (await this.commits()).reduce((end, c) => Math.max(end, c.last + 1), 0);
  }

  /**
   * Puts a staged batch's files, then (after `fence`, which throws when this holder's lease has
   * passed) its commit record. A failure before the record leaves the batch out of the archive.
   */
  async publish(batch: StagedBatch, fence: () => Promise<void> = async () => {}): Promise<void> {
    const files: ArchiveCommit['files'] = [];
    for (const f of batch.files) {
      const bytes = readFileSync(f.path);
      await this.blobs.put(`${this.root}/${f.date}/${f.name}`, bytes);
      files.push({ date: f.date, name: f.name, sha256: sha256Hex(bytes), bytes: bytes.byteLength });
    }
    await fence();
    const commit: ArchiveCommit = { first: batch.first, last: batch.last, files };
    await this.blobs.put(`${this.commitsPrefix}${rangeName(batch.first, batch.last)}.json`, Buffer.from(`${JSON.stringify(commit)}\n`));
  }

  /**
   * Publishes the local lakehouse's live files that no commit covers (a lake archived before the
   * blob store was used), batch by batch in offset order, stopping at the first that would overlap
   * a commit. Returns the batches published.
   */
  async adopt(lakeDir: string, fence?: () => Promise<void>): Promise<number> {
    const committed = await this.commits();
    const covered = (first: number, last: number) => committed.some((c) => first <= c.last && c.first <= last);
    let adopted = 0;
    for (const batch of localBatches(lakeDir)) {
      if (committed.some((c) => c.first === batch.first && c.last === batch.last)) continue;
      if (covered(batch.first, batch.last)) break;
      await this.publish(batch, fence);
      adopted++;
    }
    return adopted;
  }

  /**
   * Makes `lakeDir`'s live archive the committed one: fetches what is missing (each file checked
   * against its record's SHA-256 before it is moved in whole) and moves aside local files that no
   * commit names. Safe beside an archiver writing into the same lakehouse: local files are listed
   * before the commits, and a file is moved in only after its commit is written.
   */
  async sync(lakeDir: string): Promise<ArchiveSync> {
    const layout = lakeLayout(lakeDir);
    const archive = sourceDir(layout, LIVE_SOURCE);
    const local = localFiles(archive);
    const commits = await this.commits();
    const out: ArchiveSync = { batches: commits.length, fetched: 0, bytes: 0, setAside: [], end: commits.reduce((end, c) => Math.max(end, c.last + 1), 0) };
    const named = new Set<string>();
    for (const commit of commits) {
      for (const f of commit.files) {
        const rel = `${f.date}/${f.name}`;
        named.add(rel);
        const path = join(archive, f.date, f.name);
        if (existsSync(path) && statSync(path).size === f.bytes) continue;
        const bytes = await this.blobs.get(`${this.root}/${rel}`);
        if (!bytes) throw new IntegrityError(`archive file ${rel} is committed (offsets ${commit.first}-${commit.last}) but not in ${this.blobs.location}`);
        if (sha256Hex(bytes) !== f.sha256 || bytes.byteLength !== f.bytes)
          throw new IntegrityError(`archive file ${rel} in ${this.blobs.location} does not match its commit record (SHA-256 or size differ)`);
        mkdirSync(join(archive, f.date), { recursive: true });
        const temp = join(archive, f.date, `.${f.name}.${randomBytes(4).toString('hex')}.tmp`);
        writeFileSync(temp, bytes);
        renameSync(temp, path);
        out.fetched++;
        out.bytes += bytes.byteLength;
      }
    }
    const aside = join(layout.quarantine, 'live-not-committed', new Date().toISOString().replace(/[:.]/g, '-'));
    for (const rel of local) {
      if (named.has(rel)) continue;
      const [date, name] = rel.split('/') as [string, string];
      mkdirSync(join(aside, date), { recursive: true });
      renameSync(join(archive, rel), join(aside, date, name));
      out.setAside.push(join(aside, date, name));
    }
    return out;
  }

  /**
   * The log lost its records from `end` on: commits holding any offset from `end` on are removed
   * (their files copied under `lake/quarantine/live-log-recovery/<time>/` first, since they hold
   * events the log lost). Returns where archiving resumes: the end of the commits left.
   */
  async rewind(end: number): Promise<number> {
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    for (const commit of await this.commits()) {
      if (commit.last < end) continue;
      for (const f of commit.files) {
        const bytes = await this.blobs.get(`${this.root}/${f.date}/${f.name}`);
        if (bytes) await this.blobs.put(`${this.quarantine}/${stamp}/${f.date}/${f.name}`, bytes);
      }
      await this.blobs.delete(`${this.commitsPrefix}${rangeName(commit.first, commit.last)}.json`);
    }
    return this.end();
  }
}

const pad = (n: number) => String(n).padStart(12, '0');
const rangeName = (first: number, last: number) => `${pad(first)}-${pad(last)}`;

/** The live archive's files of a local lakehouse, as `date=<d>/part-<a>-<b>.parquet`. */
function localFiles(archive: string): string[] {
  const out: string[] = [];
  for (const date of existsSync(archive) ? readdirSync(archive) : []) {
    if (!DATE.test(date)) continue;
    for (const f of readdirSync(join(archive, date))) if (PART.test(f)) out.push(`${date}/${f}`);
  }
  return out;
}

/** A local lakehouse's live files grouped into batches (one per offset range), in offset order. */
function localBatches(lakeDir: string): StagedBatch[] {
  const archive = sourceDir(lakeLayout(lakeDir), LIVE_SOURCE);
  const batches = new Map<string, StagedBatch>();
  for (const rel of localFiles(archive)) {
    const [date, name] = rel.split('/') as [string, string];
    const m = PART.exec(name)!;
    const batch = batches.get(`${m[1]}-${m[2]}`) ?? { first: Number(m[1]), last: Number(m[2]), files: [] };
    batch.files.push({ date, name, path: join(archive, date, name) });
    batches.set(`${m[1]}-${m[2]}`, batch);
  }
  return [...batches.values()].sort((a, b) => a.first - b.first);
}
