// What travels on CHANNEL_DELIVERY_UPDATES: ids only, never delivery content. A NOTIFY payload
// must stay under Postgres's 8000 bytes, and no tenant's data should reach an instance that has
// no subscriber for it; each api instance loads what a notice names and filters by tenant itself.
// Every notice carries its tenant so an instance with no subscriber for that tenant drops it
// without touching the database.
import { CHANNEL_DELIVERY_UPDATES, type Notifier } from '../db/notifier.js';

export type UpdateNotice =
  /** An attempt was recorded (sent by the deliverer, which also names the webhook). */
  | { kind: 'attempt'; tenantId: string; webhookId: string; deliveryId: string; attemptId: string }
  /** Deliveries changed status without an attempt (cancelled). */
  | { kind: 'status'; tenantId: string; webhookId: string | null; deliveryIds: string[] }
  /** A published event's deliveries were queued. */
  | { kind: 'event'; tenantId: string; eventId: string }
  /** A new webhook's verification ping was queued. */
  | { kind: 'ping'; tenantId: string; webhookId: string }
  /** The LISTEN connection was re-established: anything sent meanwhile was missed. */
  | { kind: 'resync' };

/** Keeps a status notice well under the NOTIFY limit: delivery ids are 24 characters. */
const IDS_PER_NOTICE = 100;

const isString = (v: unknown): v is string => typeof v === 'string' && v !== '';

/** Reads a payload, from this gateway's own senders or the deliverer; null when it is not one. */
export function parseNotice(payload: string): UpdateNotice | null {
  if (payload === '') return { kind: 'resync' };
  let raw: unknown;
  try {
    raw = JSON.parse(payload);
  } catch {
    return null;
  }
  if (typeof raw !== 'object' || raw === null) return null;
  const n = raw as Record<string, unknown>;
  if (!isString(n['tenantId'])) return null;
  const tenantId = n['tenantId'];
  switch (n['kind']) {
    case 'event':
      return isString(n['eventId']) ? { kind: 'event', tenantId, eventId: n['eventId'] } : null;
    case 'ping':
      return isString(n['webhookId']) ? { kind: 'ping', tenantId, webhookId: n['webhookId'] } : null;
    case 'status': {
      const ids = n['deliveryIds'];
      if (!Array.isArray(ids) || !ids.every(isString)) return null;
      return { kind: 'status', tenantId, webhookId: isString(n['webhookId']) ? n['webhookId'] : null, deliveryIds: ids };
    }
    case undefined: {
      // The deliverer's notice: {deliveryId, webhookId, tenantId, attemptId}; a null attemptId
      // means the delivery was cancelled instead of sent.
      const { deliveryId, webhookId, attemptId } = n;
      if (!isString(deliveryId) || !isString(webhookId)) return null;
      if (isString(attemptId)) return { kind: 'attempt', tenantId, webhookId, deliveryId, attemptId };
      return attemptId === null ? { kind: 'status', tenantId, webhookId, deliveryIds: [deliveryId] } : null;
    }
    default:
      return null;
  }
}

// Announcements are hints sent after the commit: a lost one costs a live update, never data, so
// a failure to notify never fails the request that made the change.
function send(notifier: Notifier, notice: Record<string, unknown>): Promise<void> {
  return notifier.notify(CHANNEL_DELIVERY_UPDATES, JSON.stringify(notice)).catch(() => undefined);
}

/** The notice that a published event's deliveries were queued. */
export function eventDeliveriesNotice(tenantId: string, eventId: string): string {
  return JSON.stringify({ kind: 'event', tenantId, eventId });
}

export function announcePing(notifier: Notifier, tenantId: string, webhookId: string): Promise<void> {
  return send(notifier, { kind: 'ping', tenantId, webhookId });
}

export async function announceCancelled(
  notifier: Notifier,
  tenantId: string,
  webhookId: string,
  deliveryIds: readonly string[],
): Promise<void> {
  for (let i = 0; i < deliveryIds.length; i += IDS_PER_NOTICE) {
    await send(notifier, { kind: 'status', tenantId, webhookId, deliveryIds: deliveryIds.slice(i, i + IDS_PER_NOTICE) });
  }
}
