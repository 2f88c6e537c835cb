import { Webhook as StandardWebhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { createWebhook, deliveryById, expectUnchangedFor, freePort, historyOf, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { answer, startReceiver, type ReceivedRequest, type Receiver } from '../helpers/receiver.js';

const RETRY_WAITS = [100, 200];

describe('POST /api/v1/webhooks/{id}/test and testWebhook', () => {
  let gw: TestGateway;
  let receiver: Receiver;
  const held: (() => void)[] = [];

  beforeAll(async () => {
    gw = await startTestGateway({
      WEBHOOK_RETRY_SCHEDULE: RETRY_WAITS.map((ms) => `${ms}ms`).join(','),
      WORKER_POLL_INTERVAL: '50ms',
      WEBHOOK_TIMEOUT: '500ms',
    });
    // The path decides: /status/<code> answers that code, /hold waits for the test, else 200.
    receiver = await startReceiver((req, n, res) => {
      const status = /^\/status\/(\d{3})/.exec(req.path);
      if (status) return answer(Number(status[1]), `answered ${status[1]}`)(req, n, res);
      if (req.path.startsWith('/hold')) {
        held.push(() => answer(200)(req, n, res));
        return;
      }
      answer(200, 'pong')(req, n, res);
    });
  });
  afterAll(async () => {
    for (const release of held.splice(0)) release();
    await gw?.close();
    await receiver?.close();
  });

  const pingsTo = (webhookId: string) => (r: ReceivedRequest) => r.json?.webhook_id === webhookId && r.json?.event === 'ping';

  async function tenantApi(prefix: string): Promise<TestClient> {
    return client(gw.url, await userToken(uniqueTenant(prefix)));
  }

  /** A webhook whose creation ping has already been answered and recorded. */
  async function readyWebhook(api: TestClient, url: string, events = ['drift.detected']) {
    const hook = await createWebhook(api, { url, events });
    await receiver.waitFor(1, { match: pingsTo(hook.id) });
    await expect.poll(async () => (await historyOf(api, hook.id)).length).toBe(1);
    return hook;
  }

  it('answers 200 with the attempt record of one synchronous ping', async () => {
    const api = await tenantApi('test-ok');
    const hook = await readyWebhook(api, `${receiver.url}/ok`);
    const res = await api.post(`/api/v1/webhooks/${hook.id}/test`);
    expect(res.status, res.text).toBe(200);
    const attempt = res.body;
    expect(attempt).toMatchObject({
      webhook_id: hook.id,
      event_type: 'ping',
      status: 'success',
      attempt: 1,
      response_code: 200,
      response_body: 'pong',
      error: null,
      next_retry_at: null,
    });
    expect(attempt.id).toMatch(/^att_/);
    expect(attempt.delivery_id).toMatch(/^del_/);

    // Synchronous: the receiver already has it when the answer arrives.
    const sent = receiver.requests.filter((r) => r.json?.delivery_id === attempt.delivery_id);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.json).toEqual({
      event: 'ping',
      timestamp: expect.any(String),
      webhook_id: hook.id,
      delivery_id: attempt.delivery_id,
      data: { webhook_id: hook.id, message: 'Webhook endpoint verified' },
    });
    expect(sent[0]!.headers['x-infraaudit-attempt']).toBe('1');
    expect(new StandardWebhook(hook.secret).verify(sent[0]!.body, sent[0]!.headers as Record<string, string>)).toEqual(sent[0]!.json);
    expect(attempt.request_body).toBe(sent[0]!.body);

    const [latest] = await historyOf(api, hook.id);
    expect(latest).toEqual(attempt);
    expect(await deliveryById(api, attempt.delivery_id)).toMatchObject({ status: 'success', attemptCount: 1 });
  });

  it('answers 200 with status failed when the receiver answers 500 or refuses, and never retries it', async () => {
    const api = await tenantApi('test-fail');
    const failing = await createWebhook(api, { url: `${receiver.url}/status/500`, events: ['drift.detected'] });
    const refusing = await createWebhook(api, { url: `http://127.0.0.1:${await freePort()}/`, events: ['drift.detected'] });

    const on500 = await api.post(`/api/v1/webhooks/${failing.id}/test`);
    expect(on500.status, on500.text).toBe(200);
    expect(on500.body).toMatchObject({ event_type: 'ping', attempt: 1, status: 'failed', response_code: 500, error_class: 'http', next_retry_at: null });
    const refused = await api.post(`/api/v1/webhooks/${refusing.id}/test`);
    expect(refused.status, refused.text).toBe(200);
    expect(refused.body).toMatchObject({ event_type: 'ping', attempt: 1, status: 'failed', response_code: null, error_class: 'connect', next_retry_at: null });
    expect(refused.body.error).toEqual(expect.any(String));

    for (const [hook, attempt] of [
      [failing, on500.body],
      [refusing, refused.body],
    ] as const) {
      expect((await historyOf(api, hook.id)).map((a) => a.id)).toContain(attempt.id);
      expect(await deliveryById(api, attempt.delivery_id)).toMatchObject({ status: 'failed', attemptCount: 1, nextAttemptAt: null });
    }

    // A published event to the failing webhook runs the whole retry schedule; by the time it has,
    // a retry of the test ping would have been made too.
    expect((await api.post('/api/v1/events', { event: 'drift.detected', data: {} })).status).toBe(202);
    await receiver.waitFor(1 + RETRY_WAITS.length, { match: (r) => r.json?.webhook_id === failing.id && r.json?.event === 'drift.detected' });
    await expectUnchangedFor(RETRY_WAITS[1]!, () => receiver.requests.filter((r) => r.json?.delivery_id === on500.body.delivery_id).length, 1);
    const pingAttempts = (await historyOf(api, failing.id)).filter((a) => a.delivery_id === on500.body.delivery_id);
    expect(pingAttempts).toHaveLength(1);
  });

  it('answers 200 with a timeout when the receiver does not answer in time', async () => {
    const api = await tenantApi('test-timeout');
    const hook = await createWebhook(api, { url: `${receiver.url}/hold`, events: ['drift.detected'], enabled: false });
    const res = await api.post(`/api/v1/webhooks/${hook.id}/test`);
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ event_type: 'ping', status: 'failed', response_code: null, error_class: 'timeout', next_retry_at: null });
    expect(res.body.duration_ms).toBeGreaterThanOrEqual(450);
    // The held request was given up on by the gateway; answering it now reaches no one.
    for (const release of held.splice(0)) release();
  });

  it('works while the webhook is disabled', async () => {
    const api = await tenantApi('test-disabled');
    const hook = await createWebhook(api, { url: `${receiver.url}/disabled`, events: ['drift.detected'], enabled: false });
    const res = await api.post(`/api/v1/webhooks/${hook.id}/test`);
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ event_type: 'ping', status: 'success', attempt: 1, response_code: 200 });
    expect(receiver.requests.filter(pingsTo(hook.id))).toHaveLength(1);
    expect((await api.get(`/api/v1/webhooks/${hook.id}`)).body).toMatchObject({ enabled: false, last_delivery_status: 'success' });
  });

  it("another tenant's id, an unknown id and a malformed id are 404", async () => {
    const owner = await tenantApi('test-owner');
    const hook = await readyWebhook(owner, `${receiver.url}/owned`);
    const stranger = await tenantApi('test-stranger');
    for (const id of [hook.id, 'wh_AAAAAAAAAAAAAAAAAAAA', 'wh_nope', 'garbage']) {
      const res = await stranger.post(`/api/v1/webhooks/${id}/test`);
      expect(res.status, id).toBe(404);
      expect(res.body.code).toBe('NOT_FOUND');
    }
    const gql = await stranger.graphql(`mutation($id: ID!) { testWebhook(id: $id) { id } }`, { id: hook.id });
    expect(gql.body.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
    // Nothing was sent for the refused calls.
    expect(receiver.requests.filter(pingsTo(hook.id))).toHaveLength(1);
  });

  it('GraphQL testWebhook returns the same attempt record', async () => {
    const api = await tenantApi('test-gql');
    const ok = await readyWebhook(api, `${receiver.url}/gql-ok`);
    const failing = await createWebhook(api, { url: `${receiver.url}/status/503`, events: ['drift.detected'] });
    const mutation = `mutation($id: ID!) { testWebhook(id: $id) {
      id deliveryId webhookId eventType status attempt responseCode responseBody error errorClass nextRetryAt requestBody } }`;
    const good = await api.graphql(mutation, { id: ok.id });
    expect(good.body.errors).toBeUndefined();
    expect(good.body.data.testWebhook).toMatchObject({
      webhookId: ok.id,
      eventType: 'ping',
      status: 'success',
      attempt: 1,
      responseCode: 200,
      error: null,
      errorClass: null,
      nextRetryAt: null,
    });
    const bad = await api.graphql(mutation, { id: failing.id });
    expect(bad.body.errors).toBeUndefined();
    expect(bad.body.data.testWebhook).toMatchObject({ eventType: 'ping', status: 'failed', attempt: 1, responseCode: 503, errorClass: 'http', nextRetryAt: null });
    const [latest] = await historyOf(api, ok.id);
    expect(latest.id).toBe(good.body.data.testWebhook.id);
    expect(latest.request_body).toBe(good.body.data.testWebhook.requestBody);
  });

  it('creating a webhook queues a ping, sent after the create has answered', async () => {
    const api = await tenantApi('create-ping');
    const created = await api.post('/api/v1/webhooks', { name: 'held', url: `${receiver.url}/hold-create`, events: ['alert.created'] });
    expect(created.status).toBe(201);
    const [ping] = await receiver.waitFor(1, { match: pingsTo(created.body.id) });
    expect(ping!.headers['x-infraaudit-event']).toBe('ping');
    expect(ping!.json.data).toEqual({ webhook_id: created.body.id, message: 'Webhook endpoint verified' });
    // The create answered while the receiver still held the ping open: it is not sent inline.
    expect(held).toHaveLength(1);
    for (const release of held.splice(0)) release();
    await expect.poll(async () => (await historyOf(api, created.body.id)).map((a) => [a.event_type, a.status])).toEqual([['ping', 'success']]);
  });

  it('creating a webhook disabled sends no ping', async () => {
    const api = await tenantApi('create-disabled');
    const disabled = await createWebhook(api, { url: `${receiver.url}/quiet`, events: ['drift.detected'], enabled: false });
    // Created after it, so its ping is queued after anything the disabled one could have queued.
    const enabled = await createWebhook(api, { url: `${receiver.url}/loud`, events: ['drift.detected'] });
    await receiver.waitFor(1, { match: pingsTo(enabled.id) });
    await expectUnchangedFor(RETRY_WAITS[1]! + 100, () => receiver.requests.filter((r) => r.json?.webhook_id === disabled.id).length, 0);
    expect(await historyOf(api, disabled.id)).toEqual([]);
    expect((await api.get(`/api/v1/webhooks/${disabled.id}`)).body.last_delivery_status).toBeNull();
  });
});
