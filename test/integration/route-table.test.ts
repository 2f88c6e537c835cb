import { describe, expect, it } from 'vitest';
import { schema } from '../../src/graphql/schema.js';
import type { RestRoute } from '../../src/rest/route.js';
import { compileRoutes } from '../../src/rest/router.js';
import { restRoutes } from '../../src/rest/routes.js';

// CONTRACT.md section 1, plus the API key paths of section 4.
const DOCUMENTED = [
  'GET /api/v1/webhooks',
  'POST /api/v1/webhooks',
  'GET /api/v1/webhooks/events',
  'GET /api/v1/webhooks/:id',
  'PUT /api/v1/webhooks/:id',
  'DELETE /api/v1/webhooks/:id',
  'POST /api/v1/webhooks/:id/test',
  'GET /api/v1/webhooks/:id/deliveries',
  'POST /api/v1/events',
  'GET /api/v1/settings/api-keys',
  'POST /api/v1/settings/api-keys',
  'DELETE /api/v1/settings/api-keys/:id',
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
      operation: 'query Broken { webhooks { id secret } }',
      status: 200,
    };
    expect(() => compileRoutes(schema, [broken])).toThrow(/GET \/api\/v1\/broken/);
  });

  it('rows with a body are the body-carrying methods', () => {
    for (const route of restRoutes) {
      if (route.body) expect(['POST', 'PUT'], `${route.method} ${route.path}`).toContain(route.method);
    }
  });
});
