// Recording attempts: attempts that finish together are written in batches, and a record that
// waits on a lock (here: a transaction holding a webhook's row, as a slow edit would)
// holds up neither the other webhooks' records nor their deliveries.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { createWebhook, historyOf, uniqueTenant } from '../helpers/delivery.js';
import { onRealPostgres } from '../helpers/database.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { startReceiver, type ReceivedRequest, type Receiver } from '../helpers/receiver.js';

const to = (webhookId: string, event: string) => (r: ReceivedRequest) => r.json?.webhook_id === webhookId && r.json?.event === event;

async function publish(api: TestClient, event: string, data: Record<string, unknown>) {
  const res = await api.post('/api/v1/events', { event, data });
  expect(res.status, res.text).toBe(202);
}

describe('recording attempts', () => {
  let gw: TestGateway;
  let receiver: Receiver;
  let api: TestClient;

  beforeAll(async () => {
    gw = await startTestGateway({ WORKER_POLL_INTERVAL: '100ms', WORKER_CONCURRENCY: '32', WORKER_MAX_IN_FLIGHT_PER_WEBHOOK: '16' });
    receiver = await startReceiver();
    api = client(gw.url, await userToken(uniqueTenant('recorder')));
  });

  afterAll(async () => {
    await receiver?.close();
    await gw?.close();
  });

  it('many attempts finishing together are each recorded once, with their own outcome', async () => {
    const hooks = [];
    for (let i = 0; i < 4; i += 1) {
      hooks.push(await createWebhook(api, { name: `batch ${i}`, url: `${receiver.url}/batch/${i}`, events: ['vulnerability.found'] }));
    }
    const events = 40;
    await Promise.all(Array.from({ length: events }, (_, n) => publish(api, 'vulnerability.found', { n })));
    for (const h of hooks) {
      await receiver.waitFor(events, { match: to(h.id, 'vulnerability.found'), timeoutMs: 20_000 });
    }
    for (const h of hooks) {
      await expect
        .poll(async () => (await historyOf(api, h.id, '&status=success')).filter((a) => a.event_type === 'vulnerability.found').length, {
          timeout: 10_000,
        })
        .toBe(events);
      const attempts = (await historyOf(api, h.id)).filter((a) => a.event_type === 'vulnerability.found');
      expect(new Set(attempts.map((a) => a.delivery_id)).size).toBe(events);
      for (const a of attempts) {
        expect(a).toMatchObject({ status: 'success', response_code: 200, attempt: 1, webhook_id: h.id });
      }
      // Newest first by time as well as by order, across batches.
      const times = attempts.map((a) => Date.parse(a.created_at));
      expect([...times].sort((x, y) => y - x)).toEqual(times);
    }
  });

  it.skipIf(!onRealPostgres)(
    'a record waiting on a lock holds up neither other webhooks nor their records (needs a real Postgres for a second connection)',
    async () => {
      const held = await createWebhook(api, { name: 'held', url: `${receiver.url}/held`, events: ['drift.detected'] });
      const free = await createWebhook(api, { name: 'free', url: `${receiver.url}/free`, events: ['alert.created'] });
      // Both pings recorded first, so nothing of theirs is waiting on the lock below.
      for (const h of [held, free]) await expect.poll(async () => (await historyOf(api, h.id)).length, { timeout: 10_000 }).toBe(1);

      const locker = new pg.Client({ connectionString: gw.database.url });
      await locker.connect();
      try {
        await locker.query('begin');
        await locker.query('select id from webhook where id = $1 for no key update', [held.id]);
        await publish(api, 'drift.detected', { n: 1 });
        await receiver.waitFor(1, { match: to(held.id, 'drift.detected'), timeoutMs: 10_000 });

        // The held webhook's attempt was sent but cannot be recorded while the lock is held;
        // everything else goes on: sends and records of the other webhook.
        for (let n = 0; n < 5; n += 1) await publish(api, 'alert.created', { n });
        await receiver.waitFor(5, { match: to(free.id, 'alert.created'), timeoutMs: 10_000 });
        await expect
          .poll(async () => (await historyOf(api, free.id)).filter((a) => a.event_type === 'alert.created').length, { timeout: 5_000 })
          .toBe(5);
        expect((await historyOf(api, held.id)).filter((a) => a.event_type === 'drift.detected')).toHaveLength(0);
      } finally {
        await locker.query('rollback').catch(() => undefined);
        await locker.end();
      }
      // Once the lock is gone the waiting record lands: sent once, recorded once.
      await expect
        .poll(async () => (await historyOf(api, held.id)).filter((a) => a.event_type === 'drift.detected').length, { timeout: 10_000 })
        .toBe(1);
      expect(receiver.requests.filter(to(held.id, 'drift.detected'))).toHaveLength(1);
    },
    30_000,
  );

  it.skipIf(!onRealPostgres)(
    "a webhook's next attempt does not wait for the previous attempt's record (needs a real Postgres for a second connection)",
    async () => {
      // Cap 1: one request open per webhook. The records of this webhook's attempts wait on its
      // locked row, yet each finished request frees the webhook's slot for the next attempt.
      const gw1 = await startTestGateway({ WORKER_POLL_INTERVAL: '100ms', WORKER_MAX_IN_FLIGHT_PER_WEBHOOK: '1' });
      const api1 = client(gw1.url, await userToken(uniqueTenant('recorder-cap')));
      try {
        const hook = await createWebhook(api1, { name: 'capped', url: `${receiver.url}/capped`, events: ['cost.anomaly'] });
        await expect.poll(async () => (await historyOf(api1, hook.id)).length, { timeout: 10_000 }).toBe(1);
        const locker = new pg.Client({ connectionString: gw1.database.url });
        await locker.connect();
        try {
          await locker.query('begin');
          await locker.query('select id from webhook where id = $1 for no key update', [hook.id]);
          for (let n = 0; n < 3; n += 1) await publish(api1, 'cost.anomaly', { n });
          await receiver.waitFor(3, { match: to(hook.id, 'cost.anomaly'), timeoutMs: 10_000 });
          expect((await historyOf(api1, hook.id)).filter((a) => a.event_type === 'cost.anomaly')).toHaveLength(0);
        } finally {
          await locker.query('rollback').catch(() => undefined);
          await locker.end();
        }
        await expect
          .poll(async () => (await historyOf(api1, hook.id, '&status=success')).filter((a) => a.event_type === 'cost.anomaly').length, {
            timeout: 10_000,
          })
          .toBe(3);
        expect(receiver.requests.filter(to(hook.id, 'cost.anomaly'))).toHaveLength(3);
      } finally {
        await gw1.close();
      }
    },
    30_000,
  );
});
