import { z } from 'zod';
import { AppError } from '../../errors.js';
import { graphql } from '../../rest/graphql.js';
import { dateTime, prefixedId, responseBodies } from '../../rest/response-body.js';
import { restRoute, type RestRoute } from '../../rest/route.js';
import { DEFAULT_GRACE_PERIOD_SECONDS, MAX_GRACE_PERIOD_SECONDS, MAX_PREVIOUS_SECRETS } from './previous-secrets.js';
import { checkGracePeriod } from './webhook.service.js';

const WebhookFields = graphql(`
  fragment WebhookFields on Webhook { id name url events enabled createdAt updatedAt lastDeliveryStatus lastDeliveryAt disabledReason disabledAt }
`);

// Types are checked here so that wrong JSON types are 400 before GraphQL sees them (GraphQL would
// otherwise coerce a lone string into a one-element list). Values are the service's business.
const createBody = z.object({
  name: z.string({ error: 'name is required and must be a string' }).describe('1 to 255 characters.'),
  url: z
    .string({ error: 'url is required and must be a string' })
    .describe('An absolute https URL on a public address, at most 2048 characters, without user:password.'),
  events: z
    .array(z.string({ error: 'events must be an array of strings' }), {
      error: 'events is required and must be an array of strings',
    })
    .describe('Known event types (GET /api/v1/webhooks/events), at least one; duplicates are removed, order is kept.'),
  enabled: z.boolean({ error: 'enabled must be a boolean' }).optional().describe('Defaults to true.'),
  secret: z
    .string({ error: 'secret must be a string' })
    .optional()
    .describe('Your own signing secret: whsec_ followed by the base64 of 24 bytes. Generated when absent.'),
});

const updateBody = z
  .object({
    name: z.string({ error: 'name must be a string' }).optional(),
    url: z.string({ error: 'url must be a string' }).optional(),
    events: z.array(z.string({ error: 'events must be an array of strings' }), { error: 'events must be an array of strings' }).optional(),
    enabled: z.boolean({ error: 'enabled must be a boolean' }).optional(),
    secret: z.unknown().optional().describe('Not accepted: secrets never change (422).'),
  })
  .describe('Partial update: absent fields are left as they are.');

const webhookFields = {
  id: prefixedId('wh'),
  name: z.string().min(1).max(255),
  url: z.url().max(2048),
  events: z.array(z.string()).describe('Subscribed event types, in the order given.'),
  enabled: z.boolean().describe('Disabled webhooks receive nothing.'),
  created_at: dateTime(),
  updated_at: dateTime(),
  last_delivery_status: z.enum(['success', 'failed']).nullable(),
  last_delivery_at: dateTime().nullable(),
  disabled_reason: z
    .enum(['manual', 'failing', 'gone'])
    .nullable()
    .describe('Why the webhook is disabled: by its owner (manual), after failing for WEBHOOK_DISABLE_AFTER (failing), or its endpoint answered 410 Gone (gone); null while enabled.'),
  disabled_at: dateTime().nullable().describe('When it was disabled; null while enabled.'),
};

const webhookBody = z
  .object(webhookFields)
  .describe('An HTTPS endpoint subscribed to InfraAudit events. Never carries the secret.')
  .register(responseBodies, { id: 'Webhook' });

const webhookListBody = z.array(webhookBody).register(responseBodies, { id: 'WebhookList' });

const createdWebhookBody = z
  .object({
    ...webhookFields,
    secret: z
      .string()
      .regex(/^whsec_[A-Za-z0-9+/]{32}$/)
      .describe('The signing secret, shown in this answer only: store it now.'),
  })
  .describe('The new webhook with its signing secret.')
  .register(responseBodies, { id: 'CreatedWebhook' });

const eventTypeListBody = z
  .object({ events: z.array(z.object({ event: z.string().meta({ examples: ['drift.detected'] }), description: z.string() })) })
  .register(responseBodies, { id: 'EventTypeList' });

const rotatedSecretBody = z
  .object({
    secret: z
      .string()
      .regex(/^whsec_[A-Za-z0-9+/]{32}$/)
      .describe('The new signing secret, shown in this answer only: store it now.'),
    previous_secret_expires_at: dateTime().describe('Until then every attempt is signed with the replaced secret too.'),
  })
  .describe('The new signing secret, and until when the replaced one keeps signing.')
  .register(responseBodies, { id: 'RotatedSecret' });

const rotateBody = z
  .object({
    secret: z
      .string({ error: 'secret must be a string' })
      .optional()
      .describe('Your own new signing secret: whsec_ followed by the base64 of 24 bytes. Generated when absent.'),
    grace_period_seconds: z
      .number({ error: 'grace_period_seconds must be a number' })
      .optional()
      .describe(`How long the replaced secret keeps signing: a whole number of seconds from 0 to ${MAX_GRACE_PERIOD_SECONDS}; ${DEFAULT_GRACE_PERIOD_SECONDS} when absent.`),
  })
  .describe('Optional: an absent body is the same as {}.');

export const webhookRoutes: RestRoute[] = [
  restRoute({
    method: 'GET',
    path: '/api/v1/webhooks',
    operation: graphql(`query ListWebhooks { webhooks { ...WebhookFields } }`, [WebhookFields]),
    status: 200,
    result: (data) => data.webhooks,
    doc: { summary: 'List webhooks, newest first', tag: 'Webhooks', response: webhookListBody },
  }),
  restRoute({
    method: 'POST',
    path: '/api/v1/webhooks',
    operation: graphql(
      `mutation CreateWebhook($input: CreateWebhookInput!) {
        createWebhook(input: $input) { secret webhook { ...WebhookFields } }
      }`,
      [WebhookFields],
    ),
    body: createBody,
    variables: ({ body }) => ({ input: body }),
    status: 201,
    result: ({ createWebhook }) => ({ ...createWebhook.webhook, secret: createWebhook.secret }),
    doc: {
      summary: 'Create a webhook',
      description: 'The answer carries the signing `secret`, shown this once only. A `ping` is sent to the new webhook.',
      tag: 'Webhooks',
      response: createdWebhookBody,
      errors: [409, 422],
    },
  }),
  restRoute({
    method: 'GET',
    path: '/api/v1/webhooks/events',
    operation: graphql(`query WebhookEventTypes { webhookEventTypes { event description } }`),
    status: 200,
    result: (data) => ({ events: data.webhookEventTypes }),
    doc: { summary: 'List the event types a webhook can subscribe to', tag: 'Webhooks', response: eventTypeListBody },
  }),
  restRoute({
    method: 'GET',
    path: '/api/v1/webhooks/:id',
    operation: graphql(`query GetWebhook($id: ID!) { webhook(id: $id) { ...WebhookFields } }`, [WebhookFields]),
    variables: ({ params }) => ({ id: params.id }),
    status: 200,
    result: (data) => data.webhook,
    doc: { summary: 'Get a webhook', tag: 'Webhooks', response: webhookBody },
  }),
  restRoute({
    method: 'PUT',
    path: '/api/v1/webhooks/:id',
    operation: graphql(
      `mutation UpdateWebhook($id: ID!, $input: UpdateWebhookInput!) {
        updateWebhook(id: $id, input: $input) { ...WebhookFields }
      }`,
      [WebhookFields],
    ),
    body: updateBody,
    variables: ({ params, body }) => {
      if ('secret' in body) {
        throw new AppError('VALIDATION_ERROR', 'secret cannot be changed here; rotate it with POST /api/v1/webhooks/{id}/secret/rotate', {
          field: 'secret',
        });
      }
      return { id: params.id, input: body };
    },
    status: 200,
    result: (data) => data.updateWebhook,
    doc: {
      summary: 'Update a webhook',
      description: 'Partial update of `name`, `url`, `events` and `enabled`. Disabling stops pending retries.',
      tag: 'Webhooks',
      response: webhookBody,
      errors: [422],
    },
  }),
  restRoute({
    method: 'POST',
    path: '/api/v1/webhooks/:id/secret/rotate',
    operation: graphql(`
      mutation RotateWebhookSecret($id: ID!, $input: RotateWebhookSecretInput) {
        rotateWebhookSecret(id: $id, input: $input) { secret previousSecretExpiresAt }
      }
    `),
    body: rotateBody,
    bodyOptional: true,
    // A number GraphQL's Int cannot carry (a fraction, past 2^31) is an invalid value (422), like
    // any other out of range, rather than a type error: judged here before it meets the schema.
    variables: ({ params, body }) => ({
      id: params.id,
      input: { secret: body.secret, gracePeriodSeconds: checkGracePeriod(body.grace_period_seconds) },
    }),
    status: 200,
    result: (data) => data.rotateWebhookSecret,
    doc: {
      summary: "Rotate a webhook's signing secret",
      description:
        'The answer carries the new `secret`, shown this once only. Until `previous_secret_expires_at`, every attempt is ' +
        'signed with the replaced secret too: `webhook-signature` carries one `v1,` signature per live secret, newest first, ' +
        `separated by spaces; \`X-InfraAudit-Signature\` uses the new secret only. At most ${MAX_PREVIOUS_SECRETS} previous ` +
        'secrets stay live (the oldest drops first). A disabled webhook answers 409: enable it first.',
      tag: 'Webhooks',
      response: rotatedSecretBody,
      errors: [409, 422],
    },
  }),
  restRoute({
    method: 'DELETE',
    path: '/api/v1/webhooks/:id',
    operation: graphql(`mutation DeleteWebhook($id: ID!) { deleteWebhook(id: $id) }`),
    variables: ({ params }) => ({ id: params.id }),
    status: 204,
    doc: { summary: 'Delete a webhook', description: 'Pending retries are cancelled.', tag: 'Webhooks' },
  }),
];
