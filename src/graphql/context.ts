// One context per request, built the same way for /graphql and for the REST routes: the viewer,
// a fresh EntityManager fork, and the per-request services that resolvers call.
import type { EntityManager } from '@mikro-orm/postgresql';
import type { TenantViewer, Viewer } from '../auth/viewer.js';
import type { Services } from '../services.js';

export interface GraphQLContext {
  viewer: Viewer | null;
  em: EntityManager;
  services: Services;
  requestId: string;
  /** The Idempotency-Key header of the request, when one was sent. */
  idempotencyKey?: string | undefined;
}

/** What a field with the `viewer` auth scope sees: a caller is known. */
export type ViewerContext = GraphQLContext & { viewer: Viewer };

/** What a field with the `tenant` auth scope sees: the caller acts for one tenant. */
export type TenantContext = GraphQLContext & { viewer: TenantViewer };
