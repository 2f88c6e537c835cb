import { AppError } from '../../errors.js';
import { builder } from '../../graphql/builder.js';
import { SUBSCRIBER_QUEUE_LIMIT } from '../../subscriptions/delivery-update-hub.js';
import type { WebhookHealthChange } from '../../subscriptions/webhook-health-change.js';

const WebhookHealthKindEnum = builder.enumType('WebhookHealthKind', {
  description: 'A change of a webhook\'s health, each also sent as the operational event of the same name (webhook.failing, webhook.disabled, webhook.recovered).',
  values: {
    failing: { description: 'A delivery of the webhook failed for good, the first time since its last success.' },
    disabled: { description: 'The gateway disabled the webhook: failing for WEBHOOK_DISABLE_AFTER, or its endpoint answered 410 Gone.' },
    recovered: { description: 'The webhook, which had a failed delivery, answered 2xx again.' },
  } as const,
});

const WebhookHealthChangeRef = builder.objectRef<WebhookHealthChange>('WebhookHealthChange').implement({
  description: 'One change of a webhook\'s health, with the data of the operational event sent for it.',
  fields: (t) => ({
    kind: t.field({ type: WebhookHealthKindEnum, resolve: (c) => c.kind }),
    webhookId: t.exposeID('webhookId'),
    eventId: t.exposeID('eventId', { description: 'The operational event sent for this change (see `event` in the delivery history).' }),
    at: t.expose('at', { type: 'DateTime', description: 'When the change happened.' }),
    failedSince: t.expose('failedSince', {
      type: 'DateTime',
      nullable: true,
      description: 'When the run of failures began (for a webhook disabled on a first 410 Gone: when it was disabled).',
    }),
    reason: t.exposeString('reason', { nullable: true, description: 'disabled: failing or gone.' }),
    deliveryId: t.exposeID('deliveryId', { nullable: true, description: 'failing: the delivery that failed.' }),
    eventType: t.exposeString('eventType', { nullable: true, description: "failing: that delivery's event type." }),
    lastResponseCode: t.exposeInt('lastResponseCode', {
      nullable: true,
      description: "failing: the HTTP status of that delivery's last attempt; null when none came (timeout, connection refused).",
    }),
    recoveredAt: t.expose('recoveredAt', { type: 'DateTime', nullable: true, description: 'recovered: the time of the successful attempt.' }),
  }),
});

builder.subscriptionFields((t) => ({
  webhookHealth: t.withAuth({ tenant: true }).field({
    type: WebhookHealthChangeRef,
    description: [
      "Live health changes of one of the viewer's webhooks: one message per change (failing, disabled, recovered), never one per failed delivery.",
      'Served like deliveryUpdates (Server-Sent Events and WebSocket at /graphql), counted in the same MAX_SUBSCRIPTIONS_PER_TENANT,',
      `ended with a SERVICE_UNAVAILABLE error when more than ${SUBSCRIBER_QUEUE_LIMIT} changes wait, and with UNAUTHORIZED when its credentials end.`,
      'Changes made while no subscription is open are not replayed: read the webhook (disabledReason) and its delivery history.',
    ].join(' '),
    args: { webhookId: t.arg.id({ required: true, description: "One of the viewer's webhooks (another tenant's or an unknown id is NOT_FOUND)." }) },
    subscribe: (_root, { webhookId }, ctx) => ctx.services.deliveryUpdates.subscribeHealth(ctx.viewer, String(webhookId)),
    resolve: (message) => {
      if (message.kind === 'overflow') {
        throw new AppError('SERVICE_UNAVAILABLE', 'too many changes waiting for this subscriber; subscribe again and re-read the webhook');
      }
      if (message.kind === 'credentials-ended') {
        throw new AppError('UNAUTHORIZED', message.why === 'expired' ? 'the token has expired' : 'the API key was revoked');
      }
      return message;
    },
  }),
}));
