// Runs the rows of the REST route table as GraphQL operations against the schema that /graphql
// serves, with the same context factory. This file only translates HTTP to GraphQL and back;
// every business rule lives in the services the resolvers call.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GraphQLError, execute, validate, type GraphQLSchema } from 'graphql';
import type { Logger } from 'pino';
import type { Viewer } from '../auth/viewer.js';
import { AppError, RateLimitedError } from '../errors.js';
import { classifyError } from '../graphql/errors.js';
import type { RequestContextFactory } from '../request-context.js';
import { toSnakeCase } from './case.js';
import {
  hasBody,
  isJsonContentType,
  parseJsonObject,
  readBody,
  sendEmpty,
  sendError,
  sendJson,
  sendRateLimited,
} from './http-io.js';
import type { RestRoute } from './route.js';

interface CompiledRoute {
  route: RestRoute;
  segments: string[];
}

export interface RestRouterOptions {
  schema: GraphQLSchema;
  routes: RestRoute[];
  contextFactory: RequestContextFactory;
  logger: Logger;
  maxBodyBytes: number;
  /**
   * The caller of a matched route, before its body is read; undefined when the request has been
   * answered instead (no valid credentials, over the rate limit).
   */
  admit: (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<Viewer | undefined>;
}

export interface RestRouter {
  handles(pathname: string): boolean;
  /** Answers the request; resolves to the matched route pattern (for metrics), if any. */
  handle(req: IncomingMessage, res: ServerResponse, url: URL, requestId: string): Promise<string | undefined>;
}

export function compileRoutes(schema: GraphQLSchema, routes: RestRoute[]): CompiledRoute[] {
  return routes.map((route) => {
    const errors = validate(schema, route.operation);
    if (errors.length > 0) {
      throw new Error(`REST route ${route.method} ${route.path}: ${errors.map((e) => e.message).join('; ')}`);
    }
    return { route, segments: route.path.split('/').filter(Boolean) };
  });
}

/** Literal segments beat parameters, so /webhooks/events never reaches /webhooks/:id. */
function match(compiled: CompiledRoute[], pathname: string): { candidates: CompiledRoute[]; params: Record<string, string>[] } {
  const parts = pathname.split('/').filter(Boolean);
  let best: { score: number; routes: CompiledRoute[]; params: Record<string, string>[] } = { score: -1, routes: [], params: [] };
  for (const c of compiled) {
    if (c.segments.length !== parts.length) continue;
    const params: Record<string, string> = {};
    let score = 0;
    let ok = true;
    for (const [i, seg] of c.segments.entries()) {
      const part = parts[i]!;
      if (seg.startsWith(':')) {
        try {
          params[seg.slice(1)] = decodeURIComponent(part);
        } catch {
          params[seg.slice(1)] = part;
        }
      } else if (seg === part) {
        score += 1;
      } else {
        ok = false;
        break;
      }
    }
    if (!ok) continue;
    if (score > best.score) best = { score, routes: [c], params: [params] };
    else if (score === best.score) {
      best.routes.push(c);
      best.params.push(params);
    }
  }
  return { candidates: best.routes, params: best.params };
}

export function createRestRouter(options: RestRouterOptions): RestRouter {
  const compiled = compileRoutes(options.schema, options.routes);
  const { logger } = options;

  function fail(res: ServerResponse, err: unknown, requestId: string) {
    const original = err instanceof GraphQLError ? err.originalError : err;
    if (original instanceof RateLimitedError) {
      sendRateLimited(res, original);
      return;
    }
    const { client, internal } = classifyError(err);
    if (internal !== undefined) logger.error({ err: internal, requestId }, 'rest request failed');
    sendError(res, client.status, client.code, client.message, client.details);
  }

  return {
    handles: (pathname) => pathname === '/api/v1' || pathname.startsWith('/api/v1/'),

    async handle(req, res, url, requestId) {
      const { candidates, params } = match(compiled, url.pathname);
      if (candidates.length === 0) {
        sendError(res, 404, 'NOT_FOUND', `no route for ${url.pathname}`);
        return undefined;
      }
      const index = candidates.findIndex((c) => c.route.method === req.method);
      if (index < 0) {
        const allow = candidates.map((c) => c.route.method).join(', ');
        sendError(res, 405, 'METHOD_NOT_ALLOWED', `${req.method} is not allowed here`, undefined, { allow });
        return candidates[0]!.route.path;
      }
      const { route } = candidates[index]!;
      try {
        const info = {
          authorization: req.headers.authorization,
          requestId,
          idempotencyKey: typeof req.headers['idempotency-key'] === 'string' ? req.headers['idempotency-key'] : undefined,
        };
        const viewer = await options.admit(req, res, url);
        if (!viewer) return route.path;

        let body: Record<string, unknown> = {};
        const bodyGiven = hasBody(req);
        if (bodyGiven && !isJsonContentType(req.headers['content-type'])) {
          throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'request body must be application/json');
        }
        if (route.body && (bodyGiven || route.bodyOptional)) {
          const parsed = route.body.safeParse(bodyGiven ? parseJsonObject(await readBody(req, options.maxBodyBytes)) : {});
          if (!parsed.success) {
            const issue = parsed.error.issues[0]!;
            const field = issue.path.join('.');
            throw new AppError('BAD_REQUEST', field ? `${field}: ${issue.message}` : issue.message, field ? { field } : undefined);
          }
          body = parsed.data;
        } else if (route.body) {
          throw new AppError('BAD_REQUEST', 'request body must be a JSON object');
        } else {
          req.resume();
        }

        const variables = route.variables?.({ params: params[index]!, query: url.searchParams, body }) ?? {};
        const contextValue = options.contextFactory.forViewer(viewer, info);
        const result = await execute({ schema: options.schema, document: route.operation, contextValue, variableValues: variables });
        if (result.errors && result.errors.length > 0) {
          fail(res, result.errors[0], requestId);
          return route.path;
        }
        const data = result.data ?? {};
        const status = typeof route.status === 'function' ? route.status(data) : route.status;
        if (route.result) sendJson(res, status, toSnakeCase(route.result(data)));
        else sendEmpty(res, status);
      } catch (err) {
        fail(res, err, requestId);
      }
      return route.path;
    },
  };
}
