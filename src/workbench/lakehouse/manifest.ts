import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { IntegrityError } from '../errors.js';
import { writeFileAtomic } from '../files.js';

const FileEntry = z.object({ path: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/), bytes: z.number().int() });

const EventSourceEntry = z.object({
  kind: z.literal('events'),
  fingerprint: z.string(),
  input: z.string(),
  read: z.number().int(),
  accepted: z.number().int(),
  quarantined: z.number().int(),
  first_time: z.string().nullable(),
  last_time: z.string().nullable(),
  files: z.array(FileEntry),
  built_at: z.string(),
});

const TableEntry = z.object({
  kind: z.literal('table'),
  fingerprint: z.string(),
  input: z.string(),
  read: z.number().int(),
  accepted: z.number().int(),
  quarantined: z.number().int(),
  file: FileEntry,
  built_at: z.string(),
});

export const ManifestSchema = z.object({
  format: z.literal(1),
  built_at: z.string(),
  sources: z.record(z.string(), EventSourceEntry),
  tables: z.record(z.string(), TableEntry),
});

export type Manifest = z.infer<typeof ManifestSchema>;
export type EventSourceEntry = z.infer<typeof EventSourceEntry>;
export type TableEntry = z.infer<typeof TableEntry>;
export type FileEntry = z.infer<typeof FileEntry>;

export function emptyManifest(): Manifest {
  return { format: 1, built_at: new Date(0).toISOString(), sources: {}, tables: {} };
}

export function readManifest(path: string): Manifest | undefined {
  if (!existsSync(path)) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new IntegrityError(`${path} is not valid JSON (${(err as Error).message}); rebuild with \`wb lake build --force\``);
  }
  const parsed = ManifestSchema.safeParse(json);
  if (!parsed.success) {
    throw new IntegrityError(`${path} is not a lakehouse manifest (${parsed.error.issues[0]?.message}); rebuild with \`wb lake build --force\``);
  }
  return parsed.data;
}

export function writeManifest(path: string, manifest: Manifest): void {
  writeFileAtomic(path, `${JSON.stringify(manifest, null, 2)}\n`);
}
