import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceToken, userToken } from '../helpers/auth.js';
import { createWebhook, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { answer, startReceiver, type Receiver } from '../helpers/receiver.js';
import {
  eventSourceSubscribe,
  sseSubscribe,
  until,
  wsClient,
  wsSubscribe,
  type Feed,
  type UpdateMessage,
} from '../helpers/subscriptions.js';

describe('live delivery updates: tenant isolation', () => {
  let gw: TestGateway;
  /** Subscriptions open on this gateway, over every transport. */
  const openSubscriptions = () => gw.gateway.deliveryUpdates?.openCount() ?? 0;
  let receiver: Receiver;
  let service: TestClient;
  const a = { tenant: '', token: '', api: undefined as unknown as TestClient };
  const b = { tenant: '', token: '', api: undefined as unknown as TestClient };
  const feeds: Feed[] = [];
  const wsClients: ReturnType<typeof wsClient>[] = [];

  beforeAll(async () => {
    // A long retry schedule keeps a failed delivery pending, for the cancellation case.
    gw = await startTestGateway({ WEBHOOK_RETRY_SCHEDULE: '1h', WORKER_POLL_INTERVAL: '50ms' });
    receiver = await startReceiver();
    service = client(gw.url, await serviceToken());
    for (const t of [a, b]) {
      t.tenant = uniqueTenant();
      t.token = await userToken(t.tenant);
      t.api = client(gw.url, t.token);
    }
  });
  afterAll(async () => {
    for (const f of feeds) f.close();
    for (const c of wsClients) await c.dispose();
    await gw?.close();
    await receiver?.close();
  });

  const ws = (token: string) => {
    const c = wsClient(gw.url, { authorization: `Bearer ${token}` });
    wsClients.push(c);
    return c;
  };
  const watch = (feed: Feed) => {
    feeds.push(feed);
    return feed;
  };
  const publish = async (tenant: string, event: string) => {
    const res = await service.post('/api/v1/events', { event, data: { n: 1 }, tenant_id: tenant });
    expect(res.status, res.text).toBe(202);
  };

  it("a subscriber only ever sees its own tenant's deliveries", async () => {
    const a1 = await createWebhook(a.api, { url: `${receiver.url}/a1`, events: ['drift.detected'] });
    const a2 = await createWebhook(a.api, { url: `${receiver.url}/a2`, events: ['drift.detected'] });
    const b1 = await createWebhook(b.api, { url: `${receiver.url}/b1`, events: ['drift.detected'] });
    await receiver.waitFor(3);
    const before = openSubscriptions();
    const aAll = watch(sseSubscribe(gw.url, a.token));
    const aAllWs = watch(wsSubscribe(ws(a.token)));
    const aOne = watch(wsSubscribe(ws(a.token), { webhookId: a1.id }));
    const aOneEs = watch(eventSourceSubscribe(gw.url, a.token, { webhookId: a1.id }));
    const bAll = watch(sseSubscribe(gw.url, b.token));
    await until(() => openSubscriptions() === before + 5, 10_000, 'five subscriptions');

    // B's traffic goes first: updates reach subscribers in order, so once A has seen its own
    // delivery succeed, anything of B's that could leak would already have arrived.
    for (let i = 0; i < 3; i++) await publish(b.tenant, 'drift.detected');
    await publish(a.tenant, 'drift.detected');
    const succeeded = (webhookId: string) => (u: UpdateMessage) =>
      u.delivery.webhookId === webhookId && u.delivery.eventType === 'drift.detected' && u.kind === 'attempt';
    await bAll.waitForUpdates(succeeded(b1.id), 3);
    await aAll.waitForUpdates(succeeded(a1.id), 1);
    await aAll.waitForUpdates(succeeded(a2.id), 1);
    await aAllWs.waitForUpdates(succeeded(a2.id), 1);
    await aOne.waitForUpdates(succeeded(a1.id), 1);
    await aOneEs.waitForUpdates(succeeded(a1.id), 1);

    const ids = (feed: Feed) => new Set(feed.updates.map((u) => u.delivery.webhookId));
    expect(ids(aAll)).toEqual(new Set([a1.id, a2.id]));
    expect(ids(aAllWs)).toEqual(new Set([a1.id, a2.id]));
    expect(ids(aOne)).toEqual(new Set([a1.id]));
    expect(ids(aOneEs)).toEqual(new Set([a1.id]));
    expect(ids(bAll)).toEqual(new Set([b1.id]));
    for (const feed of [aAll, aAllWs, aOne, aOneEs]) expect(JSON.stringify(feed.results)).not.toContain(b1.id);
    expect(JSON.stringify(bAll.results)).not.toContain(a1.id);
  });

  it("another tenant's webhook id, an unknown id and a malformed id are the same NOT_FOUND", async () => {
    const b1 = await createWebhook(b.api, { url: `${receiver.url}/b-foreign`, events: ['alert.created'] });
    const before = openSubscriptions();
    const errors: string[] = [];
    for (const webhookId of [b1.id, 'wh_AAAAAAAAAAAAAAAAAAAA', 'not-an-id', '']) {
      for (const [name, feed] of Object.entries({
        'graphql-sse': watch(sseSubscribe(gw.url, a.token, { webhookId })),
        EventSource: watch(eventSourceSubscribe(gw.url, a.token, { webhookId })),
        'graphql-ws': watch(wsSubscribe(ws(a.token), { webhookId })),
      })) {
        await feed.waitForEnd();
        expect(feed.updates, `${name} ${webhookId}`).toEqual([]);
        const error = feed.results.flatMap((r) => r.errors ?? [])[0];
        expect(error?.extensions?.code, `${name} ${webhookId}: ${JSON.stringify(feed.results)}`).toBe('NOT_FOUND');
        errors.push(error!.message);
      }
    }
    expect(new Set(errors).size).toBe(1);
    expect(openSubscriptions()).toBe(before);
  });

  it('a token bound to no tenant may not subscribe', async () => {
    const feed = watch(sseSubscribe(gw.url, await serviceToken()));
    await feed.waitForEnd();
    expect(feed.updates).toEqual([]);
    expect(feed.results.flatMap((r) => r.errors ?? []).map((e) => [e.extensions?.code, e.message])).toEqual([
      ['FORBIDDEN', 'this token is not bound to a tenant'],
    ]);
  });

  it('disabling a webhook with a retry pending is announced as a status change', async () => {
    receiver.respond((r, n, res) => answer(r.path === '/flaky' ? 500 : 200)(r, n, res));
    const flaky = await createWebhook(a.api, { url: `${receiver.url}/flaky`, events: ['job.completed'] });
    const before = openSubscriptions();
    const feed = watch(wsSubscribe(ws(a.token), { webhookId: flaky.id }));
    await until(() => openSubscriptions() === before + 1, 10_000, 'the subscription');
    await publish(a.tenant, 'job.completed');
    const job = (u: UpdateMessage) => u.delivery.eventType === 'job.completed';
    await feed.waitForUpdates((u) => job(u) && u.kind === 'attempt', 1);
    const disabled = await a.api.put(`/api/v1/webhooks/${flaky.id}`, { enabled: false });
    expect(disabled.status, disabled.text).toBe(200);
    await feed.waitForUpdates((u) => job(u) && u.kind === 'status', 1);
    expect(feed.updates.filter(job).map((u) => [u.kind, u.delivery.status, u.delivery.attemptCount])).toEqual([
      ['created', 'pending', 0],
      ['attempt', 'pending', 1],
      ['status', 'cancelled', 1],
    ]);
    expect(feed.updates.filter(job).at(-1)!.attempt).toBeNull();
  });
});
