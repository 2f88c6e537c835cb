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
// A leased row is always a due pending row (only due rows are claimed, and nothing moves
// next_attempt_at until the attempt is recorded, which also clears the lease), so one pass over
// the due rows (the partial index) gives each webhook's oldest free row and its leased count:
// webhooks already at their cap are left out of the heads, so they cannot crowd out the others,
// and no count ever reads a webhook's history or its future retries.
const CLAIM_SQL = `
with durability as (
  -- A lease lost in a crash of Postgres only makes its row claimable again, as an expired lease
  -- would (at least once), so this commit does not wait for its WAL flush: the next synchronous
  -- commit (the attempt's record) flushes it anyway.
  select set_config('synchronous_commit', 'off', true) as synchronous_commit
), heads as (
  select webhook_id,
         min(next_attempt_at) filter (where lease_expires_at is null or lease_expires_at <= now()) as oldest,
         count(*) filter (where lease_expires_at > now()) as leased
  from delivery
  where status = 'pending' and next_attempt_at <= now()
  group by webhook_id
  having count(*) filter (where lease_expires_at > now()) < ?
     and count(*) filter (where lease_expires_at is null or lease_expires_at <= now()) > 0
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
    limit ? - h.leased
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
cross join durability
join webhook w on w.id = c.webhook_id
join event e on e.id = c.event_id`;

export async function claimDue(
  em: EntityManager,
  options: { limit: number; perWebhookCap: number; leaseMs: number },
): Promise<ClaimedDelivery[]> {
  const rows = await em
    .getConnection()
    .execute<ClaimRow[]>(
      CLAIM_SQL,
      [options.perWebhookCap, options.limit, options.perWebhookCap, options.limit, options.leaseMs],
      'all',
    );
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
 * Stores one attempt and moves its delivery on, in one statement: success, a retry at
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
    /**
     * A NOTIFY sent by the same statement (so it is delivered at its commit, and costs no round
     * trip of its own); sent only when the attempt was recorded.
     */
    notice?: { channel: string; payload: string };
  },
): Promise<RecordedAttempt | null> {
  const { delivery, result } = input;
  const outcome = result.ok ? 'success' : input.retryInMs === null ? 'failed' : 'pending';
  // One statement, so one round trip and no transaction held open between round trips: every
  // attempt of a webhook updates that webhook's row, so the time a record holds it bounds how
  // fast one endpoint can be served.
  // - Deleting or disabling a webhook locks its row and then its deliveries; taking the delivery
  //   first and the webhook row later would deadlock with them, so `locked_webhook` comes first
  //   (the delivery's own lock is taken above the join, once the webhook row is held).
  // - The delivery is locked before anything is written, so a cancel or a delete of it waits for
  //   the record, or the record sees its outcome: a cancelled delivery stays cancelled and a
  //   deleted one (or one whose webhook is gone) records nothing.
  // - The attempt's time is read once the locks are held (clock_timestamp, not the statement's
  //   start), so overlapping records still list newest first by both seq and created_at; the
  //   next retry is counted from that same instant.
  // - Records of one webhook can commit out of order; the newest attempt decides, not the last commit.
  const rows = await em.getConnection().execute<{ status: RecordedAttempt['deliveryStatus']; next_retry_at: Date | string | null }[]>(
    `with locked_webhook as (
       select id from webhook where id = ? for no key update
     ), locked as (
       select d.id, case when d.status = 'pending' then ?::text else d.status end as status
       from delivery d join locked_webhook on true
       where d.id = ?
       for update of d
     ), stamped as (
       select locked.id, locked.status, clock_timestamp() as at from locked
     ), attempt as (
       insert into delivery_attempt (
         id, delivery_id, webhook_id, tenant_id, event_type, attempt, status, response_code, duration_ms,
         request_headers, request_body, response_headers, response_body, response_body_truncated,
         error, error_class, created_at, next_retry_at
       )
       select ?, s.id, ?, ?, ?, ?, ?, ?, ?, ?::jsonb, ?, ?::jsonb, ?, ?, ?, ?,
              s.at, case when s.status = 'pending' then s.at + (?::double precision * interval '1 millisecond') end
       from stamped s
       returning status, created_at, next_retry_at
     ), moved as (
       update delivery d
       set attempts = d.attempts + 1,
           status = s.status,
           next_attempt_at = a.next_retry_at,
           lease_expires_at = null,
           updated_at = now()
       from stamped s, attempt a
       where d.id = s.id
     ), last_delivery as (
       update webhook w
       set last_delivery_status = a.status, last_delivery_at = a.created_at
       from attempt a
       where w.id = ? and (w.last_delivery_at is null or w.last_delivery_at <= a.created_at)
     ), notified as (
       select pg_notify(?::text, ?::text) from stamped where ?::text is not null
     )
     select s.status, a.next_retry_at, (select count(*) from notified) as notified from stamped s, attempt a`,
    [
      delivery.webhookId,
      outcome,
      delivery.id,
      input.attemptId,
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
      input.retryInMs ?? 0,
      delivery.webhookId,
      input.notice?.channel ?? null,
      input.notice?.payload ?? null,
      input.notice?.channel ?? null,
    ],
    'all',
  );
  const row = rows[0];
  if (!row) return null;
  const nextRetryAt = row.next_retry_at;
  return { attemptId: input.attemptId, deliveryStatus: row.status, nextAttemptAt: nextRetryAt === null ? null : new Date(nextRetryAt) };
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
