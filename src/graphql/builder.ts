// The one Pothos builder. It defines no domain types: each module adds its own types and root
// fields, and graphql/schema.ts imports them all.
//
// Who may call a root field is part of its definition: each one names an auth scope, through
// `t.withAuth({ ... })`, and its resolver sees the context that scope guarantees. Scopes are checked
// before the resolver (for a subscription, before it subscribes), so a refused caller never hears
// about its arguments. REST rows run the same operations and are refused the same way.
import SchemaBuilder from '@pothos/core';
import ScopeAuthPlugin from '@pothos/plugin-scope-auth';
import { AppError } from '../errors.js';
import type { GraphQLContext, TenantContext, ViewerContext } from './context.js';

export const builder = new SchemaBuilder<{
  Context: GraphQLContext;
  DefaultFieldNullability: false;
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    JSONObject: { Input: Record<string, unknown>; Output: Record<string, unknown> };
  };
  AuthScopes: {
    /** Any authenticated caller: a user, an API key, or a service token. */
    viewer: boolean;
    /** A caller acting for one tenant; a service token without a tenant claim is not one. */
    tenant: boolean;
  };
  AuthContexts: {
    viewer: ViewerContext;
    tenant: TenantContext;
  };
}>({
  defaultFieldNullability: false,
  plugins: [ScopeAuthPlugin],
  scopeAuth: {
    authScopes: (ctx) => ({
      viewer: ctx.viewer !== null,
      tenant: ctx.viewer !== null && ctx.viewer.tenantId !== null,
    }),
    // Subscriptions are checked once, as they start, and not again for each update they send.
    authorizeOnSubscribe: true,
    // A caller can only lack credentials or a tenant: without credentials it is UNAUTHORIZED
    // whatever the field asked for, otherwise what it lacks is a tenant. A new scope brings its
    // own refusal here.
    unauthorizedError: (_parent, ctx) =>
      ctx.viewer === null
        ? new AppError('UNAUTHORIZED', 'authentication required')
        : new AppError('FORBIDDEN', 'this token is not bound to a tenant'),
  },
});

builder.scalarType('DateTime', {
  description: 'An instant in time, as an ISO 8601 string in UTC.',
  serialize: (value) => value.toISOString(),
  parseValue: (value) => {
    const date = typeof value === 'string' ? new Date(value) : undefined;
    if (!date || Number.isNaN(date.getTime())) throw new TypeError('DateTime must be an ISO 8601 string');
    return date;
  },
});

builder.scalarType('JSONObject', {
  description: 'A JSON object.',
  serialize: (value) => value,
  parseValue: (value) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new TypeError('JSONObject must be a JSON object');
    }
    return value as Record<string, unknown>;
  },
});

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});
