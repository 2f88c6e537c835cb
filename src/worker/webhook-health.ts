// A webhook's health, and the operational events that announce its changes (CONTRACT.md section
// 7): webhook.failing, webhook.disabled and webhook.recovered. Each fires once per transition, not
// once per failed delivery, because each is written by the transaction that makes the transition
// in the database, and that transaction is a conditional UPDATE of the webhook's row:
// - failing: failing_since goes from null to set (a delivery reached `failed`, and no success was
//   recorded after it);
// - recovered: failing_since goes from set to null (a success recorded after the run began);
// - disabled: enabled goes from true to false by the gateway (queue.ts, disableWebhook).
// Two workers racing for one transition serialize on the row lock; the second finds the
// condition false and writes nothing. The event is a real event row with one pending delivery per
// subscribed webhook, so it is signed, retried and recorded like any other; a crash before the
// commit loses the transition and its event together, so the next failure or success makes them.
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Logger } from 'pino';
import { CHANNEL_DELIVERIES_DUE, type Notifier } from '../db/notifier.js';
import { insertEventWithDeliveries } from '../modules/events/event.service.js';
import { announce } from '../subscriptions/delivery-update-notice.js';

export type HealthKind = 'failing' | 'disabled' | 'recovered';

export interface HealthChange {
  tenantId: string;
  webhookId: string;
  kind: HealthKind;
  /** The operational event written for the change. */
  eventId: string;
  /** How many deliveries it queued. */
  deliveries: number;
}

const iso = (value: Date | string): string => new Date(value).toISOString();

/**
 * Writes the operational event of a change, in the caller's transaction: to the tenant's other
 * enabled webhooks subscribed to it, and for `recovered` to the webhook itself as well.
 */
export async function publishHealthEvent(
  em: EntityManager,
  change: { tenantId: string; webhookId: string; kind: HealthKind; data: Record<string, unknown> },
): Promise<HealthChange> {
  const { tenantId, webhookId, kind } = change;
  const created = await insertEventWithDeliveries(em, {
    tenantId,
    type: `webhook.${kind}`,
    data: { webhook_id: webhookId, ...change.data },
    ...(kind === 'recovered' ? {} : { exceptWebhookId: webhookId }),
  });
  return { tenantId, webhookId, kind, eventId: created.id, deliveries: created.deliveries };
}

/**
 * A delivery of the webhook reached `failed` (at `failedAt`, its attempt's time; now when not yet
 * recorded): starts the webhook's run of failures unless one is running, or a success was recorded
 * after that failure. Answers the change, or null when there was none.
 */
export async function markFailing(
  em: EntityManager,
  delivery: { id: string; webhookId: string; eventType: string },
  lastResponseCode: number | null,
  failedAt: Date | null,
): Promise<HealthChange | null> {
  const at = failedAt?.toISOString() ?? null;
  return em.transactional(async (tx) => {
    const [row] = await tx.getConnection().execute<{ tenant_id: string; failing_since: Date | string }[]>(
      `update webhook set failing_since = coalesce(?::timestamptz, now())
       where id = ? and failing_since is null and coalesce(last_success_at, '-infinity') <= coalesce(?::timestamptz, now())
       returning tenant_id, failing_since`,
      [at, delivery.webhookId, at],
      'all',
      tx.getTransactionContext(),
    );
    if (!row) return null;
    return publishHealthEvent(tx, {
      tenantId: row.tenant_id,
      webhookId: delivery.webhookId,
      kind: 'failing',
      data: {
        delivery_id: delivery.id,
        event_type: delivery.eventType,
        last_response_code: lastResponseCode,
        failed_since: iso(row.failing_since),
      },
    });
  });
}

/**
 * A successful attempt of the webhook was recorded at `succeededAt` while a run of failures was
 * going on: ends the run, unless it began after that success. Answers the change, or null.
 */
export async function markRecovered(em: EntityManager, webhookId: string, succeededAt: Date): Promise<HealthChange | null> {
  return em.transactional(async (tx) => {
    // The old failing_since is read under the row lock (the select's FOR UPDATE re-checks the
    // condition once it holds the lock), so a concurrent recovery finds nothing to end.
    const [row] = await tx.getConnection().execute<{ tenant_id: string; failing_since: Date | string }[]>(
      `update webhook w set failing_since = null
       from (select id, failing_since from webhook where id = ? and failing_since <= ?::timestamptz for update) o
       where w.id = o.id
       returning w.tenant_id, o.failing_since`,
      [webhookId, succeededAt.toISOString()],
      'all',
      tx.getTransactionContext(),
    );
    if (!row) return null;
    return publishHealthEvent(tx, {
      tenantId: row.tenant_id,
      webhookId,
      kind: 'recovered',
      data: { failed_since: iso(row.failing_since), recovered_at: succeededAt.toISOString() },
    });
  });
}

/**
 * After the commit of a change: live subscribers hear of it (webhookHealth, and deliveryUpdates
 * of the deliveries it queued) and workers wake for those deliveries. Hints only, never thrown.
 */
export async function announceHealth(notifier: Notifier, change: HealthChange, logger?: Logger): Promise<void> {
  const { tenantId, webhookId, eventId, kind } = change;
  await announce(notifier, { kind: 'health', tenantId, webhookId, eventId, change: kind }, logger);
  if (change.deliveries === 0) return;
  await announce(notifier, { kind: 'event', tenantId, eventId }, logger);
  await notifier.notify(CHANNEL_DELIVERIES_DUE, '').catch(() => undefined);
}
