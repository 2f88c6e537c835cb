// createApp builds the HTTP handler from its dependencies; nothing happens at import time, so
// tests build as many apps as they like, each on its own database.
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from 'pino';
import { createAuthenticator } from './auth/authenticator.js';
import type { Viewer } from './auth/viewer.js';
import type { Config } from './config.js';
import type { SecretBox } from './crypto/secrets.js';
import type { Notifier } from './db/notifier.js';
import type { Deliverer } from './worker/deliverer.js';
import { AppError, RateLimitedError } from './errors.js';
import { operationLimits, rootFieldCount } from './graphql/operation-limits.js';
import { schema } from './graphql/schema.js';
import { createDocumentCaches, createGraphQLServer, type GatewayServerContext } from './graphql/yoga.js';
import { clientAddress } from './http/client-address.js';
import { createAnonymousLimiter, rateLimitKey, type RateLimiter } from './http/rate-limit.js';
import { applyCors, applySecurityHeaders } from './http/headers.js';
import type { Metrics } from './observability/metrics.js';
import { createRequestContextFactory, requestIdFrom, type RequestContextFactory } from './request-context.js';
import { graphqlMediaType, isJsonContentType, readBody, sendError, sendJson, sendRateLimited } from './rest/http-io.js';
import type { EventPublisher } from './modules/events/event.service.js';
import type { DeliveryUpdateHub } from './subscriptions/delivery-update-hub.js';
import { handleDocs } from './rest/docs-page.js';
import { handleOpenApi, OPENAPI_PATH } from './rest/openapi.js';
import { createRestRouter } from './rest/router.js';
import { restRoutes } from './rest/routes.js';

export interface AppDeps {
  config: Config;
  orm: MikroORM;
  secretBox: SecretBox;
  notifier: Notifier;
  deliverer: Deliverer;
  logger: Logger;
  metrics: Metrics;
  rateLimiter: RateLimiter | undefined;
  deliveryUpdates: DeliveryUpdateHub;
  /** Whether this instance can do its work now: /readyz answers 200 when true, else 503. */
  ready: () => Promise<boolean>;
  eventPublisher: EventPublisher;
}

export interface App {
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** The one GraphQL server and the context factory behind it, shared with WebSocket subscriptions. */
  graphql: GraphQLFront;
}

export interface GraphQLFront {
  yoga: ReturnType<typeof createGraphQLServer>;
  contextFactory: RequestContextFactory;
}

function bearerMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(header ?? '');
  const expected = Buffer.from(`Bearer ${token}`);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export function createApp(deps: AppDeps): App {
  const { config, orm, logger, metrics, rateLimiter } = deps;
  const authenticator = createAuthenticator(config, orm);
  const contextFactory = createRequestContextFactory({ ...deps, authenticator });
  const documentCaches = createDocumentCaches();
  const yoga = createGraphQLServer({ contextFactory, logger, limits: operationLimits(config), caches: documentCaches });
  metrics.addCache('graphql_documents', documentCaches);
  metrics.addCache('verified_jwts', authenticator.cache);
  const anonymousLimiter = createAnonymousLimiter(config.rateLimitAnonymousPerMinute);

  /**
   * Counts `points` requests against the viewer's tenant and sets the X-RateLimit-* headers;
   * answers 429 and resolves false when they do not fit.
   */
  async function withinLimit(viewer: Viewer, res: ServerResponse, points: number): Promise<boolean> {
    if (!rateLimiter) return true;
    const decision = await rateLimiter.consume(rateLimitKey(viewer), points);
    for (const [k, v] of Object.entries(decision.headers)) res.setHeader(k, v);
    if (decision.allowed) return true;
    sendRateLimited(res, new RateLimitedError(decision.retryAfterSec, decision.headers));
    return false;
  }

  /** A GraphQL error answer from the front, before yoga: the media type the client accepts. */
  function sendGraphQLError(req: IncomingMessage, res: ServerResponse, status: number, code: string, message: string): void {
    sendJson(res, status, { errors: [{ message, extensions: { code } }] }, {}, graphqlMediaType(req));
  }

  /**
   * The caller behind a request that needs credentials. Without valid ones the request is answered
   * here, before its body is read: 401, or 429 once this address has had too many such answers.
   */
  async function admit(req: IncomingMessage, res: ServerResponse, url: URL, surface: 'rest' | 'graphql'): Promise<Viewer | undefined> {
    let reason = 'missing bearer token';
    try {
      const viewer = await contextFactory.authenticate({
        authorization: req.headers.authorization,
        // EventSource cannot set headers: GraphQL's SSE subscriptions may carry the token in the URL.
        queryToken: surface === 'graphql' ? url.searchParams.get('token') : undefined,
      });
      if (viewer) return viewer;
    } catch (err) {
      if (!(err instanceof AppError) || err.code !== 'UNAUTHORIZED') throw err;
      reason = err.message;
    }
    const decision = await anonymousLimiter.consume(clientAddress(req, config.trustProxy));
    if (!decision.allowed) {
      const message = `too many requests without valid credentials from this address; retry in ${decision.retryAfterSec} s`;
      sendRateLimited(res, new RateLimitedError(decision.retryAfterSec, {}, message));
    } else if (surface === 'graphql') {
      sendGraphQLError(req, res, 401, 'UNAUTHORIZED', reason);
    } else {
      sendError(res, 401, 'UNAUTHORIZED', reason);
    }
    return undefined;
  }

  const rest = createRestRouter({
    schema,
    routes: restRoutes,
    contextFactory,
    logger,
    maxBodyBytes: config.maxBodyBytes,
    admit: async (req, res, url) => {
      const viewer = await admit(req, res, url, 'rest');
      return viewer && (await withinLimit(viewer, res, 1)) ? viewer : undefined;
    },
  });

  async function graphql(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    // The GraphiQL page is open to browsers: it only renders, with an Authorization header to fill in.
    if (req.method === 'GET' && req.headers.accept?.includes('text/html')) {
      await yoga.handle(req, res);
      return;
    }
    const viewer = await admit(req, res, url, 'graphql');
    if (!viewer) return;
    let operation: { query?: unknown; operationName?: unknown } = {
      query: url.searchParams.get('query'),
      operationName: url.searchParams.get('operationName'),
    };
    if (req.method === 'POST') {
      let body: Buffer;
      try {
        body = await readBody(req, config.maxBodyBytes);
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        sendGraphQLError(req, res, err.status, err.code, err.message);
        return;
      }
      let parsed: unknown;
      try {
        parsed = isJsonContentType(req.headers['content-type']) ? JSON.parse(body.toString('utf8')) : undefined;
      } catch {
        parsed = undefined; // yoga answers malformed JSON itself
      }
      if (Array.isArray(parsed)) {
        sendGraphQLError(req, res, 400, 'QUERY_TOO_COMPLEX', 'batched requests are not accepted: send one operation per request');
        return;
      }
      if (parsed && typeof parsed === 'object') operation = parsed;
      // yoga reads the body from here rather than from the stream, which is already consumed.
      (req as IncomingMessage & { body?: Buffer }).body = body;
    }
    const points = rootFieldCount(operation.query, operation.operationName, config.graphqlMaxTokens);
    if (!(await withinLimit(viewer, res, points))) return;
    await yoga.handle(req, res, { viewer } satisfies GatewayServerContext);
  }

  async function route(req: IncomingMessage, res: ServerResponse, url: URL, requestId: string): Promise<string> {
    const path = url.pathname;
    if (path === '/health' || path === '/healthz') {
      sendJson(res, 200, { status: 'ok' });
      return path;
    }
    if (path === '/readyz') {
      if (await deps.ready()) sendJson(res, 200, { status: 'ok' });
      else sendJson(res, 503, { status: 'unavailable' });
      return path;
    }
    if (path === '/metrics') {
      if (config.metricsToken && !bearerMatches(req.headers.authorization, config.metricsToken)) {
        sendError(res, 401, 'UNAUTHORIZED', 'metrics need the METRICS_TOKEN bearer token');
        return path;
      }
      const text = await metrics.render();
      res.writeHead(200, { 'content-type': metrics.registry.contentType });
      res.end(text);
      return path;
    }
    if (path === OPENAPI_PATH && req.method === 'GET') {
      handleOpenApi(res);
      return path;
    }
    if (path === '/docs' || path.startsWith('/docs/')) {
      await handleDocs(req, res, path);
      return '/docs';
    }
    if (path === '/graphql' || path.startsWith('/graphql/')) {
      await graphql(req, res, url);
      return '/graphql';
    }
    if (rest.handles(path)) {
      return (await rest.handle(req, res, url, requestId)) ?? 'unmatched';
    }
    sendError(res, 404, 'NOT_FOUND', `no route for ${path}`);
    return 'unmatched';
  }

  return {
    graphql: { yoga, contextFactory },
    handle(req, res) {
      const started = process.hrtime.bigint();
      const url = new URL(req.url ?? '/', 'http://gateway.invalid');
      const requestId = requestIdFrom(req.headers['x-request-id'] as string | undefined);
      let routeLabel = 'unmatched';
      let routed: Promise<void> = Promise.resolve();
      res.setHeader('x-request-id', requestId);
      // GraphQL builds its context from the request headers: give it the id this answer carries.
      req.headers['x-request-id'] = requestId;
      applySecurityHeaders(res, url.pathname);
      res.on('finish', () => {
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        const method = req.method ?? 'GET';
        // An answer sent synchronously (/health, a 401 on /metrics) finishes before route()'s
        // promise hands back its label; record once that label is known.
        void routed.then(() => {
          metrics.httpRequests.inc({ method, route: routeLabel, status: String(res.statusCode) });
          metrics.httpDuration.observe({ method, route: routeLabel }, seconds);
          logger.info(
            { requestId, method, route: routeLabel, path: url.pathname, status: res.statusCode, durationMs: Math.round(seconds * 1000) },
            'request',
          );
        });
      });
      if (applyCors(req, res, config.allowedOrigins)) {
        routeLabel = 'preflight';
        return;
      }
      routed = route(req, res, url, requestId)
        .then((label) => {
          routeLabel = label;
        })
        .catch((err: unknown) => {
          logger.error({ err, requestId }, 'request failed');
          if (!res.headersSent) sendError(res, 500, 'INTERNAL_ERROR', 'internal error');
          else res.destroy();
        });
    },
  };
}
