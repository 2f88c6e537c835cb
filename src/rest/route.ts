import type { DocumentNode } from 'graphql';
import type { TadaDocumentNode } from 'gql.tada';
import type { z } from 'zod';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

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
  /** Schema of the success body, registered in `responseBodies` (src/rest/response-body.ts); absent means no body. */
  response?: z.ZodType;
  /** Success statuses and what each means; defaults to the row's `status` when that is a number. */
  success?: Record<number, string>;
  /** Error statuses beyond those that follow from the row (authentication, rate limit, body, `:id`). */
  errors?: number[];
  parameters?: RouteParameter[];
}

export interface RouteInput<Params = Record<string, string>, Body = Record<string, unknown>> {
  params: Params;
  query: URLSearchParams;
  body: Body;
}

/** `{ id: string }` for `/api/v1/webhooks/:id/test`: the router fills every `:name` of the row's path. */
export type PathParams<Path extends string> = Path extends `${string}:${infer Name}/${infer Rest}`
  ? { [K in Name]: string } & PathParams<`/${Rest}`>
  : Path extends `${string}:${infer Name}`
    ? { [K in Name]: string }
    : Record<never, string>;

/** Answers the success status from the operation's data (a method type: see RestRoute). */
interface StatusFromData {
  status(data: Record<string, unknown>): number;
}

/**
 * One documented REST path: the GraphQL operation it runs and how to translate in and out, as the
 * router and the OpenAPI document read it. Rows are written with `restRoute`, which checks their
 * `variables` and `result` against the operation's types; the router only ever hands a row the data
 * of its own operation, validated against the schema at start-up. That is why `variables`, `status`
 * and `result` are method types here: a row typed by its document fits the table as it is.
 */
export interface RestRoute {
  method: HttpMethod;
  /** Path with `:name` parameters, e.g. `/api/v1/webhooks/:id`. */
  path: string;
  /** The GraphQL operation, validated against the schema at start-up. */
  operation: DocumentNode;
  /** When set, a JSON object body is required and checked against it (wrong types are 400). */
  body?: z.ZodType<Record<string, unknown>>;
  /** The body may be left out; it is then `{}`, checked like any other. */
  bodyOptional?: boolean;
  variables?(input: RouteInput): Record<string, unknown>;
  /** HTTP status on success. */
  status: number | StatusFromData['status'];
  /** Shapes the GraphQL data into the documented JSON; absent means an empty body. */
  result?(data: Record<string, unknown>): unknown;
  /** Documentation for GET /api/v1/openapi.json. */
  doc?: RouteDoc;
}

/**
 * A row as written: `variables` and `result` typed by the operation (written with
 * src/rest/graphql.ts), `params` by the path and `body` by the row's zod schema.
 */
export type TypedRestRoute<Path extends string, Body, Result, Variables> = Omit<
  RestRoute,
  'path' | 'operation' | 'body' | 'variables' | 'status' | 'result'
> & {
  path: Path;
  operation: TadaDocumentNode<Result, Variables>;
  body?: z.ZodType<Body>;
  status: number | ((data: NoInfer<Result>) => number);
  result?: (data: NoInfer<Result>) => unknown;
} & (Partial<Variables> extends Variables
    ? { variables?: (input: RouteInput<PathParams<Path>, NoInfer<Body>>) => NoInfer<Variables> }
    : { variables: (input: RouteInput<PathParams<Path>, NoInfer<Body>>) => NoInfer<Variables> });

/** A row of the table, checked against its operation's result and variables types. */
export function restRoute<
  const Path extends string,
  Result extends Record<string, unknown>,
  Variables extends Record<string, unknown>,
  Body extends Record<string, unknown> = Record<string, unknown>,
>(route: TypedRestRoute<Path, Body, Result, Variables>): RestRoute {
  return route;
}
