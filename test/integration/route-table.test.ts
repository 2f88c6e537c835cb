import { parse } from 'graphql';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { schema } from '../../src/graphql/schema.js';
import { graphql } from '../../src/rest/graphql.js';
import { restRoute, type RestRoute } from '../../src/rest/route.js';
import { compileRoutes } from '../../src/rest/router.js';
import { restRoutes } from '../../src/rest/routes.js';

// CONTRACT.md section 1, plus the API key paths of section 4 and the recovery paths of section 7.
const DOCUMENTED = [
  'GET /api/v1/webhooks',
  'POST /api/v1/webhooks',
  'GET /api/v1/webhooks/events',
  'GET /api/v1/webhooks/:id',
  'PUT /api/v1/webhooks/:id',
  'DELETE /api/v1/webhooks/:id',
  'POST /api/v1/webhooks/:id/test',
  'GET /api/v1/webhooks/:id/deliveries',
  'POST /api/v1/webhooks/:id/deliveries/:delivery_id/resend',
  'POST /api/v1/events',
  'GET /api/v1/settings/api-keys',
  'POST /api/v1/settings/api-keys',
  'DELETE /api/v1/settings/api-keys/:id',
  'POST /api/v1/webhooks/:id/secret/rotate',
  'POST /api/v1/webhooks/:id/recover',
  'GET /api/v1/webhooks/:id/recoveries/:recovery_id',
];

describe('the REST route table', () => {
  const rows = restRoutes.map((r) => `${r.method} ${r.path}`);

  it('holds exactly the documented paths, nothing more, nothing less', () => {
    expect([...rows].sort()).toEqual([...DOCUMENTED].sort());
  });

  it('has no duplicate rows', () => {
    expect(new Set(rows).size).toBe(rows.length);
  });

  it('every row runs an operation that validates against the schema', () => {
    expect(() => compileRoutes(schema, restRoutes)).not.toThrow();
    for (const route of restRoutes) {
      expect(() => compileRoutes(schema, [route]), `${route.method} ${route.path}`).not.toThrow();
    }
  });

  it('compileRoutes refuses an operation the schema does not have', () => {
    const broken: RestRoute = {
      method: 'GET',
      path: '/api/v1/broken',
      operation: parse('query Broken { webhooks { id secret } }'),
      status: 200,
    };
    expect(() => compileRoutes(schema, [broken])).toThrow(/GET \/api\/v1\/broken/);
  });

  // The @ts-expect-error lines are held by `npm run typecheck`: each fails it once the mistake
  // below it stops being a type error.
  it('rows are typed by their documents, paths and bodies', () => {
    const operation = graphql(`query GetWebhook($id: ID!) { webhook(id: $id) { id name } }`);
    const row = restRoute({
      method: 'GET',
      path: '/api/v1/webhooks/:id',
      operation,
      variables: ({ params }) => ({ id: params.id }),
      status: 200,
      result: (data) => data.webhook.name.length,
    });
    expect(() => compileRoutes(schema, [row])).not.toThrow();

    restRoute({
      method: 'GET',
      path: '/api/v1/webhooks/:id',
      operation,
      variables: ({ params }) => ({ id: params.id }),
      status: 200,
      // @ts-expect-error the document does not select the webhook's url
      result: (data) => data.webhook.url,
    });
    restRoute({
      method: 'GET',
      path: '/api/v1/webhooks/:id',
      operation,
      // @ts-expect-error the path has no :name
      variables: ({ params }) => ({ id: params.name }),
      status: 200,
    });
    // @ts-expect-error the document needs $id, so the row must give variables
    restRoute({ method: 'GET', path: '/api/v1/webhooks/:id', operation, status: 200 });
    restRoute({
      method: 'POST',
      path: '/api/v1/api-keys',
      operation: graphql(`mutation CreateApiKey($name: String!) { createApiKey(name: $name) { key } }`),
      body: z.object({ label: z.string() }),
      // @ts-expect-error the body schema has no name
      variables: ({ body }) => ({ name: body.name }),
      status: 201,
    });
  });

  it('rows with a body are the body-carrying methods', () => {
    for (const route of restRoutes) {
      if (route.body) expect(['POST', 'PUT'], `${route.method} ${route.path}`).toContain(route.method);
    }
  });
});
