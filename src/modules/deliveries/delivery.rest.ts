import { z } from 'zod';
import { AppError } from '../../errors.js';
import { graphql } from '../../rest/graphql.js';
import { dateTime, prefixedId, responseBodies } from '../../rest/response-body.js';
import { restRoute, type RestRoute, type RouteParameter } from '../../rest/route.js';

const AttemptFields = graphql(`
  fragment AttemptFields on DeliveryAttempt {
    id deliveryId webhookId eventType status attempt responseCode durationMs requestHeaders requestBody
    responseHeaders responseBody responseBodyTruncated error errorClass createdAt nextRetryAt
  }
`);

const headerMap = z.record(z.string(), z.string());

const attemptBody = z
  .object({
    id: prefixedId('att'),
    delivery_id: prefixedId('del').describe('The same across retries: receivers deduplicate on it.'),
    webhook_id: prefixedId('wh'),
    event_type: z.string(),
    status: z.enum(['success', 'failed']),
    attempt: z.int().min(1).describe('1 for the first try, 2 for the first retry, ...'),
    response_code: z.int().nullable(),
    duration_ms: z.int().min(0),
    request_headers: headerMap.describe('Headers sent; never the signing secret.'),
    request_body: z.string(),
    response_headers: headerMap.nullable(),
    response_body: z.string().nullable().describe('Truncated to a few KiB.'),
    response_body_truncated: z.boolean(),
    error: z.string().nullable(),
    error_class: z.enum(['dns', 'connect', 'tls', 'timeout', 'http', 'blocked']).nullable(),
    created_at: dateTime(),
    next_retry_at: dateTime().nullable().describe('When the next retry is due, if one is.'),
  })
  .describe('One HTTP request made for a delivery, with what the receiver answered.')
  .register(responseBodies, { id: 'DeliveryAttempt' });

const attemptPageBody = z
  .object({
    data: z.array(attemptBody),
    pagination: z.object({
      page: z.int().min(1),
      pageSize: z.int().min(1).max(100),
      total: z.int().min(0).max(100),
      totalPages: z.int().min(0),
    }),
  })
  .register(responseBodies, { id: 'DeliveryAttemptPage' });

const resentBody = z
  .object({
    delivery_id: prefixedId('del'),
    status: z.literal('pending').describe('Queued to be sent again now.'),
  })
  .describe('The delivery, queued to be sent again.')
  .register(responseBodies, { id: 'ResentDelivery' });

function positiveInt(query: URLSearchParams, name: string): number | undefined {
  const values = query.getAll(name);
  if (values.length === 0) return undefined;
  const value = values[values.length - 1]!;
  if (values.length > 1 || !/^\d{1,9}$/.test(value)) {
    throw new AppError('BAD_REQUEST', `${name} must be a whole number`, { field: name });
  }
  return Number(value);
}

const PAGE_SIZE_SCHEMA = { type: 'integer', minimum: 1, maximum: 100, default: 20 };

const HISTORY_PARAMETERS: RouteParameter[] = [
  { name: 'status', in: 'query', description: 'Only attempts with this outcome.', schema: { type: 'string', enum: ['success', 'failed'] } },
  { name: 'page', in: 'query', description: 'Page number, from 1.', schema: { type: 'integer', minimum: 1, default: 1 } },
  { name: 'per_page', in: 'query', description: 'Attempts per page.', schema: PAGE_SIZE_SCHEMA },
  { name: 'pageSize', in: 'query', description: 'Same as per_page; when both are given they must agree.', schema: PAGE_SIZE_SCHEMA },
];

export const deliveryRoutes: RestRoute[] = [
  restRoute({
    method: 'POST',
    path: '/api/v1/webhooks/:id/test',
    operation: graphql(`mutation TestWebhook($id: ID!) { testWebhook(id: $id) { ...AttemptFields } }`, [AttemptFields]),
    variables: ({ params }) => ({ id: params.id }),
    status: 200,
    result: (data) => data.testWebhook,
    doc: {
      summary: 'Send a test ping now',
      description: 'One synchronous `ping`, never retried, also while the webhook is disabled. The answer is its attempt record, 200 also when the receiver failed.',
      tag: 'Deliveries',
      response: attemptBody,
    },
  }),
  restRoute({
    method: 'GET',
    path: '/api/v1/webhooks/:id/deliveries',
    operation: graphql(
      `query DeliveryAttempts($id: ID!, $status: DeliveryOutcome, $page: Int, $perPage: Int) {
        deliveryAttempts(webhookId: $id, status: $status, page: $page, perPage: $perPage) {
          data { ...AttemptFields }
          pagination { page pageSize total totalPages }
        }
      }`,
      [AttemptFields],
    ),
    variables: ({ params, query }) => {
      const status = query.get('status');
      if (status !== null && status !== 'success' && status !== 'failed') {
        throw new AppError('BAD_REQUEST', 'status must be success or failed', { field: 'status' });
      }
      const perPage = positiveInt(query, 'per_page');
      const pageSize = positiveInt(query, 'pageSize');
      if (perPage !== undefined && pageSize !== undefined && perPage !== pageSize) {
        throw new AppError('BAD_REQUEST', 'per_page and pageSize disagree', { field: 'per_page' });
      }
      return { id: params.id, status, page: positiveInt(query, 'page') ?? null, perPage: perPage ?? pageSize ?? null };
    },
    status: 200,
    result: (data) => data.deliveryAttempts,
    doc: {
      summary: "A webhook's delivery attempts, newest first",
      description: 'At most the last 100 attempts are in reach: `pagination.total` is never above 100.',
      tag: 'Deliveries',
      response: attemptPageBody,
      errors: [400],
      parameters: HISTORY_PARAMETERS,
    },
  }),
  restRoute({
    method: 'POST',
    path: '/api/v1/webhooks/:id/deliveries/:delivery_id/resend',
    operation: graphql(`mutation ResendDelivery($id: ID!, $deliveryId: ID!) {
      resendDelivery(webhookId: $id, deliveryId: $deliveryId) { id status }
    }`),
    variables: ({ params }) => ({ id: params.id, deliveryId: params.delivery_id }),
    status: 202,
    result: (data) => ({ deliveryId: data.resendDelivery.id, status: data.resendDelivery.status }),
    doc: {
      summary: 'Send a delivery again',
      description:
        'Queues the delivery to be sent again as soon as possible, whatever its status (success, failed, cancelled or waiting for a retry). ' +
        "The next attempt's number follows the delivery's count; if it fails, the retry schedule starts again from its first step. " +
        'Resends made before a worker takes the delivery share one attempt. 409 while the webhook is disabled (enable it first) ' +
        "and while a worker is sending this delivery (resend once that attempt is recorded); another webhook's delivery is 404.",
      tag: 'Deliveries',
      response: resentBody,
      errors: [409],
    },
  }),
];
