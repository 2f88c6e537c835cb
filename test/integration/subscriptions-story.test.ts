import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceToken, userToken } from '../helpers/auth.js';
import { createWebhook, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { answer, startReceiver, type Receiver } from '../helpers/receiver.js';
import {
  eventSourceSubscribe,
  rawWsHandshake,
  sseSubscribe,
  until,
  wsClient,
  wsSubscribe,
  type Feed,
  type UpdateMessage,
} from '../helpers/subscriptions.js';

const story = (updates: UpdateMessage[]) =>
  updates.map((u) => [u.kind, u.delivery.status, u.attempt?.attempt ?? null, u.attempt?.status ?? null]);

describe('live delivery updates: a delivery watched from pending to its end', () => {
  let gw: TestGateway;
  /** Subscriptions open on this gateway, over every transport. */
  const openSubscriptions = () => gw.gateway.deliveryUpdates?.openCount() ?? 0;
  let receiver: Receiver;
  let tenant: string;
  let token: string;
  let api: TestClient;
  let service: TestClient;
  const feeds: Feed[] = [];
  const wsClients: ReturnType<typeof wsClient>[] = [];

  beforeAll(async () => {
    gw = await startTestGateway({ WEBHOOK_RETRY_SCHEDULE: '100ms,200ms', WORKER_POLL_INTERVAL: '50ms' });
    receiver = await startReceiver();
    tenant = uniqueTenant();
    token = await userToken(tenant);
    api = client(gw.url, token);
    service = client(gw.url, await serviceToken());
  });
  afterAll(async () => {
    for (const f of feeds) f.close();
    for (const c of wsClients) await c.dispose();
    await gw?.close();
    await receiver?.close();
  });

  const publish = async (event: string) => {
    const res = await service.post('/api/v1/events', { event, data: { resource: 'sg-1' }, tenant_id: tenant });
    expect(res.status, res.text).toBe(202);
    return res.body.id as string;
  };

  it('pending, failed, retried, success: the same story over graphql-sse, EventSource and graphql-ws', async () => {
    const webhook = await createWebhook(api, { url: `${receiver.url}/story`, events: ['drift.detected'] });
    await receiver.waitFor(1);
    const before = openSubscriptions();
    const ws = wsClient(gw.url, { authorization: `Bearer ${token}` });
    wsClients.push(ws);
    const watchers = {
      'graphql-sse': sseSubscribe(gw.url, token, { webhookId: webhook.id }),
      EventSource: eventSourceSubscribe(gw.url, token, { webhookId: webhook.id }),
      'graphql-ws': wsSubscribe(ws, { webhookId: webhook.id }),
    };
    feeds.push(...Object.values(watchers));
    await until(() => openSubscriptions() === before + 3, 10_000, 'three open subscriptions');

    let drifts = 0;
    receiver.respond((r, n, res) => answer(r.json?.event === 'drift.detected' && ++drifts <= 2 ? 500 : 200)(r, n, res));
    const eventId = await publish('drift.detected');
    const sent = await receiver.waitFor(3, { match: (r) => r.json?.event === 'drift.detected' });
    const deliveryId = sent[0]!.json.delivery_id as string;

    for (const [name, feed] of Object.entries(watchers)) {
      const done = (u: UpdateMessage) => u.delivery.eventType === 'drift.detected' && u.delivery.status === 'success';
      await feed.waitForUpdates(done, 1);
      const updates = feed.updates.filter((u) => u.delivery.eventType === 'drift.detected');
      expect(story(updates), name).toEqual([
        ['created', 'pending', null, null],
        ['attempt', 'pending', 1, 'failed'],
        ['attempt', 'pending', 2, 'failed'],
        ['attempt', 'success', 3, 'success'],
      ]);
      expect(new Set(updates.map((u) => u.delivery.id)), name).toEqual(new Set([deliveryId]));
      expect(updates.every((u) => u.delivery.eventId === eventId && u.delivery.webhookId === webhook.id), name).toBe(true);
      const [, first, second, last] = updates;
      expect(first!.attempt).toMatchObject({ deliveryId, webhookId: webhook.id, responseCode: 500 });
      expect(first!.attempt!.nextRetryAt, name).not.toBeNull();
      expect(second!.attempt!.nextRetryAt, name).not.toBeNull();
      expect(last!.attempt).toMatchObject({ responseCode: 200, nextRetryAt: null });
      expect(last!.delivery).toMatchObject({ attemptCount: 3, nextAttemptAt: null });
      expect(feed.results.every((r) => r.errors === undefined), name).toBe(true);
    }
  });

  it('a delivery that never succeeds ends failed, seen by a subscriber to all webhooks', async () => {
    const webhook = await createWebhook(api, { url: `${receiver.url}/down`, events: ['alert.created'] });
    const ws = wsClient(gw.url, { token });
    wsClients.push(ws);
    const before = openSubscriptions();
    const all = wsSubscribe(ws);
    feeds.push(all);
    await until(() => openSubscriptions() === before + 1, 10_000, 'the subscription');
    receiver.respond((r, n, res) => answer(r.path === '/down' ? 503 : 200)(r, n, res));
    await publish('alert.created');
    const mine = (u: UpdateMessage) => u.delivery.webhookId === webhook.id && u.delivery.eventType === 'alert.created';
    await all.waitForUpdates((u) => mine(u) && u.delivery.status === 'failed', 1);
    expect(story(all.updates.filter(mine))).toEqual([
      ['created', 'pending', null, null],
      ['attempt', 'pending', 1, 'failed'],
      ['attempt', 'pending', 2, 'failed'],
      ['attempt', 'failed', 3, 'failed'],
    ]);
    expect(all.updates.filter(mine).at(-1)!.attempt).toMatchObject({ responseCode: 503, nextRetryAt: null });
  });

  it('a new webhook shows up with its verification ping on an all-webhooks subscription', async () => {
    const before = openSubscriptions();
    const all = sseSubscribe(gw.url, token);
    feeds.push(all);
    await until(() => openSubscriptions() === before + 1, 10_000, 'the subscription');
    receiver.respond(answer(200));
    const webhook = await createWebhook(api, { url: `${receiver.url}/new`, events: ['cost.anomaly'] });
    const mine = (u: UpdateMessage) => u.delivery.webhookId === webhook.id;
    await all.waitForUpdates((u) => mine(u) && u.kind === 'attempt', 1);
    const updates = all.updates.filter(mine);
    expect(updates.map((u) => [u.kind, u.delivery.eventType])).toEqual([
      ['created', 'ping'],
      ['attempt', 'ping'],
    ]);
    expect(updates[1]!.attempt).toMatchObject({ attempt: 1, status: 'success', responseCode: 200 });
  });

  it('refuses a missing or bad token before any data, over every transport', async () => {
    const bad = `${token.slice(0, -4)}AAAA`;
    for (const [name, feed] of Object.entries({
      'graphql-sse without a token': sseSubscribe(gw.url, undefined),
      'graphql-sse with a bad token': sseSubscribe(gw.url, bad),
      'EventSource without a token': eventSourceSubscribe(gw.url, undefined),
      'EventSource with a bad token': eventSourceSubscribe(gw.url, bad),
      'EventSource with a revoked-looking API key': eventSourceSubscribe(gw.url, 'ia_live_0000000000000000000000000000000a'),
    })) {
      feeds.push(feed);
      await feed.waitForEnd();
      expect(feed.status, name).toBe(401);
      expect(feed.updates, name).toEqual([]);
    }

    expect(await rawWsHandshake(gw.url, undefined)).toEqual({ code: 4401, messages: [] });
    expect(await rawWsHandshake(gw.url, { authorization: `Bearer ${bad}` })).toEqual({ code: 4401, messages: [] });
    expect(await rawWsHandshake(gw.url, { token: bad })).toEqual({ code: 4401, messages: [] });
    expect(await rawWsHandshake(gw.url, { authorization: 'Basic abc' })).toEqual({ code: 4401, messages: [] });
    // A service token acts for no tenant of its own: there is nothing it may watch.
    expect(await rawWsHandshake(gw.url, { token: await serviceToken() })).toEqual({ code: 4403, messages: [] });
    // Subscribing before the server acknowledged the connection is refused by the protocol.
    expect(await rawWsHandshake(gw.url, undefined, { subscribeAfterInit: true })).toEqual({ code: 4401, messages: [] });

    // The same checks let a good token through, from the params or from the upgrade header.
    // Still open after 500 ms is the pass: rawWsHandshake then fails with the messages received;
    // a close before that turns into text that neither expectation accepts.
    const closedEarly = ({ code }: { code: number }) => `closed early with code ${code}`;
    const ok = await rawWsHandshake(gw.url, { authorization: `Bearer ${token}` }, { timeoutMs: 500 }).then(closedEarly, (err: Error) => err.message);
    expect(ok).toMatch(/no close within 500 ms; messages: \[\{"type":"connection_ack"\}\]/);
    const header = await rawWsHandshake(gw.url, {}, { headers: { authorization: `Bearer ${token}` }, timeoutMs: 500 }).then(
      closedEarly,
      (err: Error) => err.message,
    );
    expect(header).toMatch(/connection_ack/);

    // Anonymous SSE subscriptions are refused even though anonymous queries (introspection) pass.
    const anonymous = await fetch(`${gw.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: 'subscription { deliveryUpdates { kind } }' }),
    });
    expect(anonymous.status).toBe(401);
    const text = await anonymous.text();
    expect(text).toContain('UNAUTHORIZED');
    expect(text).not.toContain('deliveryUpdates":{');
  });
});
