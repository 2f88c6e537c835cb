// Publishing: the event and one pending delivery per enabled, subscribed webhook of the tenant are
// written in one transaction before the caller hears back; workers are woken after the commit.
import { UniqueConstraintViolationException } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Viewer } from '../../auth/viewer.js';
import { CHANNEL_DELIVERIES_DUE, type Notifier } from '../../db/notifier.js';
import { isStorableText, MAX_JSON_DEPTH, unstorableJson } from '../../db/storable-text.js';
import { AppError } from '../../errors.js';
import { newId } from '../../ids.js';
import { announceEventDeliveries } from '../../subscriptions/delivery-update-notice.js';
import { isEventType } from './event-types.js';

export interface PublishInput {
  event: string;
  data: unknown;
  tenantId?: string | null;
  idempotencyKey?: string | null;
}

export interface PublishResult {
  id: string;
  event: string;
  deliveries: number;
  /** true when an earlier publish with the same Idempotency-Key answered. */
  replayed: boolean;
}

const IDEMPOTENCY_KEY_MAX = 255;

// Raw `execute` hands back the driver's own error, not MikroORM's mapped exception, so the
// Postgres SQLSTATE (23505 unique_violation) is checked as well.
function isUniqueViolation(err: unknown): boolean {
  return err instanceof UniqueConstraintViolationException || (err as { code?: unknown } | null)?.code === '23505';
}

function resolveTenant(viewer: Viewer, requested: string | null | undefined): string {
  if (viewer.role === 'service') {
    if (requested === undefined || requested === null || requested === '') {
      throw new AppError('BAD_REQUEST', 'tenant_id is required with a service token', { field: 'tenant_id' });
    }
    if (!isStorableText(requested)) {
      throw new AppError('VALIDATION_ERROR', 'tenant_id must not contain NUL characters or unpaired surrogates', {
        field: 'tenant_id',
      });
    }
    return requested;
  }
  if (viewer.tenantId === null) throw new AppError('FORBIDDEN', 'this token is not bound to a tenant');
  if (requested !== undefined && requested !== null && requested !== viewer.tenantId) {
    throw new AppError('FORBIDDEN', 'this token may only publish events for its own tenant');
  }
  return viewer.tenantId;
}

/**
 * Writes an event and fans it out. Used for published events and for the gateway's own pings
 * (`onlyWebhookId`), inside the caller's transaction when given one. `notDue` deliveries have no
 * due time, so no worker claims them: the caller sends them itself.
 */
export async function insertEventWithDeliveries(
  em: EntityManager,
  input: { tenantId: string; type: string; data: Record<string, unknown>; idempotencyKey?: string | null; onlyWebhookId?: string; notDue?: boolean },
): Promise<{ id: string; deliveries: number; deliveryIds: string[]; publishedAt: Date }> {
  const conn = em.getConnection();
  const ctx = em.getTransactionContext();
  const id = newId('evt');
  const targets = await conn.execute<{ id: string }[]>(
    input.onlyWebhookId
      ? 'select id from webhook where id = ? and tenant_id = ?'
      : 'select id from webhook where tenant_id = ? and enabled and ? = any(events) order by seq',
    input.onlyWebhookId ? [input.onlyWebhookId, input.tenantId] : [input.tenantId, input.type],
    'all',
    ctx,
  );
  const inserted = await conn.execute<{ published_at: Date }[]>(
    `insert into event (id, tenant_id, type, data, idempotency_key, delivery_count)
     values (?, ?, ?, ?::jsonb, ?, ?) returning published_at`,
    [id, input.tenantId, input.type, JSON.stringify(input.data), input.idempotencyKey ?? null, targets.length],
    'all',
    ctx,
  );
  const rows = targets.map((t) => ({ id: newId('del'), webhook_id: t.id }));
  if (rows.length > 0) {
    await conn.execute(
      `insert into delivery (id, event_id, webhook_id, tenant_id, event_type, status, attempts, next_attempt_at)
       select r.id, ?, r.webhook_id, ?, ?, 'pending', 0, case when ? then null else now() end
       from jsonb_to_recordset(?::jsonb) as r(id text, webhook_id text)`,
      [id, input.tenantId, input.type, input.notDue === true, JSON.stringify(rows)],
      'run',
      ctx,
    );
  }
  return {
    id,
    deliveries: rows.length,
    deliveryIds: rows.map((r) => r.id),
    publishedAt: new Date(inserted[0]!.published_at),
  };
}

export class EventService {
  constructor(
    private readonly em: EntityManager,
    private readonly notifier: Notifier,
  ) {}

  async publish(viewer: Viewer, input: PublishInput): Promise<PublishResult> {
    const tenantId = resolveTenant(viewer, input.tenantId);
    if (input.event.trim() === '') throw new AppError('BAD_REQUEST', 'event is required', { field: 'event' });
    if (input.event === 'ping') {
      throw new AppError('VALIDATION_ERROR', 'ping is sent by the gateway itself and cannot be published', { field: 'event' });
    }
    if (!isEventType(input.event)) {
      throw new AppError('VALIDATION_ERROR', `unknown event type: ${JSON.stringify(input.event)}`, { field: 'event' });
    }
    const data = input.data;
    if (typeof data !== 'object' || data === null || Array.isArray(data)) {
      throw new AppError('BAD_REQUEST', 'data must be a JSON object', { field: 'data' });
    }
    const unstorable = unstorableJson(data);
    if (unstorable) {
      const message =
        unstorable === 'text'
          ? 'data must not contain NUL characters or unpaired surrogates'
          : `data must not nest deeper than ${MAX_JSON_DEPTH} levels`;
      throw new AppError('VALIDATION_ERROR', message, { field: 'data' });
    }
    const key = input.idempotencyKey ?? null;
    if (key !== null && (key === '' || key.length > IDEMPOTENCY_KEY_MAX)) {
      throw new AppError('BAD_REQUEST', `Idempotency-Key must be 1 to ${IDEMPOTENCY_KEY_MAX} characters`);
    }
    if (key !== null && !isStorableText(key)) {
      throw new AppError('BAD_REQUEST', 'Idempotency-Key must not contain NUL characters or unpaired surrogates');
    }
    if (key !== null) {
      const earlier = await this.findByIdempotencyKey(tenantId, key);
      if (earlier) return earlier;
    }
    let created;
    try {
      created = await this.em.transactional((tx) =>
        insertEventWithDeliveries(tx, { tenantId, type: input.event, data: data as Record<string, unknown>, idempotencyKey: key }),
      );
    } catch (err) {
      // Two publishes raced with one key: the unique index let one win; answer with its result.
      if (key !== null && isUniqueViolation(err)) {
        const earlier = await this.findByIdempotencyKey(tenantId, key);
        if (earlier) return earlier;
      }
      throw err;
    }
    if (created.deliveries > 0) {
      // Announced before the workers wake, so watchers hear of a delivery before its attempts.
      await announceEventDeliveries(this.notifier, tenantId, created.id);
      await this.notifier.notify(CHANNEL_DELIVERIES_DUE, '').catch(() => undefined);
    }
    return { id: created.id, event: input.event, deliveries: created.deliveries, replayed: false };
  }

  private async findByIdempotencyKey(tenantId: string, key: string): Promise<PublishResult | null> {
    const rows = await this.em
      .getConnection()
      .execute<{ id: string; type: string; delivery_count: number }[]>(
        'select id, type, delivery_count from event where tenant_id = ? and idempotency_key = ?',
        [tenantId, key],
        'all',
      );
    const row = rows[0];
    return row ? { id: row.id, event: row.type, deliveries: Number(row.delivery_count), replayed: true } : null;
  }
}
