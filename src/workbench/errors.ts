/**
 * One error type per kind of failure. Each carries a stable `code` (for JSON answers and exit codes)
 * and the HTTP status the service maps it to, so callers never parse messages.
 *
 * @example
 * ```ts
 * try {
 *   await lake.query(sql`SELECT * FROM events LIMIT 1`);
 * } catch (e) {
 *   if (e instanceof WorkbenchError) console.log(e.code, e.status);
 * }
 * ```
 */
export class WorkbenchError extends Error {
  readonly code: string = 'internal';
  readonly status: number = 500;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Where in an input file something went wrong: every field optional, printed as file:line column. */
export interface InputLocation {
  file?: string;
  line?: number;
  column?: string;
  cell?: number;
}

export function formatLocation(at: InputLocation): string {
  const parts: string[] = [];
  if (at.file) parts.push(at.line !== undefined ? `${at.file}:${at.line}` : at.file);
  else if (at.line !== undefined) parts.push(`line ${at.line}`);
  if (at.cell !== undefined) parts.push(`cell ${at.cell}`);
  if (at.column) parts.push(`column ${at.column}`);
  return parts.join(', ');
}

/**
 * Input the user gave us is wrong: a file, a flag, a parameter. Says what and where.
 *
 * @example
 * ```ts
 * throw new InputError('amount is not a number', { file: 'orders.csv', line: 12, column: 'amount' });
 * ```
 */
export class InputError extends WorkbenchError {
  override readonly code: string = 'bad_input';
  override readonly status: number = 400;
  constructor(
    readonly reason: string,
    readonly at: InputLocation = {},
  ) {
    const where = formatLocation(at);
    super(where ? `${where}: ${reason}` : reason);
  }
}

/**
 * Something expected on disk or in a store is absent (a lakehouse not built, an unknown user).
 *
 * @example
 * ```ts
 * try {
 *   await Lakehouse.open('/tmp/no-lake');
 * } catch (e) {
 *   if (e instanceof NotFoundError) console.log('build it first: wb lake build');
 * }
 * ```
 */
export class NotFoundError extends WorkbenchError {
  override readonly code: string = 'not_found';
  override readonly status: number = 404;
}

/**
 * The input contradicts what already exists (a feature name with another definition).
 *
 * @example
 * ```ts
 * try {
 *   featureSet([a, b]);
 * } catch (e) {
 *   if (e instanceof ConflictError) console.log(e.message); // two definitions of one name
 * }
 * ```
 */
export class ConflictError extends WorkbenchError {
  override readonly code: string = 'conflict';
  override readonly status: number = 409;
}

/**
 * A file failed its integrity check: it was changed after it was written.
 *
 * @example
 * ```ts
 * try {
 *   verifyBundle(JSON.parse(text));
 * } catch (e) {
 *   if (e instanceof IntegrityError) console.log('the bundle was changed after it was written');
 * }
 * ```
 */
export class IntegrityError extends WorkbenchError {
  override readonly code: string = 'integrity';
  override readonly status: number = 500;
}

/** A model bundle, intact, whose model cannot be built: a topology tfjs cannot read, weights that do not fit it. */
export class UnloadableBundleError extends WorkbenchError {
  override readonly code: string = 'bundle_unloadable';
  override readonly status: number = 400;
}

/** A model bundle holding a weight, or scoring its features' default values, as NaN or an infinity. */
export class NonFiniteBundleError extends WorkbenchError {
  override readonly code: string = 'bundle_non_finite';
  override readonly status: number = 400;
}

/** An alias cannot move to a stored version (changed, unreadable, of another model, cannot load): it stays where it was. */
export class AliasRefusedError extends WorkbenchError {
  override readonly code: string = 'alias_refused';
  override readonly status: number = 409;
}

/** A served model gave a score that is not a finite number; the service answers an error, never `score: null`. */
export class NonFiniteScoreError extends WorkbenchError {
  override readonly code: string = 'score_non_finite';
  override readonly status: number = 500;
}

/**
 * A SQL statement failed; the statement travels with the error so the user sees what ran.
 *
 * @example
 * ```ts
 * try {
 *   await lake.query(sql`SELECT nope FROM events`);
 * } catch (e) {
 *   if (e instanceof SqlError) console.log(e.message); // DuckDB's message and the statement
 * }
 * ```
 */
export class SqlError extends WorkbenchError {
  override readonly code: string = 'sql';
  override readonly status: number = 500;
  constructor(
    readonly sql: string,
    cause: unknown,
  ) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`${reason}\n-- in SQL:\n${indent(sql)}`, { cause });
  }
}

/**
 * A notebook cell raised. Carries what a reader needs to fix it without opening Jupyter.
 *
 * @example
 * ```ts
 * const error = new NotebookError('notebooks/05-experiment-analysis.ipynb', 3, 'show(reslts);', 'ReferenceError: reslts is not defined');
 * console.log(error.message); // the notebook, the cell, its source and what it raised
 * ```
 */
export class NotebookError extends WorkbenchError {
  override readonly code: string = 'notebook_failed';
  override readonly status: number = 500;
  constructor(
    readonly notebook: string,
    readonly cell: number,
    readonly source: string,
    readonly detail: string,
  ) {
    super(`${notebook}, cell ${cell} failed:\n${indent(source)}\n${detail}`);
  }
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}
