// The long-lived side of /graphql on the HTTP server's own port: GraphQL over WebSocket (the
// graphql-ws protocol), and the ending of every subscription at shutdown. Server-Sent Events
// themselves are yoga's, served by the app like any other /graphql request.
//
// WebSocket operations run through the envelop of the same yoga server as HTTP (same schema, error
// masking, limits and context factory), so a subscription behaves the same over either transport. The
// token is checked when the connection is initialised, before the server acknowledges it, and
// again for every operation, so a bad, missing or since revoked token never gets data.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import {
  getOperationAST,
  GraphQLError,
  OperationTypeNode,
  type execute,
  type ExecutionArgs,
  type GraphQLSchema,
  type parse,
  type subscribe,
  type validate,
} from 'graphql';
import type { Context } from 'graphql-ws';
import { useServer, type Extra } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import type { AppDeps, GraphQLFront } from '../app.js';
import type { Viewer } from '../auth/viewer.js';
import { toGraphQLError } from '../graphql/errors.js';
import type { createGraphQLServer } from '../graphql/yoga.js';
import { rateLimitKey } from '../http/rate-limit.js';
import type { CredentialWatch } from './credential-watch.js';

export interface LiveSubscriptions {
  /** Ends every subscription (WebSocket and Server-Sent Events) and closes the sockets. */
  close(): Promise<void>;
}

/** Client messages are small GraphQL documents; nothing legitimate comes near this. */
const MAX_MESSAGE_BYTES = 64 * 1024;
/** Operations one connection may have running at once. */
const MAX_OPERATIONS_PER_CONNECTION = 100;
/** How long WebSockets get to finish the close handshake at shutdown. */
const CLOSE_GRACE_MS = 1_000;

/** graphql-ws's own codes: 4401 Unauthorized (no or bad token), 4403 Forbidden (no tenant). */
const UNAUTHORIZED = 4401;
const FORBIDDEN = 4403;

/**
 * The envelop of one operation. envelop types the graphql functions it wraps as taking and
 * answering any, to fit every graphql version; here they are graphql 16's, which the gateway runs.
 */
type Enveloped = Omit<
  ReturnType<ReturnType<typeof createGraphQLServer>['getEnveloped']>,
  'parse' | 'validate' | 'execute' | 'subscribe' | 'schema'
> & {
  parse: typeof parse;
  validate: typeof validate;
  execute: typeof execute;
  subscribe: typeof subscribe;
  schema: GraphQLSchema;
};

/**
 * The Authorization value a client sent: connection params `authorization: "Bearer ..."` (or
 * `Authorization`), or a bare `token`; otherwise the upgrade request's own header, for clients
 * that can set one.
 */
function authorizationFrom(params: Readonly<Record<string, unknown>> | undefined, header: string | undefined): string | undefined {
  const value = params?.['authorization'] ?? params?.['Authorization'];
  if (typeof value === 'string' && value !== '') return value;
  const token = params?.['token'];
  if (typeof token === 'string' && token !== '') return `Bearer ${token}`;
  return header || undefined;
}

export function attachLiveSubscriptions(server: Server, deps: AppDeps & { credentials: CredentialWatch }, front: GraphQLFront): LiveSubscriptions {
  const { logger } = deps;
  const { yoga, contextFactory } = front;

  const authorizations = new WeakMap<Context<Record<string, unknown>, Extra>, string>();
  const tenants = new WeakMap<Context<Record<string, unknown>, Extra>, string>();
  const envelopes = new WeakMap<object, Enveloped>();
  const envelopeOf = (args: ExecutionArgs): Enveloped => {
    const enveloped = envelopes.get(args.contextValue as object);
    if (!enveloped) throw new Error('operation without an envelope');
    return enveloped;
  };

  // Event streams in flight, so shutdown can cut them: they never end by themselves, and would
  // hold the server open.
  const streams = new Set<ServerResponse>();
  const track = (req: IncomingMessage, res: ServerResponse) => {
    if (!req.headers.accept?.includes('text/event-stream')) return;
    streams.add(res);
    res.once('close', () => streams.delete(res));
  };
  server.on('request', track);

  const wss = new WebSocketServer({ server, path: '/graphql', maxPayload: MAX_MESSAGE_BYTES });
  const graphqlWs = useServer<Record<string, unknown>>(
    {
      isProd: true,
      execute: (args) => envelopeOf(args).execute(args),
      subscribe: (args) => envelopeOf(args).subscribe(args),
      onConnect: async (ctx) => {
        const refuse = (code: number, reason: string) => {
          logger.debug({ code }, 'websocket connection refused');
          ctx.extra.socket.close(code, reason);
          return false;
        };
        const authorization = authorizationFrom(ctx.connectionParams, ctx.extra.request.headers.authorization);
        if (authorization === undefined) return refuse(UNAUTHORIZED, 'Unauthorized');
        let viewer: Viewer | null;
        try {
          viewer = await contextFactory.authenticate({ authorization });
        } catch {
          return refuse(UNAUTHORIZED, 'Unauthorized');
        }
        if (viewer?.tenantId === null || viewer?.tenantId === undefined) return refuse(FORBIDDEN, 'Forbidden');
        authorizations.set(ctx, authorization);
        tenants.set(ctx, viewer.tenantId);
        // The connection lives on its credentials: when they end, so does it, with every operation.
        const { socket } = ctx.extra;
        const unwatch = deps.credentials.watch(viewer, (why) => {
          logger.debug({ why }, 'websocket closed: credentials ended');
          socket.close(UNAUTHORIZED, why === 'expired' ? 'Token expired' : 'API key revoked');
        });
        // A client gone while it was authenticated is closed already: no close event is coming.
        if (socket.readyState === socket.CLOSING || socket.readyState === socket.CLOSED) unwatch();
        else socket.once('close', unwatch);
        return true;
      },
      onSubscribe: async (ctx, _id, payload) => {
        if (Object.keys(ctx.subscriptions).length > MAX_OPERATIONS_PER_CONNECTION) {
          return [new GraphQLError('too many operations on this connection', { extensions: { code: 'RATE_LIMITED' } })];
        }
        // Each operation counts against the tenant's request limit, as each HTTP request does.
        const tenantId = tenants.get(ctx);
        if (deps.rateLimiter && tenantId !== undefined) {
          const decision = await deps.rateLimiter.consume(rateLimitKey({ tenantId }));
          if (!decision.allowed) {
            return [
              new GraphQLError(`rate limit exceeded; retry in ${decision.retryAfterSec} s`, {
                extensions: { code: 'RATE_LIMITED', retryAfter: decision.retryAfterSec },
              }),
            ];
          }
        }
        const headers: Record<string, string> = { authorization: authorizations.get(ctx) ?? '' };
        const requestId = ctx.extra.request.headers['x-request-id'];
        if (typeof requestId === 'string') headers['x-request-id'] = requestId;
        const request = new yoga.fetchAPI.Request('http://gateway.invalid/graphql', { headers });
        const enveloped: Enveloped = yoga.getEnveloped({ request, params: payload });
        let document;
        try {
          document = enveloped.parse(payload.query);
        } catch (err) {
          if (err instanceof GraphQLError) return [err];
          throw err;
        }
        const errors = enveloped.validate(enveloped.schema, document);
        if (errors.length > 0) return errors;
        // Over the tenant's subscription quota: refused here, so the client gets graphql-ws's error
        // message for this operation and nothing of it runs. (The hub checks again as it
        // subscribes, for operations that passed here at the same moment.)
        if (tenantId !== undefined && getOperationAST(document, payload.operationName)?.operation === OperationTypeNode.SUBSCRIPTION) {
          try {
            deps.deliveryUpdates.checkRoom(tenantId);
          } catch (err) {
            return [toGraphQLError(err, (e) => logger.error({ err: e }, 'subscription quota check failed'))];
          }
        }
        let contextValue: object;
        try {
          contextValue = await enveloped.contextFactory();
        } catch (err) {
          return [toGraphQLError(err, (e) => logger.error({ err: e }, 'graphql context failed'))];
        }
        envelopes.set(contextValue, enveloped);
        return {
          schema: enveloped.schema,
          document,
          contextValue,
          variableValues: payload.variables ?? undefined,
          operationName: payload.operationName ?? undefined,
        };
      },
    },
    wss,
  );

  return {
    async close() {
      server.off('request', track);
      // Connections are cut rather than their subscriptions completed: clients (EventSource,
      // graphql-sse, graphql-ws) reconnect after a lost connection, to another instance, but take
      // a completed subscription as the end. Subscriptions end with their connections.
      for (const res of streams) res.destroy();
      for (const client of wss.clients) client.close(1001, 'Going away');
      deps.deliveryUpdates.close();
      const deadline = Date.now() + CLOSE_GRACE_MS;
      while (wss.clients.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      for (const client of wss.clients) client.terminate();
      await graphqlWs.dispose();
    },
  };
}
