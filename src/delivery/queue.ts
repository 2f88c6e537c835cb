// The delivery queue lives in the `delivery` table. These are its SQL operations; every one is a
// single statement or a single transaction, so a crash between any two leaves a consistent queue.
import type { EntityManager } from '@mikro-orm/postgresql';
import { runAfterLock, runStatement } from '../db/statements.js';
import { isId } from '../ids.js';
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
  send_now: boolean;
}

// The claim rule: which due rows a claim takes, how many, and which it leases as spares.
// 1. Rows: a webhook's due pending rows that no live lease holds, oldest first.
// 2. Per webhook: at most `cap` (WORKER_MAX_IN_FLIGHT_PER_WEBHOOK) requests open at once, counted
//    across every worker, so one slow endpoint cannot take every slot.
// 3. Per tenant: in one worker, at most a share of its slots (WORKER_CONCURRENCY): the slots
//    divided among the tenants with work (rows due, or requests open on this worker) plus one.
//    The "plus one" is the share of a tenant whose work arrives next: it is free when that work
//    comes, so the work starts at once however long the other tenants' requests hang, instead of
//    waiting for one of them to end (a request may hold its slot for WEBHOOK_TIMEOUT).
// 4. Order: the free slots go round-robin over tenants (every tenant's first row, then every
//    tenant's second, ...; the tenant waiting longest first within a round), and within a tenant
//    round-robin over its webhooks (oldest-waiting first), so neither a tenant's backlog nor an
//    endpoint's comes before another's work.
// 5. Spares: beside the rows sent now, at most one spare row per request the claiming worker will
//    have open to a webhook, and only on webhooks no other worker holds rows of. A spare is sent
//    the moment one of the worker's own requests to that webhook ends, in its place (a webhook
//    that answers in a millisecond would otherwise spend most of its time waiting for the next
//    claim), so spares add no request beyond what rules 2 and 3 allowed.
// Why it holds across workers: every row a worker could open (a request or a spare) is leased, and
// so counted by every other worker's claim. Claims run one at a time: each one takes a
// transaction-scoped advisory lock before the statement that reads the leases, so it sees every
// lease the claim before it took (two claims side by side would each see the other's rows as
// free, skip them (SKIP LOCKED) and take their own share: the cap would hold per worker). SKIP
// LOCKED still passes over rows a cancel or a record is writing; the lease (longer than the HTTP
// timeout) keeps a row from being sent twice while its worker lives, and hands it to another
// worker when that worker dies.
// Cost: the heads are found without reading the queue behind them, so a claim costs the same with
// ten rows waiting or a million: a loose index scan of delivery_pending_webhook_idx visits each
// webhook with pending rows once (one index probe per webhook), one more probe finds its oldest
// free due row (and its tenant), and the leases come from delivery_leased_idx, which only holds
// the rows in flight.
const CLAIM_LOCK = 724_311_902;

// A webhook's due rows that no live lease holds, oldest first: the head's age and the rows taken.
const FREE_DUE_ROWS_OF_HEAD = `from delivery x
    where x.webhook_id = h.webhook_id
      and x.status = 'pending'
      and x.next_attempt_at <= now()
      and (x.lease_expires_at is null or x.lease_expires_at <= now())
    order by x.webhook_id, x.next_attempt_at`;

// $1 the per-webhook cap, $2 the most rows to send now (the worker's free slots), $3 the lease in
// ms of a row sent now, $4 the lease in ms of a spare row (it may wait one request before it is
// sent), $5 every row this worker holds leased (its requests, the ones being recorded, its
// spares), and for each webhook it holds rows of: $6 its id, $7 the requests open, $8 the spares;
// $9 the worker's slots, free or not.
export const CLAIM_SQL = `
with recursive durability as (
  -- A lease lost in a crash of Postgres only makes its row claimable again, as an expired lease
  -- would (at least once), so this commit does not wait for its WAL flush: the next synchronous
  -- commit (the attempt's record) flushes it anyway.
  select set_config('synchronous_commit', 'off', true) as synchronous_commit
), hooks as (
  (select webhook_id from delivery where status = 'pending' order by webhook_id, next_attempt_at limit 1)
  union all
  select (select d.webhook_id from delivery d
          where d.status = 'pending' and d.webhook_id > h.webhook_id
          order by d.webhook_id, d.next_attempt_at
          limit 1)
  from hooks h
  where h.webhook_id is not null
), own as materialized (
  -- Materialized, as are others and the tenants' figures: each is worked out once per claim and
  -- then looked up per head. Inlined (what Postgres does with a CTE referenced once), the join
  -- below would run the lease count again for every head, since these statements' connections
  -- plan no hash joins.
  select * from unnest($6::text[], $7::text[]::int[], $8::text[]::int[]) as o(webhook_id, open, spares)
), own_by_tenant as materialized (
  -- This worker's open requests per tenant.
  select w.tenant_id, sum(o.open)::int as open
  from own o join webhook w on w.id = o.webhook_id
  group by w.tenant_id
), others as materialized (
  -- Every other worker's rows: its requests, its records being written, its spares.
  select webhook_id, count(*) as leased
  from delivery
  where lease_expires_at is not null and lease_expires_at > now()
    and id <> all($5::text[])
  group by webhook_id
), counted as materialized (
  select h.webhook_id, f.tenant_id, f.oldest,
         coalesce(l.leased, 0) as others, coalesce(o.open, 0) as open, coalesce(o.spares, 0) as spares
  from hooks h
  cross join lateral (
    select x.next_attempt_at as oldest, x.tenant_id
    ${FREE_DUE_ROWS_OF_HEAD}
    limit 1
  ) f
  left join others l on l.webhook_id = h.webhook_id
  left join own o on o.webhook_id = h.webhook_id
), fair as materialized (
  -- Rule 3: each tenant's share of this worker's slots.
  select greatest(1, $9::int / (count(*) + 1)) as share
  from (select tenant_id from counted union select tenant_id from own_by_tenant where open > 0) t
), tenant_room as materialized (
  -- What each tenant with due rows may still open on this worker.
  select t.tenant_id, f.share - coalesce(b.open, 0) as room
  from (select distinct tenant_id from counted) t
  cross join fair f
  left join own_by_tenant b on b.tenant_id = t.tenant_id
), heads as (
  select c.*, s.can_send,
         -- At most one spare per request of this worker after the claim.
         case when c.others = 0 then greatest(0, c.open + s.can_send - c.spares) else 0 end as may_spare
  from counted c
  join tenant_room t on t.tenant_id = c.tenant_id
  cross join lateral (select greatest(0, least($1::int - c.others - c.open, t.room)) as can_send) s
), picked as (
  select h.webhook_id, h.tenant_id, h.oldest, h.can_send, d.id, d.next_attempt_at
  from heads h
  cross join lateral (
    select x.id, x.next_attempt_at
    ${FREE_DUE_ROWS_OF_HEAD}
    limit h.can_send + h.may_spare
    for update skip locked
  ) d
  where h.can_send + h.may_spare > 0
), ranked as (
  select p.*, row_number() over (partition by p.webhook_id order by p.next_attempt_at, p.id) as rn
  from picked p
), turns as (
  -- Rule 4: a row's turn within its tenant, webhooks taking turns.
  select r.id, r.webhook_id, r.tenant_id, r.rn,
         row_number() over (partition by r.tenant_id order by r.rn, r.oldest, r.webhook_id) as turn,
         min(r.oldest) over (partition by r.tenant_id) as tenant_oldest
  from ranked r
  where r.rn <= r.can_send
), sends as (
  select s.id, s.webhook_id, s.rn
  from turns s
  join tenant_room t on t.tenant_id = s.tenant_id
  where s.turn <= t.room
  order by s.turn, s.tenant_oldest, s.tenant_id
  limit $2::int
), granted as (
  select webhook_id, count(*) as n from sends group by webhook_id
), spares as (
  -- Picked but not sent now, in order; kept while they do not outnumber this worker's requests.
  select r.id
  from (
    select r.id, r.webhook_id, row_number() over (partition by r.webhook_id order by r.rn) as k
    from ranked r
    where not exists (select 1 from sends s where s.id = r.id)
  ) r
  join heads h on h.webhook_id = r.webhook_id
  left join granted g on g.webhook_id = r.webhook_id
  where h.others = 0 and r.k <= h.open + coalesce(g.n, 0) - h.spares
), chosen as (
  select id, true as send_now from sends
  union all
  select id, false as send_now from spares
), claimed as (
  update delivery d
  set lease_expires_at = now() + ((case when c.send_now then $3::float8 else $4::float8 end) * interval '1 millisecond'),
      updated_at = now()
  from chosen c
  where d.id = c.id
  returning d.id, d.webhook_id, d.tenant_id, d.event_id, d.event_type, d.attempts, c.send_now
)
select c.*, w.url, w.secret_encrypted, w.enabled, e.data, e.published_at
from claimed c
cross join durability
join webhook w on w.id = c.webhook_id
join event e on e.id = c.event_id`;

/** What a worker holds of one webhook, as the claim counts it. */
export interface HeldShare {
  webhookId: string;
  /** Requests open (sent, not yet answered). */
  open: number;
  /** Spare rows waiting for one of those requests to end. */
  spares: number;
}

export interface Claimed {
  /** To send now. */
  send: ClaimedDelivery[];
  /** Spare rows: each to be sent in place of one of this worker's requests to its webhook. */
  spares: ClaimedDelivery[];
}

export async function claimDue(
  em: EntityManager,
  options: {
    limit: number;
    perWebhookCap: number;
    leaseMs: number;
    /** Lease of a spare row; it may wait up to one request before it is sent. */
    spareLeaseMs?: number;
    /** Every row this worker holds leased: requests open, records being written, spares. */
    heldIds?: readonly string[];
    /** This worker's requests and spares per webhook (webhooks it holds nothing of may be left out). */
    shares?: readonly HeldShare[];
    /** The worker's slots, free or not (its concurrency); by default `limit`, a worker holding nothing. */
    slots?: number;
  },
): Promise<Claimed> {
  const { perWebhookCap, limit, leaseMs } = options;
  const heldIds = options.heldIds ?? [];
  const shares = options.shares ?? [];
  const slots = options.slots ?? limit;
  if (!Number.isSafeInteger(slots) || slots < 1) throw new Error('a worker has one slot or more');
  for (const id of heldIds) if (!isId('del', id)) throw new Error(`not a delivery id: ${JSON.stringify(id)}`);
  for (const share of shares) {
    if (!isId('wh', share.webhookId)) throw new Error(`not a webhook id: ${JSON.stringify(share.webhookId)}`);
    if (!Number.isSafeInteger(share.open) || !Number.isSafeInteger(share.spares) || share.open < 0 || share.spares < 0) {
      throw new Error('open requests and spares are whole numbers');
    }
  }
  const rows = await runAfterLock<ClaimRow>(em, CLAIM_LOCK, CLAIM_SQL, [
    perWebhookCap,
    limit,
    leaseMs,
    options.spareLeaseMs ?? leaseMs,
    heldIds,
    shares.map((s) => s.webhookId),
    shares.map((s) => String(s.open)),
    shares.map((s) => String(s.spares)),
    slots,
  ]);
  const claimed: Claimed = { send: [], spares: [] };
  for (const r of rows) {
    const delivery: ClaimedDelivery = {
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
    };
    (r.send_now ? claimed.send : claimed.spares).push(delivery);
  }
  return claimed;
}

export interface RecordedAttempt {
  attemptId: string;
  deliveryStatus: 'pending' | 'success' | 'failed' | 'cancelled';
  nextAttemptAt: Date | null;
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
//   last_delivery_*, not the last commit.
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
  select w.id from webhook w where w.id = any(array(select webhook_id from input)) order by w.id for no key update
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
  select distinct on (webhook_id) webhook_id, status, created_at from attempt order by webhook_id, created_at desc
), last_delivery as (
  update webhook w
  set last_delivery_status = n.status, last_delivery_at = n.created_at
  from newest n
  where w.id = n.webhook_id and w.id = any(array(select webhook_id from newest))
    and (w.last_delivery_at is null or w.last_delivery_at <= n.created_at)
), notified as (
  select pg_notify(i.channel, i.payload) from attempt a join input i on i.attempt_id = a.id where i.channel is not null
)
select a.id as attempt_id, s.status, a.next_retry_at, (select count(*) from notified) as notified
from attempt a join stamped s on s.id = a.delivery_id`;

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
  const recorded = await runStatement<{ attempt_id: string; status: RecordedAttempt['deliveryStatus']; next_retry_at: Date | string | null }>(
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
