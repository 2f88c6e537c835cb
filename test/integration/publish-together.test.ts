// Publishes that arrive while another is being written are written together, in one statement
// and one commit (group commit), and each still gets exactly its own event, deliveries and notices.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Viewer } from '../../src/auth/viewer.js';
import {
  CHANNEL_DELIVERIES_DUE,
  CHANNEL_DELIVERY_UPDATES,
  type Notifier,
} from '../../src/db/notifier.js';
import { openDatabase, type Database } from '../../src/db/connections.js';
import { migrate } from '../../src/db/orm.js';
import { createLogger } from '../../src/logger.js';
import { createEventPublisher, EventService } from '../../src/modules/events/event.service.js';
import { formatNotice } from '../../src/subscriptions/delivery-update-notice.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';

const service: Viewer = { tenantId: null, role: 'service', via: 'jwt' };

describe('publishes that arrive together', () => {
  let database: TestDatabase;
  let db: Database;
  let notifier: Notifier;
  const updates: string[] = [];
  let dueWakeUps = 0;

  const sql = <R = Record<string, unknown>>(text: string, values: unknown[] = []) =>
    db.orm.em.fork().getConnection().execute<R[]>(text, values, 'all');
  // One publisher for every request, as the gateway has: publishes group only within it.
  const publisher = createEventPublisher();
  const publish = (tenantId: string, data: Record<string, unknown>, idempotencyKey?: string) =>
    new EventService(db.orm.em.fork(), notifier, Infinity, publisher).publish(service, { event: 'drift.detected', data, tenantId, idempotencyKey });

  beforeAll(async () => {
    database = await createTestDatabase();
    db = await openDatabase({ databaseUrl: database.url, dataDir: database.dataDir });
    await migrate(db);
    notifier = db.createNotifier(createLogger('silent'));
    notifier.listen(CHANNEL_DELIVERY_UPDATES, (payload) => updates.push(payload));
    notifier.listen(CHANNEL_DELIVERIES_DUE, () => (dueWakeUps += 1));
    // Tenant "together": three subscribed webhooks, one disabled, one for another event.
    // Tenant "nobody-listens": none.
    await sql(`
      insert into webhook (id, tenant_id, name, url, events, enabled, secret_encrypted)
      values ('wh_t1', 'together', 'one', 'https://example.test/1', '{drift.detected}', true, 'x'),
             ('wh_t2', 'together', 'two', 'https://example.test/2', '{drift.detected,alert.created}', true, 'x'),
             ('wh_t3', 'together', 'three', 'https://example.test/3', '{drift.detected}', true, 'x'),
             ('wh_t4', 'together', 'off', 'https://example.test/4', '{drift.detected}', false, 'x'),
             ('wh_t5', 'together', 'other', 'https://example.test/5', '{alert.created}', true, 'x')`);
    // On Postgres the LISTEN connection opens on first use and, once listening, wakes each
    // channel's listeners once: wait for that, so the count below is of the publishes' wake-ups.
    const deadline = Date.now() + 5_000;
    while (!db.embedded && dueWakeUps === 0) {
      if (Date.now() > deadline) throw new Error('the LISTEN connection did not come up');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    dueWakeUps = 0;
  });

  afterAll(async () => {
    await notifier?.close();
    await db?.close();
    await database?.drop();
  });

  it('share one statement, and each gets its own event, deliveries and notices', async () => {
    const results = await Promise.all([
      ...Array.from({ length: 12 }, (_, n) => publish('together', { n, nested: { list: [n, 'x'] } })),
      publish('nobody-listens', { n: 99 }),
    ]);
    const ids = results.map((r) => r.id);
    expect(new Set(ids).size).toBe(13);
    expect(results.slice(0, 12).map((r) => [r.deliveries, r.replayed])).toEqual(Array.from({ length: 12 }, () => [3, false]));
    expect(results[12]).toMatchObject({ deliveries: 0, replayed: false });

    const events = await sql<{ id: string; tenant_id: string; data: Record<string, unknown>; delivery_count: number; published_at: Date }>(
      'select id, tenant_id, data, delivery_count, published_at from event where id in (?)',
      [ids],
    );
    const byId = new Map(events.map((e) => [e.id, e]));
    results.forEach((r, n) => {
      const e = byId.get(r.id)!;
      expect(e.tenant_id).toBe(n < 12 ? 'together' : 'nobody-listens');
      expect(e.data).toEqual(n < 12 ? { n, nested: { list: [n, 'x'] } } : { n: 99 });
      expect(Number(e.delivery_count)).toBe(n < 12 ? 3 : 0);
    });
    // The first publish was written alone; the twelve that arrived while it was being written
    // were written by one statement, so they share its transaction's time.
    expect(new Set(events.map((e) => new Date(e.published_at).getTime())).size).toBe(2);

    const deliveries = await sql<{ event_id: string; webhook_id: string; tenant_id: string; status: string; due: boolean }>(
      `select event_id, webhook_id, tenant_id, status, next_attempt_at is not null as due from delivery where event_id in (?) order by webhook_id`,
      [ids],
    );
    for (const r of results.slice(0, 12)) {
      expect(deliveries.filter((d) => d.event_id === r.id)).toEqual(
        ['wh_t1', 'wh_t2', 'wh_t3'].map((webhook_id) => ({ event_id: r.id, webhook_id, tenant_id: 'together', status: 'pending', due: true })),
      );
    }
    expect(deliveries.filter((d) => d.event_id === results[12]!.id)).toEqual([]);

    // Watchers hear of each event that queued deliveries, and of no other; the workers are woken.
    const expected = results.slice(0, 12).map((r) => formatNotice({ kind: 'event', tenantId: 'together', eventId: r.id }));
    await expect.poll(() => expected.filter((n) => updates.includes(n)).length, { timeout: 5_000 }).toBe(12);
    expect(updates).not.toContain(formatNotice({ kind: 'event', tenantId: 'nobody-listens', eventId: results[12]!.id }));
    expect(dueWakeUps).toBeGreaterThan(0);
  });

  it('a batch that fails is written event by event: one Idempotency-Key twice makes one event', async () => {
    const first = publish('together', { n: 'first' });
    const together = [publish('together', { n: 'a' }, 'key-1'), publish('together', { n: 'b' }, 'key-1'), publish('together', { n: 'c' })];
    await first;
    const [a, b, c] = await Promise.all(together);
    expect(a!.id).toBe(b!.id);
    expect([a!.replayed, b!.replayed].sort()).toEqual([false, true]);
    expect(a!.deliveries).toBe(3);
    expect(b!.deliveries).toBe(3);
    expect(c).toMatchObject({ deliveries: 3, replayed: false });
    const keyed = await sql<{ id: string }>(`select id from event where tenant_id = 'together' and idempotency_key = 'key-1'`);
    expect(keyed.map((e) => e.id)).toEqual([a!.id]);
    const counts = await sql<{ n: string }>('select count(*) as n from delivery where event_id in (?)', [[a!.id, c!.id]]);
    expect(Number(counts[0]!.n)).toBe(6);
  });
});
