// What travels on CHANNEL_DELIVERY_UPDATES: ids only, never delivery content. A NOTIFY payload
// must stay under Postgres's 8000 bytes, and no tenant's data should reach an instance that has
// no subscriber for it; each api instance loads what a notice names and filters by tenant itself.
// Every notice carries its tenant so an instance with no subscriber for that tenant drops it
// without touching the database. This file is the only one that writes or reads the format: the
// worker (attempts, cancellations, health changes), publishing (events), webhooks (pings,
// cancellations), resends and the hub that listens all go through it.
import type { Logger } from 'pino';
import { CHANNEL_DELIVERY_UPDATES, type Notifier } from '../db/notifier.js';

export type UpdateNotice =
  /** An attempt was recorded. */
  | { kind: 'attempt'; tenantId: string; webhookId: string; deliveryId: string; attemptId: string }
  /** Deliveries changed status without an attempt (cancelled). */
  | { kind: 'status'; tenantId: string; webhookId: string | null; deliveryIds: string[] }
  /** A delivery was resent: pending, due `at`, after `attempts` attempts. */
  | { kind: 'resent'; tenantId: string; webhookId: string; deliveryId: string; attempts: number; at: string }
  /** A published event's deliveries were queued. */
  | { kind: 'event'; tenantId: string; eventId: string }
  /** A new webhook's verification ping was queued. */
  | { kind: 'ping'; tenantId: string; webhookId: string }
  /** A webhook's health changed; `eventId` is the operational event written for it. */
  | { kind: 'health'; tenantId: string; webhookId: string; eventId: string; change: 'failing' | 'disabled' | 'recovered' }
  /** The LISTEN connection was re-established: anything sent meanwhile was missed. */
  | { kind: 'resync' };

/** Keeps a status notice well under the NOTIFY limit: delivery ids are 24 characters. */
const IDS_PER_NOTICE = 100;

/** What to announce: any notice but `resync`, which the notifier itself signals. */
export type DeliveryUpdateNotice = Exclude<UpdateNotice, { kind: 'resync' }>;

/** The one way a notice is written. */
export function formatNotice(notice: DeliveryUpdateNotice): string {
  return JSON.stringify(notice);
}

/** A notice as a NOTIFY that a writing statement sends itself, delivered at its commit. */
export function noticeInStatement(notice: DeliveryUpdateNotice): { channel: string; payload: string } {
  return { channel: CHANNEL_DELIVERY_UPDATES, payload: formatNotice(notice) };
}

const isString = (v: unknown): v is string => typeof v === 'string' && v !== '';

/** Reads a payload written by formatNotice (an empty one is the notifier's resync); null when it is not one. */
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
    case 'attempt': {
      const { webhookId, deliveryId, attemptId } = n;
      if (!isString(webhookId) || !isString(deliveryId) || !isString(attemptId)) return null;
      return { kind: 'attempt', tenantId, webhookId, deliveryId, attemptId };
    }
    case 'resent': {
      const { webhookId, deliveryId, attempts, at } = n;
      if (!isString(webhookId) || !isString(deliveryId) || !isString(at) || !Number.isSafeInteger(attempts)) return null;
      return { kind: 'resent', tenantId, webhookId, deliveryId, attempts: attempts as number, at };
    }
    case 'event':
      return isString(n['eventId']) ? { kind: 'event', tenantId, eventId: n['eventId'] } : null;
    case 'ping':
      return isString(n['webhookId']) ? { kind: 'ping', tenantId, webhookId: n['webhookId'] } : null;
    case 'health': {
      const { webhookId, eventId, change } = n;
      if (!isString(webhookId) || !isString(eventId) || (change !== 'failing' && change !== 'disabled' && change !== 'recovered')) return null;
      return { kind: 'health', tenantId, webhookId, eventId, change };
    }
    case 'status': {
      const ids = n['deliveryIds'];
      if (!Array.isArray(ids) || !ids.every(isString)) return null;
      return { kind: 'status', tenantId, webhookId: isString(n['webhookId']) ? n['webhookId'] : null, deliveryIds: ids };
    }
    default:
      return null;
  }
}

/**
 * Sends a notice after the commit of what it announces. Announcements are hints: a lost one costs
 * a live update, never data, so a failure is logged (when a logger is given) and never thrown.
 */
export async function announce(notifier: Notifier, notice: DeliveryUpdateNotice, logger?: Logger): Promise<void> {
  await notifier.notify(CHANNEL_DELIVERY_UPDATES, formatNotice(notice)).catch((err: unknown) => {
    logger?.warn({ err, kind: notice.kind }, 'delivery update notification failed');
  });
}

/** Announces cancelled deliveries, in notices small enough for NOTIFY. */
export async function announceCancelled(
  notifier: Notifier,
  tenantId: string,
  webhookId: string,
  deliveryIds: readonly string[],
  logger?: Logger,
): Promise<void> {
  for (let i = 0; i < deliveryIds.length; i += IDS_PER_NOTICE) {
    await announce(notifier, { kind: 'status', tenantId, webhookId, deliveryIds: deliveryIds.slice(i, i + IDS_PER_NOTICE) }, logger);
  }
}
