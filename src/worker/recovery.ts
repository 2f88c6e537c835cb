// Bulk recover, as rows of the `recovery` table that workers move on in bounded batches. Each
// batch is one short transaction, so a recover over a million deliveries holds no long lock, and
// a process that dies mid-batch leaves it undone (rolled back) for the next one:
// - The recovery's row is locked `for update skip locked` for the batch: two processes never run
//   one recovery's batch at once, and one that finds it taken moves on to another.
// - The webhook's row is locked (for share) before the recovery's, the order a delete of the
//   webhook takes them (its row, then its recoveries by cascade), and before its deliveries, the
//   order recording and disabling take: a disable waits for the batch and then cancels what it
//   queued, or commits first and the batch sees the webhook disabled and ends the recovery.
// - A batch starts after `cursor_*`, where the previous one ended, and moves it in the same
//   transaction as what it queued: each delivery is visited once per recovery.
// - A failed delivery is queued again by moving its own row to pending, due now, with its retry
//   schedule starting again from its first step (as a resend does); a missed one is inserted
//   `on conflict do nothing` against the unique (event_id, webhook_id): neither can make a copy.
import type { EntityManager } from '@mikro-orm/postgresql';
import { newId } from '../ids.js';
import { NEW_DELIVERY_ID } from '../modules/events/event.service.js';
import { lockWebhookForShare } from './queue.js';

export interface Recovery {
  id: string;
  tenantId: string;
  webhookId: string;
  status: 'running' | 'completed';
  since: Date;
  until: Date;
  includeMissed: boolean;
  total: number;
  queued: number;
  createdAt: Date;
  completedAt: Date | null;
}

interface RecoveryRow {
  id: string;
  tenant_id: string;
  webhook_id: string;
  status: 'running' | 'completed';
  since: Date | string;
  until: Date | string;
  include_missed: boolean;
  total: number | string;
  queued: number | string;
  created_at: Date | string;
  completed_at: Date | string | null;
}

const date = (v: Date | string) => new Date(v);

function toRecovery(row: RecoveryRow): Recovery {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    webhookId: row.webhook_id,
    status: row.status,
    since: date(row.since),
    until: date(row.until),
    includeMissed: row.include_missed,
    total: Number(row.total),
    queued: Number(row.queued),
    createdAt: date(row.created_at),
    completedAt: row.completed_at === null ? null : date(row.completed_at),
  };
}

const RECOVERY_COLUMNS = 'id, tenant_id, webhook_id, status, since, until, include_missed, total, queued, created_at, completed_at';

// The failed deliveries of the webhook whose event was published in [since, until).
const COUNT_FAILED = `
  select count(*) as n from delivery d join event e on e.id = d.event_id
  where d.webhook_id = ? and d.status = 'failed' and e.published_at >= ? and e.published_at < ?`;

// The tenant's events in [since, until), published after the webhook was created, of a type it
// subscribes to now, that it never got. Pings are each for one webhook: never another's; and the
// gateway's notices that a webhook is failing or was disabled go to the tenant's other webhooks
// only, so never to the webhook they are about.
const COUNT_MISSED = `
  select count(*) as n from event e, webhook w
  where w.id = ? and e.tenant_id = w.tenant_id and e.published_at >= ? and e.published_at < ? and e.published_at > w.created_at
    and e.type = any(w.events) and e.type <> 'ping'
    and not (e.type in ('webhook.failing', 'webhook.disabled') and e.data->>'webhook_id' = w.id)
    and not exists (select 1 from delivery d where d.event_id = e.id and d.webhook_id = w.id)`;

export type CreateRecoveryOutcome = { kind: 'created'; recovery: Recovery } | { kind: 'not-found' | 'disabled' };

/**
 * Writes a recovery of a webhook over [since, until), with `total` counted as it starts; it is
 * completed at once when there is nothing to queue. The webhook's row is locked for share, so a
 * disable cannot slip between the check and the insert.
 */
export async function createRecovery(
  em: EntityManager,
  input: { tenantId: string; webhookId: string; since: Date; until: Date; includeMissed: boolean },
): Promise<CreateRecoveryOutcome> {
  return em.transactional(async (tx) => {
    const connection = tx.getConnection();
    const webhook = await lockWebhookForShare(tx, input.webhookId, input.tenantId);
    if (!webhook) return { kind: 'not-found' };
    if (!webhook.enabled) return { kind: 'disabled' };
    const [failed] = await connection.execute<{ n: number | string }[]>(
      COUNT_FAILED,
      [input.webhookId, input.since, input.until],
      'all',
      tx.getTransactionContext(),
    );
    let total = Number(failed?.n ?? 0);
    if (input.includeMissed) {
      const [missed] = await connection.execute<{ n: number | string }[]>(
        COUNT_MISSED,
        [input.webhookId, input.since, input.until],
        'all',
        tx.getTransactionContext(),
      );
      total += Number(missed?.n ?? 0);
    }
    const done = total === 0;
    const [row] = await connection.execute<RecoveryRow[]>(
      `insert into recovery (id, tenant_id, webhook_id, since, until, include_missed, status, phase, cursor_id, total, completed_at)
       values (?, ?, ?, ?, ?, ?, ?, ?, '', ?, ${done ? 'now()' : 'null'})
       returning ${RECOVERY_COLUMNS}`,
      [
        newId('rcv'),
        input.tenantId,
        input.webhookId,
        input.since,
        input.until,
        input.includeMissed,
        done ? 'completed' : 'running',
        done ? 'done' : 'failed',
        total,
      ],
      'all',
      tx.getTransactionContext(),
    );
    return { kind: 'created', recovery: toRecovery(row!) };
  });
}

export async function findRecovery(em: EntityManager, target: { tenantId: string; webhookId: string; id: string }): Promise<Recovery | null> {
  const [row] = await em
    .getConnection()
    .execute<RecoveryRow[]>(
      `select ${RECOVERY_COLUMNS} from recovery where id = ? and webhook_id = ? and tenant_id = ?`,
      [target.id, target.webhookId, target.tenantId],
      'all',
    );
  return row ? toRecovery(row) : null;
}

// One batch of the failed phase: the next `limit` failed deliveries of the webhook after the
// cursor, in id order (read through the partial index of failed rows, so the batch is bounded
// however many of them lie outside the window), of which those in the window move to pending.
// Each is locked and checked again before it moves: one resent meanwhile is left as it is.
const FAILED_BATCH = `
with scanned as (
  select d.id, d.event_id from delivery d
  where d.webhook_id = ? and d.status = 'failed' and d.id > ?
  order by d.id limit ?
), picked as (
  select d.id from delivery d
  join scanned s on s.id = d.id
  join event e on e.id = s.event_id
  where d.status = 'failed' and e.published_at >= ? and e.published_at < ?
  order by d.id
  for update of d
), moved as (
  update delivery d
  set status = 'pending', next_attempt_at = now(), lease_expires_at = null, schedule_start = d.attempts, updated_at = now()
  from picked p where d.id = p.id
  returning d.id
)
select (select count(*) from scanned) as scanned, (select max(id) from scanned) as last_id, (select count(*) from moved) as queued`;

// One batch of the missed phase: the tenant's next `limit` events of the window after the cursor,
// in publish order; a delivery is inserted for each of a type the webhook subscribes to now, the
// unique (event_id, webhook_id) skipping those it already has.
const MISSED_BATCH = `
with w as (
  select id, tenant_id, created_at, events from webhook where id = ?
), scanned as (
  select e.id, e.type, e.published_at, e.data->>'webhook_id' as about from event e, w
  where e.tenant_id = w.tenant_id and e.published_at >= ? and e.published_at < ? and e.published_at > w.created_at
    and (e.published_at, e.id) > (?::timestamptz, ?::text)
  order by e.published_at, e.id limit ?
), inserted as (
  insert into delivery (id, event_id, webhook_id, tenant_id, event_type, status, attempts, next_attempt_at)
  select ${NEW_DELIVERY_ID}, r.id, w.id, w.tenant_id, r.type, 'pending', 0, now()
  from (select s.*, uuid_send(gen_random_uuid()) as a, uuid_send(gen_random_uuid()) as b from scanned s) r, w
  where r.type = any(w.events) and r.type <> 'ping'
    and not (r.type in ('webhook.failing', 'webhook.disabled') and r.about is not distinct from w.id)
  order by r.published_at, r.id
  on conflict (event_id, webhook_id) do nothing
  returning id
), last as (
  select published_at, id from scanned order by published_at desc, id desc limit 1
)
select (select count(*) from scanned) as scanned, (select id from last) as last_id, (select published_at::text from last) as last_at,
       (select count(*) from inserted) as queued`;

interface BatchRow {
  scanned: number | string;
  last_id: string | null;
  /** As text: a Date would drop the microseconds, and the next batch would read the last event again. */
  last_at?: string | null;
  queued: number | string;
}

export interface RecoveryBatch {
  recoveryId: string;
  /** Deliveries this batch queued. */
  queued: number;
  completed: boolean;
}

/**
 * Runs one batch of `limit` rows of a running recovery that no other process is running, and
 * answers what it did; null when there is none to run.
 */
export async function runRecoveryBatch(em: EntityManager, limit: number): Promise<RecoveryBatch | null> {
  // Read without locks: the locks are taken below in the webhook-then-recovery order.
  const candidates = await em
    .getConnection()
    .execute<{ id: string; webhook_id: string }[]>(
      `select id, webhook_id from recovery where status = 'running' order by created_at, id limit 16`,
      [],
      'all',
    );
  for (const candidate of candidates) {
    const batch = await em.transactional(async (tx) => {
      const connection = tx.getConnection();
      const webhook = await lockWebhookForShare(tx, candidate.webhook_id);
      if (!webhook) return null;
      const [recovery] = await connection.execute<
        { since: Date | string; until: Date | string; include_missed: boolean; phase: 'failed' | 'missed' | 'done'; cursor_id: string | null; cursor_at: string | null }[]
      >(
        `select since, until, include_missed, phase, cursor_id, cursor_at::text as cursor_at from recovery
         where id = ? and status = 'running' for update skip locked`,
        [candidate.id],
        'all',
        tx.getTransactionContext(),
      );
      if (!recovery) return null;
      const complete = async (queued: number, totalIsQueued: boolean): Promise<RecoveryBatch> => {
        await connection.execute(
          `update recovery set status = 'completed', phase = 'done', queued = queued + ?,
             total = ${totalIsQueued ? 'queued + ?' : 'greatest(total, queued + ?)'}, completed_at = now(), updated_at = now()
           where id = ?`,
          [queued, queued, candidate.id],
          'run',
          tx.getTransactionContext(),
        );
        return { recoveryId: candidate.id, queued, completed: true };
      };
      // Disabled meanwhile: what was queued is cancelled by the disable, and nothing more is queued.
      if (!webhook.enabled) return complete(0, false);
      const since = date(recovery.since);
      const until = date(recovery.until);
      if (recovery.phase === 'failed') {
        const [row] = await connection.execute<BatchRow[]>(
          FAILED_BATCH,
          [candidate.webhook_id, recovery.cursor_id ?? '', limit, since, until],
          'all',
          tx.getTransactionContext(),
        );
        const scanned = Number(row!.scanned);
        const queued = Number(row!.queued);
        if (scanned < limit && !recovery.include_missed) return complete(queued, true);
        const next = scanned < limit ? { phase: 'missed', id: '', at: since } : { phase: 'failed', id: row!.last_id, at: null };
        await connection.execute(
          `update recovery set phase = ?, cursor_id = ?, cursor_at = ?, queued = queued + ?, total = greatest(total, queued + ?), updated_at = now()
           where id = ?`,
          [next.phase, next.id, next.at, queued, queued, candidate.id],
          'run',
          tx.getTransactionContext(),
        );
        return { recoveryId: candidate.id, queued, completed: false };
      }
      const [row] = await connection.execute<BatchRow[]>(
        MISSED_BATCH,
        [candidate.webhook_id, since, until, recovery.cursor_at ?? since, recovery.cursor_id ?? '', limit],
        'all',
        tx.getTransactionContext(),
      );
      const scanned = Number(row!.scanned);
      const queued = Number(row!.queued);
      if (scanned < limit) return complete(queued, true);
      await connection.execute(
        `update recovery set cursor_id = ?, cursor_at = ?::timestamptz, queued = queued + ?, total = greatest(total, queued + ?), updated_at = now()
         where id = ?`,
        [row!.last_id, row!.last_at, queued, queued, candidate.id],
        'run',
        tx.getTransactionContext(),
      );
      return { recoveryId: candidate.id, queued, completed: false };
    });
    if (batch) return batch;
  }
  return null;
}
