import { renderGraphiQL } from '@graphql-yoga/render-graphiql';
import { createYoga, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { AppError } from '../errors.js';
import { rememberedViewer, type RequestContextFactory } from '../request-context.js';
import { toGraphQLError } from './errors.js';
import { schema } from './schema.js';

// Validation errors (an unknown field, a missing argument) never reach maskError; give them the
// documented code before yoga labels them GRAPHQL_VALIDATION_FAILED.
const documentedValidationCode: Plugin = {
  onValidate: () => ({ valid, result }) => {
    if (valid) return;
    for (const error of result) {
      const extensions = error.extensions as Record<string, unknown>;
      extensions['code'] ??= 'BAD_REQUEST';
    }
  },
};

export function createGraphQLServer(deps: {
  contextFactory: RequestContextFactory;
  logger: Logger;
}): YogaServerInstance<Record<string, never>, Record<string, unknown>> {
  return createYoga({
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
    plugins: [documentedValidationCode],
    maskedErrors: {
      maskError: (error) => toGraphQLError(error, (err) => deps.logger.error({ err }, 'graphql resolver failed')),
    },
    context: async ({ request, req }: { request: Request; req?: IncomingMessage }) => {
      const url = new URL(request.url);
      const info = {
        authorization: request.headers.get('authorization'),
        queryToken: url.searchParams.get('token'),
        requestId: request.headers.get('x-request-id'),
        idempotencyKey: request.headers.get('idempotency-key'),
        allowAnonymous: true,
      };
      try {
        const viewer = rememberedViewer(req);
        return viewer ? deps.contextFactory.forViewer(viewer, info) : await deps.contextFactory.forRequest(info);
      } catch (err) {
        throw toGraphQLError(err as AppError, (e) => deps.logger.error({ err: e }, 'graphql context failed'));
      }
    },
  }) as unknown as YogaServerInstance<Record<string, never>, Record<string, unknown>>;
}
