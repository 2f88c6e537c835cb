// Set-based seeding for the scale scenario, straight into the gateway's tables: a delivery
// history of `historyAttempts` attempt rows (events fanned out to every webhook, each delivery
// failed once and then succeeded), and `pendingDeliveries` pending deliveries due a day or more
// from now, spread over the same webhooks. Each statement runs under a time bound.
import type { SqlQuery } from './database.js';

export interface SeedResult {
  events: number;
  deliveries: number;
  attempts: number;
  pending: number;
  seconds: number;
}

const STATEMENT_TIMEOUT = '300s';

export async function seedLargeTables(
  query: SqlQuery,
  input: { tenant: string; webhookIds: string[]; historyAttempts: number; pendingDeliveries: number },
): Promise<SeedResult> {
  const started = Date.now();
  const w = input.webhookIds.length;
  const historyEvents = Math.ceil(input.historyAttempts / (2 * w));
  const pendingEvents = Math.ceil(input.pendingDeliveries / w);
  await query(`set statement_timeout = '${STATEMENT_TIMEOUT}'`);
  const ids = `{${input.webhookIds.join(',')}}`;

  await query(
    `insert into event (id, tenant_id, type, data, published_at, delivery_count)
     select 'evt_seed' || lpad(g::text, 10, '0'), $1, 'drift.detected',
            jsonb_build_object('resource', 'i-' || to_hex(g), 'region', 'eu-west-1', 'seq', g),
            now() - interval '20 days' + g * interval '1 second', $2
     from generate_series(1, $3::int) g`,
    [input.tenant, w, historyEvents + pendingEvents],
  );
  // History: every event fanned out to every webhook, delivered on the second attempt.
  await query(
    `insert into delivery (id, event_id, webhook_id, tenant_id, event_type, status, attempts, next_attempt_at, created_at, updated_at)
     select 'del_seed' || lpad(g::text, 10, '0') || '_' || w.i, 'evt_seed' || lpad(g::text, 10, '0'), w.id, $1,
            'drift.detected', 'success', 2, null, e.at, e.at + interval '5 minutes'
     from generate_series(1, $2::int) g
     cross join lateral (select now() - interval '20 days' + g * interval '1 second' as at) e
     cross join unnest($3::text[]) with ordinality as w(id, i)`,
    [input.tenant, historyEvents, ids],
  );
  await query(
    `insert into delivery_attempt (
       id, delivery_id, webhook_id, tenant_id, event_type, attempt, status, response_code, duration_ms,
       request_headers, request_body, response_headers, response_body, created_at, next_retry_at)
     select 'att_seed' || substr(d.id, 9) || '_' || a, d.id, d.webhook_id, d.tenant_id, d.event_type, a,
            case when a = 1 then 'failed' else 'success' end, case when a = 1 then 503 else 200 end, 20 + a,
            jsonb_build_object(
              'content-type', 'application/json', 'user-agent', 'InfraAudit-Webhooks/0.1.0',
              'x-infraaudit-signature', 'sha256=' || md5(d.id) || md5(d.event_id),
              'x-infraaudit-event', 'drift.detected', 'x-infraaudit-delivery', d.id,
              'x-infraaudit-attempt', a::text, 'webhook-id', d.id,
              'webhook-timestamp', extract(epoch from d.created_at)::bigint::text,
              'webhook-signature', 'v1,' || md5(d.webhook_id || d.id)),
            '{"event":"drift.detected","timestamp":"' || d.created_at || '","webhook_id":"' || d.webhook_id ||
              '","delivery_id":"' || d.id || '","data":{"resource":"i-0abc","region":"eu-west-1"}}',
            '{"content-type":"text/plain"}'::jsonb, case when a = 1 then 'unavailable' else 'ok' end,
            d.created_at + (a - 1) * interval '5 minutes',
            case when a = 1 then d.created_at + interval '5 minutes' end
     from delivery d
     cross join generate_series(1, 2) a
     where d.id like 'del_seed%'
     order by d.created_at, d.id, a`,
  );
  // Waiting retries: pending, due from a day to a week from now, so no worker may claim them.
  await query(
    `insert into delivery (id, event_id, webhook_id, tenant_id, event_type, status, attempts, next_attempt_at)
     select 'del_wait' || lpad(g::text, 10, '0') || '_' || w.i, 'evt_seed' || lpad(($2::int + g)::text, 10, '0'), w.id, $1,
            'drift.detected', 'pending', 1, now() + interval '1 day' + (g % 1000) * interval '10 minutes'
     from generate_series(1, $3::int) g
     cross join unnest($4::text[]) with ordinality as w(id, i)`,
    [input.tenant, historyEvents, pendingEvents, ids],
  );
  await query('analyze');
  const counts = await query<{ events: string; deliveries: string; attempts: string; pending: string }>(
    `select (select count(*) from event) as events, (select count(*) from delivery) as deliveries,
            (select count(*) from delivery_attempt) as attempts,
            (select count(*) from delivery where status = 'pending') as pending`,
  );
  const c = counts[0]!;
  return {
    events: Number(c.events),
    deliveries: Number(c.deliveries),
    attempts: Number(c.attempts),
    pending: Number(c.pending),
    seconds: (Date.now() - started) / 1000,
  };
}
