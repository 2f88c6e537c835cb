import type { z } from 'zod';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** Names of the success body schemas in the OpenAPI document's components (src/rest/openapi.ts). */
export type ResponseSchemaName =
  | 'Webhook'
  | 'WebhookList'
  | 'CreatedWebhook'
  | 'EventTypeList'
  | 'DeliveryAttempt'
  | 'DeliveryAttemptPage'
  | 'PublishedEvent'
  | 'ApiKeyList'
  | 'CreatedApiKey';

/** A query or header parameter, as an OpenAPI 3.1 parameter object. */
export interface RouteParameter {
  name: string;
  in: 'query' | 'header';
  description: string;
  required?: boolean;
  schema: Record<string, unknown>;
}

/** What the OpenAPI document says about a row beyond what the row itself shows. */
export interface RouteDoc {
  summary: string;
  description?: string;
  tag: 'Webhooks' | 'Deliveries' | 'Events' | 'API keys';
  /** Schema of the success body; absent means the success answer has no body. */
  response?: ResponseSchemaName;
  /** Success statuses and what each means; defaults to the row's `status` when that is a number. */
  success?: Record<number, string>;
  /** Error statuses beyond those that follow from the row (authentication, rate limit, body, `:id`). */
  errors?: number[];
  parameters?: RouteParameter[];
}

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
  variables?: (input: RouteInput) => Record<string, unknown>;
  /** HTTP status on success. */
  status: number | ((data: Record<string, unknown>) => number);
  /** Shapes the GraphQL data into the documented JSON; absent means an empty body. */
  result?: (data: Record<string, unknown>) => unknown;
  /** Documentation for GET /api/v1/openapi.json. */
  doc?: RouteDoc;
}
