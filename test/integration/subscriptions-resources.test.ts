import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SUBSCRIBER_QUEUE_LIMIT } from '../../src/subscriptions/delivery-update-hub.js';
import { serviceToken, userToken } from '../helpers/auth.js';
import { onRealPostgres } from '../helpers/database.js';
import { createWebhook, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import { eventSourceSubscribe, sseSubscribe, until, wsClient, wsSubscribe, type UpdateMessage } from '../helpers/subscriptions.js';

describe('live delivery updates: resources', () => {
  let gw: TestGateway;
  /** Subscriptions open on this gateway, over every transport. */
  const openSubscriptions = () => gw.gateway.deliveryUpdates?.openCount() ?? 0;
  let receiver: Receiver;
  let tenant: string;
  let token: string;
  let api: TestClient;
  let service: TestClient;

  beforeAll(async () => {
    gw = await startTestGateway({ WEBHOOK_RETRY_SCHEDULE: '100ms', WORKER_POLL_INTERVAL: '50ms', WORKER_CONCURRENCY: '16' });
    receiver = await startReceiver();
    tenant = uniqueTenant();
    token = await userToken(tenant);
    api = client(gw.url, token);
    service = client(gw.url, await serviceToken());
  });
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  const serverConnections = () =>
    new Promise<number>((resolve, reject) => gw.gateway.server!.getConnections((err, n) => (err ? reject(err) : resolve(n))));
  /** Connections to this gateway's database, seen from Postgres (real Postgres only). */
  const databaseConnections = async (): Promise<number> => {
    const c = new pg.Client({ connectionString: gw.database.url });
    await c.connect();
    try {
      const r = await c.query<{ n: string }>('select count(*) as n from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()');
      return Number(r.rows[0]!.n);
    } finally {
      await c.end();
    }
  };

  it('connect and disconnect cycles over every transport leave nothing behind', async () => {
    const webhook = await createWebhook(api, { url: `${receiver.url}/cycles`, events: ['drift.detected'] });
    const base = openSubscriptions();
    const cycle = async () => {
      for (const open of [
        () => sseSubscribe(gw.url, token, { webhookId: webhook.id }),
        () => eventSourceSubscribe(gw.url, token),
      ]) {
        const feed = open();
        await until(() => openSubscriptions() === base + 1, 5_000, 'an SSE subscription');
        feed.close();
        await until(() => openSubscriptions() === base, 5_000, 'the SSE subscription to end');
      }
      const ws = wsClient(gw.url, { token });
      const feeds = [wsSubscribe(ws, { webhookId: webhook.id }), wsSubscribe(ws)];
      await until(() => openSubscriptions() === base + 2, 5_000, 'two WebSocket subscriptions');
      feeds[0]!.close();
      await until(() => openSubscriptions() === base + 1, 5_000, 'one WebSocket subscription to end');
      await ws.dispose();
      await until(() => openSubscriptions() === base, 5_000, 'the WebSocket connection to end');
    };
    const settle = async () => {
      // Sockets close a moment after the client lets go; wait until the count stops falling.
      let last = await serverConnections();
      for (let i = 0; i < 20; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        const now = await serverConnections();
        if (now === last) break;
        last = now;
      }
      return { subscriptions: openSubscriptions(), connections: last, database: onRealPostgres ? await databaseConnections() : 0 };
    };

    for (let i = 0; i < 10; i++) await cycle();
    const warm = await settle();
    for (let i = 0; i < 40; i++) await cycle();
    const after = await settle();
    expect(after.subscriptions).toBe(base);
    // Keep-alive sockets of the test's own HTTP client may come and go; leaked ones would be 40+.
    expect(after.connections).toBeLessThanOrEqual(warm.connections + 2);
    expect(after.database).toBeLessThanOrEqual(warm.database);

    // And the gateway still serves live updates after all that.
    const feed = sseSubscribe(gw.url, token, { webhookId: webhook.id });
    await until(() => openSubscriptions() === base + 1, 5_000, 'a last subscription');
    await service.post('/api/v1/events', { event: 'drift.detected', data: {}, tenant_id: tenant });
    await feed.waitForUpdates((u) => u.kind === 'attempt' && u.delivery.eventType === 'drift.detected', 1);
    feed.close();
    await until(() => openSubscriptions() === base, 5_000, 'the last subscription to end');
  }, 120_000);

  it('a subscriber that stops reading is ended, and neither delivery nor other subscribers wait for it', async () => {
    const hooks = [];
    for (let i = 0; i < 10; i++) hooks.push(await createWebhook(api, { url: `${receiver.url}/fan-${i}`, events: ['cost.anomaly'] }));
    const base = openSubscriptions();
    const reader = sseSubscribe(gw.url, token);
    // Subscribed the way a resolver does, but never read: a client that stopped reading.
    const stuck = gw.gateway.deliveryUpdates!.subscribe(tenant, null);
    await until(() => openSubscriptions() === base + 2, 5_000, 'both subscriptions');

    // 15 events to 10 webhooks: 150 deliveries, each queued and attempted, 300 updates in all.
    const events = 15;
    expect(events * hooks.length * 2).toBeGreaterThan(SUBSCRIBER_QUEUE_LIMIT);
    for (let i = 0; i < events; i++) {
      const res = await service.post('/api/v1/events', { event: 'cost.anomaly', data: { i }, tenant_id: tenant });
      expect(res.status).toBe(202);
    }
    await receiver.waitFor(events * hooks.length, { match: (r) => r.json?.event === 'cost.anomaly', timeoutMs: 30_000 });
    const sent = (u: UpdateMessage) => u.kind === 'attempt' && u.delivery.eventType === 'cost.anomaly';
    await reader.waitForUpdates(sent, events * hooks.length, 30_000);
    expect(reader.results.every((r) => r.errors === undefined)).toBe(true);

    await until(() => openSubscriptions() === base + 1, 5_000, 'the stuck subscription to be ended');
    expect(await stuck.next()).toEqual({ value: { kind: 'overflow' }, done: false });
    expect(await stuck.next()).toEqual({ value: undefined, done: true });
    reader.close();
    await until(() => openSubscriptions() === base, 5_000, 'the reader to end');
  }, 120_000);

  it('shutting down cuts open subscriptions, so clients reconnect elsewhere, instead of waiting for them', async () => {
    const base = openSubscriptions();
    const sse = sseSubscribe(gw.url, token);
    const es = eventSourceSubscribe(gw.url, token);
    const ws = wsClient(gw.url, { token });
    const overWs = wsSubscribe(ws);
    await until(() => openSubscriptions() === base + 3, 5_000, 'three subscriptions');
    const started = Date.now();
    await gw.stop();
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(openSubscriptions()).toBe(0);
    for (const feed of [sse, es, overWs]) {
      await feed.waitForEnd(5_000);
      // Cut, not completed: a completed subscription tells a client not to come back.
      expect(feed.completed).toBe(false);
      expect(feed.error).toBeDefined();
    }
    await ws.dispose();
  });
});
