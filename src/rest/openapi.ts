// The OpenAPI 3.1 description of the gateway's HTTP API, served at GET /api/v1/openapi.json.
// Paths, methods, path parameters and request bodies are read off the REST route table (bodies
// through z.toJSONSchema of each row's zod schema), so no row can be missing from the document and
// no documented operation can lack a row. Success bodies are zod schemas too, defined beside their
// rows and registered in src/rest/response-body.ts: the components are z.toJSONSchema of that
// registry, so each shape is written once. The tests hold them against real answers of a running
// gateway.
import type { ServerResponse } from 'node:http';
import { getOperationAST } from 'graphql';
import { z } from 'zod';
import { MAX_JSON_DEPTH } from '../db/storable-text.js';
import { ERROR_STATUS, type ErrorCode } from '../errors.js';
import { EVENT_TYPES } from '../modules/events/event-types.js';
import { VERSION } from '../version.js';
import { responseBodies } from './response-body.js';
import type { RestRoute, RouteDoc } from './route.js';
import { restRoutes } from './routes.js';

type Json = Record<string, unknown>;

export const OPENAPI_PATH = '/api/v1/openapi.json';

const ref = (kind: 'schemas' | 'responses' | 'headers', name: string) => ({ $ref: `#/components/${kind}/${name}` });

// The body of every error answer (sendError in http-io.ts), named Error in the components; each
// error response narrows its `code`, and the 429's adds `retryAfter` (errorResponses).
z.object({
  error: z.string().describe('A human message.'),
  code: z.enum(Object.keys(ERROR_STATUS)).describe('A stable machine code.'),
  details: z.unknown().optional().describe('More about the error, e.g. `{"field": "url"}`.'),
}).register(responseBodies, { id: 'Error' });

/**
 * How answers are described: as what a client reading them accepts (zod's `input` side), so objects
 * stay open to fields a later version adds (the tests close them, to catch an undocumented field).
 * zod writes z.iso.datetime() as `format: date-time` plus the long pattern it checks with; the
 * format alone says the same to a reader.
 */
const ANSWER_OPTIONS = {
  target: 'draft-2020-12',
  io: 'input',
  override: ({ jsonSchema }) => {
    if (jsonSchema.format === 'date-time') delete jsonSchema.pattern;
  },
} satisfies z.core.ToJSONSchemaParams;

/** The registered bodies, each under its id, referring to one another by `#/components/schemas/<id>`. */
function componentSchemas(): Record<string, Json> {
  const { schemas } = z.toJSONSchema(responseBodies, { ...ANSWER_OPTIONS, uri: (id) => `#/components/schemas/${id}` });
  return Object.fromEntries(Object.entries(schemas).map(([id, { $schema: _dialect, $id: _id, ...schema }]) => [id, schema]));
}

function responseBodyId(route: RestRoute, schema: z.ZodType): string {
  const id = responseBodies.get(schema)?.id;
  if (id === undefined) throw new Error(`${route.method} ${route.path}: doc.response is not registered in responseBodies`);
  return id;
}

const ERROR_MEANING: Partial<Record<ErrorCode, string>> = {
  BAD_REQUEST: 'Malformed JSON, a body that is not an object, wrong JSON types, missing or empty required fields, or bad query values.',
  UNAUTHORIZED: 'No token, or a malformed, expired, wrongly signed or revoked one.',
  FORBIDDEN: 'A valid token that may not do this (a token without a tenant, or publishing for another tenant).',
  NOT_FOUND: "Unknown, malformed or another tenant's id.",
  CONFLICT:
    "A per-tenant quota is reached (the message names the setting, e.g. MAX_WEBHOOKS_PER_TENANT), or the resource's state forbids the request (a resend, a recover or a secret rotation on a disabled webhook: enable it first; a resend of a delivery being sent right now).",
  PAYLOAD_TOO_LARGE: "The body is over MAX_BODY_BYTES, or an event's serialized data over MAX_EVENT_BYTES.",
  UNSUPPORTED_MEDIA_TYPE: 'The body is not application/json.',
  VALIDATION_ERROR:
    `Well-formed but invalid values: a bad or blocked URL, an unknown event type, a name too long, a bad secret, text with NUL characters or unpaired surrogates, event data nested deeper than ${MAX_JSON_DEPTH} levels.`,
  RATE_LIMITED:
    "Over the tenant's rate limit, or too many requests without valid credentials from this address. Wait `retryAfter` seconds (also in Retry-After).",
  INTERNAL_ERROR: 'Something unexpected; details are in the gateway log, never in the answer.',
};

const codeOf = (status: number) => (Object.keys(ERROR_STATUS) as ErrorCode[]).find((code) => ERROR_STATUS[code] === status);
const pascal = (code: string) => code.toLowerCase().replace(/(^|_)([a-z])/g, (_m, _s, c: string) => c.toUpperCase());

const RATE_LIMIT_HEADERS = {
  'X-RateLimit-Limit': ref('headers', 'X-RateLimit-Limit'),
  'X-RateLimit-Remaining': ref('headers', 'X-RateLimit-Remaining'),
  'X-RateLimit-Reset': ref('headers', 'X-RateLimit-Reset'),
};

/**
 * One shared response per error code, its `code` pinned. 401 is answered before the caller is known,
 * so it counts against no rate limit and carries no X-RateLimit-* headers; the others do.
 */
function errorResponses(): Json {
  const responses: Json = {};
  for (const [code, meaning] of Object.entries(ERROR_MEANING) as [ErrorCode, string][]) {
    const limited = code === 'RATE_LIMITED';
    const schema = {
      allOf: [
        ref('schemas', 'Error'),
        {
          type: 'object',
          properties: {
            code: { const: code },
            ...(limited ? { retryAfter: { type: 'integer', minimum: 0, description: 'Seconds to wait.' } } : {}),
          },
          ...(limited ? { required: ['retryAfter'] } : {}),
        },
      ],
    };
    responses[pascal(code)] = {
      description: meaning,
      ...(code === 'UNAUTHORIZED'
        ? {}
        : { headers: { ...(limited ? { 'Retry-After': ref('headers', 'Retry-After') } : {}), ...RATE_LIMIT_HEADERS } }),
      content: { 'application/json': { schema } },
    };
  }
  return responses;
}

/** Errors every row can answer, plus those that follow from its shape. */
function errorStatuses(route: RestRoute): number[] {
  const statuses = new Set([401, 403, 429, 500, ...(route.doc?.errors ?? [])]);
  if (route.body) for (const s of [400, 413, 415]) statuses.add(s);
  if (route.path.includes('/:')) statuses.add(404);
  return [...statuses].sort((a, b) => a - b);
}

/** The row's success statuses and their meanings. */
export function successStatuses(route: RestRoute): Record<number, string> {
  if (route.doc?.success) return route.doc.success;
  if (typeof route.status !== 'number') throw new Error(`${route.method} ${route.path}: a computed status needs doc.success`);
  return { [route.status]: route.status === 204 ? 'Done; the answer has no body.' : 'OK' };
}

/** `/api/v1/webhooks/:id` becomes `/api/v1/webhooks/{id}`. */
export const openApiPath = (path: string) => path.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}');

function requestBodySchema(schema: z.ZodType): Json {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input', unrepresentable: 'any' });
  return rest;
}

function operationFor(route: RestRoute): Json {
  const doc: RouteDoc = route.doc ?? { summary: `${route.method} ${route.path}`, tag: 'Webhooks' };
  const parameters: Json[] = [...route.path.matchAll(/:([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => ({
    name: m[1],
    in: 'path',
    required: true,
    schema: { type: 'string' },
    description: 'An id from an earlier answer. Unknown, malformed and other tenants’ ids are all 404.',
  }));
  parameters.push(...(doc.parameters ?? []).map((p) => ({ ...p })));

  const responses: Json = {};
  for (const [status, description] of Object.entries(successStatuses(route))) {
    responses[status] = {
      description,
      headers: RATE_LIMIT_HEADERS,
      ...(doc.response ? { content: { 'application/json': { schema: ref('schemas', responseBodyId(route, doc.response)) } } } : {}),
    };
  }
  for (const status of errorStatuses(route)) {
    const code = codeOf(status);
    if (!code) throw new Error(`${route.method} ${route.path}: no error code answers ${status}`);
    responses[String(status)] = ref('responses', pascal(code));
  }

  return {
    operationId: getOperationAST(route.operation)?.name?.value ?? `${route.method} ${route.path}`,
    summary: doc.summary,
    ...(doc.description ? { description: doc.description } : {}),
    tags: [doc.tag],
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(route.body
      ? { requestBody: { required: !route.bodyOptional, content: { 'application/json': { schema: requestBodySchema(route.body) } } } }
      : {}),
    responses,
  };
}

function statusBody(value: 'ok' | 'unavailable'): Json {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(z.object({ status: z.literal(value) }), ANSWER_OPTIONS);
  return rest;
}

function operationalPaths(): Json {
  const health = {
    get: {
      operationId: 'Health',
      summary: 'Liveness',
      tags: ['Operations'],
      security: [],
      responses: { 200: { description: 'The process is up.', content: { 'application/json': { schema: statusBody('ok') } } } },
    },
  };
  return {
    '/health': health,
    '/healthz': { get: { ...health.get, operationId: 'Healthz' } },
    '/readyz': {
      get: {
        operationId: 'Readyz',
        summary: 'Readiness: the database answers and the worker is not stuck',
        description:
          'Answers within 5 seconds: 503 when the database does not answer a probe within 2 seconds, or when this ' +
          "instance's worker has completed no claim cycle for max(60 s, 3 × WORKER_POLL_INTERVAL); 200 otherwise.",
        tags: ['Operations'],
        security: [],
        responses: {
          200: { description: 'Ready.', content: { 'application/json': { schema: statusBody('ok') } } },
          503: { description: 'The database does not answer, or the worker is stuck.', content: { 'application/json': { schema: statusBody('unavailable') } } },
        },
      },
    },
    '/metrics': {
      get: {
        operationId: 'Metrics',
        summary: 'Prometheus metrics',
        description: 'Open unless METRICS_TOKEN is set; then it needs `Authorization: Bearer <METRICS_TOKEN>`.',
        tags: ['Operations'],
        security: [{}, { metricsToken: [] }],
        responses: {
          200: { description: 'Prometheus text exposition format.', content: { 'text/plain': { schema: { type: 'string' } } } },
          401: ref('responses', 'Unauthorized'),
        },
      },
    },
    [OPENAPI_PATH]: {
      get: {
        operationId: 'OpenApiDocument',
        summary: 'This document',
        description: 'Needs no token, so that /docs can read it.',
        tags: ['Operations'],
        security: [],
        responses: { 200: { description: 'OpenAPI 3.1', content: { 'application/json': { schema: { type: 'object' } } } } },
      },
    },
  };
}

/** The document for `routes`; exported for tests, the gateway serves `openApiDocument()`. */
export function buildOpenApiDocument(routes: RestRoute[]): Json {
  const paths: Record<string, Json> = {};
  for (const route of routes) {
    const key = openApiPath(route.path);
    const item = (paths[key] ??= {});
    item[route.method.toLowerCase()] = operationFor(route);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'InfraAudit webhook gateway',
      version: VERSION,
      description: [
        'Signed, durable webhook delivery for InfraAudit events. Every /api/v1 operation runs the same resolver as',
        'the GraphQL API at /graphql.',
        '',
        'Errors are `{"error": "...", "code": "MACHINE_CODE", "details": ...}` with `details` optional.',
        'Every answer to an authenticated request carries X-RateLimit-Limit, X-RateLimit-Remaining and',
        'X-RateLimit-Reset when rate limiting is on.',
        '',
        `Event types: ${EVENT_TYPES.map((t) => `\`${t.event}\``).join(', ')}.`,
      ].join('\n'),
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    tags: [
      { name: 'Webhooks', description: 'Endpoints that receive signed event deliveries.' },
      { name: 'Deliveries', description: 'Test pings, the delivery history of a webhook, resends and bulk recovers.' },
      { name: 'Events', description: 'Publishing events to the tenant’s webhooks.' },
      { name: 'API keys', description: 'Tenant-bound `ia_live_` keys.' },
      { name: 'Operations', description: 'Unauthenticated health, readiness and metrics endpoints.' },
    ],
    security: [{ bearerAuth: [] }],
    paths: { ...paths, ...operationalPaths() },
    components: {
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT or ia_live_ API key',
          description: 'A JWT (HS256 with JWT_SECRET, or keys from JWT_JWKS_URL) or an `ia_live_` API key.',
        },
        metricsToken: { type: 'http', scheme: 'bearer', description: 'The METRICS_TOKEN setting.' },
      },
      headers: {
        'X-RateLimit-Limit': { description: "Requests allowed per window for the caller's tenant.", schema: { type: 'integer' } },
        'X-RateLimit-Remaining': { description: 'Requests left in the current window.', schema: { type: 'integer' } },
        'X-RateLimit-Reset': { description: 'When the window resets, in unix seconds.', schema: { type: 'integer' } },
        'Retry-After': { description: 'Seconds to wait before retrying.', schema: { type: 'integer' } },
      },
      schemas: componentSchemas(),
      responses: errorResponses(),
    },
  };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

let cached: { document: Json; text: string } | undefined;

function load() {
  if (!cached) {
    const document = deepFreeze(buildOpenApiDocument(restRoutes));
    cached = { document, text: JSON.stringify(document) };
  }
  return cached;
}

/** The document for the route table; built once and frozen, since every caller shares it. */
export function openApiDocument(): Json {
  return load().document;
}

/** GET /api/v1/openapi.json. Needs no token. */
export function handleOpenApi(res: ServerResponse): void {
  const { text } = load();
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-cache',
  });
  res.end(text);
}
