import { renderGraphiQL } from '@graphql-yoga/render-graphiql';
import type { DocumentNode, GraphQLError, validate } from 'graphql';
import { createYoga, useErrorHandler, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { Viewer } from '../auth/viewer.js';
import type { RequestContextFactory } from '../request-context.js';
import { classifyError, toGraphQLError } from './errors.js';
import { operationLimitPlugins, type OperationLimits } from './operation-limits.js';
import { schema } from './schema.js';

/** What the HTTP front hands to yoga with each request: the caller it has already authenticated. */
export interface GatewayServerContext {
  viewer?: Viewer;
}

// Parsed and validated documents are cached by their text, which callers choose; the caches are
// bounded by an estimate of their bytes (a parsed document takes several times its source), not
// only by a count, so a stream of large distinct documents cannot grow the heap.
const DOCUMENT_CACHE_BYTES = 32 * 1024 * 1024;
const PARSED_BYTES_PER_SOURCE_CHAR = 12;

function boundedCache<T extends object>(): LRUCache<string, T> {
  return new LRUCache<string, T>({
    max: 1000,
    maxSize: DOCUMENT_CACHE_BYTES,
    sizeCalculation: (_value, key) => 256 + key.length * PARSED_BYTES_PER_SOURCE_CHAR,
  });
}

/** Yoga's parse and validation caches, and their size together. */
export function createDocumentCaches() {
  const documentCache = boundedCache<DocumentNode>();
  const errorCache = boundedCache<object>();
  const validationCache = boundedCache<typeof validate>();
  return {
    parserAndValidationCache: { documentCache, errorCache, validationCache },
    bytes: () => documentCache.calculatedSize + errorCache.calculatedSize + validationCache.calculatedSize,
    budgetBytes: 3 * DOCUMENT_CACHE_BYTES,
  };
}

// Validation errors (an unknown field, a missing argument) never reach maskError; give them the
// documented code before yoga labels them GRAPHQL_VALIDATION_FAILED.
const documentedValidationCode: Plugin = {
  onValidate: () => ({ valid, result }) => {
    if (valid) return;
    // envelop types validation results as any, to fit every graphql version; graphql 16's are these.
    for (const error of result as readonly GraphQLError[]) {
      const extensions = error.extensions as Record<string, unknown>;
      extensions['code'] ??= 'BAD_REQUEST';
    }
  },
};

/** Every error that is masked as INTERNAL_ERROR is logged once, with the request's id. */
function logInternalErrors(logger: Logger): Plugin {
  return useErrorHandler(({ errors, context }) => {
    // After execution `context` is the execution's arguments, which hold the GraphQL context.
    const holder = context as { contextValue?: { requestId?: string }; requestId?: string };
    const requestId = holder.contextValue?.requestId ?? holder.requestId;
    for (const error of errors) {
      const { internal } = classifyError(error);
      if (internal !== undefined) logger.error({ err: internal, requestId }, 'graphql resolver failed');
    }
  });
}

export function createGraphQLServer(deps: {
  contextFactory: RequestContextFactory;
  logger: Logger;
  limits: OperationLimits;
  caches: ReturnType<typeof createDocumentCaches>;
}): YogaServerInstance<GatewayServerContext, Record<string, unknown>> {
  return createYoga<GatewayServerContext>({
    schema,
    graphqlEndpoint: '/graphql',
    landingPage: false,
    logging: false,
    // CORS is decided once for every path by ALLOWED_ORIGINS (src/http/headers.ts); yoga's own
    // default would answer any origin.
    cors: false,
    graphiql: {
      title: 'InfraAudit webhook gateway',
      defaultQuery: [
        '# Set {"Authorization": "Bearer <API key or token>"} in the Headers tab below, then run:',
        '{\n  webhooks { id name url events enabled lastDeliveryStatus lastDeliveryAt }\n}\n',
      ].join('\n'),
    },
    // The GraphiQL page with its assets inlined from the package: it works offline and behind
    // firewalls, and loads nothing from a CDN.
    renderGraphiQL,
    plugins: [...operationLimitPlugins(deps.limits), documentedValidationCode, logInternalErrors(deps.logger)],
    parserAndValidationCache: deps.caches.parserAndValidationCache,
    maskedErrors: {
      // Logged by logInternalErrors, which knows the request id; masking only shapes the answer.
      maskError: (error) => toGraphQLError(error, () => undefined),
    },
    context: async ({ request, viewer }) => {
      const url = new URL(request.url);
      const info = {
        authorization: request.headers.get('authorization'),
        queryToken: url.searchParams.get('token'),
        requestId: request.headers.get('x-request-id'),
        idempotencyKey: request.headers.get('idempotency-key'),
        allowAnonymous: true,
      };
      try {
        return viewer ? deps.contextFactory.forViewer(viewer, info) : await deps.contextFactory.forRequest(info);
      } catch (err) {
        throw toGraphQLError(err, (e) => deps.logger.error({ err: e }, 'graphql context failed'));
      }
    },
  }) as unknown as YogaServerInstance<GatewayServerContext, Record<string, unknown>>;
}
