// One translation from thrown errors to what clients see, shared by /graphql and the REST routes.
// AppErrors keep their code and message; GraphQL's own parse/validation/coercion errors are
// BAD_REQUEST; everything else is masked as INTERNAL_ERROR and logged, never shown.
import { GraphQLError } from 'graphql';
import { AppError, ERROR_STATUS, isErrorCode, type ErrorCode } from '../errors.js';

export interface ClientError {
  status: number;
  code: ErrorCode;
  message: string;
  details?: unknown;
}

export function classifyError(error: unknown): { client: ClientError; internal?: unknown } {
  const original = error instanceof GraphQLError ? (error.originalError ?? undefined) : error;
  if (original instanceof AppError) {
    return {
      client: { status: original.status, code: original.code, message: original.message, details: original.details },
    };
  }
  if (error instanceof GraphQLError && (original === undefined || original instanceof GraphQLError)) {
    const source = original instanceof GraphQLError ? original : error;
    const code = source.extensions['code'];
    if (isErrorCode(code)) {
      return { client: { status: ERROR_STATUS[code], code, message: source.message, details: source.extensions['details'] } };
    }
    const http = source.extensions['http'];
    if (http?.status && http.status >= 500) {
      return { client: { status: 500, code: 'INTERNAL_ERROR', message: 'internal error' }, internal: error };
    }
    return { client: { status: 400, code: 'BAD_REQUEST', message: source.message } };
  }
  return { client: { status: 500, code: 'INTERNAL_ERROR', message: 'internal error' }, internal: error };
}

export function toGraphQLError(error: unknown, onInternal: (err: unknown) => void): GraphQLError {
  const { client, internal } = classifyError(error);
  if (internal !== undefined) onInternal(internal);
  const base = error instanceof GraphQLError ? error : undefined;
  return new GraphQLError(client.message, {
    nodes: base?.nodes,
    source: base?.source,
    positions: base?.positions,
    path: base?.path,
    extensions: {
      code: client.code,
      ...(client.details !== undefined ? { details: client.details } : {}),
      // These refuse the whole request (or a stream before it starts), so the HTTP status says so
      // too; errors inside an executed operation leave it at 200.
      ...(client.code === 'UNAUTHORIZED' || client.code === 'RATE_LIMITED' || client.code === 'QUERY_TOO_COMPLEX'
        ? { http: { status: client.status } }
        : {}),
    },
  });
}
