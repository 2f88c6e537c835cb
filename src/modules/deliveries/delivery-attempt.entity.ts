import { defineEntity, p, type InferEntity, type Opt } from '@mikro-orm/core';

export type AttemptErrorClass = 'dns' | 'connect' | 'tls' | 'timeout' | 'http' | 'blocked';

export const DeliveryAttemptSchema = defineEntity({
  name: 'DeliveryAttempt',
  tableName: 'delivery_attempt',
  properties: {
    id: p.string().primary(),
    seq: p.bigint('number').generated('always as identity').$type<Opt<number>>(),
    deliveryId: p.string(),
    webhookId: p.string(),
    tenantId: p.string(),
    eventType: p.string(),
    attempt: p.integer(),
    status: p.string().$type<'success' | 'failed'>(),
    responseCode: p.integer().nullable(),
    durationMs: p.integer(),
    requestHeaders: p.json<Record<string, string>>(),
    requestBody: p.text(),
    responseHeaders: p.json<Record<string, string>>().nullable(),
    responseBody: p.text().nullable(),
    responseBodyTruncated: p.boolean(),
    error: p.text().nullable(),
    errorClass: p.string().$type<AttemptErrorClass>().nullable(),
    createdAt: p.datetime(),
    nextRetryAt: p.datetime().nullable(),
  },
});

export type DeliveryAttempt = InferEntity<typeof DeliveryAttemptSchema>;
