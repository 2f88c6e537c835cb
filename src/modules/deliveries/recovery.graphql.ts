import { builder } from '../../graphql/builder.js';
import type { Recovery } from '../../worker/recovery.js';

const RecoveryStatusEnum = builder.enumType('RecoveryStatus', {
  description: 'running while workers queue its deliveries in batches; completed once every one is queued.',
  values: ['running', 'completed'] as const,
});

const RecoveryRef = builder.objectRef<Recovery>('Recovery').implement({
  description:
    "A bulk recover of a webhook's deliveries over [since, until), run in the background in bounded batches: `queued` grows to `total`.",
  fields: (t) => ({
    id: t.exposeID('id'),
    webhookId: t.exposeID('webhookId'),
    status: t.field({ type: RecoveryStatusEnum, resolve: (r) => r.status }),
    since: t.expose('since', { type: 'DateTime' }),
    until: t.expose('until', { type: 'DateTime', description: 'Exclusive.' }),
    includeMissed: t.exposeBoolean('includeMissed'),
    total: t.exposeInt('total', {
      description:
        'Deliveries to queue, counted when the recover started; at completion, the number queued (a delivery resent or removed meanwhile is not queued again, one that failed meanwhile is).',
    }),
    queued: t.exposeInt('queued', { description: 'Deliveries queued so far.' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    completedAt: t.expose('completedAt', { type: 'DateTime', nullable: true }),
  }),
});

const RecoverWebhookInput = builder.inputType('RecoverWebhookInput', {
  fields: (t) => ({
    since: t.field({ type: 'DateTime', required: true, description: 'Events published from this time on (inclusive).' }),
    until: t.field({
      type: 'DateTime',
      required: false,
      description: 'Events published before this time (exclusive); now when absent. At most 14 days after since.',
    }),
    includeMissed: t.boolean({
      required: false,
      description:
        'Also create deliveries for the tenant\'s events in the window, of types the webhook subscribes to now and published after it was created, that it never got (for instance while it was disabled). Default false.',
    }),
  }),
});

builder.queryFields((t) => ({
  recovery: t.withAuth({ tenant: true }).field({
    type: RecoveryRef,
    description: "A bulk recover of one of the viewer's webhooks, as it stands now.",
    args: { webhookId: t.arg.id({ required: true }), id: t.arg.id({ required: true }) },
    resolve: (_root, { webhookId, id }, ctx) => ctx.services.recoveries.get(ctx.viewer.tenantId, String(webhookId), String(id)),
  }),
}));

builder.mutationFields((t) => ({
  recoverWebhook: t.withAuth({ tenant: true }).field({
    type: RecoveryRef,
    description: [
      'Queues again every delivery of the webhook whose status is failed and whose event was published in [since, until),',
      'and with includeMissed creates the deliveries it missed in that window. The work runs in the background in bounded batches',
      'and survives a restart; read its progress with `recovery`. A delivery is never queued twice by one recover, nor copied.',
      'since must be before until, at most 14 days apart (VALIDATION_ERROR). A disabled webhook answers CONFLICT: enable it first.',
    ].join(' '),
    args: { webhookId: t.arg.id({ required: true }), input: t.arg({ type: RecoverWebhookInput, required: true }) },
    resolve: (_root, { webhookId, input }, ctx) => ctx.services.recoveries.recover(ctx.viewer.tenantId, String(webhookId), input),
  }),
}));
