import { defineEntity, p, type InferEntity, type Opt } from '@mikro-orm/core';

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
    /** The attempt count when the retry schedule last started from its first step: 0, or the count at the last resend. */
    scheduleStart: p.integer().$type<Opt<number>>(),
    nextAttemptAt: p.datetime().nullable(),
    leaseExpiresAt: p.datetime().nullable(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

export type Delivery = InferEntity<typeof DeliverySchema>;
