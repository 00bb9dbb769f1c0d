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
 *
 * A commit record that cannot be applied (not JSON, not a record, or offsets that do not fit its key
 * or its files' names) is not trusted: it is skipped, so none of the files it names is used, and the
 * archiver's holder sets it aside when it starts (`adopt`): its bytes are copied, as they are, to
 *
 *   lake/quarantine/live-malformed-commits/<time>/<first>-<last>.json
 *
 * and it is removed from the commits, reported through `warn` and `onSetAside`. Archiving then goes
 * on from the valid commits.
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

/** A commit record set aside: where it was, where its bytes are now, and why. */
export interface SetAsideCommit {
  key: string;
  quarantinedAs: string;
  reason: string;
}

export interface SharedArchiveOptions {
  /** The deployment's namespace (its OLTP schema): everything is under `<namespace>/`. */
  namespace?: string | undefined;
  /**
   * Told about each malformed commit record: once per record and instance when it is skipped, and
   * when it is set aside. By default a process warning (`ArchiveWarning`), so that it is never silent.
   */
  warn?: (message: string) => void;
  /** Called for each commit record set aside (after its bytes are in quarantine and it left the commits), e.g. to count it. */
  onSetAside?: (record: SetAsideCommit) => void;
}

/** A commit record that cannot be applied, with its bytes as read. */
interface Malformed {
  key: string;
  bytes: Uint8Array;
  reason: string;
}

export class SharedArchive {
  /** Commit records are written once and never changed (a rewind removes them): each is read once. */
  private readonly known = new Map<string, ArchiveCommit>();

  private readonly root: string;
  private readonly commitsPrefix: string;
  private readonly quarantine: string;
  private readonly commitQuarantine: string;
  /** Malformed records already reported as skipped (by key), so that a 30 s sync does not repeat it. */
  private readonly warned = new Set<string>();
  private readonly warn: (message: string) => void;

  constructor(
    readonly blobs: BlobStore,
    private readonly options: SharedArchiveOptions = {},
  ) {
    const ns = options.namespace ? `${blobKey(options.namespace)}/` : '';
    this.root = `${ns}${ROOT}`;
    this.commitsPrefix = `${this.root}/_commits/`;
    this.quarantine = `${ns}lake/quarantine/live-log-recovery`;
    this.commitQuarantine = `${ns}lake/quarantine/live-malformed-commits`;
    this.warn = options.warn ?? ((message) => process.emitWarning(message, 'ArchiveWarning'));
  }

  /**
   * The committed batches, in offset order. A malformed commit record is left out (none of its files
   * is used) and reported once; the archiver's holder sets it aside when it starts (`adopt`).
   */
  async commits(): Promise<ArchiveCommit[]> {
    const { commits, malformed } = await this.read();
    for (const m of malformed) {
      if (this.warned.has(m.key)) continue;
      this.warned.add(m.key);
      this.warn(
        `archive commit ${m.key} in ${this.blobs.location} cannot be applied (${m.reason}): skipped, none of its files is used; ` +
          `the archiver's holder moves it under ${this.commitQuarantine}/ when it starts`,
      );
    }
    return commits;
  }

  /**
   * The valid commit records and the malformed ones. Reading one is never mistaken for a record being
   * written: the blob store's put is atomic (`BlobStore.put`: a reader sees the old object or the new
   * one, never a part; a directory store writes a hidden temporary file, which is never listed, and
   * renames it over the key; an S3 PUT shows the object only once it is whole), and a record is put
   * once, after its files. So bytes that do not parse are what the record is. Only what the bytes say
   * makes a record malformed: a failing `get` (the store unreachable, or its own checksum refusing the
   * object) is thrown as before, and the record stays where it is.
   */
  private async read(): Promise<{ commits: ArchiveCommit[]; malformed: Malformed[] }> {
    const keys = await this.blobs.list(this.commitsPrefix);
    const present = new Set(keys);
    for (const key of this.known.keys()) if (!present.has(key)) this.known.delete(key);
    for (const key of this.warned) if (!present.has(key)) this.warned.delete(key);
    const malformed: Malformed[] = [];
    for (const key of keys) {
      if (this.known.has(key)) continue;
      const bytes = await this.blobs.get(key);
      if (!bytes) continue; // removed by a rewind since the listing
      const commit = parseCommit(key.slice(this.commitsPrefix.length), bytes);
      if (typeof commit === 'string') malformed.push({ key, bytes, reason: commit });
      else this.known.set(key, commit);
    }
    return { commits: [...this.known.values()].sort((a, b) => a.first - b.first), malformed };
  }

  /**
   * Sets aside the malformed commit records: each one's bytes are copied, as they are, under
   * `lake/quarantine/live-malformed-commits/<time>/`, then (after `fence`: only the archiver's holder
   * removes commits, as only it writes them) it is removed from the commits, unless it was replaced
   * since it was read. Reported through `warn` and `onSetAside`. Returns what was set aside.
   */
  async setAsideMalformed(fence: () => Promise<void> = async () => {}): Promise<SetAsideCommit[]> {
    const { malformed } = await this.read();
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const out: SetAsideCommit[] = [];
    for (const m of malformed) {
      const quarantinedAs = `${this.commitQuarantine}/${stamp}/${m.key.slice(this.commitsPrefix.length)}`;
      await this.blobs.put(quarantinedAs, m.bytes);
      await fence();
      const now = await this.blobs.get(m.key);
      if (!now || !Buffer.from(now).equals(Buffer.from(m.bytes))) continue; // replaced (or removed) since it was read
      await this.blobs.delete(m.key);
      this.warned.delete(m.key);
      const record: SetAsideCommit = { key: m.key, quarantinedAs, reason: m.reason };
      out.push(record);
      const [first, last] = commitRange(m.key.slice(this.commitsPrefix.length));
      this.warn(
        `archive commit ${m.key} in ${this.blobs.location} cannot be applied (${m.reason}): set aside as ${quarantinedAs} ` +
          `and removed from the commits; none of its files is used${
            first !== undefined
              ? `, and offsets ${first}-${last} are not in the archive unless this instance's lakehouse holds that batch (then it is published again); ` +
                `its files stay in the store, and other instances move their copies under lake/quarantine/live-not-committed/`
              : ''
          }`,
      );
      this.options.onSetAside?.(record);
    }
    return out;
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
   * a commit. Returns the batches published. The archiver's holder calls it when it starts: malformed
   * commit records are set aside first (`setAsideMalformed`), so that they never stop it.
   */
  async adopt(lakeDir: string, fence?: () => Promise<void>): Promise<number> {
    await this.setAsideMalformed(fence);
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

/** The offsets a commit record's name (its key under `_commits/`) says it holds, if it is one. */
function commitRange(name: string): [number, number] | [] {
  const m = /^(\d{12})-(\d{12})\.json$/.exec(name);
  return m ? [Number(m[1]), Number(m[2])] : [];
}

/**
 * A commit record from its bytes and its name under `_commits/`, or why it cannot be applied: not
 * JSON, not a record's shape, offsets backwards or other than its name's, or a file not named for them.
 */
function parseCommit(name: string, bytes: Uint8Array): ArchiveCommit | string {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    // The parser quotes the bytes: printable ASCII only, and not too many of them, for a log line.
    return `not JSON: ${(err as Error).message.replace(/[^\x20-\x7e]/g, '?').slice(0, 200)}`;
  }
  const parsed = commitSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    return `not a commit record: ${issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''}${issue.message}`;
  }
  const commit = parsed.data;
  if (commit.first > commit.last) return `offsets ${commit.first}-${commit.last} run backwards`;
  if (name !== `${rangeName(commit.first, commit.last)}.json`) return `its name does not match the offsets ${commit.first}-${commit.last} it holds`;
  const part = `part-${rangeName(commit.first, commit.last)}.parquet`;
  const bad = commit.files.find((f) => f.name !== part);
  if (bad) return `file ${bad.date}/${bad.name} is not named for the offsets ${commit.first}-${commit.last}`;
  return commit;
}

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
