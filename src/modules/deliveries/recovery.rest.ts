import { z } from 'zod';
import { AppError } from '../../errors.js';
import { graphql } from '../../rest/graphql.js';
import { dateTime, prefixedId, responseBodies } from '../../rest/response-body.js';
import { restRoute, type RestRoute } from '../../rest/route.js';

const RecoveryFields = graphql(`
  fragment RecoveryFields on Recovery { id webhookId status since until total queued createdAt completedAt }
`);

const recoveryBody = z
  .object({
    id: prefixedId('rcv'),
    webhook_id: prefixedId('wh'),
    status: z.enum(['running', 'completed']).describe('running while workers queue its deliveries in batches; completed once done.'),
    since: dateTime(),
    until: dateTime().describe('Exclusive.'),
    total: z
      .number()
      .int()
      .describe(
        'Deliveries to queue, counted when the recover started; at completion, the number queued (a delivery resent meanwhile is not queued again, one that failed meanwhile is).',
      ),
    queued: z.number().int().describe('Deliveries queued so far; grows to total.'),
    created_at: dateTime(),
    completed_at: dateTime().nullable(),
  })
  .describe("A bulk recover of a webhook's deliveries, run in the background in bounded batches.")
  .register(responseBodies, { id: 'Recovery' });

// Types are checked here (wrong JSON types are 400); whether a string is a time is a value's
// question (422), answered before GraphQL's DateTime would call it a type error.
const recoverBody = z.object({
  since: z.string({ error: 'since is required and must be a string' }).describe('ISO 8601 time: events published from then on (inclusive).'),
  until: z
    .string({ error: 'until must be a string' })
    .optional()
    .describe('ISO 8601 time: events published before then (exclusive); now when absent. At most 14 days after since.'),
  include_missed: z
    .boolean({ error: 'include_missed must be a boolean' })
    .optional()
    .describe("Also create deliveries for the tenant's events in the window that this webhook never got. Default false."),
});

/** A time as the body gives it; 422 naming the field when it is not one. */
function time(field: string, value: string): string {
  if (!/^\d{4}-\d{2}-\d{2}T/.test(value) || Number.isNaN(Date.parse(value))) {
    throw new AppError('VALIDATION_ERROR', `${field} must be an ISO 8601 time, such as 2024-01-15T14:30:00Z`, { field });
  }
  return value;
}

export const recoveryRoutes: RestRoute[] = [
  restRoute({
    method: 'POST',
    path: '/api/v1/webhooks/:id/recover',
    operation: graphql(
      `mutation RecoverWebhook($id: ID!, $input: RecoverWebhookInput!) {
        recoverWebhook(webhookId: $id, input: $input) { ...RecoveryFields }
      }`,
      [RecoveryFields],
    ),
    body: recoverBody,
    variables: ({ params, body }) => ({
      id: params.id,
      input: {
        since: time('since', body.since),
        until: body.until === undefined ? null : time('until', body.until),
        includeMissed: body.include_missed ?? false,
      },
    }),
    status: 202,
    result: (data) => data.recoverWebhook,
    doc: {
      summary: 'Recover failed and missed deliveries',
      description:
        'Queues again every delivery of this webhook whose status is `failed` and whose event was published in [since, until); ' +
        "with `include_missed` it also creates deliveries for the tenant's events in that window, of types the webhook subscribes " +
        'to now and published after it was created, that it never got (for instance while it was disabled). The work runs in the ' +
        'background in bounded batches and survives a restart: read its progress at `GET .../recoveries/{recovery_id}`. ' +
        'since must be before until, at most 14 days apart (422). A disabled webhook answers 409: enable it first.',
      tag: 'Deliveries',
      response: recoveryBody,
      errors: [409, 422],
    },
  }),
  restRoute({
    method: 'GET',
    path: '/api/v1/webhooks/:id/recoveries/:recovery_id',
    operation: graphql(
      `query Recovery($id: ID!, $recoveryId: ID!) { recovery(webhookId: $id, id: $recoveryId) { ...RecoveryFields } }`,
      [RecoveryFields],
    ),
    variables: ({ params }) => ({ id: params.id, recoveryId: params.recovery_id }),
    status: 200,
    result: (data) => data.recovery,
    doc: { summary: 'A bulk recover, as it stands now', tag: 'Deliveries', response: recoveryBody },
  }),
];
