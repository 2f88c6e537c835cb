import { builder } from '../../graphql/builder.js';
import { EVENT_TYPES } from '../events/event-types.js';
import { WEBHOOK_DISABLED_REASONS, type Webhook } from './webhook.entity.js';
import { DEFAULT_GRACE_PERIOD_SECONDS, MAX_GRACE_PERIOD_SECONDS, MAX_PREVIOUS_SECRETS } from './previous-secrets.js';
import type { CreatedWebhook, RotatedSecret } from './webhook.service.js';

export const WebhookRef = builder.objectRef<Webhook>('Webhook');

export const DeliveryOutcomeEnum = builder.enumType('DeliveryOutcome', {
  description: 'How the most recent delivery attempt to a webhook ended.',
  values: ['success', 'failed'] as const,
});

const WebhookDisabledReasonEnum = builder.enumType('WebhookDisabledReason', {
  description: 'Why a webhook is disabled: by its owner (manual), by the gateway after failing for WEBHOOK_DISABLE_AFTER (failing), or because its endpoint answered 410 Gone (gone).',
  values: WEBHOOK_DISABLED_REASONS,
});

WebhookRef.implement({
  description: 'An HTTPS endpoint subscribed to InfraAudit events. The signing secret is never part of it.',
  fields: (t) => ({
    id: t.exposeID('id'),
    name: t.exposeString('name'),
    url: t.exposeString('url'),
    events: t.exposeStringList('events', { description: 'Subscribed event types, in the order given.' }),
    enabled: t.exposeBoolean('enabled', { description: 'Disabled webhooks receive nothing.' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    lastDeliveryStatus: t.field({
      type: DeliveryOutcomeEnum,
      nullable: true,
      resolve: (w) => w.lastDeliveryStatus ?? null,
    }),
    lastDeliveryAt: t.expose('lastDeliveryAt', { type: 'DateTime', nullable: true }),
    disabledReason: t.field({
      type: WebhookDisabledReasonEnum,
      nullable: true,
      description: 'Null while the webhook is enabled.',
      resolve: (w) => w.disabledReason ?? null,
    }),
    disabledAt: t.expose('disabledAt', { type: 'DateTime', nullable: true, description: 'When it was disabled; null while enabled.' }),
  }),
});

const EventTypeRef = builder
  .objectRef<{ event: string; description: string }>('WebhookEventType')
  .implement({
    description: 'An event type a webhook can subscribe to.',
    fields: (t) => ({
      event: t.exposeString('event'),
      description: t.exposeString('description'),
    }),
  });

const CreateWebhookPayload = builder.objectRef<CreatedWebhook>('CreateWebhookPayload').implement({
  fields: (t) => ({
    webhook: t.field({ type: WebhookRef, resolve: (p) => p.webhook }),
    secret: t.exposeString('secret', {
      description: 'The signing secret. Shown here once and never again: store it now.',
    }),
  }),
});

const CreateWebhookInput = builder.inputType('CreateWebhookInput', {
  fields: (t) => ({
    name: t.string({ required: true, description: '1 to 255 characters.' }),
    url: t.string({ required: true, description: 'An absolute https URL on a public address.' }),
    events: t.stringList({ required: true, description: 'Known event types; duplicates are removed.' }),
    enabled: t.boolean({ required: false, description: 'Defaults to true.' }),
    secret: t.string({
      required: false,
      description: 'Your own signing secret (whsec_ + base64 of 24 bytes); generated when absent.',
    }),
  }),
});

const UpdateWebhookInput = builder.inputType('UpdateWebhookInput', {
  description: 'Partial update: absent fields are left as they are. The secret cannot be changed.',
  fields: (t) => ({
    name: t.string({ required: false }),
    url: t.string({ required: false }),
    events: t.stringList({ required: false }),
    enabled: t.boolean({ required: false }),
  }),
});

const RotateWebhookSecretPayload = builder.objectRef<RotatedSecret>('RotateWebhookSecretPayload').implement({
  fields: (t) => ({
    secret: t.exposeString('secret', {
      description: 'The new signing secret. Shown here once and never again: store it now.',
    }),
    previousSecretExpiresAt: t.expose('previousSecretExpiresAt', {
      type: 'DateTime',
      description: 'Until then every attempt is signed with the replaced secret too.',
    }),
  }),
});

const RotateWebhookSecretInput = builder.inputType('RotateWebhookSecretInput', {
  fields: (t) => ({
    secret: t.string({
      required: false,
      description: 'Your own new signing secret (whsec_ + base64 of 24 bytes); generated when absent.',
    }),
    gracePeriodSeconds: t.int({
      required: false,
      description: `How long the replaced secret keeps signing, in seconds: 0 to ${MAX_GRACE_PERIOD_SECONDS} (default ${DEFAULT_GRACE_PERIOD_SECONDS}).`,
    }),
  }),
});

builder.queryFields((t) => ({
  webhooks: t.withAuth({ tenant: true }).field({
    type: [WebhookRef],
    description: "The viewer's webhooks, newest first.",
    resolve: (_root, _args, ctx) => ctx.services.webhooks.list(ctx.viewer.tenantId),
  }),
  webhook: t.withAuth({ tenant: true }).field({
    type: WebhookRef,
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, { id }, ctx) => ctx.services.webhooks.get(ctx.viewer.tenantId, String(id)),
  }),
  webhookEventTypes: t.withAuth({ viewer: true }).field({
    type: [EventTypeRef],
    description: 'Every event type a webhook can subscribe to.',
    resolve: () => [...EVENT_TYPES],
  }),
}));

builder.mutationFields((t) => ({
  createWebhook: t.withAuth({ tenant: true }).field({
    type: CreateWebhookPayload,
    args: { input: t.arg({ type: CreateWebhookInput, required: true }) },
    resolve: (_root, { input }, ctx) => ctx.services.webhooks.create(ctx.viewer.tenantId, input),
  }),
  updateWebhook: t.withAuth({ tenant: true }).field({
    type: WebhookRef,
    args: { id: t.arg.id({ required: true }), input: t.arg({ type: UpdateWebhookInput, required: true }) },
    resolve: (_root, { id, input }, ctx) => ctx.services.webhooks.update(ctx.viewer.tenantId, String(id), input),
  }),
  rotateWebhookSecret: t.withAuth({ tenant: true }).field({
    type: RotateWebhookSecretPayload,
    description:
      'Replaces the signing secret. Until the replaced secret expires, every attempt is signed with both: ' +
      '`webhook-signature` carries one `v1,` signature per live secret, newest first; `X-InfraAudit-Signature` ' +
      `uses the new secret only. At most ${MAX_PREVIOUS_SECRETS} previous secrets stay live (the oldest drops first). ` +
      'A disabled webhook answers CONFLICT.',
    args: {
      id: t.arg.id({ required: true }),
      input: t.arg({ type: RotateWebhookSecretInput, required: false }),
    },
    resolve: (_root, { id, input }, ctx) => ctx.services.webhooks.rotateSecret(ctx.viewer.tenantId, String(id), input ?? {}),
  }),
  deleteWebhook: t.withAuth({ tenant: true }).field({
    type: 'Boolean',
    description: 'Deletes the webhook and cancels its pending retries.',
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_root, { id }, ctx) => {
      await ctx.services.webhooks.delete(ctx.viewer.tenantId, String(id));
      return true;
    },
  }),
}));
