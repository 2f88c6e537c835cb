import { defineEntity, p, type InferEntity, type Opt } from '@mikro-orm/core';

export const WebhookSchema = defineEntity({
  name: 'Webhook',
  tableName: 'webhook',
  properties: {
    id: p.string().primary(),
    seq: p.bigint('number').generated('always as identity').$type<Opt<number>>(),
    tenantId: p.string(),
    name: p.string(),
    url: p.string(),
    events: p.array().columnType('text[]'),
    enabled: p.boolean(),
    secretEncrypted: p.text(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    lastDeliveryStatus: p.string().$type<'success' | 'failed'>().nullable(),
    lastDeliveryAt: p.datetime().nullable(),
  },
});

export type Webhook = InferEntity<typeof WebhookSchema>;
