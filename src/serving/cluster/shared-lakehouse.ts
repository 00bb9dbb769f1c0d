import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { IntegrityError, WorkbenchError } from '../../workbench/errors.js';
import { lakeLayout, sourceDir } from '../../workbench/lakehouse/layout.js';
import { LIVE_SOURCE } from '../../workbench/lakehouse/live.js';
import { acquireLock } from '../../workbench/lakehouse/lock.js';
import { ManifestSchema, readManifest, writeManifest, type FileEntry, type Manifest } from '../../workbench/lakehouse/manifest.js';
import { blobKey, sha256Hex, type BlobStore } from './blob-store/store.js';

/**
 * The built lakehouse (`wb lake build`: the shipped sources, the simulated app, the OLTP replica) in
 * the blob store, beside the live archive, so that machines that share no disk work on the same
 * lakehouse. `push` puts every file the manifest lists, each checked against the manifest first,
 * then the manifest itself: the manifest is what makes a build the published one. `sync` fetches
 * the files a machine lacks, each checked against the published manifest's SHA-256 before it is
 * moved in whole, removes a built source's files the manifest no longer lists, and writes the
 * manifest last. The live source is the archiver's (SharedArchive) and is left alone.
 *
 *   lake/manifest.json                      the published build
 *   lake/<path the manifest lists>          its files, at the paths they have in a lakehouse
 */
export interface LakehousePush {
  /** Files put (new or changed since the published build). */
  put: number;
  bytes: number;
  /** Files the published build already had. */
  kept: number;
}

export interface LakehouseSync {
  /** Whether the published build differed from this machine's (false: nothing was done). */
  changed: boolean;
  /** A build (or another sync) held this lakehouse's lock: nothing was done; the next sync tries again. */
  busy: boolean;
  fetched: number;
  bytes: number;
  /** Built files removed (no longer in the published build). */
  removed: number;
}

export class SharedLakehouse {
  private readonly root: string;

  constructor(
    readonly blobs: BlobStore,
    options: { namespace?: string | undefined } = {},
  ) {
    this.root = `${options.namespace ? `${blobKey(options.namespace)}/` : ''}lake`;
  }

  /** The published build's manifest, or undefined when none was pushed. */
  async published(): Promise<Manifest | undefined> {
    const bytes = await this.blobs.get(`${this.root}/manifest.json`);
    if (!bytes) return undefined;
    const parsed = ManifestSchema.safeParse(parseJson(bytes));
    if (!parsed.success)
      throw new IntegrityError(`${this.root}/manifest.json in ${this.blobs.location} is not a lakehouse manifest: ${parsed.error.issues[0]?.message}`);
    return parsed.data;
  }

  /** Publishes the local lakehouse's build (under its build lock, so no build changes it meanwhile). */
  async push(lakeDir: string): Promise<LakehousePush> {
    const layout = lakeLayout(lakeDir);
    const release = acquireLock(layout);
    try {
      const manifest = readManifest(layout.manifest);
      if (!manifest) throw new WorkbenchError(`${layout.root} has no lakehouse to push; build it first (wb lake build)`);
      // A published manifest that cannot be read is replaced, with every file put again.
      const previous = await this.published().catch(() => undefined);
      const before = new Map(previous ? filesOf(previous).map((f) => [f.path, f.sha256]) : []);
      const out: LakehousePush = { put: 0, bytes: 0, kept: 0 };
      for (const f of filesOf(manifest)) {
        if (before.get(f.path) === f.sha256) {
          out.kept++;
          continue;
        }
        const bytes = readFileSync(join(layout.root, f.path));
        if (sha256Hex(bytes) !== f.sha256 || bytes.byteLength !== f.bytes)
          throw new IntegrityError(`${f.path} in ${layout.root} does not match its manifest entry; rebuild with \`wb lake build --force\``);
        await this.blobs.put(this.keyOf(f.path), bytes);
        out.put++;
        out.bytes += bytes.byteLength;
      }
      await this.blobs.put(`${this.root}/manifest.json`, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`));
      return out;
    } finally {
      release();
    }
  }

  /**
   * Makes the local lakehouse's build the published one (nothing to do when none is published or it
   * is the one this machine has). Under the local build lock: while a build or another sync holds
   * it, nothing is done (`busy`).
   */
  async sync(lakeDir: string): Promise<LakehouseSync> {
    const out: LakehouseSync = { changed: false, busy: false, fetched: 0, bytes: 0, removed: 0 };
    const published = await this.published();
    if (!published) return out;
    const layout = lakeLayout(lakeDir);
    const local = readManifest(layout.manifest);
    if (local && digest(local) === digest(published)) return out;
    out.changed = true;
    mkdirSync(layout.root, { recursive: true });
    let release: () => void;
    try {
      release = acquireLock(layout);
    } catch {
      return { ...out, busy: true };
    }
    try {
      const have = new Map(local ? filesOf(local).map((f) => [f.path, f.sha256]) : []);
      for (const f of filesOf(published)) {
        const path = join(layout.root, safePath(f.path));
        if (have.get(f.path) === f.sha256 && existsSync(path)) continue;
        const bytes = await this.blobs.get(this.keyOf(f.path));
        if (!bytes) throw new IntegrityError(`${f.path} is in the published lakehouse's manifest but not in ${this.blobs.location}`);
        if (sha256Hex(bytes) !== f.sha256 || bytes.byteLength !== f.bytes)
          throw new IntegrityError(`${f.path} in ${this.blobs.location} does not match the published manifest (SHA-256 or size differ)`);
        mkdirSync(dirname(path), { recursive: true });
        const temp = join(dirname(path), `.${randomBytes(4).toString('hex')}.tmp`);
        writeFileSync(temp, bytes);
        renameSync(temp, path);
        out.fetched++;
        out.bytes += bytes.byteLength;
      }
      // The archive's views read every file under a source's folder: a file of an earlier build left
      // there would be counted beside the new ones. The live source is the archiver's.
      const listed = new Set(filesOf(published).map((f) => f.path));
      const sources = new Set([...Object.keys(published.sources), ...Object.keys(local?.sources ?? {})]);
      for (const source of sources) {
        if (source === LIVE_SOURCE) continue;
        const dir = sourceDir(layout, source);
        for (const rel of filesUnder(dir)) {
          const path = `archive/events/source=${source}/${rel}`;
          if (!listed.has(path)) {
            rmSync(join(dir, rel), { force: true });
            out.removed++;
          }
        }
      }
      writeManifest(layout.manifest, published);
      return out;
    } finally {
      release();
    }
  }

  private keyOf(path: string): string {
    return blobKey(`${this.root}/${safePath(path)}`);
  }
}

/** Every file a manifest lists: the sources' and the tables'. */
function filesOf(m: Manifest): FileEntry[] {
  return [...Object.values(m.sources).flatMap((s) => s.files), ...Object.values(m.tables).map((t) => t.file)];
}

/** A manifest path, checked to stay inside the lakehouse (it comes from the blob store). */
function safePath(path: string): string {
  blobKey(path);
  return path;
}

function filesUnder(dir: string, prefix = ''): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(join(dir, e.name), `${prefix}${e.name}/`) : e.name.startsWith('.') ? [] : [`${prefix}${e.name}`],
  );
}

const digest = (m: Manifest) => createHash('sha256').update(JSON.stringify(m)).digest('hex');

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    return (err as Error).message;
  }
}
