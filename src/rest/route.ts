import type { z } from 'zod';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface RouteInput {
  params: Record<string, string>;
  query: URLSearchParams;
  body: Record<string, unknown>;
}

/**
 * One documented REST path: the GraphQL operation it runs and how to translate in and out.
 * Rows stay declarative; the router does the HTTP work for all of them.
 */
export interface RestRoute {
  method: HttpMethod;
  /** Path with `:name` parameters, e.g. `/api/v1/webhooks/:id`. */
  path: string;
  /** The GraphQL operation, parsed and validated against the schema at start-up. */
  operation: string;
  /** When set, a JSON object body is required and checked against it (wrong types are 400). */
  body?: z.ZodType<Record<string, unknown>>;
  /** Largest accepted body in bytes; defaults to MAX_BODY_BYTES. */
  maxBodyBytes?: 'event';
  variables?: (input: RouteInput) => Record<string, unknown>;
  /** HTTP status on success. */
  status: number | ((data: Record<string, unknown>) => number);
  /** Shapes the GraphQL data into the documented JSON; absent means an empty body. */
  result?: (data: Record<string, unknown>) => unknown;
}
