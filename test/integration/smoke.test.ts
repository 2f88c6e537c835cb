import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client } from '../helpers/http.js';

describe('smoke: a webhook round trip over REST and GraphQL', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('creates, reads, lists, updates and deletes a webhook', async () => {
    const api = client(gw.url, await userToken('tenant-a'));
    const created = await api.post('/api/v1/webhooks', {
      name: 'Production receiver',
      url: 'https://receiver.example.com/infraudit',
      events: ['drift.detected', 'alert.created'],
    });
    expect(created.status).toBe(201);
    expect(created.body.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    const id = created.body.id as string;

    const got = await api.get(`/api/v1/webhooks/${id}`);
    expect(got.status).toBe(200);
    expect(got.body).not.toHaveProperty('secret');
    expect(got.body).toMatchObject({ id, enabled: true });
    expect(Object.keys(got.body)).toEqual(expect.arrayContaining(['last_delivery_status', 'last_delivery_at']));

    const gql = await api.graphql('{ webhooks { id name } }');
    expect(gql.body.data).toEqual({ webhooks: [{ id, name: 'Production receiver' }] });

    const updated = await api.put(`/api/v1/webhooks/${id}`, { enabled: false });
    expect(updated.status).toBe(200);
    expect(updated.body.enabled).toBe(false);

    const deleted = await api.delete(`/api/v1/webhooks/${id}`);
    expect(deleted.status).toBe(204);
    expect(deleted.text).toBe('');
    expect((await api.get(`/api/v1/webhooks/${id}`)).status).toBe(404);
  });
});
