// The delivery queue lives in the `delivery` table. These are its SQL operations; every one is a
// single statement or a single transaction, so a crash between any two leaves a consistent queue.
import type { EntityManager } from '@mikro-orm/postgresql';
import { runStatement } from '../db/statements.js';
import type { ClaimedDelivery } from './claim.js';
import type { SendResult } from './sender.js';
import { publishHealthEvent, type HealthChange } from './webhook-health.js';

export interface RecordedAttempt {
  attemptId: string;
  deliveryStatus: 'pending' | 'success' | 'failed' | 'cancelled';
  nextAttemptAt: Date | null;
  /** The attempt's time, as stored. */
  recordedAt: Date;
  /**
   * For a successful attempt, the webhook's failing_since as the record found it (under the
   * webhook's row lock): set when this success ends a run of failures. Null otherwise.
   */
  endsFailingSince: Date | null;
}

export interface AttemptRecord {
  attemptId: string;
  delivery: Pick<ClaimedDelivery, 'id' | 'webhookId' | 'tenantId' | 'eventType' | 'attempts'>;
  result: SendResult;
  /** When to try again, counted from the attempt's time; null when there is no next attempt. */
  retryInMs: number | null;
  /**
   * A NOTIFY sent by the same statement (so it is delivered at its commit, and costs no round
   * trip of its own); sent only when the attempt was recorded.
   */
  notice?: { channel: string; payload: string };
}

// Stores attempts and moves their deliveries on, in one statement, so a batch of attempts that
// finished together costs one round trip and one commit (one WAL flush), and no transaction is
// held open between round trips: every attempt of a webhook updates that webhook's row, so the
// time a record holds it bounds how fast one endpoint can be served.
// - Deleting or disabling a webhook locks its row and then its deliveries; taking a delivery
//   first and the webhook row later would deadlock with them, so the webhook rows come first,
//   then the deliveries, each in id order so that concurrent batches cannot deadlock each other.
// - Each delivery is locked before anything is written, so a cancel or a delete of it waits for
//   the record, or the record sees its outcome: a cancelled delivery stays cancelled and a
//   deleted one (or one whose webhook is gone) records nothing.
// - An attempt's time is read once the locks are held (clock_timestamp, not the statement's
//   start), so overlapping records still list newest first by both seq and created_at; the next
//   retry is counted from that same instant.
// - Records of one webhook can commit out of order; the newest attempt decides the webhook's
//   last_delivery_*, not the last commit, and the newest success its last_success_at (which the
//   auto-disable rule reads).
// - A success reports the webhook's failing_since, read with the row lock it already holds, so
//   the caller learns for free whether it ends a run of failures (webhook-health.ts): the common
//   case, a success of a healthy webhook, costs nothing more.
// The planner cannot see how many rows json_to_recordset yields (it assumes 100), so every lookup of a delivery or a webhook is written as \`id = any(array(...))\`: an
// index probe per input row, never a join that reads a whole table.
export const RECORD_SQL = `
with input as (
  select * from json_to_recordset($1::json) as i(
    attempt_id text, delivery_id text, webhook_id text, tenant_id text, event_type text, attempt int,
    outcome text, status text, response_code int, duration_ms int, request_headers jsonb, request_body text,
    response_headers jsonb, response_body text, response_body_truncated boolean, error text, error_class text,
    retry_in_ms double precision, channel text, payload text)
), locked_webhook as (
  select w.id, w.failing_since from webhook w where w.id = any(array(select webhook_id from input)) order by w.id for no key update
), locked as (
  select d.id, case when d.status = 'pending' then i.outcome else d.status end as status
  from delivery d
  join input i on i.delivery_id = d.id
  where d.id = any(array(select delivery_id from input))
    -- Not an index condition (the || ''): the rows are found by id, never through the webhook's
    -- index, which holds every delivery the webhook ever had.
    and d.webhook_id || '' = any(array(select id from locked_webhook))
  order by d.id
  for update of d
), stamped as (
  select locked.id, locked.status, clock_timestamp() as at from locked
), attempt as (
  insert into delivery_attempt (
    id, delivery_id, webhook_id, tenant_id, event_type, attempt, status, response_code, duration_ms,
    request_headers, request_body, response_headers, response_body, response_body_truncated,
    error, error_class, created_at, next_retry_at
  )
  select i.attempt_id, s.id, i.webhook_id, i.tenant_id, i.event_type, i.attempt, i.status, i.response_code,
         i.duration_ms, i.request_headers, i.request_body, i.response_headers, i.response_body,
         i.response_body_truncated, i.error, i.error_class,
         s.at, case when s.status = 'pending' then s.at + (i.retry_in_ms * interval '1 millisecond') end
  from stamped s join input i on i.delivery_id = s.id
  order by s.at
  returning id, delivery_id, webhook_id, status, created_at, next_retry_at
), moved as (
  update delivery d
  set attempts = d.attempts + 1,
      status = s.status,
      next_attempt_at = a.next_retry_at,
      lease_expires_at = null,
      updated_at = now()
  from stamped s join attempt a on a.delivery_id = s.id
  where d.id = s.id and d.id = any(array(select id from stamped))
), newest as (
  select distinct on (webhook_id) webhook_id, status, created_at,
         max(created_at) filter (where status = 'success') over (partition by webhook_id) as succeeded_at
  from attempt order by webhook_id, created_at desc
), last_delivery as (
  update webhook w
  set last_delivery_status = case when w.last_delivery_at is null or w.last_delivery_at <= n.created_at then n.status else w.last_delivery_status end,
      last_delivery_at = greatest(w.last_delivery_at, n.created_at),
      last_success_at = greatest(w.last_success_at, n.succeeded_at)
  from newest n
  where w.id = n.webhook_id and w.id = any(array(select webhook_id from newest))
    and (w.last_delivery_at is null or w.last_delivery_at <= n.created_at or n.succeeded_at > coalesce(w.last_success_at, '-infinity'))
), notified as (
  select pg_notify(i.channel, i.payload) from attempt a join input i on i.attempt_id = a.id where i.channel is not null
)
select a.id as attempt_id, s.status, a.next_retry_at, a.created_at,
       case when a.status = 'success' then lw.failing_since end as failing_since,
       (select count(*) from notified) as notified
from attempt a join stamped s on s.id = a.delivery_id left join locked_webhook lw on lw.id = a.webhook_id`;

/**
 * Stores attempts (of distinct deliveries) and moves each delivery on, in one statement: success,
 * a retry at `retryInMs`, or failed when `retryInMs` is null. A delivery that was cancelled (or
 * whose webhook was deleted) meanwhile keeps its state; its attempt is still kept while the
 * delivery exists. Answers in input order; null where nothing was recorded.
 */
export async function recordAttempts(em: EntityManager, inputs: readonly AttemptRecord[]): Promise<(RecordedAttempt | null)[]> {
  if (inputs.length === 0) return [];
  const rows = inputs.map(({ attemptId, delivery, result, retryInMs, notice }) => ({
    attempt_id: attemptId,
    delivery_id: delivery.id,
    webhook_id: delivery.webhookId,
    tenant_id: delivery.tenantId,
    event_type: delivery.eventType,
    attempt: delivery.attempts + 1,
    outcome: result.ok ? 'success' : retryInMs === null ? 'failed' : 'pending',
    status: result.ok ? 'success' : 'failed',
    response_code: result.responseCode,
    duration_ms: result.durationMs,
    request_headers: result.requestHeaders,
    request_body: result.requestBody,
    response_headers: result.responseHeaders,
    response_body: result.responseBody,
    response_body_truncated: result.responseBodyTruncated,
    error: result.error,
    error_class: result.errorClass,
    retry_in_ms: retryInMs ?? 0,
    channel: notice?.channel ?? null,
    payload: notice?.payload ?? null,
  }));
  const recorded = await runStatement<{
    attempt_id: string;
    status: RecordedAttempt['deliveryStatus'];
    next_retry_at: Date | string | null;
    created_at: Date | string;
    failing_since: Date | string | null;
  }>(
    em,
    RECORD_SQL,
    [JSON.stringify(rows)],
  );
  const byAttempt = new Map(recorded.map((r) => [r.attempt_id, r]));
  return inputs.map(({ attemptId }) => {
    const row = byAttempt.get(attemptId);
    if (!row) return null;
    return {
      attemptId,
      deliveryStatus: row.status,
      nextAttemptAt: row.next_retry_at === null ? null : new Date(row.next_retry_at),
      recordedAt: new Date(row.created_at),
      endsFailingSince: row.failing_since === null ? null : new Date(row.failing_since),
    };
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

/**
 * Cancels every pending delivery of a webhook (but `except`, whose outcome is about to be
 * recorded): disabling it stops its retries.
 */
export async function cancelPendingForWebhook(em: EntityManager, webhookId: string, except = ''): Promise<string[]> {
  const rows = await em
    .getConnection()
    .execute<{ id: string }[]>(
      `update delivery set status = 'cancelled', lease_expires_at = null, next_attempt_at = null, updated_at = now()
       where webhook_id = ? and status = 'pending' and id <> ? returning id`,
      [webhookId, except],
      'all',
      em.getTransactionContext(),
    );
  return rows.map((r) => r.id);
}

export type ResendOutcome =
  /** Queued; `row` is the delivery row as the resend left it (every column). */
  | { kind: 'resent'; row: Record<string, unknown> }
  | { kind: 'not-found' | 'disabled' | 'sending' };

/**
 * Queues a delivery to be sent again now, whatever its status, with its retry schedule starting
 * again from the first step (schedule_start) while its attempt count goes on. One row is one
 * delivery, so a resend can only move the row's due time: it never queues a second copy, and
 * resends that arrive before a worker takes the row share one attempt.
 * - A row under a live lease is being sent (or is about to be, as a spare) by a worker that will
 *   record its outcome over whatever this wrote, so it is left alone: 'sending'. Its lease is
 *   never touched, or a second worker could claim the row and send it twice at once.
 * - The webhook row is locked first (for share), then the delivery, the order recording and
 *   disabling take: a disable waits for the resend and then cancels what it queued, or commits
 *   first and the resend sees the webhook disabled.
 */
/**
 * Locks a webhook's row for share inside `tx` (a disable, a delete or a rotation of it waits) and
 * answers whether it is enabled; undefined when there is no such webhook (of that tenant, if given).
 */
export async function lockWebhookForShare(tx: EntityManager, webhookId: string, tenantId?: string): Promise<{ enabled: boolean } | undefined> {
  const [webhook] = await tx
    .getConnection()
    .execute<{ enabled: boolean }[]>(
      `select enabled from webhook where id = ?${tenantId === undefined ? '' : ' and tenant_id = ?'} for share`,
      tenantId === undefined ? [webhookId] : [webhookId, tenantId],
      'all',
      tx.getTransactionContext(),
    );
  return webhook;
}

export async function resendDelivery(
  em: EntityManager,
  target: { tenantId: string; webhookId: string; deliveryId: string },
): Promise<ResendOutcome> {
  return em.transactional(async (tx) => {
    const connection = tx.getConnection();
    const webhook = await lockWebhookForShare(tx, target.webhookId, target.tenantId);
    if (!webhook) return { kind: 'not-found' };
    const [delivery] = await connection.execute<{ leased: boolean }[]>(
      `select coalesce(lease_expires_at > now(), false) as leased from delivery where id = ? and webhook_id = ? for update`,
      [target.deliveryId, target.webhookId],
      'all',
      tx.getTransactionContext(),
    );
    if (!delivery) return { kind: 'not-found' };
    if (!webhook.enabled) return { kind: 'disabled' };
    if (delivery.leased) return { kind: 'sending' };
    const [row] = await connection.execute<Record<string, unknown>[]>(
      `update delivery set status = 'pending', next_attempt_at = now(), schedule_start = attempts, updated_at = now()
       where id = ? returning *`,
      [target.deliveryId],
      'all',
      tx.getTransactionContext(),
    );
    return { kind: 'resent', row: row! };
  });
}

/**
 * Disables a webhook the gateway gave up on, and cancels its pending deliveries, in one
 * transaction that locks the webhook's row before its deliveries (as a disable by its owner does):
 * at once when its endpoint answered 410 Gone (`gone`); otherwise (`failing`) only when
 * `disableAfterMs` is set and the webhook has had no successful attempt since the later of its
 * newest success and its last enabling for that long. The delivery whose attempt led here keeps its
 * own outcome. Answers the cancelled deliveries' ids, or null when the webhook was left as it was
 * (already disabled, deleted, or not failing long enough).
 */
export async function disableWebhook(
  em: EntityManager,
  delivery: { id: string; webhookId: string },
  reason: 'failing' | 'gone',
  disableAfterMs: number,
): Promise<{ cancelled: string[]; health: HealthChange } | null> {
  const webhookId = delivery.webhookId;
  if (reason === 'failing' && disableAfterMs <= 0) return null;
  return em.transactional(async (tx) => {
    const [disabled] = await tx.getConnection().execute<{ tenant_id: string; failing_since: Date | string | null; disabled_at: Date | string }[]>(
      `update webhook set enabled = false, disabled_reason = ?, disabled_at = now(), updated_at = now()
       where id = ? and enabled
         and (? = 'gone' or greatest(last_success_at, enabled_at) <= now() - (? * interval '1 millisecond'))
       returning tenant_id, failing_since, disabled_at`,
      [reason, webhookId, reason, disableAfterMs],
      'all',
      tx.getTransactionContext(),
    );
    if (!disabled) return null;
    const cancelled = await cancelPendingForWebhook(tx, webhookId, delivery.id);
    // The webhook.disabled event commits with the disable, so it is sent exactly once per disable.
    const health = await publishHealthEvent(tx, {
      tenantId: disabled.tenant_id,
      webhookId,
      kind: 'disabled',
      data: { reason, failed_since: new Date(disabled.failing_since ?? disabled.disabled_at).toISOString() },
    });
    return { cancelled, health };
  });
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
