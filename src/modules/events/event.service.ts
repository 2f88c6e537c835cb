// Publishing: the event and one pending delivery per enabled, subscribed webhook of the tenant are
// written in one transaction before the caller hears back; workers are woken after the commit.
import { UniqueConstraintViolationException } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Viewer } from '../../auth/viewer.js';
import { CHANNEL_DELIVERIES_DUE, type Notifier } from '../../db/notifier.js';
import { createGroupCommit } from '../../db/group-commit.js';
import { runStatement } from '../../db/statements.js';
import { isStorableText, MAX_JSON_DEPTH, unstorableJson } from '../../db/storable-text.js';
import { isValidTenantId, TENANT_ID_RULE } from '../../auth/tenant-id.js';
import { AppError } from '../../errors.js';
import { newId } from '../../ids.js';
import { noticeInStatement } from '../../subscriptions/delivery-update-notice.js';
import { isEventType, isSentByGateway } from './event-types.js';

export interface PublishInput {
  event: string;
  data: unknown;
  tenantId?: string | null;
  idempotencyKey?: string | null;
}

export interface PublishResult {
  id: string;
  event: string;
  deliveries: number;
  /** true when an earlier publish with the same Idempotency-Key answered. */
  replayed: boolean;
}

const IDEMPOTENCY_KEY_MAX = 255;

// Raw `execute` hands back the driver's own error, not MikroORM's mapped exception, so the
// Postgres SQLSTATE (23505 unique_violation) is checked as well.
function isUniqueViolation(err: unknown): boolean {
  return err instanceof UniqueConstraintViolationException || (err as { code?: unknown } | null)?.code === '23505';
}

function resolveTenant(viewer: Viewer, requested: string | null | undefined): string {
  if (viewer.role === 'service') {
    if (requested === undefined || requested === null || requested === '') {
      throw new AppError('BAD_REQUEST', 'tenant_id is required with a service token', { field: 'tenant_id' });
    }
    if (!isValidTenantId(requested)) {
      throw new AppError('BAD_REQUEST', `tenant_id must be ${TENANT_ID_RULE}`, { field: 'tenant_id' });
    }
    return requested;
  }
  if (viewer.tenantId === null) throw new AppError('FORBIDDEN', 'this token is not bound to a tenant');
  if (requested !== undefined && requested !== null && requested !== viewer.tenantId) {
    throw new AppError('FORBIDDEN', 'this token may only publish events for its own tenant');
  }
  return viewer.tenantId;
}

// A delivery id made by Postgres, in the same shape as newId('del'): 15 random bytes, base64url.
// gen_random_uuid() draws from the same strong source; the 6 + 7 bytes of a version 4 UUID that
// hold no version or variant bits, and 2 more from a second one, make the 120 random bits.
export const NEW_DELIVERY_ID = `'del_' || translate(encode(
  substring(r.a from 1 for 6) || substring(r.a from 10 for 7) || substring(r.b from 1 for 2), 'base64'), '+/', '-_')`;

// One statement, so publishing is one round trip and one commit: the subscribed webhooks, the
// event, its deliveries and the wake-up notifications (delivered at the commit, and only when
// something was queued). $1 event id, $2 tenant, $3 type, $4 data, $5 idempotency key, $6 a
// lease in ms (null: none) for deliveries the caller sends itself, $7 notifications ([{channel, payload}]), and for the single-webhook form $8 its id.
function publishStatement(targets: string): string {
  return `
with targets as (${targets}
), ev as (
  insert into event (id, tenant_id, type, data, idempotency_key, delivery_count)
  select $1, $2, $3, $4::jsonb, $5, count(*) from targets
  returning published_at
), queued as (
  insert into delivery (id, event_id, webhook_id, tenant_id, event_type, status, attempts, next_attempt_at, lease_expires_at)
  select ${NEW_DELIVERY_ID}, $1, r.id, $2, $3, 'pending', 0, now(), now() + $6::float8 * interval '1 millisecond'
  from (select t.id, t.seq, uuid_send(gen_random_uuid()) as a, uuid_send(gen_random_uuid()) as b from targets t) r
  order by r.seq
  returning id
), notified as (
  select pg_notify(n.channel, n.payload)
  from json_to_recordset($7::json) as n(channel text, payload text)
  where exists (select 1 from queued)
)
select (select published_at from ev) as published_at,
       array(select q.id from queued q) as delivery_ids,
       (select count(*) from notified) as notified`;
}

export const PUBLISH_TO_SUBSCRIBERS = publishStatement(`
  select id, seq from webhook where tenant_id = $2 and enabled and $3 = any(events)`,
);
const PUBLISH_TO_ONE = publishStatement(`
  select id, seq from webhook where id = $8 and tenant_id = $2`,
);
// The operational events about one webhook ($8) go to the tenant's other webhooks.
const PUBLISH_TO_OTHERS = publishStatement(`
  select id, seq from webhook where tenant_id = $2 and enabled and $3 = any(events) and id <> $8`,
);

// Several events in one statement, for publishes that arrive together (group commit: see
// publishTogether). $1 the events, in order: [{id, tenant_id, type, data, idempotency_key,
// notices}]; each event's notices are sent when it queued at least one delivery. Answers one row
// per event, in order: its id, time and number of deliveries (not their ids).
export const PUBLISH_MANY = `
with input as (
  select * from rows from (json_to_recordset($1::json) as (
    id text, tenant_id text, type text, data jsonb, idempotency_key text, notices json
  )) with ordinality as i(id, tenant_id, type, data, idempotency_key, notices, ord)
), targets as (
  -- One index probe per event for its tenant's webhooks (the offset 0 keeps the subquery from
  -- being flattened into a join, whose generic plan could read every webhook instead).
  select i.id as event_id, i.tenant_id, i.type, i.ord, w.id, w.seq
  from input i
  cross join lateral (
    select w.id, w.seq from webhook w where w.tenant_id = i.tenant_id and w.enabled and i.type = any(w.events) offset 0
  ) w
), counts as (
  -- Aggregated once, so nothing below compares every event with every target.
  select t.event_id, count(*) as n from targets t group by t.event_id
), ev as (
  insert into event (id, tenant_id, type, data, idempotency_key, delivery_count)
  select i.id, i.tenant_id, i.type, i.data, i.idempotency_key, coalesce(c.n, 0)
  from input i left join counts c on c.event_id = i.id
  order by i.ord
  returning id, published_at, delivery_count
), queued as (
  insert into delivery (id, event_id, webhook_id, tenant_id, event_type, status, attempts, next_attempt_at)
  select ${NEW_DELIVERY_ID}, r.event_id, r.id, r.tenant_id, r.type, 'pending', 0, now()
  from (select t.*, uuid_send(gen_random_uuid()) as a, uuid_send(gen_random_uuid()) as b from targets t) r
  order by r.ord, r.seq
), notified as (
  select pg_notify(n.channel, n.payload)
  from input i
  join counts c on c.event_id = i.id
  cross join lateral json_to_recordset(i.notices) as n(channel text, payload text)
)
select ev.id, ev.published_at, ev.delivery_count, (select count(*) from notified) as notified
from input i join ev on ev.id = i.id
order by i.ord`;

interface EventToPublish {
  em: EntityManager;
  id: string;
  tenantId: string;
  type: string;
  data: Record<string, unknown>;
  idempotencyKey: string | null;
  notices: { channel: string; payload: string }[] | undefined;
}

interface PublishedEvent {
  id: string;
  deliveries: number;
  publishedAt: Date;
}

async function publishMany(events: EventToPublish[]): Promise<PublishedEvent[]> {
  const input = events.map((e) => ({
    id: e.id,
    tenant_id: e.tenantId,
    type: e.type,
    data: e.data,
    idempotency_key: e.idempotencyKey,
    notices: e.notices ?? [],
  }));
  const rows = await runStatement<{ id: string; published_at: Date | string; delivery_count: number }>(
    events[0]!.em,
    PUBLISH_MANY,
    [JSON.stringify(input)],
  );
  return rows.map((row) => ({ id: row.id, deliveries: Number(row.delivery_count), publishedAt: new Date(row.published_at) }));
}

/** Writes published events; see createEventPublisher. */
export type EventPublisher = (event: EventToPublish) => Promise<PublishedEvent>;

/**
 * Publishes with group commit (src/db/group-commit.ts): a publish that arrives while another is
 * being written waits for it and is then written together with every publish that arrived
 * meanwhile, in one statement and one commit, so under load events share a round trip, a plan and
 * a WAL flush. Alone (an idle gateway, or a batch that failed and is split up), an event is
 * written by its own statement on its own request's EntityManager. Publishes group only within one
 * publisher: the gateway makes one and hands it to every request's EventService.
 */
export function createEventPublisher(): EventPublisher {
  return createGroupCommit<EventToPublish, PublishedEvent>({
    writeBatch: publishMany,
    writeAlone: (e) => insertEventWithDeliveries(e.em, e),
  });
}

/**
 * Writes an event and fans it out. Used for published events and for the gateway's own pings
 * (`onlyWebhookId`), inside the caller's transaction when given one. `leaseMs` deliveries are
 * due but leased to the caller, who sends them itself: no worker claims them while the lease
 * lasts, and if the caller dies before recording an outcome, a worker sends them once it ends. `notices` are sent by the
 * same statement when at least one delivery was queued (delivered at its commit).
 */
export async function insertEventWithDeliveries(
  em: EntityManager,
  input: {
    /** The event's id, when the caller needs it before the insert. */
    id?: string;
    tenantId: string;
    type: string;
    data: Record<string, unknown>;
    idempotencyKey?: string | null;
    onlyWebhookId?: string;
    /** To the tenant's subscribed webhooks but this one. */
    exceptWebhookId?: string;
    leaseMs?: number;
    notices?: { channel: string; payload: string }[];
  },
): Promise<{ id: string; deliveries: number; deliveryIds: string[]; publishedAt: Date }> {
  const id = input.id ?? newId('evt');
  const values: unknown[] = [
    id,
    input.tenantId,
    input.type,
    JSON.stringify(input.data),
    input.idempotencyKey ?? null,
    input.leaseMs ?? null,
    JSON.stringify(input.notices ?? []),
  ];
  const [statement, params] = input.onlyWebhookId
    ? [PUBLISH_TO_ONE, [...values, input.onlyWebhookId]]
    : input.exceptWebhookId
      ? [PUBLISH_TO_OTHERS, [...values, input.exceptWebhookId]]
      : [PUBLISH_TO_SUBSCRIBERS, values];
  const [row] = await runStatement<{ published_at: Date | string; delivery_ids: string[] }>(em, statement, params);
  const deliveryIds = row!.delivery_ids;
  return { id, deliveries: deliveryIds.length, deliveryIds, publishedAt: new Date(row!.published_at) };
}

export class EventService {
  constructor(
    private readonly em: EntityManager,
    private readonly notifier: Notifier,
    /** MAX_EVENT_BYTES: the largest serialized `data` a publish may store. */
    private readonly maxEventBytes = Infinity,
    /** The gateway's publisher; a one-off caller (the command line) may let the service make its own. */
    private readonly publishTogether: EventPublisher = createEventPublisher(),
  ) {}

  async publish(viewer: Viewer, input: PublishInput): Promise<PublishResult> {
    const tenantId = resolveTenant(viewer, input.tenantId);
    if (input.event.trim() === '') throw new AppError('BAD_REQUEST', 'event is required', { field: 'event' });
    if (isSentByGateway(input.event)) {
      throw new AppError('VALIDATION_ERROR', `${input.event} is sent by the gateway itself and cannot be published`, { field: 'event' });
    }
    if (!isEventType(input.event)) {
      throw new AppError('VALIDATION_ERROR', `unknown event type: ${JSON.stringify(input.event)}`, { field: 'event' });
    }
    const data = input.data;
    if (typeof data !== 'object' || data === null || Array.isArray(data)) {
      throw new AppError('BAD_REQUEST', 'data must be a JSON object', { field: 'data' });
    }
    // The depth first: serializing data nested thousands deep would overflow the stack.
    const unstorable = unstorableJson(data);
    if (unstorable) {
      const message =
        unstorable === 'text'
          ? 'data must not contain NUL characters or unpaired surrogates'
          : `data must not nest deeper than ${MAX_JSON_DEPTH} levels`;
      throw new AppError('VALIDATION_ERROR', message, { field: 'data' });
    }
    // Measured on the serialized data, whichever way it arrived (REST body or GraphQL variables).
    if (Buffer.byteLength(JSON.stringify(data)) > this.maxEventBytes) {
      throw new AppError('PAYLOAD_TOO_LARGE', `data is larger than ${this.maxEventBytes} bytes once serialized`, { field: 'data' });
    }
    const key = input.idempotencyKey ?? null;
    if (key !== null && (key === '' || key.length > IDEMPOTENCY_KEY_MAX)) {
      throw new AppError('BAD_REQUEST', `Idempotency-Key must be 1 to ${IDEMPOTENCY_KEY_MAX} characters`);
    }
    if (key !== null && !isStorableText(key)) {
      throw new AppError('BAD_REQUEST', 'Idempotency-Key must not contain NUL characters or unpaired surrogates');
    }
    if (key !== null) {
      const earlier = await this.findByIdempotencyKey(tenantId, key);
      if (earlier) return earlier;
    }
    const id = newId('evt');
    // Announced before the workers wake, so watchers hear of a delivery before its attempts. On
    // Postgres both travel with the publishing statement; otherwise they follow its commit.
    const notices = [
      noticeInStatement({ kind: 'event', tenantId, eventId: id }),
      { channel: CHANNEL_DELIVERIES_DUE, payload: '' },
    ];
    let created;
    try {
      const event = {
        id,
        tenantId,
        type: input.event,
        data: data as Record<string, unknown>,
        idempotencyKey: key,
        notices: this.notifier.viaSql ? notices : undefined,
      };
      // Inside a caller's transaction the event is written there, alone.
      created = this.em.isInTransaction()
        ? await insertEventWithDeliveries(this.em, event)
        : await this.publishTogether({ ...event, em: this.em });
    } catch (err) {
      // Two publishes raced with one key: the unique index let one win; answer with its result.
      if (key !== null && isUniqueViolation(err)) {
        const earlier = await this.findByIdempotencyKey(tenantId, key);
        if (earlier) return earlier;
      }
      throw err;
    }
    if (created.deliveries > 0 && !this.notifier.viaSql) {
      for (const notice of notices) await this.notifier.notify(notice.channel, notice.payload).catch(() => undefined);
    }
    return { id: created.id, event: input.event, deliveries: created.deliveries, replayed: false };
  }

  private async findByIdempotencyKey(tenantId: string, key: string): Promise<PublishResult | null> {
    const rows = await this.em
      .getConnection()
      .execute<{ id: string; type: string; delivery_count: number }[]>(
        'select id, type, delivery_count from event where tenant_id = ? and idempotency_key = ?',
        [tenantId, key],
        'all',
      );
    const row = rows[0];
    return row ? { id: row.id, event: row.type, deliveries: Number(row.delivery_count), replayed: true } : null;
  }
}
