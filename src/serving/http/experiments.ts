import express, { type Request } from 'express';
import { z } from 'zod';
import { UserIdSchema } from '../../workbench/event.js';
import { STATUSES } from '../../workbench/experiments/definition.js';
import { HttpError, parseBody as body } from '../errors.js';
import type { ExperimentPlatform } from '../experiments/platform.js';
import type { StoredExperiment } from '../experiments/experiments.js';
import type { Route } from './route.js';

const KEY = z.string().regex(/^[a-z][a-z0-9_-]{0,63}$/, 'experiment keys are lower-case letters, digits, _ and -');
const SetStatus = z.object({ status: z.enum(STATUSES), reason: z.string().max(2000).default(''), winner: KEY.optional() }).strict();
const Assign = z
  .object({
    user_id: UserIdSchema,
    experiment: KEY.optional(),
    dims: z
      .object({ country: z.string().max(64).optional(), device: z.string().max(64).optional(), tier: z.string().max(64).optional() })
      .strict()
      .optional(),
  })
  .strict();

const json = express.json({ limit: 64 * 1024 });

/** The version a change was made against: `If-Match: "3"` (or 3), as read from the ETag of GET. */
function ifMatch(req: Request): number {
  const header = req.get('if-match');
  if (!header)
    throw new HttpError(
      428,
      'precondition_required',
      'changes name the version they were made against: send If-Match with the ETag of GET /v1/experiments/:key (e.g. If-Match: "3")',
    );
  const version = Number(header.replace(/^W\//, '').replace(/"/g, '').trim());
  if (!Number.isInteger(version) || version < 1)
    throw new HttpError(400, 'bad_if_match', `If-Match ${JSON.stringify(header)} is not an experiment version (a whole number from the ETag)`);
  return version;
}

const view = (s: StoredExperiment) => ({ ...s.experiment, version: s.version, updated_at: s.updated_at, updated_by: s.updated_by });

/** Experiments over HTTP: definitions and their history (admin to change), assignment, results. */
export function experimentRoutes(platform: ExperimentPlatform): Route[] {
  const experiments = platform.experiments;
  const who = (req: Request) => req.apiKey?.name ?? 'unknown';
  return [
    {
      method: 'get',
      path: '/v1/metrics',
      summary: 'The metrics experiments may name (objective and guard-rails).',
      scope: 'read',
      responses: { 200: '{ metrics: [{ key, kind, event, prop?, denominator?, windowDays, preExposureDays }] }' },
      handler: (_req, res) => void res.json({ metrics: [...experiments.metrics.values()] }),
    },
    {
      method: 'get',
      path: '/v1/experiments',
      summary: 'Every experiment with its status, version and users per arm.',
      scope: 'read',
      responses: { 200: '{ experiments: [{ ...definition, version, updated_at, updated_by, exposures }] }' },
      handler: async (_req, res) => {
        await experiments.refresh();
        res.json({
          experiments: experiments
            .list()
            .map((s) => ({ ...view(s), exposures: platform.tracker.exposures(s.experiment.key), decision: platform.decider.decision(s.experiment.key) })),
        });
      },
    },
    {
      method: 'post',
      path: '/v1/experiments',
      summary:
        'Create an experiment (draft, or running to start at once). Weights or coverage that do not add up, an unknown metric or an overlapping namespace range are a 400.',
      scope: 'admin',
      body: { contentTypes: ['application/json'], description: 'the experiment definition: { key, hypothesis, arms, objective, mde, ... }' },
      responses: { 201: 'the experiment with its version (ETag)', 400: 'an invalid definition, naming the field', 409: 'the key exists' },
      before: [json],
      handler: async (req, res) => {
        const s = await experiments.create(req.body, who(req));
        res.status(201).set('ETag', `"${s.version}"`).json(view(s));
      },
    },
    {
      method: 'get',
      path: '/v1/experiments/:key',
      summary: 'One experiment; its ETag is the version to send in If-Match when changing it.',
      scope: 'read',
      responses: { 200: 'the experiment with its version', 404: 'no such experiment' },
      handler: async (req, res) => {
        await experiments.refresh();
        const s = experiments.get(String(req.params.key));
        res.set('ETag', `"${s.version}"`).json(view(s));
      },
    },
    {
      method: 'put',
      path: '/v1/experiments/:key',
      summary:
        'Change an experiment against the version it was read at (If-Match). While users are assigned, the seed, hashing, namespace and arms cannot change.',
      scope: 'admin',
      body: { contentTypes: ['application/json'], description: 'the whole definition' },
      responses: {
        200: 'the experiment with its new version',
        400: 'an invalid definition',
        404: 'no such experiment',
        409: 'changed by someone else since that version',
        428: 'no If-Match',
      },
      before: [json],
      handler: async (req, res) => {
        const s = await experiments.update(String(req.params.key), req.body, ifMatch(req), who(req));
        res.set('ETag', `"${s.version}"`).json(view(s));
      },
    },
    {
      method: 'post',
      path: '/v1/experiments/:key/status',
      summary: 'Start, stop, ship (naming the winner) or roll back an experiment, against the version it was read at (If-Match).',
      scope: 'admin',
      body: { contentTypes: ['application/json'], schema: SetStatus, description: '{ status, reason?, winner? }' },
      responses: {
        200: 'the experiment with its new version',
        404: 'no such experiment',
        409: 'a change the status does not allow, or a stale version',
        428: 'no If-Match',
      },
      before: [json],
      handler: async (req, res) => {
        const p = body(SetStatus, req.body, 'send { "status": "running" }');
        const s = await experiments.setStatus(String(req.params.key), p.status, ifMatch(req), who(req), p.reason, p.winner);
        res.set('ETag', `"${s.version}"`).json(view(s));
      },
    },
    {
      method: 'get',
      path: '/v1/experiments/:key/history',
      summary: 'Every change of an experiment: version, who, when, what, and the definition it produced.',
      scope: 'read',
      responses: { 200: '{ history: [{ version, updated_at, updated_by, change, definition }] }', 404: 'no such experiment' },
      handler: async (req, res) => {
        await experiments.refresh();
        const history = await experiments.history(String(req.params.key));
        res.json({ history: history.map((h) => ({ ...h, definition: JSON.parse(h.definition) as unknown })) });
      },
    },
    {
      method: 'get',
      path: '/v1/experiments/:key/results',
      summary:
        'Live results: users per arm, sample ratio mismatch, each metric per arm (Welch, relative lift, CUPED, always-valid interval, chance to win), the plan (users and days to a decision), the latest decision and each lift over time.',
      scope: 'read',
      responses: { 200: '{ results, decision?, timeline }', 404: 'no such experiment' },
      handler: async (req, res) => {
        await experiments.refresh();
        res.json(platform.report(String(req.params.key)));
      },
    },
    {
      method: 'post',
      path: '/v1/assignments',
      summary:
        "A user's arms (in one experiment or every one): users enter running experiments here (sticky; the exposure is logged as an experiment_exposure event). Stopped and rolled-back experiments answer control, shipped ones their winner.",
      scope: 'ingest',
      body: { contentTypes: ['application/json'], schema: Assign, description: '{ user_id, experiment?, dims? }' },
      responses: { 200: '{ user_id, arms: [{ experiment, arm, reason }] }', 404: 'no such experiment' },
      before: [json],
      handler: async (req, res) => {
        const p = body(Assign, req.body, 'send { "user_id": "u1" }');
        const arms = await platform.assign({ user_id: p.user_id, ...(p.dims ? { dims: p.dims } : {}) }, p.experiment);
        res.json({ user_id: p.user_id, arms });
      },
    },
  ];
}
