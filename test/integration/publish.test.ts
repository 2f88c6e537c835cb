import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceToken, userToken } from '../helpers/auth.js';
import { createWebhook, expectUnchangedFor, historyOf, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { startReceiver, type ReceivedRequest, type Receiver } from '../helpers/receiver.js';

describe('publishing events (REST and GraphQL)', () => {
  let gw: TestGateway;
  let receiver: Receiver;
  let service: TestClient;

  beforeAll(async () => {
    gw = await startTestGateway({ WEBHOOK_RETRY_SCHEDULE: '100ms,200ms', WORKER_POLL_INTERVAL: '50ms' });
    receiver = await startReceiver();
    service = client(gw.url, await serviceToken());
  });
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  const eventsFor = (webhookId: string, type?: string) => (r: ReceivedRequest) =>
    r.json?.webhook_id === webhookId && (type === undefined || r.json?.event === type);

  /** A tenant with one enabled webhook subscribed to drift.detected, its ping already recorded. */
  async function tenantWithWebhook(prefix: string) {
    const tenant = uniqueTenant(prefix);
    const api = client(gw.url, await userToken(tenant));
    const hook = await createWebhook(api, { url: `${receiver.url}/${tenant}`, events: ['drift.detected'] });
    await receiver.waitFor(1, { match: eventsFor(hook.id, 'ping') });
    await expect.poll(async () => (await historyOf(api, hook.id)).length).toBe(1);
    return { tenant, api, hook };
  }

  describe('who may publish for which tenant', () => {
    it('a service token publishes for the tenant it names and gets 202 {id, event, deliveries}', async () => {
      const { tenant, hook } = await tenantWithWebhook('svc');
      const res = await service.post('/api/v1/events', { event: 'drift.detected', data: { n: 1 }, tenant_id: tenant });
      expect(res.status, res.text).toBe(202);
      expect(Object.keys(res.body).sort()).toEqual(['deliveries', 'event', 'id']);
      expect(res.body.id).toMatch(/^evt_[A-Za-z0-9_-]{20}$/);
      expect(res.body).toMatchObject({ event: 'drift.detected', deliveries: 1 });
      const [got] = await receiver.waitFor(1, { match: eventsFor(hook.id, 'drift.detected') });
      expect(got!.json.data).toEqual({ n: 1 });
    });

    it('a service token without tenant_id (or an empty one) is 400', async () => {
      for (const body of [
        { event: 'drift.detected', data: {} },
        { event: 'drift.detected', data: {}, tenant_id: '' },
      ]) {
        const res = await service.post('/api/v1/events', body);
        expect(res.status, res.text).toBe(400);
        expect(res.body.code).toBe('BAD_REQUEST');
      }
    });

    it('a user token publishes for its own tenant (tenant_id absent or equal) and is 403 for another', async () => {
      const { tenant, api, hook } = await tenantWithWebhook('user');
      const absent = await api.post('/api/v1/events', { event: 'drift.detected', data: { via: 'absent' } });
      expect(absent.status, absent.text).toBe(202);
      expect(Object.keys(absent.body).sort()).toEqual(['deliveries', 'event', 'id']);
      expect(absent.body.deliveries).toBe(1);
      const equal = await api.post('/api/v1/events', { event: 'drift.detected', data: { via: 'equal' }, tenant_id: tenant });
      expect(equal.status, equal.text).toBe(202);
      expect(equal.body.deliveries).toBe(1);

      const other = await tenantWithWebhook('victim');
      const foreign = await api.post('/api/v1/events', { event: 'drift.detected', data: { via: 'foreign' }, tenant_id: other.tenant });
      expect(foreign.status, foreign.text).toBe(403);
      expect(foreign.body.code).toBe('FORBIDDEN');

      const mine = await receiver.waitFor(2, { match: eventsFor(hook.id, 'drift.detected') });
      expect(mine.map((r) => r.json.data.via).sort()).toEqual(['absent', 'equal']);
      // The refused publish wrote nothing: the other tenant's webhook has only its ping.
      expect(receiver.requests.filter(eventsFor(other.hook.id, 'drift.detected'))).toHaveLength(0);
      expect((await historyOf(other.api, other.hook.id)).map((a) => a.event_type)).toEqual(['ping']);
    });

    it('an API key publishes for its own tenant and is 403 for another', async () => {
      const { tenant, api, hook } = await tenantWithWebhook('key');
      const created = await api.post('/api/v1/settings/api-keys', { name: 'scanner' });
      expect(created.status, created.text).toBe(201);
      const keyClient = client(gw.url, created.body.key as string);

      const absent = await keyClient.post('/api/v1/events', { event: 'drift.detected', data: { via: 'key-absent' } });
      expect(absent.status, absent.text).toBe(202);
      expect(Object.keys(absent.body).sort()).toEqual(['deliveries', 'event', 'id']);
      expect(absent.body.deliveries).toBe(1);
      const equal = await keyClient.post('/api/v1/events', { event: 'drift.detected', data: { via: 'key-equal' }, tenant_id: tenant });
      expect(equal.status, equal.text).toBe(202);
      const foreign = await keyClient.post('/api/v1/events', {
        event: 'drift.detected',
        data: { via: 'key-foreign' },
        tenant_id: uniqueTenant('elsewhere'),
      });
      expect(foreign.status, foreign.text).toBe(403);
      expect(foreign.body.code).toBe('FORBIDDEN');

      const mine = await receiver.waitFor(2, { match: eventsFor(hook.id, 'drift.detected') });
      expect(mine.map((r) => r.json.data.via).sort()).toEqual(['key-absent', 'key-equal']);
    });

    it('GraphQL publishEvent follows the same rules', async () => {
      const { tenant, api, hook } = await tenantWithWebhook('gql');
      const mutation = `mutation($input: PublishEventInput!) { publishEvent(input: $input) { id event deliveries replayed } }`;

      const bySvc = await service.graphql(mutation, { input: { event: 'drift.detected', data: { via: 'gql-svc' }, tenantId: tenant } });
      expect(bySvc.body.errors).toBeUndefined();
      expect(bySvc.body.data.publishEvent).toMatchObject({ event: 'drift.detected', deliveries: 1, replayed: false });
      expect(bySvc.body.data.publishEvent.id).toMatch(/^evt_/);

      const noTenant = await service.graphql(mutation, { input: { event: 'drift.detected', data: {} } });
      expect(noTenant.body.errors?.[0]?.extensions?.['code']).toBe('BAD_REQUEST');

      const byUser = await api.graphql(mutation, { input: { event: 'drift.detected', data: { via: 'gql-user' } } });
      expect(byUser.body.errors).toBeUndefined();
      expect(byUser.body.data.publishEvent.deliveries).toBe(1);

      const foreign = await api.graphql(mutation, { input: { event: 'drift.detected', data: {}, tenantId: uniqueTenant('x') } });
      expect(foreign.body.errors?.[0]?.extensions?.['code']).toBe('FORBIDDEN');

      const ping = await api.graphql(mutation, { input: { event: 'ping', data: {} } });
      expect(ping.body.errors?.[0]?.extensions?.['code']).toBe('VALIDATION_ERROR');
      const unknown = await api.graphql(mutation, { input: { event: 'drift.exploded', data: {} } });
      expect(unknown.body.errors?.[0]?.extensions?.['code']).toBe('VALIDATION_ERROR');
      const notObject = await api.graphql(mutation, { input: { event: 'drift.detected', data: [1, 2] } });
      expect(notObject.body.errors?.[0]?.extensions?.['code']).toBe('BAD_REQUEST');

      const got = await receiver.waitFor(2, { match: eventsFor(hook.id, 'drift.detected') });
      expect(got.map((r) => r.json.data.via).sort()).toEqual(['gql-svc', 'gql-user']);
    });
  });

  describe('Idempotency-Key', () => {
    it('a repeat answers 200 with the first body and sends nothing new', async () => {
      const { tenant, api, hook } = await tenantWithWebhook('idem');
      const headers = { 'idempotency-key': 'scan-42' };
      const first = await service.post('/api/v1/events', { event: 'drift.detected', data: { via: 'first' }, tenant_id: tenant }, { headers });
      expect(first.status, first.text).toBe(202);
      expect(first.body.deliveries).toBe(1);
      const repeat = await service.post('/api/v1/events', { event: 'drift.detected', data: { via: 'repeat' }, tenant_id: tenant }, { headers });
      expect(repeat.status, repeat.text).toBe(200);
      expect(repeat.body).toEqual(first.body);
      expect(repeat.text).toBe(first.text);

      // A later event without the key is the barrier: once it has arrived, a delivery the repeat
      // had queued (before it) would have been claimed too.
      const barrier = await service.post('/api/v1/events', { event: 'drift.detected', data: { via: 'barrier' }, tenant_id: tenant });
      expect(barrier.status).toBe(202);
      await receiver.waitFor(1, { match: (r) => eventsFor(hook.id)(r) && r.json.data.via === 'barrier' });
      await expect.poll(async () => (await historyOf(api, hook.id)).length).toBe(3);
      await expectUnchangedFor(300, () => receiver.requests.filter(eventsFor(hook.id, 'drift.detected')).map((r) => r.json.data.via).sort(), [
        'barrier',
        'first',
      ]);
      const history = await historyOf(api, hook.id);
      expect(history.map((a) => a.event_type).sort()).toEqual(['drift.detected', 'drift.detected', 'ping']);
      expect(history.filter((a) => JSON.parse(a.request_body).data.via === 'repeat')).toHaveLength(0);
    });

    it('the same key from two tenants does not collide', async () => {
      const a = await tenantWithWebhook('idem-a');
      const b = await tenantWithWebhook('idem-b');
      const headers = { 'idempotency-key': 'shared-key' };
      const fromA = await a.api.post('/api/v1/events', { event: 'drift.detected', data: { via: 'a' } }, { headers });
      const fromB = await b.api.post('/api/v1/events', { event: 'drift.detected', data: { via: 'b' } }, { headers });
      expect(fromA.status, fromA.text).toBe(202);
      expect(fromB.status, fromB.text).toBe(202);
      expect(fromB.body.id).not.toBe(fromA.body.id);
      const [gotA] = await receiver.waitFor(1, { match: eventsFor(a.hook.id, 'drift.detected') });
      const [gotB] = await receiver.waitFor(1, { match: eventsFor(b.hook.id, 'drift.detected') });
      expect(gotA!.json.data).toEqual({ via: 'a' });
      expect(gotB!.json.data).toEqual({ via: 'b' });
      // And each tenant's repeat still finds its own first result.
      const againB = await b.api.post('/api/v1/events', { event: 'drift.detected', data: { via: 'b2' } }, { headers });
      expect(againB.status).toBe(200);
      expect(againB.body).toEqual(fromB.body);
    });

    it('concurrent publishes with one key create one event and one delivery', async () => {
      const { tenant, api, hook } = await tenantWithWebhook('idem-race');
      const headers = { 'idempotency-key': 'race' };
      const answers = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          service.post('/api/v1/events', { event: 'drift.detected', data: { via: `race-${i}` }, tenant_id: tenant }, { headers }),
        ),
      );
      const statuses = answers.map((r) => r.status).sort();
      expect(statuses).toEqual([200, 200, 200, 200, 200, 202]);
      expect(new Set(answers.map((r) => r.body.id)).size).toBe(1);
      await receiver.waitFor(1, { match: eventsFor(hook.id, 'drift.detected') });
      await expectUnchangedFor(400, () => receiver.requests.filter(eventsFor(hook.id, 'drift.detected')).length, 1);
      await expect.poll(async () => (await historyOf(api, hook.id)).filter((a) => a.event_type === 'drift.detected').length).toBe(1);
    });

    it('GraphQL takes the key from the input or from the Idempotency-Key header', async () => {
      const { tenant } = await tenantWithWebhook('idem-gql');
      const mutation = `mutation($input: PublishEventInput!) { publishEvent(input: $input) { id deliveries replayed } }`;
      const input = { event: 'drift.detected', data: {}, tenantId: tenant, idempotencyKey: 'gql-key' };
      const first = await service.graphql(mutation, { input });
      const again = await service.graphql(mutation, { input });
      expect(first.body.data.publishEvent).toMatchObject({ deliveries: 1, replayed: false });
      expect(again.body.data.publishEvent).toEqual({ ...first.body.data.publishEvent, replayed: true });

      const viaHeader = { headers: { 'idempotency-key': 'gql-header' } };
      const h1 = await service.graphql(mutation, { input: { event: 'drift.detected', data: {}, tenantId: tenant } }, viaHeader);
      const h2 = await service.graphql(mutation, { input: { event: 'drift.detected', data: {}, tenantId: tenant } }, viaHeader);
      expect(h1.body.data.publishEvent.replayed).toBe(false);
      expect(h2.body.data.publishEvent).toEqual({ ...h1.body.data.publishEvent, replayed: true });
      expect(h1.body.data.publishEvent.id).not.toBe(first.body.data.publishEvent.id);
    });
  });

  describe('what may be published', () => {
    let token: string;
    let api: TestClient;
    beforeAll(async () => {
      token = await userToken(uniqueTenant('valid'));
      api = client(gw.url, token);
    });

    it('an unknown event type and ping are 422', async () => {
      for (const event of ['drift.exploded', 'DRIFT.DETECTED', 'ping']) {
        const res = await api.post('/api/v1/events', { event, data: {} });
        expect(res.status, `${event}: ${res.text}`).toBe(422);
        expect(res.body.code).toBe('VALIDATION_ERROR');
      }
    });

    it('data nested thousands of levels deep is 422, over REST and GraphQL, never a 500', async () => {
      const depth = 20_000;
      const deep = `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
      const rest = await fetch(`${gw.url}/api/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: `{"event":"drift.detected","data":${deep}}`,
      });
      expect(rest.status).toBe(422);
      expect(await rest.json()).toMatchObject({ code: 'VALIDATION_ERROR', details: { field: 'data' } });
      const graphql = await fetch(`${gw.url}/graphql`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: `{"query":"mutation($d: JSONObject!) { publishEvent(input: {event: \\"drift.detected\\", data: $d}) { id } }","variables":{"d":${deep}}}`,
      });
      const answer = (await graphql.json()) as { errors?: { extensions?: { code?: string } }[] };
      expect(answer.errors?.[0]?.extensions?.code).toBe('VALIDATION_ERROR');
    });

    it('data that is not a JSON object (array, string, number, null, missing) is 400', async () => {
      for (const data of [[1, 2], 'text', 42, null, undefined]) {
        const res = await api.post('/api/v1/events', { event: 'drift.detected', data });
        expect(res.status, `${JSON.stringify(data)}: ${res.text}`).toBe(400);
        expect(res.body.code).toBe('BAD_REQUEST');
      }
    });

    it('a missing or non-string event, and a body that is not a JSON object, are 400', async () => {
      expect((await api.post('/api/v1/events', { data: {} })).status).toBe(400);
      expect((await api.post('/api/v1/events', { event: 7, data: {} })).status).toBe(400);
      expect((await api.request('POST', '/api/v1/events', { rawBody: '[]', headers: { 'content-type': 'application/json' } })).status).toBe(400);
      expect((await api.request('POST', '/api/v1/events', { rawBody: '{"event":', headers: { 'content-type': 'application/json' } })).status).toBe(400);
    });

    it('a body over 256 KiB is 413, with or without Content-Length; just under is accepted', async () => {
      const big = JSON.stringify({ event: 'drift.detected', data: { blob: 'x'.repeat(256 * 1024) } });
      const declared = await api.request('POST', '/api/v1/events', { rawBody: big, headers: { 'content-type': 'application/json' } });
      expect(declared.status, declared.text).toBe(413);
      expect(declared.body.code).toBe('PAYLOAD_TOO_LARGE');

      const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpRequest(`${gw.url}/api/v1/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'transfer-encoding': 'chunked' },
        });
        req.on('response', (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        for (let i = 0; i < big.length; i += 16 * 1024) req.write(big.slice(i, i + 16 * 1024));
        req.end();
      });
      expect(chunked.status, chunked.body).toBe(413);
      expect(JSON.parse(chunked.body).code).toBe('PAYLOAD_TOO_LARGE');

      const fits = JSON.stringify({ event: 'drift.detected', data: { blob: 'x'.repeat(250 * 1024) } });
      const ok = await api.request('POST', '/api/v1/events', { rawBody: fits, headers: { 'content-type': 'application/json' } });
      expect(ok.status, ok.text).toBe(202);
    });

    it('a body that is not JSON by content type is 415', async () => {
      const body = JSON.stringify({ event: 'drift.detected', data: {} });
      for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml']) {
        const res = await api.request('POST', '/api/v1/events', { rawBody: body, headers: { 'content-type': type } });
        expect(res.status, `${type}: ${res.text}`).toBe(415);
        expect(res.body.code).toBe('UNSUPPORTED_MEDIA_TYPE');
      }
      const untyped = await api.request('POST', '/api/v1/events', { rawBody: Buffer.from(body) });
      expect(untyped.status, untyped.text).toBe(415);
      const withCharset = await api.request('POST', '/api/v1/events', {
        rawBody: body,
        headers: { 'content-type': 'application/json; charset=utf-8' },
      });
      expect(withCharset.status, withCharset.text).toBe(202);
    });
  });

  it('fans out to exactly the enabled, subscribed webhooks of the named tenant', async () => {
    const tenantA = uniqueTenant('fan-a');
    const tenantB = uniqueTenant('fan-b');
    const apiA = client(gw.url, await userToken(tenantA));
    const apiB = client(gw.url, await userToken(tenantB));
    const base = `${receiver.url}/fan`;
    const a1 = await createWebhook(apiA, { url: `${base}/a1`, events: ['drift.detected'] });
    const a2 = await createWebhook(apiA, { url: `${base}/a2`, events: ['alert.created', 'drift.detected'] });
    const unsubscribed = await createWebhook(apiA, { url: `${base}/a3`, events: ['alert.created'] });
    const disabled = await createWebhook(apiA, { url: `${base}/a4`, events: ['drift.detected'], enabled: false });
    const disabledLater = await createWebhook(apiA, { url: `${base}/a5`, events: ['drift.detected'] });
    const b1 = await createWebhook(apiB, { url: `${base}/b1`, events: ['drift.detected', 'alert.created'] });
    expect((await apiA.put(`/api/v1/webhooks/${disabledLater.id}`, { enabled: false })).status).toBe(200);

    const published = await service.post('/api/v1/events', { event: 'drift.detected', data: { fan: 'out' }, tenant_id: tenantA });
    expect(published.status, published.text).toBe(202);
    expect(published.body.deliveries).toBe(2);

    const isFan = (r: ReceivedRequest) => r.path.startsWith('/fan/') && r.json?.event === 'drift.detected';
    const first = await receiver.waitFor(2, { match: isFan });
    expect(first.map((r) => r.json.webhook_id).sort()).toEqual([a1.id, a2.id].sort());

    // Barrier: an alert.created for A reaches a2 and the unsubscribed a3 (and no one in B). Once
    // both have it, anything the drift event had queued elsewhere would have been sent as well.
    const alert = await service.post('/api/v1/events', { event: 'alert.created', data: {}, tenant_id: tenantA });
    expect(alert.body.deliveries).toBe(2);
    const alerts = await receiver.waitFor(2, { match: (r) => r.path.startsWith('/fan/') && r.json?.event === 'alert.created' });
    expect(alerts.map((r) => r.json.webhook_id).sort()).toEqual([a2.id, unsubscribed.id].sort());
    await expectUnchangedFor(300, () => receiver.requests.filter(isFan).map((r) => r.path).sort(), ['/fan/a1', '/fan/a2']);

    for (const hook of [unsubscribed, disabled, disabledLater]) {
      expect((await historyOf(apiA, hook.id)).filter((a) => a.event_type === 'drift.detected')).toHaveLength(0);
    }
    expect((await historyOf(apiB, b1.id)).filter((a) => a.event_type !== 'ping')).toHaveLength(0);

    // Publishing for B reaches B's webhook only.
    const forB = await service.post('/api/v1/events', { event: 'drift.detected', data: {}, tenant_id: tenantB });
    expect(forB.body.deliveries).toBe(1);
    const [toB] = await receiver.waitFor(1, { match: (r) => r.path === '/fan/b1' && r.json?.event === 'drift.detected' });
    expect(toB!.json.webhook_id).toBe(b1.id);
  });
});

