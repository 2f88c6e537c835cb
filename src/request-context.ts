// Builds the GraphQL context for a request, identically for /graphql and the REST routes:
// authentication, one EntityManager fork, the per-request services.
import { randomUUID } from 'node:crypto';
import type { MikroORM } from '@mikro-orm/postgresql';
import type { Authenticator } from './auth/authenticator.js';
import type { Viewer } from './auth/viewer.js';
import { AppError } from './errors.js';
import type { GraphQLContext } from './graphql/context.js';
import { createServices, type ServiceDeps } from './services.js';

export interface RequestInfo {
  authorization: string | null | undefined;
  /** `?token=`, accepted where a browser cannot set headers (EventSource). */
  queryToken?: string | null | undefined;
  requestId?: string | null | undefined;
  idempotencyKey?: string | null | undefined;
  /** GraphQL lets anonymous requests through (introspection, GraphiQL); root fields' auth scopes then refuse. */
  allowAnonymous?: boolean;
}

export interface RequestContextFactory {
  authenticate(info: RequestInfo): Promise<Viewer | null>;
  forViewer(viewer: Viewer | null, info: RequestInfo): GraphQLContext;
  forRequest(info: RequestInfo): Promise<GraphQLContext>;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function requestIdFrom(header: string | null | undefined): string {
  return header && REQUEST_ID.test(header) ? header : randomUUID();
}

export function createRequestContextFactory(deps: ServiceDeps & { orm: MikroORM; authenticator: Authenticator }): RequestContextFactory {
  const factory: RequestContextFactory = {
    async authenticate(info) {
      const token = deps.authenticator.tokenFromHeader(info.authorization) ?? (info.queryToken || undefined);
      if (token === undefined) {
        if (info.allowAnonymous) return null;
        throw new AppError('UNAUTHORIZED', 'missing bearer token');
      }
      return deps.authenticator.authenticate(token);
    },
    forViewer(viewer, info) {
      const em = deps.orm.em.fork();
      return {
        viewer,
        em,
        services: createServices(em, deps),
        requestId: requestIdFrom(info.requestId),
        idempotencyKey: info.idempotencyKey ?? undefined,
      };
    },
    async forRequest(info) {
      return factory.forViewer(await factory.authenticate(info), info);
    },
  };
  return factory;
}
