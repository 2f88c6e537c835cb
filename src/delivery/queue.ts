// The delivery queue lives in the `delivery` table. These are its SQL operations; every one is a
// single statement or a single transaction, so a crash between any two leaves a consistent queue.
import type { EntityManager } from '@mikro-orm/postgresql';
import type { SendResult } from './sender.js';

export interface ClaimedDelivery {
  id: string;
  webhookId: string;
  tenantId: string;
  eventId: string;
  eventType: string;
  /** Attempts made before this one. */
  attempts: number;
  url: string;
  secretEncrypted: string;
  enabled: boolean;
  data: Record<string, unknown>;
  publishedAt: Date;
}

interface ClaimRow {
  id: string;
  webhook_id: string;
  tenant_id: string;
  event_id: string;
  event_type: string;
  attempts: number;
  url: string;
  secret_encrypted: string;
  enabled: boolean;
  data: Record<string, unknown>;
  published_at: Date | string;
}

// Fairness: the oldest-waiting webhooks come first, and no webhook gets more than `cap` leased
// (in-flight) rows at once, counted across every worker, so one slow endpoint cannot take every
// slot. SKIP LOCKED lets concurrent workers pass over rows another claim is taking right now;
// the lease (longer than the HTTP timeout) is what keeps a row from being sent twice while its
// worker lives, and what hands it to another worker when that worker dies.
const CLAIM_SQL = `
with heads as (
  select webhook_id, min(next_attempt_at) as oldest
  from delivery
  where status = 'pending' and next_attempt_at <= now()
  group by webhook_id
  order by oldest
  limit ?
), picked as (
  select d.id
  from heads h
  cross join lateral (
    select x.id
    from delivery x
    where x.webhook_id = h.webhook_id
      and x.status = 'pending'
      and x.next_attempt_at <= now()
      and (x.lease_expires_at is null or x.lease_expires_at <= now())
    order by x.next_attempt_at
    limit greatest(0, ? - (
      select count(*) from delivery y
      where y.webhook_id = h.webhook_id and y.status = 'pending' and y.lease_expires_at > now()
    ))
    for update skip locked
  ) d
  limit ?
), claimed as (
  update delivery d
  set lease_expires_at = now() + (? * interval '1 millisecond'), updated_at = now()
  from picked p
  where d.id = p.id
  returning d.id, d.webhook_id, d.tenant_id, d.event_id, d.event_type, d.attempts
)
select c.*, w.url, w.secret_encrypted, w.enabled, e.data, e.published_at
from claimed c
join webhook w on w.id = c.webhook_id
join event e on e.id = c.event_id`;

export async function claimDue(
  em: EntityManager,
  options: { limit: number; perWebhookCap: number; leaseMs: number },
): Promise<ClaimedDelivery[]> {
  const rows = await em
    .getConnection()
    .execute<ClaimRow[]>(CLAIM_SQL, [options.limit, options.perWebhookCap, options.limit, options.leaseMs], 'all');
  return rows.map((r) => ({
    id: r.id,
    webhookId: r.webhook_id,
    tenantId: r.tenant_id,
    eventId: r.event_id,
    eventType: r.event_type,
    attempts: Number(r.attempts),
    url: r.url,
    secretEncrypted: r.secret_encrypted,
    enabled: r.enabled,
    data: r.data,
    publishedAt: new Date(r.published_at),
  }));
}

export interface RecordedAttempt {
  attemptId: string;
  deliveryStatus: 'pending' | 'success' | 'failed' | 'cancelled';
  nextAttemptAt: Date | null;
}

/**
 * Stores one attempt and moves its delivery on, in one transaction: success, a retry at
 * `retryInMs`, or failed when `retryInMs` is null. A delivery that was cancelled (or whose webhook
 * was deleted) meanwhile keeps its state; the attempt is still kept while the delivery exists.
 */
export async function recordAttempt(
  em: EntityManager,
  input: {
    attemptId: string;
    delivery: Pick<ClaimedDelivery, 'id' | 'webhookId' | 'tenantId' | 'eventType' | 'attempts'>;
    result: SendResult;
    retryInMs: number | null;
  },
): Promise<RecordedAttempt | null> {
  const { delivery, result } = input;
  return em.transactional(async (tx) => {
    const conn = tx.getConnection();
    const ctx = tx.getTransactionContext();
    const status = result.ok ? 'success' : input.retryInMs === null ? 'failed' : 'pending';
    // Deleting or disabling a webhook locks its row and then its deliveries; locking the delivery
    // first and the webhook row later (the attempt's foreign key, last_delivery_status) would
    // deadlock with them, so the webhook row is taken first here too.
    await conn.execute('select 1 from webhook where id = ? for no key update', [delivery.webhookId], 'all', ctx);
    const updated = await conn.execute<{ status: RecordedAttempt['deliveryStatus']; next_attempt_at: Date | null }[]>(
      `update delivery
       set attempts = attempts + 1,
           status = ?,
           next_attempt_at = case when ? = 'pending' then now() + (? * interval '1 millisecond') else null end,
           lease_expires_at = null,
           updated_at = now()
       where id = ? and status = 'pending'
       returning status, next_attempt_at`,
      [status, status, input.retryInMs ?? 0, delivery.id],
      'all',
      ctx,
    );
    let final = updated[0];
    if (!final) {
      const current = await conn.execute<{ status: RecordedAttempt['deliveryStatus'] }[]>(
        'select status from delivery where id = ?',
        [delivery.id],
        'all',
        ctx,
      );
      if (!current[0]) return null;
      final = { status: current[0].status, next_attempt_at: null };
    }
    const nextRetryAt = final.status === 'pending' ? final.next_attempt_at : null;
    await conn.execute(
      `insert into delivery_attempt (
         id, delivery_id, webhook_id, tenant_id, event_type, attempt, status, response_code, duration_ms,
         request_headers, request_body, response_headers, response_body, response_body_truncated,
         error, error_class, next_retry_at
       ) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?::jsonb, ?, ?::jsonb, ?, ?, ?, ?, ?)`,
      [
        input.attemptId,
        delivery.id,
        delivery.webhookId,
        delivery.tenantId,
        delivery.eventType,
        delivery.attempts + 1,
        result.ok ? 'success' : 'failed',
        result.responseCode,
        result.durationMs,
        JSON.stringify(result.requestHeaders),
        result.requestBody,
        result.responseHeaders === null ? null : JSON.stringify(result.responseHeaders),
        result.responseBody,
        result.responseBodyTruncated,
        result.error,
        result.errorClass,
        nextRetryAt,
      ],
      'run',
      ctx,
    );
    await conn.execute(
      'update webhook set last_delivery_status = ?, last_delivery_at = now() where id = ?',
      [result.ok ? 'success' : 'failed', delivery.webhookId],
      'run',
      ctx,
    );
    return { attemptId: input.attemptId, deliveryStatus: final.status, nextAttemptAt: nextRetryAt ? new Date(nextRetryAt) : null };
  });
}

/** Marks a delivery cancelled without sending (its webhook was disabled after it was queued). */
export async function cancelDelivery(em: EntityManager, deliveryId: string): Promise<boolean> {
  const rows = await em
    .getConnection()
    .execute<{ id: string }[]>(
      `update delivery set status = 'cancelled', lease_expires_at = null, next_attempt_at = null, updated_at = now()
       where id = ? and status = 'pending' returning id`,
      [deliveryId],
      'all',
    );
  return rows.length > 0;
}

/** Cancels every pending delivery of a webhook: disabling it stops its retries. */
export async function cancelPendingForWebhook(em: EntityManager, webhookId: string): Promise<string[]> {
  const rows = await em
    .getConnection()
    .execute<{ id: string }[]>(
      `update delivery set status = 'cancelled', lease_expires_at = null, next_attempt_at = null, updated_at = now()
       where webhook_id = ? and status = 'pending' returning id`,
      [webhookId],
      'all',
      em.getTransactionContext(),
    );
  return rows.map((r) => r.id);
}

/** Hands leases back so another worker can take the rows at once (graceful shutdown). */
export async function releaseLeases(em: EntityManager, deliveryIds: string[]): Promise<void> {
  if (deliveryIds.length === 0) return;
  await em
    .getConnection()
    .execute(
      `update delivery set lease_expires_at = null where status = 'pending' and id in (select jsonb_array_elements_text(?::jsonb))`,
      [JSON.stringify(deliveryIds)],
      'run',
    );
}

/** Deletes attempts older than the retention, in batches so no statement holds locks for long. */
export async function pruneAttempts(em: EntityManager, retentionMs: number, batch = 5000): Promise<number> {
  let total = 0;
  for (;;) {
    const rows = await em
      .getConnection()
      .execute<{ id: string }[]>(
        `delete from delivery_attempt where id in (
           select id from delivery_attempt where created_at < now() - (? * interval '1 millisecond') limit ?
         ) returning id`,
        [retentionMs, batch],
        'all',
      );
    total += rows.length;
    if (rows.length < batch) return total;
  }
}
