// Operational events (CONTRACT.md section 7): webhook.failing, webhook.disabled and
// webhook.recovered are sent by the gateway itself, through the ordinary pipeline (an event row,
// signed deliveries), to the tenant's other subscribed webhooks (recovered to the webhook itself
// too), once per transition however many deliveries fail; they cannot be published, they are in
// the catalogue, and the webhookHealth subscription streams them. Times are compressed by
// configuration (one retry after 10ms, a short WEBHOOK_DISABLE_AFTER); every wait is for a condition.
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceToken, userToken } from '../helpers/auth.js';
import { createWebhook, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client } from '../helpers/http.js';
import { answer, startReceiver, type ReceivedRequest, type Receiver } from '../helpers/receiver.js';
import { sseSubscribe, until, wsClient, wsSubscribe } from '../helpers/subscriptions.js';

const EVENT = 'drift.detected';
const OPERATIONAL = ['webhook.failing', 'webhook.disabled', 'webhook.recovered'];

const WEBHOOK_HEALTH = `subscription Health($webhookId: ID!) {
  webhookHealth(webhookId: $webhookId) {
    kind webhookId eventId at failedSince reason deliveryId eventType lastResponseCode recoveredAt
  }
}`;

interface HealthMessage {
  kind: string;
  webhookId: string;
  eventId: string;
  failedSince: string | null;
  reason: string | null;
  deliveryId: string | null;
  eventType: string | null;
  lastResponseCode: number | null;
  recoveredAt: string | null;
}

const ofType = (type: string, path?: string) => (r: ReceivedRequest) => r.json?.event === type && (path === undefined || r.path === path);

describe('operational events', () => {
  let gw: TestGateway;
  let target: Receiver;
  let monitor: Receiver;
  const openSubscriptions = () => gw.gateway.deliveryUpdates?.openCount() ?? 0;

  beforeAll(async () => {
    gw = await startTestGateway({
      // One quick retry: a delivery fails for good within milliseconds.
      WEBHOOK_RETRY_SCHEDULE: '10ms',
      WEBHOOK_DISABLE_AFTER: '3s',
      WORKER_POLL_INTERVAL: '50ms',
    });
    // The creation ping succeeds; every event after it fails until the test repairs the endpoint.
    target = await startReceiver((req, n, res) => (req.json?.event === 'ping' ? answer(200)(req, n, res) : answer(500, 'down')(req, n, res)));
    monitor = await startReceiver();
  });
  afterAll(async () => {
    await target?.close();
    await monitor?.close();
    await gw?.close();
  });

  it('tells the other webhooks once per transition: failing, disabled, recovered; and streams the same', async () => {
    const tenant = uniqueTenant('ops');
    const api = client(gw.url, await userToken(tenant));
    const publisher = client(gw.url, await serviceToken());
    const failing = await createWebhook(api, { url: `${target.url}/failing`, events: [EVENT, 'webhook.recovered'] });
    const watcher = await createWebhook(api, { url: `${monitor.url}/monitor`, events: OPERATIONAL });
    // Another tenant's webhook, subscribed to everything, hears nothing of this one.
    const stranger = client(gw.url, await userToken(uniqueTenant('stranger')));
    await createWebhook(stranger, { url: `${monitor.url}/stranger`, events: [...OPERATIONAL, EVENT] });
    await target.waitFor(1, { match: ofType('ping') });

    const before = openSubscriptions();
    const feed = sseSubscribe(gw.url, await userToken(tenant), { webhookId: failing.id }, WEBHOOK_HEALTH);
    const health = () => feed.results.flatMap((r) => ((r.data as { webhookHealth?: HealthMessage } | undefined)?.webhookHealth ? [(r.data as { webhookHealth: HealthMessage }).webhookHealth] : []));
    try {
      await until(() => openSubscriptions() === before + 1, 10_000, 'the webhookHealth subscription');

      // Many deliveries fail at once, well within WEBHOOK_DISABLE_AFTER; more fail until the
      // gateway disables the webhook. One transition each, however many fail.
      const first = await Promise.all(Array.from({ length: 20 }, (_, n) => publisher.post('/api/v1/events', { event: EVENT, data: { n }, tenant_id: tenant })));
      for (const res of first) expect(res.status, res.text).toBe(202);
      let published = 20;
      await until(
        async () => {
          if ((await api.get(`/api/v1/webhooks/${failing.id}`)).body.disabled_reason === 'failing') return true;
          const sent = target.requests.filter(ofType(EVENT)).length;
          if (sent >= published) {
            const answers = await Promise.all(Array.from({ length: 5 }, (_, n) => publisher.post('/api/v1/events', { event: EVENT, data: { n }, tenant_id: tenant })));
            for (const res of answers) expect(res.status, res.text).toBe(202);
            published += 5;
          }
          return false;
        },
        30_000,
        'the failing webhook to be disabled',
      );
      const [counted] = await gw.gateway.db.orm.em
        .fork()
        .getConnection()
        .execute<{ n: string | number }[]>(`select count(*) as n from delivery where webhook_id = ? and status = 'failed'`, [failing.id]);
      expect(Number(counted?.n)).toBeGreaterThanOrEqual(10);

      const [failingEvent] = await monitor.waitFor(1, { match: ofType('webhook.failing', '/monitor'), timeoutMs: 15_000 });
      const [disabledEvent] = await monitor.waitFor(1, { match: ofType('webhook.disabled', '/monitor'), timeoutMs: 15_000 });
      await feed.waitFor(() => health().length >= 2, 15_000, 'failing and disabled on the subscription');
      // Every delivery of the failing webhook has an outcome by now, and still one of each was sent.
      expect(monitor.requests.filter(ofType('webhook.failing')).length).toBe(1);
      expect(monitor.requests.filter(ofType('webhook.disabled')).length).toBe(1);
      expect(failingEvent!.json).toMatchObject({
        event: 'webhook.failing',
        webhook_id: watcher.id,
        data: { webhook_id: failing.id, event_type: EVENT, last_response_code: 500 },
      });
      const failedSince = failingEvent!.json.data.failed_since as string;
      expect(Date.parse(failedSince)).not.toBeNaN();
      expect(failingEvent!.json.data.delivery_id).toMatch(/^del_/);
      expect(disabledEvent!.json).toMatchObject({
        event: 'webhook.disabled',
        data: { webhook_id: failing.id, reason: 'failing', failed_since: failedSince },
      });
      // Signed like any delivery, with the monitor's own secret.
      const expected = `sha256=${createHmac('sha256', watcher.secret).update(failingEvent!.body).digest('hex')}`;
      expect(failingEvent!.headers['x-infraaudit-signature']).toBe(expected);
      // It never publishes to itself.
      expect(target.requests.filter((r) => r.json?.event?.startsWith('webhook.')).length).toBe(0);

      // The endpoint is repaired and the webhook enabled again: its next success is one recovery.
      target.respond(answer(200, 'ok'));
      const enabled = await api.put(`/api/v1/webhooks/${failing.id}`, { enabled: true });
      expect(enabled.status, enabled.text).toBe(200);
      for (let n = 0; n < 3; n += 1) {
        expect((await publisher.post('/api/v1/events', { event: EVENT, data: { repaired: n }, tenant_id: tenant })).status).toBe(202);
      }
      const [recovered] = await monitor.waitFor(1, { match: ofType('webhook.recovered', '/monitor'), timeoutMs: 15_000 });
      const [toItself] = await target.waitFor(1, { match: ofType('webhook.recovered', '/failing'), timeoutMs: 15_000 });
      await target.waitFor(3, { match: (r) => r.json?.event === EVENT && r.json?.data?.repaired !== undefined, timeoutMs: 15_000 });
      await feed.waitFor(() => health().length >= 3, 15_000, 'recovered on the subscription');
      expect(recovered!.json.data).toMatchObject({ webhook_id: failing.id, failed_since: failedSince });
      expect(Date.parse(recovered!.json.data.recovered_at as string)).toBeGreaterThan(Date.parse(failedSince));
      expect(toItself!.json).toMatchObject({ event: 'webhook.recovered', webhook_id: failing.id, data: recovered!.json.data });
      expect(monitor.requests.filter(ofType('webhook.recovered')).length).toBe(1);
      expect(target.requests.filter(ofType('webhook.recovered')).length).toBe(1);

      // The subscription told the same story, one message per change.
      const messages = health();
      expect(messages.map((m) => m.kind)).toEqual(['failing', 'disabled', 'recovered']);
      expect(messages[0]).toMatchObject({ webhookId: failing.id, eventType: EVENT, lastResponseCode: 500, deliveryId: failingEvent!.json.data.delivery_id });
      expect(Date.parse(messages[0]!.failedSince!)).toBe(Date.parse(failedSince));
      expect(messages[1]).toMatchObject({ webhookId: failing.id, reason: 'failing' });
      expect(messages[2]).toMatchObject({ webhookId: failing.id, recoveredAt: expect.any(String) });
      expect(Date.parse(messages[2]!.recoveredAt!)).toBe(Date.parse(recovered!.json.data.recovered_at as string));

      // The other tenant heard nothing.
      expect(monitor.requests.filter((r) => r.path === '/stranger' && r.json?.event?.startsWith('webhook.')).length).toBe(0);
    } finally {
      feed.close();
    }
  });

  it('a 410 Gone sends webhook.failing, then webhook.disabled with reason gone, once each', async () => {
    const tenant = uniqueTenant('gone');
    const api = client(gw.url, await userToken(tenant));
    const gone = await startReceiver((req, n, res) => (req.json?.event === 'ping' ? answer(200)(req, n, res) : answer(410, 'gone')(req, n, res)));
    try {
      const hook = await createWebhook(api, { url: `${gone.url}/gone`, events: [EVENT] });
      await createWebhook(api, { url: `${monitor.url}/gone-monitor`, events: OPERATIONAL });
      await gone.waitFor(1, { match: ofType('ping') });
      const publisher = client(gw.url, await serviceToken());
      const answers = await Promise.all(Array.from({ length: 5 }, (_, n) => publisher.post('/api/v1/events', { event: EVENT, data: { n }, tenant_id: tenant })));
      for (const res of answers) expect(res.status, res.text).toBe(202);
      await expect.poll(async () => (await api.get(`/api/v1/webhooks/${hook.id}`)).body.disabled_reason, { timeout: 15_000 }).toBe('gone');
      const [failingEvent] = await monitor.waitFor(1, { match: ofType('webhook.failing', '/gone-monitor'), timeoutMs: 15_000 });
      const [disabledEvent] = await monitor.waitFor(1, { match: ofType('webhook.disabled', '/gone-monitor'), timeoutMs: 15_000 });
      expect(failingEvent!.json.data).toMatchObject({ webhook_id: hook.id, event_type: EVENT, last_response_code: 410 });
      expect(disabledEvent!.json.data).toEqual({ webhook_id: hook.id, reason: 'gone', failed_since: failingEvent!.json.data.failed_since });
      expect(monitor.requests.filter((r) => r.path === '/gone-monitor').map((r) => r.json?.event).sort()).toEqual(['ping', 'webhook.disabled', 'webhook.failing']);
    } finally {
      await gone.close();
    }
  });

  it('streams failing then disabled over WebSocket (graphql-ws) when an endpoint answers 410 Gone', async () => {
    const tenant = uniqueTenant('ws-health');
    const token = await userToken(tenant);
    const api = client(gw.url, token);
    const gone = await startReceiver((req, n, res) => (req.json?.event === 'ping' ? answer(200)(req, n, res) : answer(410, 'gone')(req, n, res)));
    const ws = wsClient(gw.url, { token });
    try {
      const hook = await createWebhook(api, { url: `${gone.url}/ws-gone`, events: [EVENT] });
      await gone.waitFor(1, { match: ofType('ping') });
      const before = openSubscriptions();
      const feed = wsSubscribe(ws, { webhookId: hook.id }, WEBHOOK_HEALTH);
      const health = () => feed.results.flatMap((r) => ((r.data as { webhookHealth?: HealthMessage } | undefined)?.webhookHealth ? [(r.data as { webhookHealth: HealthMessage }).webhookHealth] : []));
      try {
        await until(() => openSubscriptions() === before + 1, 10_000, 'the webhookHealth subscription over WebSocket');
        const res = await client(gw.url, await serviceToken()).post('/api/v1/events', { event: EVENT, data: { ws: true }, tenant_id: tenant });
        expect(res.status, res.text).toBe(202);
        await feed.waitFor(() => health().length >= 2, 15_000, 'failing and disabled over WebSocket');
        expect(health().map((m) => m.kind)).toEqual(['failing', 'disabled']);
        expect(health()[0]).toMatchObject({ webhookId: hook.id, eventType: EVENT, lastResponseCode: 410 });
        expect(health()[1]).toMatchObject({ webhookId: hook.id, reason: 'gone', failedSince: health()[0]!.failedSince });
      } finally {
        feed.close();
      }
    } finally {
      await ws.dispose();
      await gone.close();
    }
  });

  it('cannot be published over REST or GraphQL', async () => {
    const tenant = uniqueTenant('publish');
    const api = client(gw.url, await userToken(tenant));
    const service = client(gw.url, await serviceToken());
    for (const event of OPERATIONAL) {
      const res = await api.post('/api/v1/events', { event, data: { webhook_id: 'wh_x' } });
      expect(res.status, `${event}: ${res.text}`).toBe(422);
      expect(res.body.code).toBe('VALIDATION_ERROR');
      const bySvc = await service.post('/api/v1/events', { event, data: {}, tenant_id: tenant });
      expect(bySvc.status).toBe(422);
      const gql = await api.graphql(`mutation($input: PublishEventInput!) { publishEvent(input: $input) { id } }`, { input: { event, data: {} } });
      expect(gql.body.errors?.[0]?.extensions?.['code']).toBe('VALIDATION_ERROR');
    }
  });

  it('are in the event catalogue', async () => {
    const api = client(gw.url, await userToken(uniqueTenant('catalogue')));
    const rest = await api.get('/api/v1/webhooks/events');
    const events = (rest.body.events as { event: string; description: string }[]).filter((e) => OPERATIONAL.includes(e.event));
    expect(events.map((e) => e.event).sort()).toEqual([...OPERATIONAL].sort());
    for (const e of events) expect(e.description.length).toBeGreaterThan(0);
    const gql = await api.graphql(`{ webhookEventTypes { event } }`);
    expect((gql.body.data.webhookEventTypes as { event: string }[]).map((e) => e.event)).toEqual(expect.arrayContaining(OPERATIONAL));
  });

  it("webhookHealth of another tenant's webhook is NOT_FOUND", async () => {
    const owner = client(gw.url, await userToken(uniqueTenant('owner')));
    const hook = await createWebhook(owner, { url: `${monitor.url}/owned`, events: [EVENT] });
    const feed = sseSubscribe(gw.url, await userToken(uniqueTenant('other')), { webhookId: hook.id }, WEBHOOK_HEALTH);
    try {
      await feed.waitFor((f) => f.results.some((r) => r.errors !== undefined) || f.ended, 10_000, 'an error');
      expect(feed.results.flatMap((r) => r.errors ?? []).map((e) => e.extensions?.code)).toContain('NOT_FOUND');
    } finally {
      feed.close();
    }
  });
});
