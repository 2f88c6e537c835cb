// One context per request, built the same way for /graphql and for the REST routes: the viewer,
// a fresh EntityManager fork, and the per-request services that resolvers call.
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Viewer } from '../auth/viewer.js';
import type { Services } from '../services.js';

export interface GraphQLContext {
  viewer: Viewer | null;
  em: EntityManager;
  services: Services;
  requestId: string;
  /** The Idempotency-Key header of the request, when one was sent. */
  idempotencyKey?: string | undefined;
}
