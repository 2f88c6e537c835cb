import { defineEntity, p, type InferEntity } from '@mikro-orm/core';

export const EventSchema = defineEntity({
  name: 'Event',
  tableName: 'event',
  properties: {
    id: p.string().primary(),
    tenantId: p.string(),
    type: p.string(),
    data: p.json<Record<string, unknown>>(),
    publishedAt: p.datetime(),
    idempotencyKey: p.string().nullable(),
    deliveryCount: p.integer(),
  },
});

export type Event = InferEntity<typeof EventSchema>;
