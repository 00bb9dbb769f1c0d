import express from 'express';
import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { dict, hasOwn, own } from '../../workbench/dict.js';
import { UserIdSchema } from '../../workbench/event.js';
import { InputError, IntegrityError, NonFiniteScoreError, NotFoundError } from '../../workbench/errors.js';
import type { FeatureValue } from '../../workbench/features/definition.js';
import { publishMessage } from '../../workbench/models/registry.js';
import type { OltpStore } from '../../workbench/oltp/store.js';
import { badRequest, HttpError, parseBody as body } from '../errors.js';
import type { FeatureServing } from '../features/serving.js';
import type { Metrics } from '../observability/metrics.js';
import type { DriftMonitor } from '../models/drift.js';
import type { ModelServer } from '../models/model-server.js';
import type { PredictionLog } from '../models/prediction-log.js';
import type { Route } from './route.js';

export interface ModelRouteDeps {
  models: ModelServer;
  features: FeatureServing;
  oltp: OltpStore;
  predictions: PredictionLog;
  metrics: Metrics;
  /** Served feature values against each model's training distribution (PSI, out of range). */
  drift?: DriftMonitor;
  /** Experiments whose arms serve models: a user's arm picks the alias. */
  experiments?: { modelArm(model: string, user_id: string): Promise<{ experiment: string; arm: string; alias: string } | undefined> };
}

const NAME = z.string().regex(/^[a-z][a-z0-9-]{0,63}$/, 'model names are lower-case letters, digits and -');
const ALIAS = z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'aliases are lower-case letters, digits, _ and -');
const VERSION = z.string().regex(/^[0-9a-f]{16}$/, 'a version is 16 hex digits');

const Publish = z.object({ bundle: z.unknown(), alias: ALIAS.default('challenger'), reason: z.string().max(500).optional() }).strict();
const MoveAlias = z.object({ version: VERSION, reason: z.string().max(500).optional() }).strict();
const Predict = z
  .object({
    model: NAME,
    alias: ALIAS.optional(),
    version: VERSION.optional(),
    user_id: UserIdSchema,
    /** Request-time values (or overrides) of features, by name. */
    values: z.record(z.string(), z.union([z.number(), z.array(z.string())])).optional(),
  })
  .strict()
  .refine((p) => !(p.alias && p.version), { message: 'give an alias or a version, not both' });

/** The model registry, publishing and serving over HTTP. */
export function modelRoutes(deps: ModelRouteDeps): Route[] {
  const registry = deps.models.registry;
  const predict = predictor(deps);
  return [
    {
      method: 'get',
      path: '/v1/models',
      summary: 'Every model version in the registry, newest first, with its metrics and the aliases pointing at it.',
      scope: 'read',
      responses: {
        200: '{ models: [{ name, version, kind, label, createdAt, source, parent, metrics, aliases }] }; a stored version that cannot be read is { version, name?, aliases, error } after the others',
      },
      handler: (_req, res) => void res.json({ models: registry.list() }),
    },
    {
      method: 'get',
      path: '/v1/models/:name',
      summary: "One model's versions, its aliases and the history of every alias move.",
      scope: 'read',
      responses: { 200: '{ name, aliases, versions, history }', 404: 'no such model' },
      handler: (req, res) => {
        const name = String(req.params.name);
        const versions = registry.list(name);
        if (versions.length === 0) throw new NotFoundError(`no model named ${name} in the registry`);
        res.json({ name, aliases: registry.aliases(name), versions, history: registry.history(name) });
      },
    },
    {
      method: 'post',
      path: '/v1/models',
      summary:
        'Publish a model bundle: it is verified (content hash, features, a model that loads), stored, its features are registered with the online store, and the alias (default challenger) moves to it. ' +
        'Requests keep being answered throughout: the new version is loaded before the alias moves.',
      scope: 'admin',
      body: { contentTypes: ['application/json'], description: '{ bundle, alias?, reason? }' },
      responses: {
        200: '{ name, version, alias, from, stored, unchanged, message, features_added }: publishing a version the registry holds (same hash: the same model) to an alias already on it writes nothing, with unchanged: true and message "unchanged: version <v> of <name> is already <alias>"',
        400: 'a bundle that is not valid (bad_input), changed after it was made (bundle_integrity), whose model cannot be built from its topology and weights (bundle_unloadable), or with a NaN or infinite weight or default-value score (bundle_non_finite); the message names the layer or weight',
        409: 'a feature name the service serves with another definition',
        413: 'over 50 MB',
      },
      before: [express.json({ limit: 50 * 1024 * 1024 })],
      handler: async (req, res) => {
        const p = body(Publish, req.body, 'send { "bundle": <model bundle>, "alias": "challenger" }');
        // Verified and loaded first, then its features (a conflict refuses it before the alias moves).
        const bundle = await deps.models.prepare(p.bundle).catch((err: unknown) => {
          // On upload, a bundle that does not match its version is bad input, not a broken disk.
          throw err instanceof IntegrityError ? badRequest('bundle_integrity', err.message) : err;
        });
        // New features are computed from the log before the alias moves, so the new version never
        // answers with features the store does not have yet.
        const added = await deps.features.register(bundle.features);
        const stored = !registry.has(bundle.version);
        const move = await deps.models.activate(bundle, p.alias, { by: req.apiKey?.name, reason: p.reason });
        // A version the registry holds, to an alias already on it: nothing was written, and the answer says so.
        const outcome = { name: bundle.name, version: bundle.version, alias: p.alias, from: move.from, stored };
        res.json({ ...outcome, unchanged: !stored && move.unchanged === true, message: publishMessage(outcome), features_added: added.map((f) => f.name) });
      },
    },
    {
      method: 'put',
      path: '/v1/models/:name/aliases/:alias',
      summary: 'Point an alias at a stored version: promote a challenger, or roll back by moving the alias to the previous version.',
      scope: 'admin',
      body: { contentTypes: ['application/json'], schema: MoveAlias, description: '{ version, reason? }' },
      responses: {
        200: 'the move: { at, name, alias, from, to, by, reason }, with unchanged: true when the alias already pointed at the version (nothing recorded)',
        400: 'a bad alias or version',
        404: 'no such version',
        409: 'a version that is changed, unreadable, of another model or cannot load (alias_refused), or whose features conflict: the alias stays',
      },
      before: [express.json({ limit: 64 * 1024 })],
      handler: async (req, res) => {
        const p = body(MoveAlias, req.body, 'send { "version": "<16 hex digits>" }');
        const alias = body(ALIAS, req.params.alias, 'alias in the path');
        res.json(await deps.models.moveAlias(String(req.params.name), alias, p.version, { by: req.apiKey?.name, reason: p.reason }));
      },
    },
    {
      method: 'post',
      path: PREDICT.path,
      summary:
        "Score a user with a model (its champion by default, or an alias or a version): reads the user's online features, applies the bundle's preprocessing and model. " +
        'Features without a value use their declared defaults and are listed in `defaulted`. Every prediction is logged as a `prediction` event. ' +
        "When the bundle carries its training distribution, `outOfRange` lists the numeric features whose value lies outside the range of the model's training values (its score there is an extrapolation), and the values count toward the model's drift (PSI and out-of-range share on /metrics and the dashboard, a feature_drift alert past the thresholds).",
      scope: PREDICT.scope,
      body: { contentTypes: ['application/json'], schema: Predict, description: '{ model, alias? | version?, user_id, values? }' },
      responses: {
        200: '{ score, model: { name, version, alias }, features, defaulted, outOfRange?: [{ feature, value, min, max }] }: score is always a finite number; outOfRange is present (possibly empty) when the bundle carries its training distribution',
        400: 'a bad request',
        404: 'an unknown model, alias, version or user (a user with no events and no OLTP record, unless values holds every feature the model reads)',
        422: 'the values sent make the model score NaN or infinity (score_non_finite)',
        500: 'the model scores this user as NaN or infinity (score_non_finite, logged)',
      },
      before: [express.json({ limit: PREDICT.bodyLimit })],
      handler: async (req, res) => {
        const started = performance.now();
        answerJson(res, await predict(req.body), started);
      },
    },
  ];
}

/** The prediction route: its path, the scope its key needs and the most bytes its body may have (the Express route and `fastPredict` alike). */
export const PREDICT = { path: '/v1/predict', scope: 'read', bodyLimit: 256 * 1024 } as const;

/**
 * What POST /v1/predict answers for a request body, or throws (an HttpError or a workbench error,
 * mapped by the app's error handler). One function for the Express route and for `fastPredict`,
 * which serves the same route before Express.
 */
export function predictor(deps: ModelRouteDeps): (input: unknown) => Promise<object> {
  return async (input) => {
    const p = body(Predict, input, 'send { "model": "<name>", "user_id": "<id>" }');
    // Without an explicit alias or version, an experiment on this model chooses the user's alias.
    const arm = p.alias || p.version ? undefined : await deps.experiments?.modelArm(p.model, p.user_id);
    const loaded = await deps.models.resolve(arm ? { ...p, alias: arm.alias } : p);
    // One moment for the read and the prediction event, so the skew report recomputes at that very time.
    const at = deps.features.now();
    const online = await deps.features.read(p.user_id, at);
    // Feature names are the user's (`constructor` is one): only own entries of values count, never Object's.
    const missing = loaded.bundle.features.filter((f) => !hasOwn(online.values, f.name) && !hasOwn(p.values, f.name));
    if (missing.length > 0)
      throw new InputError(
        `the online store does not serve ${missing.map((f) => f.name).join(', ')} (publish the model through the service so its features are registered)`,
      );
    const defaulted = online.defaulted.filter((n) => !hasOwn(p.values, n));
    // A user is known by a value in the online store (any served feature) or an OLTP record. An
    // unknown one is scored only on request values for every feature the model reads: never on
    // defaults, and never created (the prediction event is internal and creates no user).
    const unsent = loaded.bundle.features.filter((f) => !hasOwn(p.values, f.name)).map((f) => f.name);
    if (unsent.length > 0 && online.defaulted.length === Object.keys(online.values).length && !(await deps.oltp.getUsers([p.user_id])).has(p.user_id)) {
      throw new NotFoundError(
        `unknown user ${p.user_id}: no events in the online store and no OLTP record; to score a new user, send values for every feature the model reads (missing: ${unsent.join(', ')})`,
      );
    }
    const features = dict<FeatureValue>();
    for (const f of loaded.bundle.features) features[f.name] = own(p.values, f.name) ?? online.values[f.name]!;
    const sent = Object.keys(p.values ?? {}).filter((n) => hasOwn(features, n));
    let scored;
    try {
      scored = deps.models.score(
        loaded,
        features,
        defaulted.filter((n) => hasOwn(features, n)),
      );
    } catch (err) {
      if (!(err instanceof NonFiniteScoreError)) throw err;
      // Values sent with the request can push any model past float32 (a 422: change the values);
      // without them the model itself cannot score this user (a 500, logged: roll the alias back).
      throw sent.length > 0
        ? new HttpError(
            422,
            err.code,
            `${err.message}; the request's values for ${sent.join(', ')} take the model outside what it can score: send values like those it was trained on`,
          )
        : new HttpError(
            500,
            err.code,
            `${err.message}; the model cannot score this user: move its alias back (PUT /v1/models/${loaded.bundle.name}/aliases/<alias>)`,
          );
    }
    deps.predictions.record(p.user_id, scored, sent, at);
    const outOfRange = deps.drift?.observe(loaded.bundle, features);
    deps.metrics.predictions.inc({ model: deps.metrics.label('model', scored.model.name) });
    const answer = outOfRange ? { ...scored, outOfRange } : scored;
    return arm ? { ...answer, experiment: { key: arm.experiment, arm: arm.arm } } : answer;
  };
}

/**
 * A 200 with a JSON body, written in one call. `res.json` goes through Express's `send` (settings,
 * header lookups, freshness, the charset and length worked out again): on an Express route answering
 * a prediction-sized body, that cost 452 µs of CPU a request against 384 written so (medians of ten
 * alternating blocks of 2,000 requests in one process). The text is what `res.json` writes: this app
 * sets no JSON replacer, spacing or escaping.
 */
export function answerJson(res: ServerResponse, body: unknown, started: number): void {
  const text = JSON.stringify(body);
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    // Time spent in the handler (features, model, logging), for clients and benchmarks.
    'server-timing': `predict;dur=${(performance.now() - started).toFixed(3)}`,
  });
  res.end(text);
}
