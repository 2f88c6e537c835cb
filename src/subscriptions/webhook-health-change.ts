// What a webhookHealth subscriber receives: one webhook's health change, read from the
// operational event written with it (src/worker/webhook-health.ts), so the stream and the
// webhook.* deliveries tell the same thing.
import type { EntityManager } from '@mikro-orm/postgresql';
import { EventSchema } from '../modules/events/event.entity.js';

export interface WebhookHealthChange {
  kind: 'failing' | 'disabled' | 'recovered';
  tenantId: string;
  webhookId: string;
  /** The operational event (webhook.failing, webhook.disabled or webhook.recovered). */
  eventId: string;
  /** When the change happened (the event's publishing time). */
  at: Date;
  failedSince: Date | null;
  /** disabled: failing or gone. */
  reason: string | null;
  /** failing: the delivery that failed, its event type and the last answer's status code. */
  deliveryId: string | null;
  eventType: string | null;
  lastResponseCode: number | null;
  /** recovered: the time of the successful attempt. */
  recoveredAt: Date | null;
}

const KINDS: Record<string, WebhookHealthChange['kind']> = {
  'webhook.failing': 'failing',
  'webhook.disabled': 'disabled',
  'webhook.recovered': 'recovered',
};

const text = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const time = (v: unknown): Date | null => (typeof v === 'string' ? new Date(v) : null);

/** The changes written as the given events, by event id; ids of other events are left out. */
export async function loadHealthChanges(em: EntityManager, eventIds: string[]): Promise<Map<string, WebhookHealthChange>> {
  const changes = new Map<string, WebhookHealthChange>();
  if (eventIds.length === 0) return changes;
  for (const e of await em.find(EventSchema, { id: { $in: eventIds }, type: { $in: Object.keys(KINDS) } })) {
    const kind = KINDS[e.type];
    const webhookId = text(e.data['webhook_id']);
    if (!kind || !webhookId) continue;
    const code = e.data['last_response_code'];
    changes.set(e.id, {
      kind,
      tenantId: e.tenantId,
      webhookId,
      eventId: e.id,
      at: e.publishedAt,
      failedSince: time(e.data['failed_since']),
      reason: text(e.data['reason']),
      deliveryId: text(e.data['delivery_id']),
      eventType: text(e.data['event_type']),
      lastResponseCode: typeof code === 'number' ? code : null,
      recoveredAt: time(e.data['recovered_at']),
    });
  }
  return changes;
}
