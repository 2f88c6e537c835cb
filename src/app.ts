// createApp builds the HTTP handler from its dependencies; nothing happens at import time, so
// tests build as many apps as they like, each on its own database.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from 'pino';
import { createAuthenticator } from './auth/authenticator.js';
import type { Config } from './config.js';
import type { SecretBox } from './crypto/secrets.js';
import type { Notifier } from './db/notifier.js';
import type { Deliverer } from './delivery/deliverer.js';
import { schema } from './graphql/schema.js';
import { createGraphQLServer } from './graphql/yoga.js';
import { createRequestContextFactory, requestIdFrom } from './request-context.js';
import { sendError, sendJson } from './rest/http-io.js';
import { createRestRouter } from './rest/router.js';
import { restRoutes } from './rest/routes.js';

export interface AppDeps {
  config: Config;
  orm: MikroORM;
  secretBox: SecretBox;
  notifier: Notifier;
  deliverer: Deliverer;
  logger: Logger;
}

export interface App {
  handle(req: IncomingMessage, res: ServerResponse): void;
}

export function createApp(deps: AppDeps): App {
  const { config, orm, logger } = deps;
  const authenticator = createAuthenticator(config, orm);
  const contextFactory = createRequestContextFactory({ ...deps, authenticator });
  const yoga = createGraphQLServer({ contextFactory, logger });
  const rest = createRestRouter({
    schema,
    routes: restRoutes,
    contextFactory,
    logger,
    maxBodyBytes: config.maxBodyBytes,
    maxEventBytes: config.maxEventBytes,
  });

  async function ready(): Promise<boolean> {
    try {
      await orm.em.fork().getConnection().execute('select 1');
      return true;
    } catch {
      return false;
    }
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://gateway.invalid');
    const requestId = requestIdFrom(req.headers['x-request-id'] as string | undefined);
    res.setHeader('x-request-id', requestId);
    const path = url.pathname;
    if (path === '/health' || path === '/healthz') {
      sendJson(res, 200, { status: 'ok' });
    } else if (path === '/readyz') {
      if (await ready()) sendJson(res, 200, { status: 'ok' });
      else sendJson(res, 503, { status: 'unavailable' });
    } else if (path === '/graphql' || path.startsWith('/graphql/')) {
      await yoga.handle(req, res);
    } else if (rest.handles(path)) {
      await rest.handle(req, res, url, requestId);
    } else {
      sendError(res, 404, 'NOT_FOUND', `no route for ${path}`);
    }
  }

  return {
    handle(req, res) {
      route(req, res).catch((err: unknown) => {
        logger.error({ err }, 'request failed');
        if (!res.headersSent) sendError(res, 500, 'INTERNAL_ERROR', 'internal error');
        else res.destroy();
      });
    },
  };
}
