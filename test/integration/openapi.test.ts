import { Validator } from '@seriousme/openapi-schema-validator';
import fc from 'fast-check';
import { parse } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { DOCS_CSP, DOCS_PATHS } from '../../src/rest/docs-page.js';
import { buildOpenApiDocument, openApiDocument, openApiPath, OPENAPI_PATH, successStatuses } from '../../src/rest/openapi.js';
import type { RestRoute } from '../../src/rest/route.js';
import { restRoutes } from '../../src/rest/routes.js';
import { userToken } from '../helpers/auth.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type JsonResponse } from '../helpers/http.js';
import { documentSchemas, responsePointer } from '../helpers/openapi.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';

type Json = Record<string, any>;

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];
const doc: Json = openApiDocument();

/** "GET /api/v1/webhooks/{id}" for every operation in the document. */
function documentedOperations(document: Json): string[] {
  const out: string[] = [];
  for (const [path, item] of Object.entries(document['paths'] as Json)) {
    for (const method of METHODS) if (item[method]) out.push(`${method.toUpperCase()} ${path}`);
  }
  return out;
}

const operation = (method: string, path: string): Json => doc['paths'][path][method.toLowerCase()];

describe('the OpenAPI document', () => {
  it('is a valid OpenAPI 3.1 document whose references all resolve', async () => {
    const validator = new Validator();
    // The validator resolves references in place, so it gets a copy.
    const result = await validator.validate(structuredClone(doc));
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
    expect(() => validator.resolveRefs()).not.toThrow();
    expect(doc['openapi']).toBe('3.1.0');
  });

  it('is built once', () => {
    expect(openApiDocument()).toBe(doc);
  });

  it('has every route-table row, and nothing else under /api/v1 but itself', () => {
    const rows = restRoutes.map((r) => `${r.method} ${openApiPath(r.path)}`);
    const underApi = documentedOperations(doc).filter((op) => op.split(' ')[1]!.startsWith('/api/v1'));
    expect([...underApi].sort()).toEqual([...rows, `GET ${OPENAPI_PATH}`].sort());
    expect(openApiPath('/api/v1/webhooks/:id/deliveries')).toBe('/api/v1/webhooks/{id}/deliveries');
  });

  it('lists the unauthenticated operational paths without security', () => {
    for (const path of ['/health', '/healthz', '/readyz', OPENAPI_PATH]) {
      expect(operation('GET', path)['security'], path).toEqual([]);
    }
    expect(operation('GET', '/readyz')['responses']).toHaveProperty('503');
    expect(operation('GET', '/metrics')['responses']['200']['content']).toHaveProperty('text/plain');
  });

  it('describes every row: summary, path parameters, success statuses, errors', () => {
    for (const route of restRoutes) {
      const label = `${route.method} ${route.path}`;
      expect(route.doc?.summary, label).toBeTruthy();
      const op = operation(route.method, openApiPath(route.path));
      expect(op['summary'], label).toBe(route.doc!.summary);
      const pathParams = (op['parameters'] ?? []).filter((p: Json) => p['in'] === 'path').map((p: Json) => p['name']);
      expect(pathParams, label).toEqual([...route.path.matchAll(/:(\w+)/g)].map((m) => m[1]));
      if (typeof route.status === 'number') expect(Object.keys(op['responses']), label).toContain(String(route.status));
      for (const status of Object.keys(successStatuses(route))) expect(op['responses'], label).toHaveProperty(status);
      for (const status of ['401', '403', '429', '500']) expect(op['responses'], label).toHaveProperty(status);
      if (route.body) for (const status of ['400', '413', '415']) expect(op['responses'], label).toHaveProperty(status);
      if (route.path.includes('/:')) expect(op['responses'], label).toHaveProperty('404');
      // A body on success exactly when the row shapes one.
      const success = op['responses'][Object.keys(successStatuses(route))[0]!];
      expect(Boolean(success['content']), label).toBe(route.result !== undefined);
      expect(Boolean(success['content']), label).toBe(Boolean(route.doc!.response));
    }
  });

  it('requires the bearer scheme everywhere else, and documents the rate-limit headers', () => {
    expect(doc['security']).toEqual([{ bearerAuth: [] }]);
    expect(doc['components']['securitySchemes']['bearerAuth']).toMatchObject({ type: 'http', scheme: 'bearer' });
    for (const route of restRoutes) {
      const op = operation(route.method, openApiPath(route.path));
      expect(op['security'], `${route.method} ${route.path}`).toBeUndefined();
      const ok = op['responses'][Object.keys(successStatuses(route))[0]!];
      expect(Object.keys(ok['headers'])).toEqual(['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset']);
    }
    const responses = doc['components']['responses'];
    expect(Object.keys(responses['RateLimited']['headers'])).toContain('Retry-After');
    expect(responses['Unauthorized']['headers']).toBeUndefined();
  });

  it('documents the Idempotency-Key header and the history query', () => {
    const publish = operation('POST', '/api/v1/events');
    expect(publish['parameters']).toContainEqual(expect.objectContaining({ name: 'Idempotency-Key', in: 'header' }));
    expect(Object.keys(publish['responses'])).toEqual(expect.arrayContaining(['200', '202', '422']));
    const history = operation('GET', '/api/v1/webhooks/{id}/deliveries');
    const query = history['parameters'].filter((p: Json) => p['in'] === 'query').map((p: Json) => p['name']);
    expect(query.sort()).toEqual(['page', 'pageSize', 'per_page', 'status']);
  });

  it('documents secret rotation with an optional body and its answers', () => {
    const rotate = operation('POST', '/api/v1/webhooks/{id}/secret/rotate');
    expect(rotate['operationId']).toBe('RotateWebhookSecret');
    expect(rotate['requestBody']['required']).toBe(false);
    expect(Object.keys(rotate['requestBody']['content']['application/json']['schema']['properties']).sort()).toEqual([
      'grace_period_seconds',
      'secret',
    ]);
    expect(Object.keys(rotate['responses'])).toEqual(expect.arrayContaining(['200', '400', '404', '409', '422']));
    expect(rotate['responses']['200']['content']['application/json']['schema']).toEqual({ $ref: '#/components/schemas/RotatedSecret' });
    expect(operation('POST', '/api/v1/webhooks')['requestBody']['required']).toBe(true);
  });

  it('a row with a computed status must list its success statuses', () => {
    const row: RestRoute = { method: 'GET', path: '/api/v1/x', operation: parse('query X { webhooks { id } }'), status: () => 200 };
    expect(() => buildOpenApiDocument([row])).toThrow(/GET \/api\/v1\/x/);
  });

  it('a row names its success body by a schema registered for the components', () => {
    const row: RestRoute = {
      method: 'GET',
      path: '/api/v1/x',
      operation: parse('query X { webhooks { id } }'),
      status: 200,
      result: (data) => data,
      doc: { summary: 'X', tag: 'Webhooks', response: z.object({ id: z.string() }) },
    };
    expect(() => buildOpenApiDocument([row])).toThrow(/GET \/api\/v1\/x: doc.response is not registered/);
  });

  // The request body schemas are z.toJSONSchema of the rows' zod schemas: hold the two to the same
  // verdict on random bodies, so the document cannot accept what the gateway refuses or the reverse.
  it('request body schemas accept exactly what the rows accept', () => {
    const schemas = documentSchemas(doc);
    const value = fc.oneof(
      fc.string({ maxLength: 8 }),
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.array(fc.string({ maxLength: 4 }), { maxLength: 3 }),
      fc.array(fc.integer(), { minLength: 1, maxLength: 2 }),
      fc.dictionary(fc.string({ maxLength: 4 }), fc.integer(), { maxKeys: 2 }),
    );
    for (const route of restRoutes.filter((r) => r.body)) {
      const path = openApiPath(route.path);
      const pointer = `#/paths/${path.replace(/\//g, '~1')}/${route.method.toLowerCase()}/requestBody/content/application~1json/schema`;
      const fields = Object.keys((z.toJSONSchema(route.body!) as Json)['properties']);
      const body = fc.record(Object.fromEntries(fields.map((f) => [f, value])), { requiredKeys: [] });
      fc.assert(
        fc.property(body, (candidate) => {
          const zodSays = route.body!.safeParse(candidate).success;
          const docSays = schemas.errors(pointer, candidate).length === 0;
          expect(docSays, `${route.method} ${route.path} ${JSON.stringify(candidate)}`).toBe(zodSays);
        }),
        { numRuns: 150 },
      );
    }
  });
});

describe('the OpenAPI document and the reference page over HTTP', () => {
  let gw: TestGateway;
  let receiver: Receiver;
  let api: ReturnType<typeof client>;
  const schemas = documentSchemas(doc, { closed: true });

  beforeAll(async () => {
    receiver = await startReceiver();
    gw = await startTestGateway();
    api = client(gw.url, await userToken('tenant-openapi'));
  });
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  it('serves the document at GET /api/v1/openapi.json without a token', async () => {
    const res = await client(gw.url).get(OPENAPI_PATH);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.body).toEqual(doc);
  });

  it('serves the reference page and its assets from the package, under a self-only CSP', async () => {
    const page = await fetch(`${gw.url}/docs`);
    const html = await page.text();
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toBe(DOCS_CSP);
    expect(csp).not.toMatch(/https?:|\*|unsafe-inline|unsafe-eval/);
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).not.toMatch(/<script>|<style>/);

    const referenced = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(referenced.length).toBeGreaterThanOrEqual(4);
    for (const asset of referenced) {
      expect(asset, asset).toMatch(/^\/docs\//);
      expect(DOCS_PATHS).toContain(asset);
    }
    const types: Record<string, RegExp> = { js: /^text\/javascript/, css: /^text\/css/, png: /^image\/png$/ };
    for (const asset of DOCS_PATHS.filter((p) => /\.\w+$/.test(p))) {
      const res = await fetch(`${gw.url}${asset}`);
      const bytes = Buffer.from(await res.arrayBuffer());
      expect(res.status, asset).toBe(200);
      expect(res.headers.get('content-type'), asset).toMatch(types[asset.split('.').pop()!]!);
      expect(res.headers.get('x-content-type-options'), asset).toBe('nosniff');
      expect(bytes.length, asset).toBeGreaterThan(0);
    }
    const init = await (await fetch(`${gw.url}/docs/init.js`)).text();
    expect(init).toContain(JSON.stringify(OPENAPI_PATH));
    expect(await (await fetch(`${gw.url}/docs/swagger-ui-bundle.js`)).text()).toContain('SwaggerUIBundle');
  });

  it('serves nothing else under /docs', async () => {
    for (const path of [
      '/docs/package.json',
      '/docs/swagger-ui.js.map',
      '/docs/index.html',
      '/docs/%2e%2e/package.json',
      '/docs/..%2fpackage.json',
      '/docs/%2e%2e%2f%2e%2e%2fpackage.json',
      '/docs/constructor',
      '/docs/__proto__',
      '/docs/swagger-ui.css%00',
      '/docs/swagger-ui.css/',
      '/docsx',
    ]) {
      const res = await client(gw.url).get(path);
      expect(res.status, path).toBe(404);
      expect(res.body, path).toMatchObject({ code: 'NOT_FOUND' });
    }
    const post = await client(gw.url).post('/docs', {});
    expect(post.status).toBe(405);
  });

  it('every documented operation answers with a documented status and body', async () => {
    const seen = new Map<string, number[]>();
    function check(method: string, path: string, res: JsonResponse, call: string) {
      const key = `${method} ${path}`;
      const op = operation(method, path);
      expect(op, key).toBeDefined();
      expect(Object.keys(op['responses']), `${call} answered ${res.status}: ${res.text.slice(0, 300)}`).toContain(String(res.status));
      const pointer = responsePointer(doc, path, method, res.status);
      if (pointer) {
        expect(res.headers.get('content-type'), call).toMatch(/^application\/json/);
        expect(schemas.errors(pointer, res.body), `${call} ${res.status} ${res.text.slice(0, 500)}`).toEqual([]);
      } else if (res.status === 204) {
        expect(res.text, call).toBe('');
      }
      seen.set(key, [...(seen.get(key) ?? []), res.status]);
    }
    const call = async (method: string, path: string, concrete: string, options: Parameters<typeof api.request>[2] = {}) =>
      check(method, path, await api.request(method, concrete, options), `${method} ${concrete}`);

    const anon = client(gw.url);
    for (const path of ['/health', '/healthz', '/readyz', '/metrics', OPENAPI_PATH]) {
      check('GET', path, await anon.get(path), `GET ${path}`);
    }

    await call('POST', '/api/v1/webhooks', '/api/v1/webhooks', {
      body: { name: 'Docs receiver', url: `${receiver.url}/hook`, events: ['drift.detected', 'ping'] },
    });
    const created = await api.post('/api/v1/webhooks', { name: 'Second', url: `${receiver.url}/two`, events: ['alert.created'] });
    const id = created.body.id as string;
    check('POST', '/api/v1/webhooks', created, 'POST /api/v1/webhooks');

    await call('GET', '/api/v1/webhooks', '/api/v1/webhooks');
    await call('GET', '/api/v1/webhooks/events', '/api/v1/webhooks/events');
    await call('GET', '/api/v1/webhooks/{id}', `/api/v1/webhooks/${id}`);
    await call('PUT', '/api/v1/webhooks/{id}', `/api/v1/webhooks/${id}`, { body: { name: 'Renamed', events: ['alert.created', 'drift.detected'] } });
    await call('POST', '/api/v1/webhooks/{id}/test', `/api/v1/webhooks/${id}/test`);
    await call('POST', '/api/v1/webhooks/{id}/secret/rotate', `/api/v1/webhooks/${id}/secret/rotate`);
    await call('POST', '/api/v1/webhooks/{id}/secret/rotate', `/api/v1/webhooks/${id}/secret/rotate`, { body: { grace_period_seconds: 60 } });
    receiver.respond((_req, _n, res) => {
      res.writeHead(500, { 'content-type': 'text/plain', 'x-receiver': 'down' });
      res.end('down');
    });
    await call('POST', '/api/v1/webhooks/{id}/test', `/api/v1/webhooks/${id}/test`);
    await call('GET', '/api/v1/webhooks/{id}/deliveries', `/api/v1/webhooks/${id}/deliveries`);
    await call('GET', '/api/v1/webhooks/{id}/deliveries', `/api/v1/webhooks/${id}/deliveries?status=failed&page=1&per_page=5`);
    await call('GET', '/api/v1/webhooks/{id}/deliveries', `/api/v1/webhooks/${id}/deliveries?pageSize=1&page=2`);
    const history = await api.get(`/api/v1/webhooks/${id}/deliveries`);
    expect(history.body.data.length).toBeGreaterThanOrEqual(2);
    const resend = '/api/v1/webhooks/{id}/deliveries/{delivery_id}/resend';
    const deliveryId = history.body.data[0].delivery_id as string;
    await call('POST', resend, `/api/v1/webhooks/${id}/deliveries/${deliveryId}/resend`);
    await call('POST', resend, `/api/v1/webhooks/${id}/deliveries/del_AAAAAAAAAAAAAAAAAAAA/resend`);
    const recover = '/api/v1/webhooks/{id}/recover';
    const recovered = await api.post(`/api/v1/webhooks/${id}/recover`, { since: new Date(Date.now() - 3_600_000).toISOString(), include_missed: true });
    check('POST', recover, recovered, `POST /api/v1/webhooks/${id}/recover`);
    await call('POST', recover, `/api/v1/webhooks/${id}/recover`, { body: { since: '2024-01-01T00:00:00Z', until: '2024-02-01T00:00:00Z' } });
    await call('POST', recover, `/api/v1/webhooks/${id}/recover`, { body: { since: 1 } });
    const recovery = '/api/v1/webhooks/{id}/recoveries/{recovery_id}';
    await call('GET', recovery, `/api/v1/webhooks/${id}/recoveries/${recovered.body.id}`);
    await call('GET', recovery, `/api/v1/webhooks/${id}/recoveries/rcv_AAAAAAAAAAAAAAAAAAAA`);
    expect((await api.put(`/api/v1/webhooks/${id}`, { enabled: false })).status).toBe(200);
    await call('POST', resend, `/api/v1/webhooks/${id}/deliveries/${deliveryId}/resend`);
    expect(seen.get(`POST ${resend}`)).toEqual([202, 404, 409]);
    await call('POST', recover, `/api/v1/webhooks/${id}/recover`, { body: { since: new Date(Date.now() - 3_600_000).toISOString() } });
    expect(seen.get(`POST ${recover}`)).toEqual([202, 422, 400, 409]);
    expect(seen.get(`GET ${recovery}`)).toEqual([200, 404]);

    const event = { event: 'alert.created', data: { severity: 'high' } };
    const headers = { 'idempotency-key': 'openapi-test-1' };
    await call('POST', '/api/v1/events', '/api/v1/events', { body: event, headers });
    await call('POST', '/api/v1/events', '/api/v1/events', { body: event, headers });
    expect(seen.get('POST /api/v1/events')).toEqual([202, 200]);

    await call('POST', '/api/v1/settings/api-keys', '/api/v1/settings/api-keys', { body: { name: 'ci' } });
    const key = await api.post('/api/v1/settings/api-keys', { name: 'to revoke' });
    await call('GET', '/api/v1/settings/api-keys', '/api/v1/settings/api-keys');
    await call('DELETE', '/api/v1/settings/api-keys/{id}', `/api/v1/settings/api-keys/${key.body.id}`);
    await call('DELETE', '/api/v1/webhooks/{id}', `/api/v1/webhooks/${id}`);

    // Documented errors, with bodies that match their schemas.
    await call('GET', '/api/v1/webhooks/{id}', `/api/v1/webhooks/${id}`);
    await call('GET', '/api/v1/webhooks', '/api/v1/webhooks', { token: 'not-a-token' });
    await call('POST', '/api/v1/webhooks', '/api/v1/webhooks', { body: { name: 'x', url: 'ftp://example.com', events: ['drift.detected'] } });
    await call('POST', '/api/v1/webhooks', '/api/v1/webhooks', { rawBody: '{"name":', headers: { 'content-type': 'application/json' } });
    await call('POST', '/api/v1/webhooks', '/api/v1/webhooks', { rawBody: 'name=x', headers: { 'content-type': 'text/plain' } });
    await call('GET', '/api/v1/webhooks/{id}/deliveries', `/api/v1/webhooks/${id}/deliveries?status=maybe`);
    await call('POST', '/api/v1/events', '/api/v1/events', { body: { ...event, tenant_id: 'someone-else' } });
    await call('POST', '/api/v1/events', '/api/v1/events', { body: { event: 'ping', data: {} } });
    await call('PUT', '/api/v1/webhooks/{id}', '/api/v1/webhooks/wh_unknown', { body: { enabled: false } });
    await call('POST', '/api/v1/webhooks/{id}/secret/rotate', '/api/v1/webhooks/wh_unknown/secret/rotate', { body: { grace_period_seconds: -1 } });
    await call('POST', '/api/v1/webhooks/{id}/secret/rotate', '/api/v1/webhooks/wh_unknown/secret/rotate', { body: { secret: 1 } });

    const unseen = documentedOperations(doc).filter((op) => !seen.has(op));
    expect(unseen).toEqual([]);
    expect(seen.get('GET /api/v1/webhooks/{id}')).toEqual([200, 404]);
    expect(seen.get('POST /api/v1/webhooks/{id}/secret/rotate')).toEqual([200, 200, 422, 400]);
  });

  it('answers with the documented rate-limit headers and 429 body when limiting is on', async () => {
    const limited = await startTestGateway({ RATE_LIMIT_PER_MINUTE: '2' });
    try {
      const limitedApi = client(limited.url, await userToken('tenant-limited'));
      const answers = [];
      for (let i = 0; i < 3; i++) answers.push(await limitedApi.get('/api/v1/webhooks'));
      for (const res of answers) {
        for (const header of ['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset']) {
          expect(res.headers.get(header), header).toMatch(/^\d+$/);
        }
      }
      const last = answers[2]!;
      expect(last.status).toBe(429);
      expect(last.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(schemas.errors(responsePointer(doc, '/api/v1/webhooks', 'GET', 429)!, last.body)).toEqual([]);
    } finally {
      await limited.close();
    }
  });
});
