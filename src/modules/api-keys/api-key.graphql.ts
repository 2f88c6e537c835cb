import { builder } from '../../graphql/builder.js';
import type { ApiKey } from './api-key.entity.js';
import type { CreatedApiKey } from './api-key.service.js';

const ApiKeyRef = builder.objectRef<ApiKey>('ApiKey').implement({
  description: 'A tenant-bound API key. Only its prefix is ever shown after creation.',
  fields: (t) => ({
    id: t.exposeID('id'),
    name: t.exposeString('name'),
    prefix: t.exposeString('prefix'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    lastUsedAt: t.expose('lastUsedAt', { type: 'DateTime', nullable: true }),
  }),
});

const CreateApiKeyPayload = builder.objectRef<CreatedApiKey>('CreateApiKeyPayload').implement({
  fields: (t) => ({
    apiKey: t.field({ type: ApiKeyRef, resolve: (p) => p.apiKey }),
    key: t.exposeString('key', { description: 'The key itself, shown once: store it now.' }),
  }),
});

builder.queryFields((t) => ({
  apiKeys: t.withAuth({ tenant: true }).field({
    type: [ApiKeyRef],
    description: "The viewer's tenant's active API keys, newest first.",
    resolve: (_root, _args, ctx) => ctx.services.apiKeys.list(ctx.viewer.tenantId),
  }),
}));

builder.mutationFields((t) => ({
  createApiKey: t.withAuth({ tenant: true }).field({
    type: CreateApiKeyPayload,
    args: { name: t.arg.string({ required: true }) },
    resolve: (_root, { name }, ctx) => ctx.services.apiKeys.create(ctx.viewer.tenantId, name),
  }),
  revokeApiKey: t.withAuth({ tenant: true }).field({
    type: 'Boolean',
    description: 'Revokes the key at once: requests with it are refused from now on.',
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_root, { id }, ctx) => {
      await ctx.services.apiKeys.revoke(ctx.viewer.tenantId, String(id));
      return true;
    },
  }),
}));
