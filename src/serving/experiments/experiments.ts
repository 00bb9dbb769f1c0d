import { checkExperiment, type Experiment, type ExperimentStatus, type Metric } from '../../workbench/experiments/definition.js';
import { ConflictError, InputError, NotFoundError } from '../../workbench/errors.js';
import type { ExperimentChange, OltpStore, WriteGuard } from '../../workbench/oltp/store.js';

/** An experiment as stored: its definition and the version a change must name. */
export interface StoredExperiment {
  experiment: Experiment;
  version: number;
  updated_at: string;
  updated_by: string;
}

/** Status changes an experiment may make; anything else is refused with the allowed ones named. */
const TRANSITIONS: Record<ExperimentStatus, readonly ExperimentStatus[]> = {
  draft: ['running'],
  running: ['stopped', 'shipped', 'rolled_back'],
  stopped: ['running'],
  shipped: [],
  rolled_back: [],
};

/** What cannot change while users are assigned: it would move them between arms. */
const FIXED_WHILE_ASSIGNED = ['seed', 'hashVersion', 'namespace'] as const;

/**
 * The experiments, kept in the OLTP database (definitions, and every change with who and when) and
 * cached here. Changes name the version they were made against, so of two concurrent edits the
 * second is refused rather than silently lost. Other processes (`wb experiments`, a notebook) write
 * to the same tables; `refresh()` picks their changes up.
 */
export class Experiments {
  private cache = new Map<string, StoredExperiment>();
  private listeners: ((e: StoredExperiment) => void)[] = [];
  private readonly savedListeners = new Set<(e: StoredExperiment) => void>();

  private readonly reported = new Set<string>();

  private constructor(
    private readonly oltp: OltpStore,
    readonly metrics: ReadonlyMap<string, Metric>,
    private readonly warn: (message: string) => void,
  ) {}

  /** `warn` hears of stored definitions that cannot be read here (a metric this process does not define): they are left out, not fatal. */
  static async open(oltp: OltpStore, metrics: ReadonlyMap<string, Metric>, warn: (message: string) => void = () => undefined): Promise<Experiments> {
    const experiments = new Experiments(oltp, metrics, warn);
    await experiments.refresh();
    return experiments;
  }

  /** Called with every experiment whose version changed (here or in another process). */
  onChange(listener: (e: StoredExperiment) => void): void {
    this.listeners.push(listener);
  }

  /**
   * Called after a change made through this object is stored (not for changes `refresh` finds): what
   * other instances must be told of. Returns the unsubscribe function.
   */
  onSaved(listener: (e: StoredExperiment) => void): () => void {
    this.savedListeners.add(listener);
    return () => void this.savedListeners.delete(listener);
  }

  async refresh(): Promise<void> {
    const next = new Map<string, StoredExperiment>();
    for (const r of await this.oltp.getExperiments()) {
      const known = this.cache.get(r.key);
      if (known && known.version === r.version) {
        next.set(r.key, known);
        continue;
      }
      // Stored definitions were checked when written; parse again so defaults of newer fields apply.
      try {
        const stored = {
          experiment: checkExperiment(JSON.parse(r.definition), { metrics: new Set(this.metrics.keys()) }),
          version: r.version,
          updated_at: r.updated_at,
          updated_by: r.updated_by,
        };
        next.set(r.key, stored);
      } catch (err) {
        if (known) next.set(r.key, known);
        const message = `experiment ${r.key} version ${r.version} cannot be read here, ${known ? `keeping version ${known.version}` : 'left out'}: ${(err as Error).message}`;
        if (!this.reported.has(message)) this.warn(message);
        this.reported.add(message);
      }
    }
    const changed = [...next.values()].filter((s) => this.cache.get(s.experiment.key)?.version !== s.version);
    this.cache = next;
    for (const s of changed) for (const l of this.listeners) l(s);
  }

  list(): StoredExperiment[] {
    return [...this.cache.values()];
  }

  running(): Experiment[] {
    return this.list()
      .map((s) => s.experiment)
      .filter((e) => e.status === 'running');
  }

  get(key: string): StoredExperiment {
    const s = this.cache.get(key);
    if (!s) throw new NotFoundError(`no experiment ${JSON.stringify(key)} (experiments: ${[...this.cache.keys()].join(', ') || 'none yet'})`);
    return s;
  }

  async history(key: string): Promise<ExperimentChange[]> {
    this.get(key);
    return this.oltp.experimentHistory(key);
  }

  /** Creates an experiment (status draft unless it says otherwise: `running` starts it at once). */
  async create(input: unknown, by: string): Promise<StoredExperiment> {
    await this.refresh();
    const e = this.check(input);
    if (this.cache.has(e.key))
      throw new ConflictError(`experiment ${e.key} already exists (version ${this.cache.get(e.key)!.version}); change it with PUT and If-Match`);
    if (e.status !== 'draft' && e.status !== 'running') throw new InputError(`experiment ${e.key}: a new experiment is draft or running, not ${e.status}`);
    return this.save(e, 1, by, 'created');
  }

  /** Replaces a definition, against the version it was read at. Status changes go through `setStatus`. */
  async update(key: string, input: unknown, version: number, by: string): Promise<StoredExperiment> {
    await this.refresh();
    const current = this.get(key);
    const e = this.check(input);
    if (e.key !== key) throw new InputError(`the body is experiment ${e.key}, the path names ${key}`);
    if (e.status !== current.experiment.status)
      throw new InputError(`experiment ${key}: change the status with POST /v1/experiments/${key}/status, not in the definition`);
    if (current.experiment.status !== 'draft') {
      for (const field of FIXED_WHILE_ASSIGNED) {
        if (JSON.stringify(e[field]) !== JSON.stringify(current.experiment[field]))
          throw new InputError(`experiment ${key} has assigned users: ${field} cannot change (it would move them between arms); create a new experiment`);
      }
      const arms = (x: Experiment) => x.arms.map((a) => a.key).join(',');
      if (arms(e) !== arms(current.experiment)) throw new InputError(`experiment ${key} has assigned users: its arms cannot be renamed, added or removed`);
      // The sample-ratio check compares users with the weights: changed weights would flag a mismatch and block every decision.
      const weights = (x: Experiment) => x.arms.map((a) => a.weight).join(',');
      if (weights(e) !== weights(current.experiment))
        throw new InputError(`experiment ${key} has assigned users: its weights cannot change (coverage can grow)`);
      // The live statistics are kept per metric from each user's exposure: a metric added later would start mid-way.
      const metricsOf = (x: Experiment) => [x.objective, ...x.guardrails.map((g) => g.metric)].join(',');
      if (metricsOf(e) !== metricsOf(current.experiment))
        throw new InputError(`experiment ${key} has assigned users: its objective and guard-rail metrics cannot change (tolerances and directions can)`);
      // An always-valid interval keeps its guarantee only at a tuning fixed before the data: retuned
      // mid-way, it could be chosen to make the interval exclude 0 now.
      const tuning = (x: Experiment) => JSON.stringify([x.plannedUsersPerArm, x.analysis?.sequentialTuning]);
      if (tuning(e) !== tuning(current.experiment))
        throw new InputError(
          `experiment ${key} has assigned users: plannedUsersPerArm and analysis.sequentialTuning cannot change (the always-valid intervals are tuned to them before the start)`,
        );
    }
    const changed = Object.keys(e).filter((k) => JSON.stringify(e[k as keyof Experiment]) !== JSON.stringify(current.experiment[k as keyof Experiment]));
    return this.save(e, version + 1, by, `changed ${changed.join(', ') || 'nothing'}`);
  }

  /** `guard` runs in the write's transaction (the decider's lease fence): if it throws, nothing changes. */
  async setStatus(
    key: string,
    status: ExperimentStatus,
    version: number,
    by: string,
    reason: string,
    winner?: string,
    guard?: WriteGuard,
  ): Promise<StoredExperiment> {
    await this.refresh();
    const current = this.get(key);
    const from = current.experiment.status;
    if (!TRANSITIONS[from].includes(status)) {
      throw new ConflictError(`experiment ${key} is ${from}: it can become ${TRANSITIONS[from].join(' or ') || 'nothing else (it is over)'}, not ${status}`);
    }
    const e = this.check({ ...current.experiment, status, ...(status === 'shipped' ? { winner: winner ?? current.experiment.winner } : {}) });
    return this.save(e, version + 1, by, `status ${from} -> ${status}${reason ? `: ${reason}` : ''}`, guard);
  }

  private check(input: unknown): Experiment {
    const others = this.list()
      .map((s) => s.experiment)
      .filter((o) => o.key !== (input as { key?: unknown } | null)?.key);
    return checkExperiment(input, { metrics: new Set(this.metrics.keys()), others });
  }

  private async save(e: Experiment, version: number, by: string, change: string, guard?: WriteGuard): Promise<StoredExperiment> {
    const stored: StoredExperiment = { experiment: e, version, updated_at: new Date().toISOString(), updated_by: by };
    await this.oltp.saveExperiment({ key: e.key, version, definition: JSON.stringify(e), updated_at: stored.updated_at, updated_by: by }, change, guard);
    this.cache.set(e.key, stored);
    for (const l of this.listeners) l(stored);
    for (const l of this.savedListeners) l(stored);
    return stored;
  }
}
