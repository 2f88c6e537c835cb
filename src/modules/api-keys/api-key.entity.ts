import { defineEntity, p, type InferEntity, type Opt } from '@mikro-orm/core';

export const ApiKeySchema = defineEntity({
  name: 'ApiKey',
  tableName: 'api_key',
  properties: {
    id: p.string().primary(),
    seq: p.bigint('number').generated('always as identity').$type<Opt<number>>(),
    tenantId: p.string(),
    name: p.string(),
    prefix: p.string(),
    keyHash: p.string(),
    createdAt: p.datetime(),
    lastUsedAt: p.datetime().nullable(),
    revokedAt: p.datetime().nullable(),
  },
});

export type ApiKey = InferEntity<typeof ApiKeySchema>;
