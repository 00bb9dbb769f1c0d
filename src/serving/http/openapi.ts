import { z } from 'zod';
import type { Route } from './route.js';

/**
 * The OpenAPI 3.1 description of the service, generated from the route table that Express
 * registers, with bodies described by the same zod schemas the routes validate with.
 */
export function openApiDocument(routes: readonly Route[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = r.path.replace(/:([A-Za-z_]+)/g, '{$1}');
    const parameters = [...r.path.matchAll(/:([A-Za-z_]+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    if (r.query) {
      for (const [name, schema] of Object.entries(r.query.shape)) {
        parameters.push({
          name,
          in: 'query',
          required: !(schema as z.ZodType).safeParse(undefined).success,
          schema: jsonSchema(schema as z.ZodType) as { type: string },
        });
      }
    }
    paths[path] ??= {};
    paths[path]![r.method] = {
      summary: r.summary,
      ...(r.scope ? { security: [{ apiKey: [r.scope] }], 'x-required-scope': r.scope } : { security: [] }),
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(r.body
        ? {
            requestBody: {
              required: true,
              description: r.body.description,
              content: Object.fromEntries(r.body.contentTypes.map((t) => [t, r.body!.schema ? { schema: jsonSchema(r.body!.schema) } : {}])),
            },
          }
        : {}),
      responses: Object.fromEntries(Object.entries(r.responses).map(([status, description]) => [status, { description }])),
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'plg-workbench service',
      version,
      description: 'Event ingest, observability, features, model serving and experiments. Errors are JSON: { "error": { "code", "message", "details"? } }.',
    },
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'an API key from `wb keys create` (also accepted as X-API-Key)' } },
    },
    paths,
  };
}

function jsonSchema(schema: z.ZodType): unknown {
  return z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' });
}
