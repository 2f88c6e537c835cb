import { builder } from '../../graphql/builder.js';
import type { PublishResult } from './event.service.js';

const PublishEventInput = builder.inputType('PublishEventInput', {
  fields: (t) => ({
    event: t.string({ required: true, description: 'A known event type, other than those the gateway sends itself (ping, webhook.failing, webhook.disabled, webhook.recovered).' }),
    data: t.field({ type: 'JSONObject', required: true }),
    tenantId: t.string({
      required: false,
      description: 'Required with a service token; otherwise absent or the caller’s own tenant.',
    }),
    idempotencyKey: t.string({
      required: false,
      description: 'A repeated publish with the same key returns the first result and sends nothing new.',
    }),
  }),
});

const PublishEventPayload = builder.objectRef<PublishResult>('PublishEventPayload').implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    event: t.exposeString('event'),
    deliveries: t.exposeInt('deliveries', { description: 'Deliveries queued: one per enabled, subscribed webhook.' }),
    replayed: t.exposeBoolean('replayed', { description: 'true when this answers an earlier publish with the same key.' }),
  }),
});

builder.mutationFields((t) => ({
  publishEvent: t.withAuth({ viewer: true }).field({
    type: PublishEventPayload,
    description: 'Publishes an event to every enabled webhook of the tenant subscribed to its type.',
    args: { input: t.arg({ type: PublishEventInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      ctx.services.events.publish(ctx.viewer, {
        event: input.event,
        data: input.data,
        tenantId: input.tenantId,
        idempotencyKey: input.idempotencyKey ?? ctx.idempotencyKey ?? null,
      }),
  }),
}));
