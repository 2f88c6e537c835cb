import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { createWebhook, deliveryById, expectUnchangedFor, uniqueTenant, type DeliveryView } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { answer, startReceiver, type ReceivedRequest, type Receiver } from '../helpers/receiver.js';
import { sseSubscribe, until, type Feed } from '../helpers/subscriptions.js';

async function tenantApi(gw: TestGateway, prefix: string): Promise<TestClient> {
  return client(gw.url, await userToken(uniqueTenant(prefix)));
}

async function publish(api: TestClient, event = 'drift.detected'): Promise<void> {
  const res = await api.post('/api/v1/events', { event, data: { resource: 'sg-1' } });
  expect(res.status, res.text).toBe(202);
}

const resendPath = (webhookId: string, deliveryId: string) => `/api/v1/webhooks/${webhookId}/deliveries/${deliveryId}/resend`;

const RESEND = `mutation($webhookId: ID!, $deliveryId: ID!) {
  resendDelivery(webhookId: $webhookId, deliveryId: $deliveryId) { id status attemptCount nextAttemptAt }
}`;

const sentOf = (deliveryId: string) => (r: ReceivedRequest) => r.json?.delivery_id === deliveryId;

/** Waits until the delivery is as `done` says, and answers it. */
async function settled(api: TestClient, deliveryId: string, done: (d: DeliveryView) => boolean): Promise<DeliveryView> {
  let last: DeliveryView | null = null;
  await expect
    .poll(async () => {
      last = await deliveryById(api, deliveryId);
      return last !== null && done(last);
    })
    .toBe(true);
  return last!;
}

describe('resend, with a retry schedule of one step of an hour', () => {
  let gw: TestGateway;
  let receiver: Receiver;
  /** Requests to /gate/... wait here while the gate is closed. */
  let gateClosed = false;
  const held: ServerResponse[] = [];

  beforeAll(async () => {
    gw = await startTestGateway({
      WEBHOOK_RETRY_SCHEDULE: '1h',
      // Far longer than any wait below: a resend goes out because it wakes the workers, not on a poll.
      WORKER_POLL_INTERVAL: '1h',
      WEBHOOK_TIMEOUT: '10s',
    });
    receiver = await startReceiver((req, n, res) => {
      if (req.path.startsWith('/fail')) return answer(500, 'down')(req, n, res);
      if (req.path.startsWith('/gate') && gateClosed) {
        held.push(res);
        return;
      }
      answer(200, 'ok')(req, n, res);
    });
  });
  afterAll(async () => {
    for (const res of held) res.end();
    await gw?.close();
    await receiver?.close();
  });

  /** A webhook at `path`, one published event, and its delivery once it has settled after one attempt. */
  async function deliveredOnce(api: TestClient, path: string) {
    const hook = await createWebhook(api, { url: `${receiver.url}${path}`, events: ['drift.detected'] });
    await publish(api);
    const [first] = await receiver.waitFor(1, { match: (r) => r.path === path && r.json?.event === 'drift.detected' });
    const deliveryId = first!.json.delivery_id as string;
    const delivery = await settled(api, deliveryId, (d) => d.attemptCount === 1);
    return { hook, deliveryId, first: first!, delivery };
  }

  it('sends a successful delivery again, numbered after its last attempt, with the same body', async () => {
    const api = await tenantApi(gw, 'resend-ok');
    const { hook, deliveryId, first, delivery } = await deliveredOnce(api, '/ok');
    expect(delivery.status).toBe('success');

    const res = await api.post(resendPath(hook.id, deliveryId));
    expect(res.status, res.text).toBe(202);
    expect(res.body).toEqual({ delivery_id: deliveryId, status: 'pending' });

    const [, again] = await receiver.waitFor(2, { match: sentOf(deliveryId) });
    expect(again!.headers['x-infraaudit-attempt']).toBe('2');
    expect(again!.headers['x-infraaudit-delivery']).toBe(deliveryId);
    expect(again!.body).toBe(first.body);
    const after = await settled(api, deliveryId, (d) => d.attemptCount === 2);
    expect(after).toMatchObject({ status: 'success', nextAttemptAt: null });
    expect(after.attempts.map((a) => [a.attempt, a.status])).toEqual([
      [1, 'success'],
      [2, 'success'],
    ]);
  });

  it('sends a delivery waiting for a retry now, and a failure starts the schedule again from its first step', async () => {
    const api = await tenantApi(gw, 'resend-retrying');
    const { hook, deliveryId, delivery } = await deliveredOnce(api, '/fail-retrying');
    // Waiting an hour for its retry, the schedule's only step.
    expect(delivery.status).toBe('pending');
    expect(Date.parse(delivery.nextAttemptAt!) - Date.now()).toBeGreaterThan(50 * 60_000);

    const res = await api.post(resendPath(hook.id, deliveryId));
    expect(res.status, res.text).toBe(202);
    const [, again] = await receiver.waitFor(2, { match: sentOf(deliveryId) });
    expect(again!.headers['x-infraaudit-attempt']).toBe('2');

    // Counted from the old schedule this was the last attempt (failed); counted from a fresh one
    // it is the first, and waits the first step again.
    const after = await settled(api, deliveryId, (d) => d.attemptCount === 2);
    expect(after.status).toBe('pending');
    const second = after.attempts[1]!;
    expect(second).toMatchObject({ attempt: 2, status: 'failed', responseCode: 500 });
    const history = (await api.get(`/api/v1/webhooks/${hook.id}/deliveries?status=failed`)).body.data as any[];
    const entry = history.find((a) => a.attempt === 2 && a.delivery_id === deliveryId);
    expect(Date.parse(entry.next_retry_at) - Date.parse(entry.created_at)).toBe(3_600_000);
    expect(after.nextAttemptAt).toBe(second.nextRetryAt);
  });

  it('sends a delivery cancelled by a disable once the webhook is enabled again', async () => {
    const api = await tenantApi(gw, 'resend-cancelled');
    const { hook, deliveryId } = await deliveredOnce(api, '/fail-cancelled');
    expect((await api.put(`/api/v1/webhooks/${hook.id}`, { enabled: false })).status).toBe(200);
    expect(await deliveryById(api, deliveryId)).toMatchObject({ status: 'cancelled', attemptCount: 1, nextAttemptAt: null });
    // Enabled again at a URL that answers: the resend goes where the webhook points now.
    expect((await api.put(`/api/v1/webhooks/${hook.id}`, { enabled: true, url: `${receiver.url}/ok-cancelled` })).status).toBe(200);

    expect((await api.post(resendPath(hook.id, deliveryId))).status).toBe(202);
    const [again] = await receiver.waitFor(1, { match: (r) => r.path === '/ok-cancelled' && r.json?.delivery_id === deliveryId });
    expect(again!.headers['x-infraaudit-attempt']).toBe('2');
    expect(await settled(api, deliveryId, (d) => d.attemptCount === 2)).toMatchObject({ status: 'success', nextAttemptAt: null });
  });

  it("answers 404 for another tenant's delivery, another webhook's and unknown ids", async () => {
    const api = await tenantApi(gw, 'resend-owner');
    const { hook, deliveryId } = await deliveredOnce(api, '/ok-owned');
    const other = await createWebhook(api, { url: `${receiver.url}/ok-other`, events: ['alert.created'] });
    const stranger = await tenantApi(gw, 'resend-stranger');
    const strangersHook = await createWebhook(stranger, { url: `${receiver.url}/ok-stranger`, events: ['alert.created'] });

    const attempts: [TestClient, string][] = [
      [stranger, resendPath(hook.id, deliveryId)],
      [stranger, resendPath(strangersHook.id, deliveryId)],
      [api, resendPath(other.id, deliveryId)],
      [api, resendPath(hook.id, 'del_AAAAAAAAAAAAAAAAAAAA')],
      [api, resendPath(hook.id, 'not-an-id')],
      [api, resendPath('wh_AAAAAAAAAAAAAAAAAAAA', deliveryId)],
    ];
    for (const [caller, path] of attempts) {
      const res = await caller.post(path);
      expect(res.status, `${path}: ${res.text}`).toBe(404);
      expect(res.body).toMatchObject({ code: 'NOT_FOUND' });
    }
    const viaGraphql = await stranger.graphql(RESEND, { webhookId: hook.id, deliveryId });
    expect(viaGraphql.body.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
    // Nothing was queued: the delivery is as it was.
    expect(await deliveryById(api, deliveryId)).toMatchObject({ status: 'success', attemptCount: 1, nextAttemptAt: null });
  });

  it('answers 409 while the webhook is disabled, and sends once it is enabled again', async () => {
    const api = await tenantApi(gw, 'resend-disabled');
    const { hook, deliveryId } = await deliveredOnce(api, '/ok-disabled');
    expect((await api.put(`/api/v1/webhooks/${hook.id}`, { enabled: false })).status).toBe(200);

    const refused = await api.post(resendPath(hook.id, deliveryId));
    expect(refused.status, refused.text).toBe(409);
    expect(refused.body).toMatchObject({ code: 'CONFLICT' });
    expect(refused.body.error).toMatch(/disabled.*enable it first/);
    const viaGraphql = await api.graphql(RESEND, { webhookId: hook.id, deliveryId });
    expect(viaGraphql.body.errors?.[0]?.extensions?.['code']).toBe('CONFLICT');
    expect(await deliveryById(api, deliveryId)).toMatchObject({ status: 'success', attemptCount: 1 });

    expect((await api.put(`/api/v1/webhooks/${hook.id}`, { enabled: true })).status).toBe(200);
    expect((await api.post(resendPath(hook.id, deliveryId))).status).toBe(202);
    await receiver.waitFor(2, { match: sentOf(deliveryId) });
    expect(await settled(api, deliveryId, (d) => d.attemptCount === 2)).toMatchObject({ status: 'success' });
  });

  it('runs as the resendDelivery mutation, and live subscribers see the delivery pending again, then its attempt', async () => {
    const tenant = uniqueTenant('resend-graphql');
    const token = await userToken(tenant);
    const api = client(gw.url, token);
    const { hook, deliveryId } = await deliveredOnce(api, '/ok-graphql');

    const before = gw.gateway.deliveryUpdates?.openCount() ?? 0;
    const feed: Feed = sseSubscribe(gw.url, token, { webhookId: hook.id });
    try {
      await until(() => (gw.gateway.deliveryUpdates?.openCount() ?? 0) === before + 1, 10_000, 'the subscription');
      const res = await api.graphql<{ resendDelivery: Record<string, unknown> }>(RESEND, { webhookId: hook.id, deliveryId });
      expect(res.body.errors).toBeUndefined();
      const resent = res.body.data!.resendDelivery;
      expect(resent).toMatchObject({ id: deliveryId, status: 'pending', attemptCount: 1 });
      expect(Math.abs(Date.parse(resent['nextAttemptAt'] as string) - Date.now())).toBeLessThan(60_000);

      await feed.waitForUpdates((u) => u.delivery.id === deliveryId && u.kind === 'attempt', 1);
      const story = feed.updates.filter((u) => u.delivery.id === deliveryId).map((u) => [u.kind, u.delivery.status, u.attempt?.attempt ?? null]);
      expect(story).toEqual([
        ['status', 'pending', null],
        ['attempt', 'success', 2],
      ]);
    } finally {
      feed.close();
    }
  });

  it('never sends twice because of two resends: resends before a worker takes the delivery share one attempt, one during the send is refused', async () => {
    const api = await tenantApi(gw, 'resend-twice');
    const { hook, deliveryId } = await deliveredOnce(api, '/gate');
    gateClosed = true;

    // Two at once: both queue the one row (or the second finds it already being sent).
    const both = await Promise.all([api.post(resendPath(hook.id, deliveryId)), api.post(resendPath(hook.id, deliveryId))]);
    const statuses = both.map((r) => r.status).sort();
    expect([[202, 202], [202, 409]], JSON.stringify(both.map((r) => r.body))).toContainEqual(statuses);

    // The attempt is open at the receiver: the worker holds the delivery's lease.
    await receiver.waitFor(2, { match: sentOf(deliveryId) });
    const during = await api.post(resendPath(hook.id, deliveryId));
    expect(during.status, during.text).toBe(409);
    expect(during.body.error).toMatch(/being sent/);

    gateClosed = false;
    for (const res of held.splice(0)) {
      res.writeHead(200);
      res.end('ok');
    }
    // Recorded and done: success with nothing due, so no further send can come of it.
    const after = await settled(api, deliveryId, (d) => d.attemptCount === 2);
    expect(after).toMatchObject({ status: 'success', nextAttemptAt: null });
    expect(receiver.requests.filter(sentOf(deliveryId))).toHaveLength(2);
    await expectUnchangedFor(300, () => receiver.requests.filter(sentOf(deliveryId)).length, 2);
  });
});

describe('resend of a failed delivery, with a retry schedule of one step of 100 ms', () => {
  let gw: TestGateway;
  let receiver: Receiver;
  let up = false;

  beforeAll(async () => {
    gw = await startTestGateway({ WEBHOOK_RETRY_SCHEDULE: '100ms', WORKER_POLL_INTERVAL: '50ms', WEBHOOK_TIMEOUT: '10s' });
    receiver = await startReceiver((req, n, res) => answer(req.json?.event === 'ping' || up ? 200 : 503)(req, n, res));
  });
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  it('sends it again: the numbers go on, the schedule starts again, and a later resend can succeed', async () => {
    const api = await tenantApi(gw, 'resend-failed');
    const hook = await createWebhook(api, { url: `${receiver.url}/failed`, events: ['drift.detected'] });
    await publish(api);
    const [first] = await receiver.waitFor(1, { match: (r) => r.json?.event === 'drift.detected' });
    const deliveryId = first!.json.delivery_id as string;
    // The first attempt and its one retry.
    expect(await settled(api, deliveryId, (d) => d.status === 'failed')).toMatchObject({ attemptCount: 2, nextAttemptAt: null });

    expect((await api.post(resendPath(hook.id, deliveryId))).status).toBe(202);
    // Attempt 3 fails and waits the first step again; attempt 4, its retry, fails for good.
    const failedAgain = await settled(api, deliveryId, (d) => d.status === 'failed' && d.attemptCount === 4);
    expect(failedAgain.attempts.map((a) => [a.attempt, a.status, a.nextRetryAt !== null])).toEqual([
      [1, 'failed', true],
      [2, 'failed', false],
      [3, 'failed', true],
      [4, 'failed', false],
    ]);
    const sent = receiver.requests.filter(sentOf(deliveryId)).map((r) => r.headers['x-infraaudit-attempt']);
    expect(sent).toEqual(['1', '2', '3', '4']);

    up = true;
    expect((await api.post(resendPath(hook.id, deliveryId))).status).toBe(202);
    const recovered = await settled(api, deliveryId, (d) => d.status === 'success');
    expect(recovered).toMatchObject({ attemptCount: 5, nextAttemptAt: null });
    expect(recovered.attempts.at(-1)).toMatchObject({ attempt: 5, status: 'success', responseCode: 200 });
  });
});
