import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { startReceiver } from '../helpers/receiver.js';

const WEBHOOK_KEYS = [
  'created_at',
  'disabled_at',
  'disabled_reason',
  'enabled',
  'events',
  'id',
  'last_delivery_at',
  'last_delivery_status',
  'name',
  'updated_at',
  'url',
];
const SECRET_FORMAT = /^whsec_[A-Za-z0-9+/]{32}$/;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const DOCUMENTED_EVENTS = [
  'drift.detected',
  'drift.resolved',
  'alert.created',
  'vulnerability.found',
  'compliance.violation',
  'cost.anomaly',
  'job.completed',
  'remediation.completed',
  'ping',
  'webhook.failing',
  'webhook.disabled',
  'webhook.recovered',
];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('webhooks over REST', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(async () => {
    await gw?.close();
  });

  /** A client for a tenant of its own, so every test starts from an empty list. */
  async function freshTenant(): Promise<TestClient> {
    return client(gw.url, await userToken(`tenant-${randomUUID()}`));
  }

  const body = (overrides: Record<string, unknown> = {}) => ({
    name: 'Production receiver',
    url: 'https://receiver.example.com/infraudit',
    events: ['drift.detected', 'alert.created'],
    ...overrides,
  });

  it('creates a webhook: 201 with the documented object plus a generated secret', async () => {
    const api = await freshTenant();
    const res = await api.post('/api/v1/webhooks', body());
    expect(res.status).toBe(201);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(Object.keys(res.body).sort()).toEqual([...WEBHOOK_KEYS, 'secret'].sort());
    expect(res.body).toMatchObject({
      name: 'Production receiver',
      url: 'https://receiver.example.com/infraudit',
      events: ['drift.detected', 'alert.created'],
      enabled: true,
      last_delivery_status: null,
      last_delivery_at: null,
    });
    expect(res.body.id).toMatch(/^wh_[A-Za-z0-9_-]{20}$/);
    expect(res.body.secret).toMatch(SECRET_FORMAT);
    expect(Buffer.from(res.body.secret.slice('whsec_'.length), 'base64')).toHaveLength(24);
    expect(res.body.created_at).toMatch(ISO_UTC);
    expect(res.body.updated_at).toBe(res.body.created_at);
  });

  it('generates a different secret for every webhook', async () => {
    const api = await freshTenant();
    const a = await api.post('/api/v1/webhooks', body());
    const b = await api.post('/api/v1/webhooks', body());
    expect(a.status).toBe(201);
    expect(b.status).toBe(201);
    expect(a.body.secret).not.toBe(b.body.secret);
    expect(a.body.id).not.toBe(b.body.id);
  });

  it('uses a caller-supplied secret exactly as given', async () => {
    const api = await freshTenant();
    const secret = `whsec_${randomBytes(24).toString('base64')}`;
    const res = await api.post('/api/v1/webhooks', body({ secret }));
    expect(res.status).toBe(201);
    expect(res.body.secret).toBe(secret);
  });

  it('never shows the secret again: GET one, GET list, PUT answer', async () => {
    const api = await freshTenant();
    const created = await api.post('/api/v1/webhooks', body());
    expect(created.status).toBe(201);
    const { id, secret } = created.body as { id: string; secret: string };
    const base64Part = secret.slice('whsec_'.length);

    const one = await api.get(`/api/v1/webhooks/${id}`);
    const list = await api.get('/api/v1/webhooks');
    const put = await api.put(`/api/v1/webhooks/${id}`, { name: 'renamed' });
    for (const res of [one, list, put]) {
      expect(res.status).toBe(200);
      expect(res.text).not.toContain(base64Part);
      expect(res.text).not.toContain('secret');
    }
    expect(Object.keys(one.body).sort()).toEqual(WEBHOOK_KEYS);
    expect(Object.keys(put.body).sort()).toEqual(WEBHOOK_KEYS);
    expect(list.body).toHaveLength(1);
    expect(Object.keys(list.body[0]).sort()).toEqual(WEBHOOK_KEYS);
  });

  it('GET one returns what create stored', async () => {
    const api = await freshTenant();
    const created = await api.post('/api/v1/webhooks', body({ enabled: false, events: ['cost.anomaly'] }));
    expect(created.status).toBe(201);
    const { secret: _secret, ...webhook } = created.body;
    const got = await api.get(`/api/v1/webhooks/${created.body.id}`);
    expect(got.status).toBe(200);
    expect({ ...got.body, last_delivery_status: null, last_delivery_at: null }).toEqual(webhook);
  });

  it('removes duplicate events and keeps their first-seen order', async () => {
    const api = await freshTenant();
    const res = await api.post(
      '/api/v1/webhooks',
      body({ events: ['alert.created', 'drift.detected', 'alert.created', 'ping', 'drift.detected'] }),
    );
    expect(res.status).toBe(201);
    expect(res.body.events).toEqual(['alert.created', 'drift.detected', 'ping']);
    const got = await api.get(`/api/v1/webhooks/${res.body.id}`);
    expect(got.body.events).toEqual(['alert.created', 'drift.detected', 'ping']);

    const put = await api.put(`/api/v1/webhooks/${res.body.id}`, {
      events: ['job.completed', 'job.completed', 'cost.anomaly', 'job.completed'],
    });
    expect(put.status).toBe(200);
    expect(put.body.events).toEqual(['job.completed', 'cost.anomaly']);
  });

  it('defaults enabled to true and keeps an explicit false', async () => {
    const api = await freshTenant();
    const on = await api.post('/api/v1/webhooks', body());
    const off = await api.post('/api/v1/webhooks', body({ enabled: false }));
    expect(on.body.enabled).toBe(true);
    expect(off.body.enabled).toBe(false);
    expect((await api.get(`/api/v1/webhooks/${off.body.id}`)).body.enabled).toBe(false);
  });

  it('ignores unknown fields in the create body', async () => {
    const api = await freshTenant();
    const res = await api.post('/api/v1/webhooks', body({ colour: 'blue', tenant_id: 'someone-else' }));
    expect(res.status).toBe(201);
    expect(res.body).not.toHaveProperty('colour');
    expect(res.body).not.toHaveProperty('tenant_id');
    const list = await api.get('/api/v1/webhooks');
    expect(list.body.map((w: { id: string }) => w.id)).toEqual([res.body.id]);
  });

  it('lists webhooks as a bare array, newest first', async () => {
    const api = await freshTenant();
    const empty = await api.get('/api/v1/webhooks');
    expect(empty.status).toBe(200);
    expect(empty.body).toEqual([]);

    const ids: string[] = [];
    for (const name of ['first', 'second', 'third']) {
      const res = await api.post('/api/v1/webhooks', body({ name }));
      expect(res.status).toBe(201);
      ids.push(res.body.id);
    }
    const list = await api.get('/api/v1/webhooks');
    expect(list.status).toBe(200);
    expect(Array.isArray(list.body)).toBe(true);
    expect(list.body.map((w: { id: string }) => w.id)).toEqual([...ids].reverse());
    expect(list.body.map((w: { name: string }) => w.name)).toEqual(['third', 'second', 'first']);
  });

  it('lists the event types at /api/v1/webhooks/events', async () => {
    const api = await freshTenant();
    const res = await api.get('/api/v1/webhooks/events');
    expect(res.status).toBe(200);
    expect(Object.keys(res.body)).toEqual(['events']);
    const events = res.body.events as { event: string; description: string }[];
    expect(events.map((e) => e.event).sort()).toEqual([...DOCUMENTED_EVENTS].sort());
    for (const e of events) {
      expect(Object.keys(e).sort()).toEqual(['description', 'event']);
      expect(typeof e.description).toBe('string');
      expect(e.description.trim()).not.toBe('');
    }
  });

  it('PUT changes only the given fields; updated_at moves, created_at does not', async () => {
    const api = await freshTenant();
    const created = await api.post('/api/v1/webhooks', body());
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const original = (await api.get(`/api/v1/webhooks/${id}`)).body;

    await sleep(20);
    const renamed = await api.put(`/api/v1/webhooks/${id}`, { name: 'Staging receiver' });
    expect(renamed.status).toBe(200);
    expect(renamed.body.name).toBe('Staging receiver');
    expect(renamed.body.url).toBe(original.url);
    expect(renamed.body.events).toEqual(original.events);
    expect(renamed.body.enabled).toBe(true);
    expect(renamed.body.created_at).toBe(original.created_at);
    expect(Date.parse(renamed.body.updated_at)).toBeGreaterThan(Date.parse(original.updated_at));

    await sleep(20);
    const moved = await api.put(`/api/v1/webhooks/${id}`, {
      url: 'https://other.example.com/hooks',
      events: ['vulnerability.found'],
      enabled: false,
    });
    expect(moved.status).toBe(200);
    expect(moved.body).toMatchObject({
      id,
      name: 'Staging receiver',
      url: 'https://other.example.com/hooks',
      events: ['vulnerability.found'],
      enabled: false,
      created_at: original.created_at,
    });
    expect(Date.parse(moved.body.updated_at)).toBeGreaterThan(Date.parse(renamed.body.updated_at));

    const got = await api.get(`/api/v1/webhooks/${id}`);
    expect({ ...got.body, last_delivery_status: null, last_delivery_at: null }).toEqual({
      ...moved.body,
      last_delivery_status: null,
      last_delivery_at: null,
    });
  });

  it('PUT with an empty object changes nothing', async () => {
    const api = await freshTenant();
    const created = await api.post('/api/v1/webhooks', body());
    const before = (await api.get(`/api/v1/webhooks/${created.body.id}`)).body;
    await sleep(20);
    const res = await api.put(`/api/v1/webhooks/${created.body.id}`, {});
    expect(res.status).toBe(200);
    expect(res.body.updated_at).toBe(before.updated_at);
    expect(res.body.name).toBe(before.name);
    const after = (await api.get(`/api/v1/webhooks/${created.body.id}`)).body;
    expect(after.updated_at).toBe(before.updated_at);
  });

  it('DELETE answers 204 with an empty body, then the webhook is gone', async () => {
    const api = await freshTenant();
    const keep = await api.post('/api/v1/webhooks', body({ name: 'keep' }));
    const drop = await api.post('/api/v1/webhooks', body({ name: 'drop' }));
    const id = drop.body.id as string;

    const res = await api.delete(`/api/v1/webhooks/${id}`);
    expect(res.status, res.text).toBe(204);
    expect(res.text).toBe('');

    for (const again of [
      await api.get(`/api/v1/webhooks/${id}`),
      await api.put(`/api/v1/webhooks/${id}`, { name: 'back' }),
      await api.delete(`/api/v1/webhooks/${id}`),
    ]) {
      expect(again.status).toBe(404);
      expect(again.body).toEqual({ error: expect.any(String), code: 'NOT_FOUND' });
    }
    const list = await api.get('/api/v1/webhooks');
    expect(list.body.map((w: { id: string }) => w.id)).toEqual([keep.body.id]);
  });

  it('DELETE and disabling succeed while the creation ping is being sent and recorded', async () => {
    const receiver = await startReceiver();
    try {
      const api = await freshTenant();
      const failures: string[] = [];
      for (let i = 0; i < 40; i++) {
        const created = await api.post('/api/v1/webhooks', body({ url: `${receiver.url}/hook`, events: ['ping'] }));
        expect(created.status).toBe(201);
        await sleep(i % 8);
        const res =
          i % 2 === 0
            ? await api.delete(`/api/v1/webhooks/${created.body.id}`)
            : await api.put(`/api/v1/webhooks/${created.body.id}`, { enabled: false });
        if (res.status !== (i % 2 === 0 ? 204 : 200)) failures.push(`${res.status} ${res.text}`);
      }
      expect(failures).toEqual([]);
      expect(receiver.requests.length).toBeGreaterThan(0);
    } finally {
      await receiver.close();
    }
  });

  it('answers a wrong method on a known path with 405 and an Allow header', async () => {
    const api = await freshTenant();
    const created = await api.post('/api/v1/webhooks', body());
    const one = await api.request('PATCH', `/api/v1/webhooks/${created.body.id}`, { body: { name: 'x' } });
    expect(one.status).toBe(405);
    expect(one.body).toEqual({ error: expect.any(String), code: 'METHOD_NOT_ALLOWED' });
    expect(one.headers.get('allow')?.split(/,\s*/).sort()).toEqual(['DELETE', 'GET', 'PUT']);
    const list = await api.request('DELETE', '/api/v1/webhooks');
    expect(list.status).toBe(405);
    expect(list.headers.get('allow')?.split(/,\s*/).sort()).toEqual(['GET', 'POST']);
    expect((await api.get(`/api/v1/webhooks/${created.body.id}`)).body.name).toBe('Production receiver');
  });

  it('answers an unknown path with a 404 JSON error', async () => {
    const api = await freshTenant();
    for (const path of ['/api/v1/nothing-here', '/api/v1/webhooks/wh_AAAAAAAAAAAAAAAAAAAA/nothing', '/nowhere']) {
      const res = await api.get(path);
      expect(res.status).toBe(404);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(res.body).toEqual({ error: expect.any(String), code: 'NOT_FOUND' });
    }
  });
});
