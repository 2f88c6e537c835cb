// Live subscriptions are bounded per tenant (MAX_SUBSCRIPTIONS_PER_TENANT, SSE and WebSocket
// together) and end with the credentials they were opened with.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceToken, userToken } from '../helpers/auth.js';
import { createWebhook, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client } from '../helpers/http.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';
import {
  DELIVERY_UPDATES,
  eventSourceSubscribe,
  sseSubscribe,
  until,
  wsClient,
  wsSubscribe,
  type ExecutionResultLike,
  type Feed,
} from '../helpers/subscriptions.js';

const LIMIT = 4;

/** The error code a refused or ended subscription carried, whichever way the transport told it. */
function errorCode(feed: Feed): string | undefined {
  const fromResults = feed.results.flatMap((r) => r.errors ?? [])[0]?.extensions?.code;
  if (fromResults !== undefined) return fromResults;
  const errors = feed.error as ExecutionResultLike['errors'];
  return Array.isArray(errors) ? errors[0]?.extensions?.code : undefined;
}

describe('live subscriptions: quota per tenant', () => {
  let gw: TestGateway;
  let receiver: Receiver;
  const feeds: Feed[] = [];
  const sockets: ReturnType<typeof wsClient>[] = [];
  /** Subscriptions open on this gateway, over every transport. */
  const openSubscriptions = () => gw.gateway.deliveryUpdates?.openCount() ?? 0;
  const track = (feed: Feed) => (feeds.push(feed), feed);
  const socket = (token: string) => {
    const ws = wsClient(gw.url, { token });
    sockets.push(ws);
    return ws;
  };

  beforeAll(async () => {
    gw = await startTestGateway({ MAX_SUBSCRIPTIONS_PER_TENANT: String(LIMIT), WORKER_POLL_INTERVAL: '50ms' });
    receiver = await startReceiver();
  });
  afterAll(async () => {
    for (const feed of feeds) feed.close();
    await Promise.all(
      sockets.map(async (ws) => {
        await ws.dispose();
      }),
    );
    await gw?.close();
    await receiver?.close();
  });

  /** A GraphQL-over-SSE request read to its end: what a refused stream answers. */
  async function sseRequest(token: string): Promise<{ status: number; body: string }> {
    const res = await fetch(`${gw.url}/graphql`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', 'content-type': 'application/json' },
      body: JSON.stringify({ query: DELIVERY_UPDATES }),
    });
    return { status: res.status, body: await res.text() };
  }

  it('at the limit over SSE and WebSocket together passes, one more is refused with RATE_LIMITED, and a closed one frees its slot at once', async () => {
    const tenant = uniqueTenant();
    const token = await userToken(tenant);
    const webhook = await createWebhook(client(gw.url, token), { url: `${receiver.url}/quota`, events: ['alert.created'] });
    await receiver.waitFor(1);
    const ws = socket(token);
    const open = [
      track(sseSubscribe(gw.url, token)),
      track(eventSourceSubscribe(gw.url, token, { webhookId: webhook.id })),
      track(wsSubscribe(ws)),
      track(wsSubscribe(ws, { webhookId: webhook.id })),
    ];
    await until(() => openSubscriptions() === LIMIT, 10_000, `${LIMIT} open subscriptions`);

    // One past the limit, over each transport.
    const refusedSse = await sseRequest(token);
    expect(refusedSse.status).toBe(429);
    expect(refusedSse.body).toContain('"RATE_LIMITED"');
    const refusedClient = track(sseSubscribe(gw.url, token));
    await refusedClient.waitForEnd();
    expect(refusedClient.status).toBe(429);
    const refusedEventSource = track(eventSourceSubscribe(gw.url, token));
    await refusedEventSource.waitForEnd();
    expect(refusedEventSource.status).toBe(429);
    const refusedWs = track(wsSubscribe(ws, { webhookId: webhook.id }));
    await refusedWs.waitForEnd();
    expect(errorCode(refusedWs)).toBe('RATE_LIMITED');
    expect(refusedWs.updates).toEqual([]);
    // Nothing of the refused ones was kept.
    expect(openSubscriptions()).toBe(LIMIT);

    // Another tenant is not held to this one's count.
    const other = track(sseSubscribe(gw.url, await userToken(uniqueTenant())));
    await until(() => openSubscriptions() === LIMIT + 1, 10_000, 'the other tenant’s subscription');
    other.close();
    await until(() => openSubscriptions() === LIMIT, 10_000, 'the other tenant’s subscription to end');

    // The WebSocket stayed open: its subscriptions, like the SSE ones, still get updates.
    const published = await client(gw.url, await serviceToken()).post('/api/v1/events', { event: 'alert.created', data: {}, tenant_id: tenant });
    expect(published.status).toBe(202);
    for (const feed of open) await feed.waitForUpdates((u) => u.delivery.eventType === 'alert.created', 1);

    // Closing one frees its slot at once: one more passes, and the next is refused again.
    open[2]!.close();
    await until(() => openSubscriptions() === LIMIT - 1, 10_000, 'the closed subscription to end');
    const again = track(wsSubscribe(ws));
    await until(() => openSubscriptions() === LIMIT, 10_000, 'the new subscription');
    expect(again.ended).toBe(false);
    expect((await sseRequest(token)).status).toBe(429);
  });

  it('two subscriptions asking for the last slot at once: exactly one gets it', async () => {
    const tenant = uniqueTenant();
    const token = await userToken(tenant);
    const base = openSubscriptions();
    for (let i = 0; i < LIMIT - 1; i++) track(sseSubscribe(gw.url, token));
    await until(() => openSubscriptions() === base + LIMIT - 1, 10_000, `${LIMIT - 1} open subscriptions`);
    const ws = socket(token);
    const racing = [track(wsSubscribe(ws)), track(wsSubscribe(ws))];
    await until(() => racing.some((f) => f.ended), 10_000, 'one of the two to be refused');
    expect(racing.filter((f) => f.ended).map(errorCode)).toEqual(['RATE_LIMITED']);
    expect(openSubscriptions()).toBe(base + LIMIT);
  });
});
