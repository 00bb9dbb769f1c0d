import express from 'express';
import { z } from 'zod';
import { FeatureDefinitionSchema } from '../../workbench/features/definition.js';
import { badRequest, parseBody, parseQuery } from '../errors.js';
import type { FeatureServing } from '../features/serving.js';
import type { Route } from './route.js';

const Register = z.object({ features: z.array(z.unknown()).min(1).max(1000) }).strict();
const At = z.object({ at: z.iso.datetime({ offset: true }).optional() });
const USER_ID = /^.{1,128}$/s;

/** The online feature store over HTTP: the served definitions, registering more, a user's values. */
export function featureRoutes(features: FeatureServing): Route[] {
  return [
    {
      method: 'get',
      path: '/v1/features',
      summary: 'The feature definitions the online store serves, with the set version, the store kind and how far it has read the log.',
      scope: 'read',
      responses: { 200: '{ version, features: [definition with version], store, users, lag }' },
      handler: async (_req, res) => {
        res.json({
          version: features.version,
          features: features.features,
          store: features.store.kind,
          users: await features.store.size(),
          lag: await features.lag(),
        });
      },
    },
    {
      method: 'post',
      path: '/v1/features',
      summary:
        'Register feature definitions with the online store. A definition already served is accepted as it is; a served name with another definition is a 409. ' +
        'New features are computed from the whole event log beside the served ones, which keep serving; the answer comes once the new set is served.',
      scope: 'admin',
      body: { contentTypes: ['application/json'], schema: z.object({ features: z.array(FeatureDefinitionSchema) }), description: '{ features: [definition] }' },
      responses: {
        200: '{ version, added: [name] }',
        400: 'a definition that is not valid, naming the feature and field',
        409: 'a served name with another definition',
      },
      before: [express.json({ limit: 1024 * 1024 })],
      handler: async (req, res) => {
        const body = parseBody(Register, req.body, 'send { "features": [definition, ...] }');
        const added = await features.register(body.features as never[]);
        res.json({ version: features.version, added: added.map((f) => f.name) });
      },
    },
    {
      method: 'get',
      path: '/v1/features/:user_id',
      summary:
        "A user's current feature values from the online store (or at `?at=`, for times after the events already folded in), with the features that fell back to their declared defaults.",
      scope: 'read',
      query: At,
      responses: { 200: '{ user_id, at, feature_set, values, defaulted: [name], lag }', 400: 'a bad user id or time' },
      handler: async (req, res) => {
        const userId = String(req.params.user_id);
        if (!USER_ID.test(userId)) throw badRequest('bad_user_id', 'user ids are 1 to 128 characters');
        const { at } = parseQuery(At, req.query);
        const when = at ? Date.parse(at) : features.now();
        const read = await features.read(userId, when);
        res.json({ user_id: userId, at: new Date(when).toISOString(), feature_set: features.version, ...read, lag: await features.lag() });
      },
    },
  ];
}
