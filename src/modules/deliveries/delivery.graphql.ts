import { AppError } from '../../errors.js';
import { builder } from '../../graphql/builder.js';
import { SUBSCRIBER_QUEUE_LIMIT, type DeliveryUpdate } from '../../subscriptions/delivery-update-hub.js';
import { DeliveryOutcomeEnum } from '../webhooks/webhook.graphql.js';
import type { DeliveryAttempt } from './delivery-attempt.entity.js';
import type { AttemptPage, Pagination } from './delivery.service.js';
import type { Delivery } from './delivery.entity.js';

export const DeliveryStatusEnum = builder.enumType('DeliveryStatus', {
  description: 'pending until delivered (success), given up after the last retry (failed), or stopped because its webhook was disabled (cancelled).',
  values: ['pending', 'success', 'failed', 'cancelled'] as const,
});

const AttemptErrorClassEnum = builder.enumType('AttemptErrorClass', {
  description: 'Why an attempt failed: DNS, connection, TLS, timeout, a non-2xx answer, or a blocked (private) address.',
  values: ['dns', 'connect', 'tls', 'timeout', 'http', 'blocked'] as const,
});

export const DeliveryAttemptRef = builder.objectRef<DeliveryAttempt>('DeliveryAttempt').implement({
  description: 'One HTTP request made for a delivery, with what the receiver answered.',
  fields: (t) => ({
    id: t.exposeID('id'),
    deliveryId: t.exposeID('deliveryId'),
    webhookId: t.exposeID('webhookId'),
    eventType: t.exposeString('eventType'),
    status: t.field({ type: DeliveryOutcomeEnum, resolve: (a) => a.status }),
    attempt: t.exposeInt('attempt', { description: '1 for the first try, 2 for the first retry, ...' }),
    responseCode: t.exposeInt('responseCode', { nullable: true }),
    durationMs: t.exposeInt('durationMs'),
    requestHeaders: t.expose('requestHeaders', { type: 'JSONObject' }),
    requestBody: t.exposeString('requestBody'),
    responseHeaders: t.expose('responseHeaders', { type: 'JSONObject', nullable: true }),
    responseBody: t.exposeString('responseBody', { nullable: true, description: 'Truncated to a few KiB.' }),
    responseBodyTruncated: t.exposeBoolean('responseBodyTruncated'),
    error: t.exposeString('error', { nullable: true }),
    errorClass: t.field({ type: AttemptErrorClassEnum, nullable: true, resolve: (a) => a.errorClass ?? null }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    nextRetryAt: t.expose('nextRetryAt', { type: 'DateTime', nullable: true, description: 'When the next retry is due, if one is.' }),
  }),
});

export const DeliveryRef = builder.objectRef<Delivery>('Delivery').implement({
  description: 'One event on its way to one webhook. Its id is the delivery_id receivers deduplicate on.',
  fields: (t) => ({
    id: t.exposeID('id'),
    webhookId: t.exposeID('webhookId'),
    eventId: t.exposeID('eventId'),
    eventType: t.exposeString('eventType'),
    status: t.field({ type: DeliveryStatusEnum, resolve: (d) => d.status }),
    attemptCount: t.exposeInt('attempts', { description: 'Attempts made so far.' }),
    nextAttemptAt: t.expose('nextAttemptAt', { type: 'DateTime', nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    attempts: t.field({
      type: [DeliveryAttemptRef],
      description: 'Every attempt, oldest first.',
      resolve: (d, _args, ctx) => ctx.services.deliveries.attemptsOfDelivery(d.id),
    }),
  }),
});

const PaginationRef = builder.objectRef<Pagination>('Pagination').implement({
  fields: (t) => ({
    page: t.exposeInt('page'),
    pageSize: t.exposeInt('pageSize'),
    total: t.exposeInt('total', { description: 'Never above 100: history keeps the last 100 attempts in reach.' }),
    totalPages: t.exposeInt('totalPages'),
  }),
});

const AttemptPageRef = builder.objectRef<AttemptPage>('DeliveryAttemptPage').implement({
  fields: (t) => ({
    data: t.field({ type: [DeliveryAttemptRef], resolve: (p) => p.data }),
    pagination: t.field({ type: PaginationRef, resolve: (p) => p.pagination }),
  }),
});

builder.queryFields((t) => ({
  deliveryAttempts: t.withAuth({ tenant: true }).field({
    type: AttemptPageRef,
    description: "A webhook's most recent attempts (at most the last 100), newest first.",
    args: {
      webhookId: t.arg.id({ required: true }),
      status: t.arg({ type: DeliveryOutcomeEnum, required: false }),
      page: t.arg.int({ required: false, description: 'Defaults to 1.' }),
      perPage: t.arg.int({ required: false, description: '1 to 100; defaults to 20.' }),
    },
    resolve: (_root, args, ctx) =>
      ctx.services.deliveries.attempts(ctx.viewer.tenantId, String(args.webhookId), {
        status: args.status,
        page: args.page,
        perPage: args.perPage,
      }),
  }),
  delivery: t.withAuth({ tenant: true }).field({
    type: DeliveryRef,
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, { id }, ctx) => ctx.services.deliveries.delivery(ctx.viewer.tenantId, String(id)),
  }),
}));

builder.mutationFields((t) => ({
  testWebhook: t.withAuth({ tenant: true }).field({
    type: DeliveryAttemptRef,
    description: 'Sends one ping now and returns its attempt, successful or not. Never retried; works while disabled.',
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, { id }, ctx) => ctx.services.deliveries.test(ctx.viewer.tenantId, String(id)),
  }),
  resendDelivery: t.withAuth({ tenant: true }).field({
    type: DeliveryRef,
    description: [
      'Sends a delivery of the webhook again as soon as possible, whatever its status (success, failed, cancelled or waiting for a retry),',
      'and answers it as the resend left it: pending, due now. The next attempt is numbered after the last one; if it fails,',
      'the retry schedule starts again from its first step. One delivery is never queued twice: resends made before a worker takes it',
      'share one attempt. CONFLICT while the webhook is disabled (enable it first) and while a worker is sending the delivery',
      '(resend once that attempt is recorded); another webhook\'s or tenant\'s delivery is NOT_FOUND.',
    ].join(' '),
    args: { webhookId: t.arg.id({ required: true }), deliveryId: t.arg.id({ required: true }) },
    resolve: (_root, { webhookId, deliveryId }, ctx) =>
      ctx.services.deliveries.resend(ctx.viewer.tenantId, String(webhookId), String(deliveryId)),
  }),
}));

const DeliveryUpdateKindEnum = builder.enumType('DeliveryUpdateKind', {
  description: 'What a DeliveryUpdate announces.',
  values: {
    created: { description: "A delivery was queued (pending): a published event's, or a new webhook's verification ping." },
    attempt: {
      description:
        'An attempt was recorded. `attempt` is set, and `delivery` has moved on: success, failed after the last retry, or pending with `nextAttemptAt` set for the retry.',
    },
    status: {
      description:
        'The delivery changed status without an attempt: cancelled, because its webhook was disabled, or pending and due now, because it was resent.',
    },
  } as const,
});

const DeliveryUpdateRef = builder.objectRef<DeliveryUpdate>('DeliveryUpdate').implement({
  description:
    'One change to a delivery, as it happens. `delivery` is as that change left it (except its `attempts` list, read when the update is sent), so updates in order tell the story of the delivery and the latest is its current state.',
  fields: (t) => ({
    kind: t.field({ type: DeliveryUpdateKindEnum, resolve: (u) => u.kind }),
    delivery: t.field({ type: DeliveryRef, resolve: (u) => u.delivery }),
    attempt: t.field({
      type: DeliveryAttemptRef,
      nullable: true,
      description: 'The attempt recorded, for kind `attempt`; null otherwise.',
      resolve: (u) => u.attempt,
    }),
  }),
});

builder.subscriptionFields((t) => ({
  deliveryUpdates: t.withAuth({ tenant: true }).field({
    type: DeliveryUpdateRef,
    description: [
      "Live updates of the viewer's deliveries: one when a delivery is queued, one per attempt recorded, one per other status change.",
      'Served at /graphql over Server-Sent Events (GraphQL over SSE; a browser EventSource may pass its token as `?token=`)',
      'and over WebSocket (the graphql-ws protocol; the token goes in the connection params as `authorization: "Bearer ..."` or `token`).',
      `A subscriber more than ${SUBSCRIBER_QUEUE_LIMIT} updates behind gets a SERVICE_UNAVAILABLE error and the subscription ends:`,
      'subscribe again and re-read the deliveries it cares about.',
      'When the connection is cut (an instance shutting down), reconnect and subscribe again, then re-read: updates made meanwhile are not replayed.',
      'A subscription ends with its credentials: once the token expires or within 30 seconds of the API key being revoked, with an UNAUTHORIZED error',
      '(over WebSocket the connection closes with code 4401).',
    ].join(' '),
    args: {
      webhookId: t.arg.id({
        required: false,
        description: "One of the viewer's webhooks (another tenant's or an unknown id is NOT_FOUND); all of them when absent.",
      }),
    },
    subscribe: (_root, { webhookId }, ctx) =>
      ctx.services.deliveryUpdates.subscribe(ctx.viewer, webhookId === null || webhookId === undefined ? null : String(webhookId)),
    resolve: (message, _args, ctx) => {
      // One context serves the whole subscription: without this its EntityManager would keep
      // every row that nested fields load, for as long as the subscription lives.
      ctx.em.clear();
      if (message.kind === 'overflow') {
        throw new AppError('SERVICE_UNAVAILABLE', 'too many updates waiting for this subscriber; subscribe again and re-read the deliveries');
      }
      if (message.kind === 'credentials-ended') {
        throw new AppError('UNAUTHORIZED', message.why === 'expired' ? 'the token has expired' : 'the API key was revoked');
      }
      return message;
    },
  }),
}));
