import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import type { Event } from '../workbench/event.js';
import type { Tier, User } from '../workbench/oltp/store.js';
import { assign, type Experiment } from '../workbench/experiments/definition.js';
import { Random, logit, sigmoid } from '../workbench/random.js';

/**
 * A simulated SaaS product. Each user has a latent engagement that drives how often they log in,
 * which of the product's features they use, whether they upgrade to pro and when they churn. The
 * causal structure is known, and written out as ground truth, so that later work (churn models,
 * experiments) can be checked against the truth rather than against its own output.
 */

export const SimulationConfigSchema = z.object({
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1)
    .default(42),
  users: z.number().int().min(1).max(1_000_000).default(2000),
  days: z.number().int().min(1).max(3650).default(120),
  start: z.iso.date().default('2025-01-01'),
  /** Days over which users sign up (default: the first 70% of the period, so cohorts have time to show retention). */
  signup_days: z.number().int().min(1).optional(),
  /** An injected outage: the app is down for users in one country, so their events never happen. */
  outage: z
    .object({
      country: z.string().min(2).max(64),
      start: z.iso.datetime({ offset: true }),
      hours: z
        .number()
        .positive()
        .max(24 * 365),
    })
    .optional(),
  /**
   * Telemetry the app reports beside its users' behaviour, off unless given (histories without it
   * are unchanged): each login carries the app's response time (`props.latency_ms`, log-normal around
   * `latency_ms`), and after a login or a feature use a user buys add-on credits with probability
   * `purchase_rate` (a `purchase` event, `props.amount` 5, 10 or 20). Drawn from streams of their
   * own, so the users' behaviour is the same with it or without it.
   */
  telemetry: z
    .object({
      latency_ms: z.number().positive().default(120),
      purchase_rate: z.number().min(0).max(1).default(0.5),
    })
    .optional(),
  /** An injected revenue dip (needs telemetry): payments fail, only a share `factor` of the purchases goes through. */
  revenue_dip: z
    .object({
      start: z.iso.datetime({ offset: true }),
      hours: z
        .number()
        .positive()
        .max(24 * 365),
      factor: z.number().min(0).max(1),
    })
    .optional(),
  /** An injected latency rise (needs telemetry): responses take `factor` times as long. */
  latency_rise: z
    .object({
      start: z.iso.datetime({ offset: true }),
      hours: z
        .number()
        .positive()
        .max(24 * 365),
      factor: z.number().positive(),
    })
    .optional(),
});
export type SimulationConfig = z.infer<typeof SimulationConfigSchema>;
export const DEFAULT_SIMULATION: SimulationConfig = SimulationConfigSchema.parse({});

export const FEATURES = ['dashboards', 'reports', 'alerts', 'integrations', 'exports'] as const;
export type Feature = (typeof FEATURES)[number];

export interface FeatureTruth {
  /** Probability that an average user uses the feature on a day they log in. */
  adoption: number;
  /** Change in the log-odds of the daily churn hazard per unit of the user's usage propensity. */
  churn_log_odds: number;
  /** Change in the log-odds of upgrading on a day the feature is used. */
  upgrade_log_odds: number;
}

/** The causal parameters of the product. Negative churn effects keep users; `exports` precedes leaving. */
export const FEATURE_TRUTH: Readonly<Record<Feature, FeatureTruth>> = {
  dashboards: { adoption: 0.55, churn_log_odds: -0.5, upgrade_log_odds: 0.2 },
  reports: { adoption: 0.3, churn_log_odds: -0.3, upgrade_log_odds: 0.6 },
  alerts: { adoption: 0.2, churn_log_odds: -0.8, upgrade_log_odds: 0.3 },
  integrations: { adoption: 0.1, churn_log_odds: -1.5, upgrade_log_odds: 1.0 },
  exports: { adoption: 0.15, churn_log_odds: 0.6, upgrade_log_odds: -0.2 },
};

const COUNTRIES = [
  ['GB', 0.35],
  ['US', 0.25],
  ['DE', 0.12],
  ['FR', 0.1],
  ['NL', 0.08],
  ['IN', 0.1],
] as const;
const DEVICES = [
  ['web', 0.5],
  ['ios', 0.3],
  ['android', 0.2],
] as const;
/** Engagement shifts by device: mobile users log in more, web users go deeper. */
const DEVICE_ENGAGEMENT: Record<string, number> = { web: 0, ios: 0.2, android: -0.1 };

const CHURN_BASE_LOG_ODDS = logit(0.012);
const CHURN_ENGAGEMENT = -0.9;
const CHURN_PRO = -1.0;
const UPGRADE_BASE_LOG_ODDS = -6.2;
const UPGRADE_ENGAGEMENT = 0.8;
const PRO_MRR = 29;
const DAY_MS = 86_400_000;

/** What the simulator knows about one user and no model is told. */
export interface UserTruth {
  user_id: string;
  engagement: number;
  /** Daily probability of churning while on the free tier. */
  churn_hazard: number;
  /** The user's true churn propensity: probability of churning within 30 days on the free tier. */
  churn_30d: number;
  /** Daily probability of using each feature on a day the user logs in. */
  usage: Record<Feature, number>;
  upgraded_at: string | null;
  churned_at: string | null;
}

export interface GroundTruth {
  config: SimulationConfig;
  features: Readonly<Record<Feature, FeatureTruth>>;
  effects: { churn_base_log_odds: number; churn_engagement: number; churn_pro: number; upgrade_base_log_odds: number; upgrade_engagement: number };
  users: UserTruth[];
}

export interface SimulatedDay {
  /** YYYY-MM-DD */
  date: string;
  /** The day's events in time order. */
  events: Event[];
}

interface SimUser {
  user: User;
  truth: UserTruth;
  rng: Random;
  signupDay: number;
  churned: boolean;
  /** Experiment key -> the effect the user got at exposure (undefined: exposed, no effect). */
  exposed: Map<string, TreatmentEffect | undefined>;
  /** The telemetry's own stream (config.telemetry), apart from the behaviour's. */
  telemetry?: Random;
}

/** How an exposed user's behaviour changes: shifts of log-odds, added to the user's own. */
export interface TreatmentEffect {
  churnLogOdds?: number;
  loginLogOdds?: number;
  upgradeLogOdds?: number;
  /** Only users whose model score (as the app reads it from OLTP) is at least this get the effect. */
  minScore?: number;
}

/**
 * An experiment the simulated product runs: users are assigned exactly as the platform assigns
 * them (the same definition and hash) at their first login from `fromDay`, and each arm changes the
 * behaviour of its exposed users by a known amount: the truth the platform's results are checked
 * against.
 */
export interface Treatment {
  experiment: Experiment;
  fromDay: number;
  effects: Record<string, TreatmentEffect>;
}

export class AppSimulator {
  readonly config: SimulationConfig;
  private readonly users: SimUser[];
  private readonly startMs: number;
  private simulatedDays = 0;
  private treatments: Treatment[] = [];
  private readonly ended = new Set<string>();
  private scores: ReadonlyMap<string, number> = new Map();

  constructor(config: Partial<SimulationConfig> = {}) {
    this.config = SimulationConfigSchema.parse(config);
    this.startMs = Date.parse(`${this.config.start}T00:00:00Z`);
    this.users = Array.from({ length: this.config.users }, (_, i) => this.makeUser(i));
  }

  /**
   * The simulation, one day at a time. Each user draws from their own seeded stream, so a user's
   * history does not depend on how many other users there are.
   */
  *days(): Generator<SimulatedDay> {
    for (let day = this.simulatedDays; day < this.config.days; day++) {
      const events: Event[] = [];
      for (const u of this.users) if (!u.churned && day >= u.signupDay) this.simulateUserDay(u, day, events);
      events.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : a.event_id < b.event_id ? -1 : 1));
      this.simulatedDays = day + 1;
      yield { date: isoDate(this.startMs + day * DAY_MS), events };
    }
  }

  /** Experiments to run from now on (see Treatment). */
  runTreatments(treatments: readonly Treatment[]): void {
    this.treatments = [...treatments];
  }

  /** Stops an experiment's effects (the platform rolled it back: its users return to control). */
  endTreatment(key: string): void {
    this.ended.add(key);
  }

  /** The scores the app can read (the OLTP predictions the service precomputes), by user. */
  setScores(scores: ReadonlyMap<string, number>): void {
    this.scores = scores;
  }

  /** The days simulated so far. */
  get day(): number {
    return this.simulatedDays;
  }

  /** Every user as the OLTP database holds them now (tier reflects upgrades simulated so far). */
  currentUsers(): User[] {
    return this.users.filter((u) => u.signupDay < this.simulatedDays).map((u) => ({ ...u.user }));
  }

  truth(): GroundTruth {
    return {
      config: this.config,
      features: FEATURE_TRUTH,
      effects: {
        churn_base_log_odds: CHURN_BASE_LOG_ODDS,
        churn_engagement: CHURN_ENGAGEMENT,
        churn_pro: CHURN_PRO,
        upgrade_base_log_odds: UPGRADE_BASE_LOG_ODDS,
        upgrade_engagement: UPGRADE_ENGAGEMENT,
      },
      users: this.users.map((u) => ({ ...u.truth, usage: { ...u.truth.usage } })),
    };
  }

  private makeUser(index: number): SimUser {
    const rng = new Random(this.config.seed, index);
    const user_id = `u${String(index + 1).padStart(6, '0')}`;
    const country = rng.weighted(COUNTRIES);
    const device = rng.weighted(DEVICES);
    const engagement = rng.normal() + (DEVICE_ENGAGEMENT[device] ?? 0);
    const signupWindow = this.config.signup_days ?? Math.max(1, this.config.days * 0.7);
    const signupDay = Math.min(this.config.days - 1, Math.floor(rng.next() * signupWindow));
    const usage = {} as Record<Feature, number>;
    let churnLogOdds = CHURN_BASE_LOG_ODDS + CHURN_ENGAGEMENT * engagement;
    for (const f of FEATURES) {
      usage[f] = sigmoid(logit(FEATURE_TRUTH[f].adoption) + 0.8 * engagement + rng.normal(0, 0.6));
      churnLogOdds += FEATURE_TRUTH[f].churn_log_odds * usage[f];
    }
    const churn_hazard = sigmoid(churnLogOdds);
    const first_seen = new Date(this.startMs + signupDay * DAY_MS + sessionOffsetMs(rng)).toISOString();
    return {
      user: { user_id, country, device, tier: 'free', first_seen },
      truth: {
        user_id,
        engagement,
        churn_hazard,
        churn_30d: 1 - (1 - churn_hazard) ** 30,
        usage,
        upgraded_at: null,
        churned_at: null,
      },
      rng,
      signupDay,
      churned: false,
      exposed: new Map(),
      ...(this.config.telemetry ? { telemetry: new Random(this.config.seed, index, 0x7e1e) } : {}),
    };
  }

  /** At a login: enters the user into each running experiment they are not in yet, as the platform would. */
  private expose(u: SimUser, day: number): void {
    for (const t of this.treatments) {
      if (day < t.fromDay || this.ended.has(t.experiment.key) || u.exposed.has(t.experiment.key)) continue;
      const arm = assign(t.experiment, { user_id: u.user.user_id, dims: u.user });
      if (arm === undefined) continue;
      const effect = t.effects[arm];
      const eligible = effect && (effect.minScore === undefined || (this.scores.get(u.user.user_id) ?? -1) >= effect.minScore);
      u.exposed.set(t.experiment.key, eligible ? effect : undefined);
    }
  }

  /** The sum of the effects a user has now (experiments rolled back no longer count). */
  private effectOf(u: SimUser): Required<Omit<TreatmentEffect, 'minScore'>> {
    const total = { churnLogOdds: 0, loginLogOdds: 0, upgradeLogOdds: 0 };
    for (const [key, effect] of u.exposed) {
      if (!effect || this.ended.has(key)) continue;
      total.churnLogOdds += effect.churnLogOdds ?? 0;
      total.loginLogOdds += effect.loginLogOdds ?? 0;
      total.upgradeLogOdds += effect.upgradeLogOdds ?? 0;
    }
    return total;
  }

  /** A login with its response time (config.telemetry), with the injected latency rise. */
  private emitLogin(rng: Random, at: number, device: string, emit: (atMs: number, event: string, props: Record<string, unknown>) => void): void {
    const rise = during(this.config.latency_rise, at) ? this.config.latency_rise!.factor : 1;
    emit(at, 'login', { device, latency_ms: Math.round(this.config.telemetry!.latency_ms * Math.exp(0.3 * rng.normal()) * rise) });
    this.maybePurchase(rng, at, emit);
  }

  /** Perhaps a purchase a few minutes after `at` (config.telemetry), with the injected revenue dip. */
  private maybePurchase(rng: Random, at: number, emit: (atMs: number, event: string, props: Record<string, unknown>) => void): void {
    if (!rng.bernoulli(this.config.telemetry!.purchase_rate)) return;
    const when = at + 60_000 + rng.int(10 * 60_000);
    const amount = rng.weighted([
      [5, 0.4],
      [10, 0.4],
      [20, 0.2],
    ]);
    const fails = during(this.config.revenue_dip, when) && !rng.bernoulli(this.config.revenue_dip!.factor);
    if (!fails) emit(when, 'purchase', { amount });
  }

  private simulateUserDay(u: SimUser, day: number, out: Event[]): void {
    const { rng, user, truth } = u;
    const dayStart = this.startMs + day * DAY_MS;
    let seq = 0;
    const outage = this.config.outage;
    const down = outage && outage.country === user.country ? [Date.parse(outage.start), Date.parse(outage.start) + outage.hours * 3_600_000] : undefined;
    const emit = (atMs: number, event: string, props: Record<string, unknown>) => {
      // The user's behaviour is drawn as usual (so the rest of the history is unchanged); only
      // what would have been recorded during the outage is lost.
      if (down && atMs >= down[0]! && atMs < down[1]!) {
        seq++;
        return;
      }
      out.push({
        event_id: `${user.user_id}-${String(day).padStart(4, '0')}-${String(seq++).padStart(3, '0')}`,
        time: new Date(atMs).toISOString(),
        user_id: user.user_id,
        event,
        props,
      });
    };

    let loggedIn: boolean;
    let at: number;
    if (day === u.signupDay) {
      at = Date.parse(user.first_seen);
      emit(at, 'signup', { country: user.country, device: user.device });
      loggedIn = true;
    } else {
      const weekend = [0, 6].includes(new Date(dayStart).getUTCDay());
      const pLogin = sigmoid(-0.2 + 1.2 * truth.engagement) * (weekend ? 0.55 : 1);
      loggedIn = rng.bernoulli(pLogin);
      at = dayStart + sessionOffsetMs(rng);
    }
    const before = this.effectOf(u);
    if (!loggedIn && before.loginLogOdds > 0 && day !== u.signupDay) {
      // A treatment that brings users back: a second chance at the day's login, with the shifted odds.
      const weekend = [0, 6].includes(new Date(dayStart).getUTCDay());
      const p0 = sigmoid(-0.2 + 1.2 * truth.engagement) * (weekend ? 0.55 : 1);
      const p1 = sigmoid(logit(Math.min(0.999, p0)) + before.loginLogOdds);
      loggedIn = p1 > p0 && rng.bernoulli((p1 - p0) / (1 - p0));
    }
    if (loggedIn && before.loginLogOdds < 0 && day !== u.signupDay) {
      // A treatment that keeps users away: the day's login is lost with the shifted odds.
      const weekend = [0, 6].includes(new Date(dayStart).getUTCDay());
      const p0 = sigmoid(-0.2 + 1.2 * truth.engagement) * (weekend ? 0.55 : 1);
      const p1 = sigmoid(logit(Math.max(0.001, Math.min(0.999, p0))) + before.loginLogOdds);
      loggedIn = !rng.bernoulli(1 - p1 / p0);
    }
    if (loggedIn) {
      if (u.telemetry) this.emitLogin(u.telemetry, at, user.device, emit);
      else emit(at, 'login', { device: user.device });
      this.expose(u, day);
      const effect = this.effectOf(u);
      let upgradeLogOdds = UPGRADE_BASE_LOG_ODDS + UPGRADE_ENGAGEMENT * truth.engagement + (effect.upgradeLogOdds ?? 0);
      for (const f of FEATURES) {
        if (!rng.bernoulli(truth.usage[f])) continue;
        at += 30_000 + rng.int(15 * 60_000);
        emit(at, 'feature_used', { feature: f, duration_s: 10 + rng.int(600) });
        if (u.telemetry) this.maybePurchase(u.telemetry, at, emit);
        upgradeLogOdds += FEATURE_TRUTH[f].upgrade_log_odds;
      }
      if (user.tier === 'free' && rng.bernoulli(sigmoid(upgradeLogOdds))) {
        at += 60_000 + rng.int(10 * 60_000);
        emit(at, 'upgrade', { plan: 'pro', mrr: PRO_MRR });
        user.tier = 'pro' satisfies Tier;
        truth.upgraded_at = new Date(at).toISOString();
      }
    }
    // Churn is decided at the end of the day; a churned user is never seen again.
    const shift = this.effectOf(u).churnLogOdds ?? 0;
    const base = user.tier === 'pro' ? sigmoid(logit(truth.churn_hazard) + CHURN_PRO) : truth.churn_hazard;
    const hazard = shift === 0 ? base : sigmoid(logit(base) + shift);
    if (day > u.signupDay && rng.bernoulli(hazard)) {
      u.churned = true;
      const churnAt = dayStart + DAY_MS - 1;
      truth.churned_at = new Date(churnAt).toISOString();
      if (user.tier === 'pro') emit(Math.max(at, dayStart + 23 * 3_600_000), 'subscription_cancelled', { plan: 'pro', mrr: PRO_MRR });
    }
  }
}

/** Everything the simulator is told about its experiments, applied to one user. */
export interface SimulatorTreatments {
  runTreatments(treatments: readonly Treatment[]): void;
  endTreatment(key: string): void;
  setScores(scores: ReadonlyMap<string, number>): void;
}

/** The whole history at once: what `wb lake build` archives. */
export function simulateHistory(config: Partial<SimulationConfig> = {}): { users: User[]; events: Event[]; truth: GroundTruth } {
  const sim = new AppSimulator(config);
  const events: Event[] = [];
  for (const day of sim.days()) for (const e of day.events) events.push(e);
  return { users: sim.currentUsers(), events, truth: sim.truth() };
}

export interface StreamOptions {
  /** Simulated seconds per real second: 86400 plays one simulated day per second. */
  speed: number;
  /** `simulated` keeps the simulated timestamps; `wall` stamps each event with the moment it is emitted. */
  clock?: 'simulated' | 'wall';
  signal?: AbortSignal;
}

/**
 * The simulation as a live stream: events come out in time order, paced so that simulated time
 * advances `speed` times faster than real time. Users appear in the OLTP database through
 * `onUsers`, called with each day's new signups before their first event.
 */
export async function* streamSimulation(
  config: Partial<SimulationConfig>,
  options: StreamOptions,
  onUsers?: (users: User[]) => Promise<void> | void,
): AsyncGenerator<Event> {
  if (!(options.speed > 0)) throw new RangeError('speed must be a positive number of simulated seconds per second');
  const sim = new AppSimulator(config);
  const simStart = Date.parse(`${sim.config.start}T00:00:00Z`);
  const realStart = Date.now();
  const announced = new Set<string>();
  for (const day of sim.days()) {
    if (onUsers) {
      const fresh = sim.currentUsers().filter((u) => !announced.has(u.user_id));
      for (const u of fresh) announced.add(u.user_id);
      if (fresh.length > 0) await onUsers(fresh);
    }
    for (const e of day.events) {
      const due = realStart + (Date.parse(e.time) - simStart) / options.speed;
      const wait = due - Date.now();
      if (wait > 1) await sleep(wait, undefined, { signal: options.signal });
      options.signal?.throwIfAborted();
      yield options.clock === 'wall' ? { ...e, time: new Date().toISOString() } : e;
    }
  }
}

/** Whether `ms` falls in an injected incident. */
function during(incident: { start: string; hours: number } | undefined, ms: number): boolean {
  return incident !== undefined && ms >= Date.parse(incident.start) && ms < Date.parse(incident.start) + incident.hours * 3_600_000;
}

/** A time of day for a session: mostly working hours, some evenings, few nights. */
function sessionOffsetMs(rng: Random): number {
  const hour = rng.weighted([
    [8 + rng.int(10), 0.75],
    [18 + rng.int(5), 0.2],
    [rng.int(8), 0.05],
  ]);
  return hour * 3_600_000 + rng.int(3_600_000);
}

function isoDate(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}
