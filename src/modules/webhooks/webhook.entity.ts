import { defineEntity, p, type InferEntity, type Opt } from '@mikro-orm/core';

export const WEBHOOK_DISABLED_REASONS = ['manual', 'failing', 'gone'] as const;
export type WebhookDisabledReason = (typeof WEBHOOK_DISABLED_REASONS)[number];

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
    /** Why the webhook is disabled: null while enabled. */
    disabledReason: p.string().$type<WebhookDisabledReason>().nullable(),
    disabledAt: p.datetime().nullable(),
    /** The newest successful attempt's time (kept by the attempt record). */
    lastSuccessAt: p.datetime().nullable(),
    /** When the webhook was created or last enabled again: the auto-disable window starts no earlier. */
    enabledAt: p.datetime(),
    /** When its current run of failures began (a delivery reached failed); cleared by its next success. */
    failingSince: p.datetime().nullable(),
  },
});

export type Webhook = InferEntity<typeof WebhookSchema>;
