// Claiming due deliveries. The rule is stated once, here; one SQL statement (CLAIM_SQL) applies
// it to the queue, and the worker's record of what it holds (createHoldings) applies it to the
// spares the worker keeps. The scheduler asks both and decides nothing of it itself.
//
// The claim rule: which due rows a claim takes, how many, and which it leases as spares.
// 1. Rows: a webhook's due pending rows that no live lease holds, oldest first.
// 2. Per webhook: at most `cap` (WORKER_MAX_IN_FLIGHT_PER_WEBHOOK) requests open at once, counted
//    across every worker, so one slow endpoint cannot take every slot.
// 3. Per tenant: in one worker, at most its share of the slots (WORKER_CONCURRENCY): the slots
//    divided among the tenants with work (rows due, or requests open on this worker). And the
//    last sixteenth of the free slots (at least one) is kept for tenants with no request open on
//    this worker, one slot each: whatever the others hold, another tenant's work that comes due
//    starts at once instead of waiting for a request to end (one may hold its slot for
//    WEBHOOK_TIMEOUT). A tenant over its share (because others came) gets nothing more until its
//    requests end and bring it under.
// 4. Order: the free slots go round-robin over tenants (every tenant's first row, then every
//    tenant's second, ...; the tenant waiting longest first within a round), and within a tenant
//    round-robin over its webhooks (oldest-waiting first), so neither a tenant's backlog nor an
//    endpoint's comes before another's work.
// 5. Spares: a webhook that answers in a millisecond would spend most of its time waiting for the
//    next claim, so beside the rows sent now a claim leases the worker at most one spare row per
//    request it will have open to a webhook, only on webhooks no other worker holds rows of (a
//    spare behind another worker's request would wait for nothing), for one request longer than
//    a row sent now. The worker sends a spare only when one of its own requests to that webhook
//    ends, in that request's place and into a free worker slot, so its requests open to a
//    webhook never exceed what its last claim allowed (rules 2 and 3). A spare is handed back
//    (its lease cleared, so any worker may claim it at once) rather than sent once less than a
//    request and half the lease's margin is left, and when its webhook changes (disabled,
//    deleted, moved) or the worker stops.
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
import type { EntityManager } from '@mikro-orm/postgresql';
import { runAfterLock } from '../db/statements.js';
import { isId } from '../ids.js';
import { previousSecretsOf, toPreviousSecrets, type PreviousSecrets } from '../modules/webhooks/previous-secrets.js';

export interface ClaimedDelivery extends PreviousSecrets {
  id: string;
  webhookId: string;
  tenantId: string;
  eventId: string;
  eventType: string;
  /** Attempts made before this one. */
  attempts: number;
  /** The attempt count when the retry schedule last started (0, or the count at the last resend). */
  scheduleStart: number;
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
  schedule_start: number;
  url: string;
  secret_encrypted: string;
  enabled: boolean;
  data: Record<string, unknown>;
  published_at: Date | string;
  send_now: boolean;
  previous_secrets_encrypted: string[];
  secrets_expired: boolean;
}

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
  -- Rule 3: each tenant's share of this worker's slots, and the slots kept for tenants with none.
  select $9::int / greatest(1, count(*)) as share, greatest(1, ($9::int + 15) / 16) as reserved
  from (select tenant_id from counted union select tenant_id from own_by_tenant where open > 0) t
), tenant_room as materialized (
  -- What each tenant with due rows may still open on this worker, and what it has open.
  select t.tenant_id, f.share - coalesce(b.open, 0) as room, coalesce(b.open, 0) as open
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
), ordered as (
  select s.id, s.webhook_id, s.rn, s.turn, t.open as tenant_open,
         row_number() over (order by s.turn, s.tenant_oldest, s.tenant_id) as pos
  from turns s
  join tenant_room t on t.tenant_id = s.tenant_id
  where s.turn <= t.room
), sends as (
  -- The free slots but the reserved ones in turn; those to a tenant's first row if it has none open.
  select o.id, o.webhook_id, o.rn
  from ordered o
  cross join fair f
  where o.pos <= $2::int - f.reserved or (o.tenant_open = 0 and o.turn = 1)
  order by o.pos
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
  returning d.id, d.webhook_id, d.tenant_id, d.event_id, d.event_type, d.attempts, d.schedule_start, c.send_now
)
select c.*, w.url, w.secret_encrypted, w.enabled, e.data, e.published_at, s.previous_secrets_encrypted, s.secrets_expired
from claimed c
cross join durability
join webhook w on w.id = c.webhook_id
join event e on e.id = c.event_id
-- Every secret an attempt is signed with comes with its row: no query of its own per delivery.
cross join lateral (${previousSecretsOf('w.id')}) s`;

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
      scheduleStart: Number(r.schedule_start),
      url: r.url,
      secretEncrypted: r.secret_encrypted,
      enabled: r.enabled,
      data: r.data,
      publishedAt: new Date(r.published_at),
      ...toPreviousSecrets(r),
    };
    (r.send_now ? claimed.send : claimed.spares).push(delivery);
  }
  return claimed;
}


/** What one worker holds, for the claim rule: the requests open and the spares per webhook. */
export interface Holdings {
  /** The lease of a spare row: one request longer than that of a row sent now. */
  readonly spareLeaseMs: number;
  /** What the next claim is told; `inFlight`: every row being sent or recorded. */
  forClaim(inFlight: Iterable<string>): { heldIds: string[]; shares: HeldShare[] };
  /**
   * Takes in a claim's answer: its rows to send now count as open requests from here on.
   * `sharesAtClaim`: what forClaim told that claim; `claimedAt`: when it was sent.
   * Answers the webhooks whose spares may now be sent.
   */
  took(claimed: Claimed, sharesAtClaim: readonly HeldShare[], claimedAt: number): string[];
  /** A request to the webhook ended (answered, failed or timed out): its slot may take a spare. */
  ended(webhookId: string): void;
  /**
   * The webhook's spares to send now, into the slots its ended requests left and at most
   * `freeSlots` of the worker's; they count as open requests from here on. `late`: spares to hand
   * back instead.
   */
  sparesToSend(webhookId: string, freeSlots: number, now: number): { send: ClaimedDelivery[]; late: ClaimedDelivery[] };
  /** Webhooks whose spares wait for a free worker slot. */
  waiting(): string[];
  /** Takes out every spare of the webhook (of every webhook: null), to be handed back. */
  drop(webhookId: string | null): ClaimedDelivery[];
}

export function createHoldings(options: {
  /** The lease of a row sent now: WEBHOOK_TIMEOUT plus a margin for its record. */
  leaseMs: number;
  /** WEBHOOK_TIMEOUT: how long a spare may wait for the request it follows. */
  requestTimeoutMs: number;
}): Holdings {
  interface Share {
    /** Requests open (sent, not yet over). */
    open: number;
    /** The most requests the worker may have open to the webhook: what its last claim allowed. */
    slots: number;
    /** Spare rows, oldest first, each with the time by which it must be sent. */
    spares: { delivery: ClaimedDelivery; sendBy: number }[];
  }
  const shares = new Map<string, Share>();
  const waitingForSlot = new Set<string>();
  // Sent by then, a spare's lease (one request longer than a row sent now) still covers a whole
  // request and half the margin for its record.
  const sendWithin = options.requestTimeoutMs + (options.leaseMs - options.requestTimeoutMs) / 2;

  const shareOf = (webhookId: string): Share => {
    let share = shares.get(webhookId);
    if (!share) shares.set(webhookId, (share = { open: 0, slots: 0, spares: [] }));
    return share;
  };

  /** Forgets a webhook's share once nothing of it is held. */
  const settle = (webhookId: string, share: Share) => {
    if (share.spares.length === 0) {
      // Slots without a spare to fill them go back: the next claim counts them again.
      share.slots = share.open;
      waitingForSlot.delete(webhookId);
      if (share.open === 0) shares.delete(webhookId);
    }
  };

  return {
    spareLeaseMs: options.leaseMs + options.requestTimeoutMs,
    forClaim(inFlight) {
      const heldIds = [...inFlight];
      const list: HeldShare[] = [];
      for (const [webhookId, share] of shares) {
        for (const spare of share.spares) heldIds.push(spare.delivery.id);
        if (share.open > 0 || share.spares.length > 0) list.push({ webhookId, open: share.open, spares: share.spares.length });
      }
      return { heldIds, shares: list };
    },
    took(claimed, sharesAtClaim, claimedAt) {
      // What the claim allowed on each webhook it gave rows of: the requests open when it was sent,
      // and the rows it sends now. Requests that ended meanwhile leave their slots to spares.
      const openAtClaim = new Map(sharesAtClaim.map((h) => [h.webhookId, h.open]));
      const allowed = new Map<string, number>();
      for (const delivery of [...claimed.send, ...claimed.spares]) {
        allowed.set(delivery.webhookId, openAtClaim.get(delivery.webhookId) ?? 0);
      }
      for (const delivery of claimed.send) {
        allowed.set(delivery.webhookId, allowed.get(delivery.webhookId)! + 1);
        shareOf(delivery.webhookId).open += 1;
      }
      const sendBy = claimedAt + sendWithin;
      for (const delivery of claimed.spares) shareOf(delivery.webhookId).spares.push({ delivery, sendBy });
      for (const [webhookId, slots] of allowed) shareOf(webhookId).slots = slots;
      return [...allowed.keys()];
    },
    ended(webhookId) {
      const share = shares.get(webhookId);
      if (!share) return;
      share.open -= 1;
      settle(webhookId, share);
    },
    sparesToSend(webhookId, freeSlots, now) {
      const send: ClaimedDelivery[] = [];
      const late: ClaimedDelivery[] = [];
      const share = shares.get(webhookId);
      if (!share) return { send, late };
      while (share.spares.length > 0 && share.open < share.slots) {
        if (send.length >= freeSlots) {
          waitingForSlot.add(webhookId);
          break;
        }
        const next = share.spares.shift()!;
        if (now > next.sendBy) {
          late.push(next.delivery);
        } else {
          send.push(next.delivery);
          share.open += 1;
        }
      }
      if (share.spares.length === 0 || share.open >= share.slots) waitingForSlot.delete(webhookId);
      settle(webhookId, share);
      return { send, late };
    },
    waiting: () => [...waitingForSlot],
    drop(webhookId) {
      const dropped: ClaimedDelivery[] = [];
      for (const id of webhookId === null ? [...shares.keys()] : [webhookId]) {
        const share = shares.get(id);
        if (!share) continue;
        dropped.push(...share.spares.splice(0).map((s) => s.delivery));
        settle(id, share);
      }
      return dropped;
    },
  };
}
