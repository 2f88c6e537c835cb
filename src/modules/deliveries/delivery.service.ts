// Delivery history, the synchronous test ping and resends. Reads are tenant-filtered like everything else.
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Deliverer } from '../../worker/deliverer.js';
import { resendDelivery } from '../../worker/queue.js';
import { AppError, notFound } from '../../errors.js';
import { isId } from '../../ids.js';
import { insertEventWithDeliveries } from '../events/event.service.js';
import type { Webhook } from '../webhooks/webhook.entity.js';
import type { WebhookService } from '../webhooks/webhook.service.js';
import { DeliveryAttemptSchema, type DeliveryAttempt } from './delivery-attempt.entity.js';
import { DeliverySchema, type Delivery } from './delivery.entity.js';

/** History keeps the most recent attempts of a webhook within reach of the API, no more. */
export const HISTORY_LIMIT = 100;
export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

export interface Pagination {
  page: number;
  pageSize: number;
  total: number;
  totalPages: number;
}

export interface AttemptPage {
  data: DeliveryAttempt[];
  pagination: Pagination;
}

export function pingData(webhookId: string): Record<string, unknown> {
  return { webhook_id: webhookId, message: 'Webhook endpoint verified' };
}

/** Queues the verification ping of a newly created webhook, in the creating transaction. */
export async function queuePing(em: EntityManager, webhook: Webhook): Promise<void> {
  if (!webhook.enabled) return;
  await insertEventWithDeliveries(em, {
    tenantId: webhook.tenantId,
    type: 'ping',
    data: pingData(webhook.id),
    onlyWebhookId: webhook.id,
  });
}

export class DeliveryService {
  constructor(
    private readonly em: EntityManager,
    private readonly deliverer: Deliverer,
    private readonly webhooks: WebhookService,
    /** How long a test ping is leased to the request sending it (WEBHOOK_TIMEOUT + WORKER_LEASE_MARGIN). */
    private readonly testLeaseMs: number,
    /** Called after a resend committed: announces the change and wakes the workers. */
    private readonly afterResend?: (delivery: Delivery) => Promise<unknown>,
  ) {}

  async attempts(
    tenantId: string,
    webhookId: string,
    query: { status?: string | null; page?: number | null; perPage?: number | null },
  ): Promise<AttemptPage> {
    const raw = query.status ?? undefined;
    if (raw !== undefined && raw !== 'success' && raw !== 'failed') {
      throw new AppError('BAD_REQUEST', 'status must be success or failed', { field: 'status' });
    }
    const status: 'success' | 'failed' | undefined = raw;
    const page = query.page ?? 1;
    const pageSize = query.perPage ?? DEFAULT_PAGE_SIZE;
    if (!Number.isInteger(page) || page < 1) throw new AppError('BAD_REQUEST', 'page must be a whole number from 1', { field: 'page' });
    if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
      throw new AppError('BAD_REQUEST', `per_page must be a whole number from 1 to ${MAX_PAGE_SIZE}`, { field: 'per_page' });
    }
    await this.webhooks.get(tenantId, webhookId);
    const where = { webhookId, tenantId, ...(status ? { status } : {}) };
    const offset = (page - 1) * pageSize;
    const limit = Math.max(0, Math.min(pageSize, HISTORY_LIMIT - offset));
    const [count, data] = await Promise.all([
      this.em.count(DeliveryAttemptSchema, where),
      limit === 0 ? Promise.resolve([]) : this.em.find(DeliveryAttemptSchema, where, { orderBy: { seq: 'desc' }, limit, offset }),
    ]);
    const total = Math.min(count, HISTORY_LIMIT);
    return { data, pagination: { page, pageSize, total, totalPages: Math.ceil(total / pageSize) } };
  }

  async delivery(tenantId: string, id: string): Promise<Delivery> {
    if (!isId('del', id)) throw notFound('delivery');
    const delivery = await this.em.findOne(DeliverySchema, { id, tenantId });
    if (!delivery) throw notFound('delivery');
    return delivery;
  }

  async attemptsOfDelivery(deliveryId: string): Promise<DeliveryAttempt[]> {
    return this.em.find(DeliveryAttemptSchema, { deliveryId }, { orderBy: { seq: 'asc' } });
  }

  /**
   * Queues a delivery of the webhook to be sent again now, whatever its status: the next attempt's
   * number follows the delivery's count, and if it fails the retry schedule starts again from its
   * first step. Refused while the webhook is disabled, and while a worker is sending the delivery.
   */
  async resend(tenantId: string, webhookId: string, deliveryId: string): Promise<Delivery> {
    if (!isId('wh', webhookId) || !isId('del', deliveryId)) throw notFound('delivery');
    const outcome = await resendDelivery(this.em, { tenantId, webhookId, deliveryId });
    switch (outcome.kind) {
      case 'not-found':
        throw notFound('delivery');
      case 'disabled':
        throw new AppError('CONFLICT', 'the webhook is disabled; enable it first (enabled: true), then resend');
      case 'sending':
        throw new AppError('CONFLICT', 'the delivery is being sent right now; resend it once that attempt is recorded');
      case 'resent':
        break;
    }
    // As the resend left it (pending, due now): a worker may have sent it again by now.
    const delivery = this.em.map(DeliverySchema, outcome.row);
    await this.afterResend?.(delivery);
    return delivery;
  }

  /**
   * Sends one `ping` now and answers with its attempt, whatever the outcome. Never retried, and
   * allowed while the webhook is disabled: it is how an owner checks an endpoint before enabling.
   */
  async test(tenantId: string, webhookId: string): Promise<DeliveryAttempt> {
    const webhook = await this.webhooks.get(tenantId, webhookId);
    const previousSecrets = await this.webhooks.previousSecrets(webhook);
    const event = await insertEventWithDeliveries(this.em, {
      tenantId,
      type: 'ping',
      data: pingData(webhook.id),
      onlyWebhookId: webhook.id,
      // Leased, not left without a due time: if this process dies before the outcome is
      // recorded, a worker sends the ping once the lease ends, so it never stays pending.
      leaseMs: this.testLeaseMs,
    });
    // Deleted since it was looked up: nothing was queued.
    if (event.deliveryIds.length === 0) throw notFound('webhook');
    const outcome = await this.deliverer.deliver(
      {
        id: event.deliveryIds[0]!,
        webhookId: webhook.id,
        tenantId,
        eventId: event.id,
        eventType: 'ping',
        attempts: 0,
        scheduleStart: 0,
        url: webhook.url,
        secretEncrypted: webhook.secretEncrypted,
        ...previousSecrets,
        enabled: true,
        data: pingData(webhook.id),
        publishedAt: event.publishedAt,
      },
      { noRetry: true },
    );
    if (!outcome.recorded) throw notFound('webhook');
    return this.em.findOneOrFail(DeliveryAttemptSchema, { id: outcome.recorded.attemptId });
  }
}
