import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';

const stable = (w: Record<string, unknown>) => {
  const { last_delivery_status: _s, last_delivery_at: _a, ...rest } = w;
  return rest;
};

describe('tenancy: every resource belongs to one tenant', () => {
  let gw: TestGateway;
  let a: TestClient;
  let b: TestClient;
  let aWebhookIds: string[];
  let bWebhookIds: string[];
  let aWebhook: Record<string, unknown>;

  beforeAll(async () => {
    gw = await startTestGateway();
    a = client(gw.url, await userToken('tenant-a'));
    b = client(gw.url, await userToken('tenant-b'));
    aWebhookIds = [];
    bWebhookIds = [];
    for (const name of ['a-1', 'a-2']) {
      const res = await a.post('/api/v1/webhooks', { name, url: 'https://a.example.com/hook', events: ['drift.detected'] });
      expect(res.status).toBe(201);
      aWebhookIds.push(res.body.id);
    }
    const res = await b.post('/api/v1/webhooks', { name: 'b-1', url: 'https://b.example.com/hook', events: ['alert.created'] });
    expect(res.status).toBe(201);
    bWebhookIds.push(res.body.id);
    aWebhook = stable((await a.get(`/api/v1/webhooks/${aWebhookIds[0]}`)).body);
  });
  afterAll(async () => {
    await gw?.close();
  });

  async function expectAUnchanged() {
    const res = await a.get(`/api/v1/webhooks/${aWebhookIds[0]}`);
    expect(res.status).toBe(200);
    expect(stable(res.body)).toEqual(aWebhook);
  }

  it('lists are disjoint: each tenant sees only its own webhooks', async () => {
    const listA = await a.get('/api/v1/webhooks');
    const listB = await b.get('/api/v1/webhooks');
    expect(listA.body.map((w: { id: string }) => w.id)).toEqual([...aWebhookIds].reverse());
    expect(listB.body.map((w: { id: string }) => w.id)).toEqual(bWebhookIds);
    const third = client(gw.url, await userToken('tenant-c'));
    expect((await third.get('/api/v1/webhooks')).body).toEqual([]);
  });

  it("tenant B gets 404 on GET, PUT and DELETE of A's webhook, the same 404 as an unknown id", async () => {
    const id = aWebhookIds[0]!;
    const unknown = await b.get('/api/v1/webhooks/wh_AAAAAAAAAAAAAAAAAAAA');
    expect(unknown.status).toBe(404);
    const responses = [
      await b.get(`/api/v1/webhooks/${id}`),
      await b.put(`/api/v1/webhooks/${id}`, { name: 'taken over', url: 'https://b.example.com/steal', enabled: false }),
      await b.delete(`/api/v1/webhooks/${id}`),
    ];
    for (const res of responses) {
      expect(res.status).toBe(404);
      expect(res.body).toEqual({ error: expect.any(String), code: 'NOT_FOUND' });
      expect(res.body).toEqual(unknown.body);
    }
    await expectAUnchanged();
    expect((await a.get('/api/v1/webhooks')).body).toHaveLength(2);
  });

  it("tenant B cannot read or change A's webhook over GraphQL", async () => {
    const id = aWebhookIds[0]!;
    const read = await b.graphql(`query ($id: ID!) { webhook(id: $id) { id name } }`, { id });
    expect(read.body.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
    expect(read.body.data ?? null).toBeNull();

    const update = await b.graphql(
      `mutation ($id: ID!, $input: UpdateWebhookInput!) { updateWebhook(id: $id, input: $input) { id } }`,
      { id, input: { name: 'taken over', enabled: false } },
    );
    expect(update.body.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');

    const del = await b.graphql(`mutation ($id: ID!) { deleteWebhook(id: $id) }`, { id });
    expect(del.body.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');

    const list = await b.graphql(`{ webhooks { id } }`);
    expect(list.body.data?.webhooks.map((w: { id: string }) => w.id)).toEqual(bWebhookIds);

    await expectAUnchanged();
  });

  it("A's own requests still work on the same webhook", async () => {
    const id = aWebhookIds[1]!;
    const put = await a.put(`/api/v1/webhooks/${id}`, { name: 'a-2 renamed' });
    expect(put.status).toBe(200);
    expect(put.body.name).toBe('a-2 renamed');
  });

  it("API keys: B cannot see or revoke A's key, and A's key acts only for A", async () => {
    const created = await a.post('/api/v1/settings/api-keys', { name: 'ci' });
    expect(created.status).toBe(201);
    const { id, key } = created.body as { id: string; key: string };

    expect((await b.get('/api/v1/settings/api-keys')).body).toEqual([]);
    const bKeysGql = await b.graphql(`{ apiKeys { id } }`);
    expect(bKeysGql.body.data).toEqual({ apiKeys: [] });

    const revoke = await b.delete(`/api/v1/settings/api-keys/${id}`);
    expect(revoke.status).toBe(404);
    expect(revoke.body).toEqual({ error: expect.any(String), code: 'NOT_FOUND' });
    const revokeGql = await b.graphql(`mutation ($id: ID!) { revokeApiKey(id: $id) }`, { id });
    expect(revokeGql.body.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');

    const withKey = client(gw.url, key);
    const list = await withKey.get('/api/v1/webhooks');
    expect(list.status).toBe(200);
    expect(list.body.map((w: { id: string }) => w.id)).toEqual([...aWebhookIds].reverse());
    expect((await withKey.get(`/api/v1/webhooks/${bWebhookIds[0]}`)).status).toBe(404);
    expect((await a.get('/api/v1/settings/api-keys')).body.map((k: { id: string }) => k.id)).toEqual([id]);
  });

  it("a webhook created with A's key belongs to A", async () => {
    const created = await a.post('/api/v1/settings/api-keys', { name: 'deploy' });
    const withKey = client(gw.url, created.body.key);
    const res = await withKey.post('/api/v1/webhooks', { name: 'via key', url: 'https://a.example.com/k', events: ['ping'] });
    expect(res.status).toBe(201);
    expect((await a.get(`/api/v1/webhooks/${res.body.id}`)).status).toBe(200);
    expect((await b.get(`/api/v1/webhooks/${res.body.id}`)).status).toBe(404);
  });
});
