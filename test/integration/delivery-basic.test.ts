import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { serviceToken, userToken } from '../helpers/auth.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { answer, startReceiver, type Receiver } from '../helpers/receiver.js';

describe('delivery: publish, sign, retry, history', () => {
  let gw: TestGateway;
  let receiver: Receiver;
  let api: TestClient;
  beforeAll(async () => {
    gw = await startTestGateway({ WEBHOOK_RETRY_SCHEDULE: '100ms,200ms', WORKER_POLL_INTERVAL: '50ms' });
    receiver = await startReceiver();
    api = client(gw.url, await userToken('tenant-a'));
  });
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  it('delivers the ping and a published event with both signatures, then retries a failure', async () => {
    const created = await api.post('/api/v1/webhooks', { name: 'r', url: `${receiver.url}/hook`, events: ['drift.detected'] });
    expect(created.status).toBe(201);
    const { id, secret } = created.body;
    const [ping] = await receiver.waitFor(1);
    expect(ping!.json).toMatchObject({ event: 'ping', webhook_id: id, data: { webhook_id: id, message: 'Webhook endpoint verified' } });
    const wh = new StandardWebhook(secret);
    expect(() => wh.verify(ping!.body, ping!.headers as Record<string, string>)).not.toThrow();

    let drifts = 0;
    receiver.respond((r, n, res) => answer(r.json?.event === 'drift.detected' && ++drifts <= 2 ? 500 : 200)(r, n, res));
    const published = await client(gw.url, await serviceToken()).post('/api/v1/events', {
      event: 'drift.detected',
      data: { resource: 'sg-1' },
      tenant_id: 'tenant-a',
    });
    expect(published.status).toBe(202);
    expect(published.body).toMatchObject({ event: 'drift.detected', deliveries: 1 });
    const got = await receiver.waitFor(3, { match: (r) => r.json?.event === 'drift.detected' });
    expect(got.map((r) => r.headers['x-infraaudit-attempt'])).toEqual(['1', '2', '3']);
    expect(new Set(got.map((r) => r.json.delivery_id)).size).toBe(1);

    const history = await api.get(`/api/v1/webhooks/${id}/deliveries`);
    expect(history.status).toBe(200);
    await expect.poll(async () => (await api.get(`/api/v1/webhooks/${id}/deliveries`)).body.pagination.total).toBe(4);
    const h = (await api.get(`/api/v1/webhooks/${id}/deliveries?status=failed`)).body;
    expect(h.data.map((a: any) => a.attempt)).toEqual([2, 1]);
    expect(h.pagination).toEqual({ page: 1, pageSize: 20, total: 2, totalPages: 1 });

    const test = await api.post(`/api/v1/webhooks/${id}/test`);
    expect(test.status).toBe(200);
    expect(test.body).toMatchObject({ event_type: 'ping', status: 'success', attempt: 1, response_code: 200 });
  });
});
