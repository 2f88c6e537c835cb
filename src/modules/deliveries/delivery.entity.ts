import { defineEntity, p, type InferEntity } from '@mikro-orm/core';

export type DeliveryStatus = 'pending' | 'success' | 'failed' | 'cancelled';

export const DeliverySchema = defineEntity({
  name: 'Delivery',
  tableName: 'delivery',
  properties: {
    id: p.string().primary(),
    eventId: p.string(),
    webhookId: p.string(),
    tenantId: p.string(),
    eventType: p.string(),
    status: p.string().$type<DeliveryStatus>(),
    attempts: p.integer(),
    nextAttemptAt: p.datetime().nullable(),
    leaseExpiresAt: p.datetime().nullable(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

export type Delivery = InferEntity<typeof DeliverySchema>;
