import { createHmac, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { WorkbenchError } from '../errors.js';

/**
 * Marks an executed notebook as trusted for this user's Jupyter, in Node, the way Jupyter does for a
 * notebook it ran and saved itself (nbformat's `NotebookNotary.sign`, nbformat/sign.py): otherwise
 * Jupyter hides the figures' scripts until the user trusts the notebook by hand.
 *
 * Jupyter's trust is an HMAC-SHA256, keyed with the user's `notebook_secret`, of the notebook as
 * nbformat reads it (every value as bytes, dict keys sorted), stored in the SQLite database
 * `nbsignatures.db` next to the key; the file itself is not changed. Only Jupyter's defaults are
 * followed: the algorithm (sha256), the data directory and the file names; a Jupyter configured
 * otherwise (`NotebookNotary.algorithm`, `.db_file`, `.secret_file`) does not see the signature.
 */

const ALGORITHM = 'sha256';
/** nbformat's SQLiteSignatureStore.cache_size: past it, the oldest quarter of the signatures goes. */
const CACHE_SIZE = 65_535;

/**
 * The user's Jupyter data directory, as jupyter_core's `jupyter_data_dir()` finds it: JUPYTER_DATA_DIR,
 * else `~/Library/Jupyter` (macOS), `%APPDATA%\jupyter` (Windows), `$XDG_DATA_HOME/jupyter` or
 * `~/.local/share/jupyter` (elsewhere). jupyter_core 5's opt-in JUPYTER_PLATFORM_DIRS is not followed.
 */
export function jupyterDataDir(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  if (env.JUPYTER_DATA_DIR) return env.JUPYTER_DATA_DIR;
  let home = homedir();
  try {
    home = realpathSync(home); // jupyter_core resolves symbolic links in the home directory
  } catch {
    // a home that does not exist: the data directory below does not either, and nothing is signed
  }
  if (platform === 'darwin') return join(home, 'Library', 'Jupyter');
  if (platform === 'win32') return env.APPDATA ? join(env.APPDATA, 'jupyter') : join(env.JUPYTER_CONFIG_DIR || join(home, '.jupyter'), 'data');
  return join(env.XDG_DATA_HOME || join(home, '.local', 'share'), 'jupyter');
}

/** A JSON value as JSON.parse gives it. */
type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

const isObject = (v: Json | undefined): v is { [key: string]: Json } => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The notebook as nbformat's reader hands it to the notary, on a copy: `strip_transient` drops the
 * signature, `orig_nbformat` and each cell's `trusted`. The reader's `rejoin_lines` (sources and output
 * text saved as lists of lines made single strings again) needs no counterpart: a list of strings
 * feeds the hash the very bytes of its join.
 */
function asNbformatReadsIt(nb: { [key: string]: Json }): { [key: string]: Json } {
  const copy = structuredClone(nb);
  if (isObject(copy.metadata)) {
    delete copy.metadata.orig_nbformat;
    delete copy.metadata.orig_nbformat_minor;
    delete copy.metadata.signature;
  }
  for (const cell of Array.isArray(copy.cells) ? copy.cells : []) if (isObject(cell) && isObject(cell.metadata)) delete cell.metadata.trusted;
  return copy;
}

/** Python's order of str keys: by code point (JavaScript's default sort goes by UTF-16 unit, which differs past U+FFFF). */
function byCodePoint(a: string, b: string): number {
  const x = Array.from(a, (c) => c.codePointAt(0)!);
  const y = Array.from(b, (c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

/**
 * `str(x)` in Python of a number JSON.stringify wrote as `String(x)`: Python reads `12` as an int and
 * `0.5`, `1e-7`, `1e+21` as floats, and prints floats by `repr`: the shortest digits, positional when
 * the decimal point falls within 16 places (`100.0`, `0.0001`), else exponent with two digits at least
 * (`1e-05`, `1e+16`).
 */
export function pythonStr(x: number): string {
  const written = String(x);
  if (/^-?\d+$/.test(written)) return written; // an int to Python
  if (!Number.isFinite(x)) throw new Error(`${x} is not JSON`); // JSON.stringify writes null
  const sign = x < 0 ? '-' : ''; // -0 was written `0`, an int
  const [mantissa, exponent] = Math.abs(x).toExponential().split('e') as [string, string];
  const digits = mantissa.replace('.', '');
  const point = Number(exponent) + 1; // the decimal point's place after the first digit, as CPython's decpt
  if (point <= -4 || point > 16) {
    const e = Number(exponent);
    return `${sign}${digits[0]}${digits.length > 1 ? `.${digits.slice(1)}` : ''}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  }
  if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${'0'.repeat(point - digits.length)}.0`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/** A string Python cannot encode as UTF-8 (a lone surrogate): nbformat fails on it, and so we do not sign. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** nbformat's `yield_everything`: every key and value as UTF-8 bytes, dicts by sorted key, into the HMAC. */
function feed(hmac: ReturnType<typeof createHmac>, value: Json): void {
  const text = (s: string) => {
    if (LONE_SURROGATE.test(s)) throw new UnsignableError('the notebook holds a lone UTF-16 surrogate, which Jupyter cannot sign either');
    hmac.update(s, 'utf8');
  };
  if (Array.isArray(value)) for (const item of value) feed(hmac, item);
  else if (isObject(value)) {
    for (const key of Object.keys(value).sort(byCodePoint)) {
      text(key);
      feed(hmac, value[key]!);
    }
  } else if (typeof value === 'string') text(value);
  else if (typeof value === 'number') text(pythonStr(value));
  else if (typeof value === 'boolean') text(value ? 'True' : 'False');
  else text('None');
}

/** The notebook cannot be signed the way Jupyter would check it. */
export class UnsignableError extends WorkbenchError {}

/**
 * Jupyter's signature of a notebook file's text (nbformat's `compute_signature`): the hex HMAC, under
 * `secret` (the bytes of `notebook_secret`), of the notebook as nbformat reads the file. Numbers are
 * taken in the form JSON.stringify writes them, which is how every executed notebook here is written.
 */
export function notebookSignature(text: string, secret: Buffer): string {
  const nb = JSON.parse(text) as Json;
  if (!isObject(nb)) throw new UnsignableError('not a notebook');
  const hmac = createHmac(ALGORITHM, secret);
  feed(hmac, asNbformatReadsIt(nb));
  return hmac.digest('hex');
}

export type TrustOutcome =
  /** The signature is in the user's signature database: Jupyter opens the notebook trusted. */
  | { signed: true; database: string }
  /** There is no Jupyter data directory here (a machine without Jupyter): nothing to sign for. */
  | { signed: false; reason: string };

/**
 * Signs a notebook file's text for this user's Jupyter (nbformat's `NotebookNotary.sign`): stores its
 * signature in `<data dir>/nbsignatures.db`, creating the key `notebook_secret` first if the data
 * directory has none, as Jupyter does. Without a Jupyter data directory it signs nothing and says so.
 */
export async function trustNotebook(text: string, dataDir: string = jupyterDataDir()): Promise<TrustOutcome> {
  if (!existsSync(dataDir) || !statSync(dataDir).isDirectory()) return { signed: false, reason: `no Jupyter data directory at ${dataDir}` };
  const signature = notebookSignature(text, notebookSecret(dataDir));
  const database = join(dataDir, 'nbsignatures.db');
  // Loaded here, not with the module: a run that signs nothing need not load a native addon.
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(database, { timeout: 10_000 });
  try {
    storeSignature(db, signature);
  } finally {
    db.close();
  }
  return { signed: true, database };
}

/** The key, or a new one written as nbformat writes it (base64 of 1024 random bytes, lines of 76, mode 0600). */
function notebookSecret(dataDir: string): Buffer {
  const file = join(dataDir, 'notebook_secret');
  if (existsSync(file)) return readFileSync(file);
  const secret = Buffer.from(
    `${randomBytes(1024)
      .toString('base64')
      .match(/.{1,76}/g)!
      .join('\n')}\n`,
  ); // base64.encodebytes
  // `wx`: two runs creating the key at once must not sign with two different keys.
  try {
    writeFileSync(file, secret, { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readFileSync(file);
    throw err;
  }
  chmodSync(file, 0o600);
  return secret;
}

/** nbformat's SQLiteSignatureStore: the same table and index, one row per signature, its last_seen refreshed. */
function storeSignature(db: BetterSqlite3.Database, signature: string): void {
  db.exec(`CREATE TABLE IF NOT EXISTS nbsignatures
    (
      id integer PRIMARY KEY AUTOINCREMENT,
      algorithm text,
      signature text,
      path text,
      last_seen timestamp
    )`);
  db.exec('CREATE INDEX IF NOT EXISTS algosig ON nbsignatures(algorithm, signature)');
  // Python's sqlite3 stores a datetime as its isoformat(' '): 2026-01-31 12:00:00.123000+00:00.
  const now = `${new Date().toISOString().replace('T', ' ').replace('Z', '')}000+00:00`;
  db.transaction(() => {
    const known = db.prepare('SELECT id FROM nbsignatures WHERE algorithm = ? AND signature = ?').get(ALGORITHM, signature);
    if (known === undefined) db.prepare('INSERT INTO nbsignatures (algorithm, signature, last_seen) VALUES (?, ?, ?)').run(ALGORITHM, signature, now);
    else db.prepare('UPDATE nbsignatures SET last_seen = ? WHERE algorithm = ? AND signature = ?').run(now, ALGORITHM, signature);
    const { n } = db.prepare('SELECT count(*) AS n FROM nbsignatures').get() as { n: number };
    if (n > CACHE_SIZE) {
      db.prepare('DELETE FROM nbsignatures WHERE id IN (SELECT id FROM nbsignatures ORDER BY last_seen DESC LIMIT -1 OFFSET ?)').run(
        Math.max(Math.floor(0.75 * CACHE_SIZE), 1),
      );
    }
  }).immediate();
}
