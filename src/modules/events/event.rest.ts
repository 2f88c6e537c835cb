import { z } from 'zod';
import { graphql } from '../../rest/graphql.js';
import { prefixedId, responseBodies } from '../../rest/response-body.js';
import { restRoute, type RestRoute } from '../../rest/route.js';

const publishedEventBody = z
  .object({
    id: prefixedId('evt'),
    event: z.string(),
    deliveries: z.int().min(0).describe('Deliveries queued: one per enabled, subscribed webhook.'),
  })
  .register(responseBodies, { id: 'PublishedEvent' });

export const eventRoutes: RestRoute[] = [
  restRoute({
    method: 'POST',
    path: '/api/v1/events',
    operation: graphql(`mutation PublishEvent($input: PublishEventInput!) {
      publishEvent(input: $input) { id event deliveries replayed }
    }`),
    body: z.object({
      event: z.string({ error: 'event is required and must be a string' }).describe('A known event type, other than those the gateway sends itself (ping, webhook.failing, webhook.disabled, webhook.recovered).'),
      data: z.record(z.string(), z.unknown(), { error: 'data is required and must be a JSON object' }).describe('The event payload.'),
      tenant_id: z
        .string({ error: 'tenant_id must be a string' })
        .optional()
        .describe("Required with a service token; otherwise absent or the caller's own tenant."),
    }),
    variables: ({ body }) => ({
      input: { event: body.event, data: body.data, tenantId: body.tenant_id ?? null },
    }),
    status: (data) => (data.publishEvent.replayed ? 200 : 202),
    result: ({ publishEvent: { id, event, deliveries } }) => ({ id, event, deliveries }),
    doc: {
      summary: 'Publish an event',
      description: 'Writes the event and one pending delivery per enabled, subscribed webhook of the tenant before answering.',
      tag: 'Events',
      response: publishedEventBody,
      success: {
        202: 'Accepted: the event and its deliveries are stored.',
        200: 'A repeated publish with the same Idempotency-Key: the first result, nothing new is sent.',
      },
      errors: [422],
      parameters: [
        {
          name: 'Idempotency-Key',
          in: 'header',
          description: 'A repeated publish with the same key returns the first result (200) without new deliveries.',
          schema: { type: 'string', minLength: 1, maxLength: 255 },
        },
      ],
    },
  }),
];
