import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { createWebhook, deliveryById, expectUnchangedFor, freePort, historyOf, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { answer, startReceiver, type ReceivedRequest, type Receiver } from '../helpers/receiver.js';

const RETRY_WAITS = [150, 300];
// Long enough that a loopback receiver answers within it on a busy machine; the hang test waits it out.
const WEBHOOK_TIMEOUT_MS = 3_000;

/** A tenant of its own, so its published events reach only the webhooks a test made for it. */
async function tenantClient(gw: TestGateway, prefix: string): Promise<TestClient> {
  return client(gw.url, await userToken(uniqueTenant(prefix)));
}

async function publish(api: TestClient, event = 'drift.detected', data: Record<string, unknown> = {}) {
  const res = await api.post('/api/v1/events', { event, data });
  expect(res.status, res.text).toBe(202);
  return res.body as { id: string; deliveries: number };
}

const eventsOf = (webhookId: string, event = 'drift.detected') => (r: ReceivedRequest) =>
  r.json?.webhook_id === webhookId && r.json?.event === event;

describe('outcomes and the retry schedule', () => {
  let gw: TestGateway;
  let receiver: Receiver;

  beforeAll(async () => {
    gw = await startTestGateway({
      WEBHOOK_RETRY_SCHEDULE: RETRY_WAITS.map((ms) => `${ms}ms`).join(','),
      WORKER_POLL_INTERVAL: '50ms',
      WEBHOOK_TIMEOUT: `${WEBHOOK_TIMEOUT_MS}ms`,
    });
    // Answers by path: /status/<code> with that code, /fail-twice/<tag> 500 twice then 200,
    // /hang never, /stall a 200 whose body never finishes, /redirect a 302, anything else 200.
    const seen = new Map<string, number>();
    receiver = await startReceiver((req, n, res) => {
      const path = req.path.split('?')[0]!;
      if (req.json?.event === 'ping') return answer(200)(req, n, res);
      if (path.startsWith('/fail-twice/')) {
        seen.set(path, (seen.get(path) ?? 0) + 1);
        return answer(seen.get(path)! <= 2 ? 500 : 200)(req, n, res);
      }
      const status = /^\/status\/(\d{3})$/.exec(path);
      if (status) return answer(Number(status[1]), `answered ${status[1]}`)(req, n, res);
      if (path === '/hang') return;
      if (path === '/stall') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('partial');
        return;
      }
      if (path === '/redirect') {
        res.writeHead(302, { location: `${receiver.url}/redirect-target` });
        res.end();
        return;
      }
      answer(200)(req, n, res);
    });
  });
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  it('any 2xx (200, 201, 204, 299) is success, sent once', async () => {
    const cases = await Promise.all(
      [200, 201, 204, 299].map(async (code) => {
        const api = await tenantClient(gw, `ok-${code}`);
        const hook = await createWebhook(api, { url: `${receiver.url}/status/${code}`, events: ['drift.detected'] });
        await publish(api);
        return { code, api, hook };
      }),
    );
    for (const { code, api, hook } of cases) {
      const [req] = await receiver.waitFor(1, { match: eventsOf(hook.id) });
      await expect.poll(async () => (await deliveryById(api, req!.json.delivery_id))?.status).toBe('success');
      const delivery = await deliveryById(api, req!.json.delivery_id);
      expect(delivery, `HTTP ${code}`).toMatchObject({ status: 'success', attemptCount: 1, nextAttemptAt: null });
      expect(delivery!.attempts).toEqual([
        expect.objectContaining({ attempt: 1, status: 'success', responseCode: code, errorClass: null, nextRetryAt: null }),
      ]);
    }
    // Longer than the whole retry schedule: nobody is asked twice.
    await expectUnchangedFor(RETRY_WAITS[0]! + RETRY_WAITS[1]! + 200, () => cases.map((c) => receiver.requests.filter(eventsOf(c.hook.id)).length), [1, 1, 1, 1]);
  });

  it('3xx, 4xx and 5xx are failures of class http; a redirect is never followed', async () => {
    const codes = [302, 400, 404, 410, 500, 503];
    const cases = await Promise.all(
      codes.map(async (code) => {
        const api = await tenantClient(gw, `http-${code}`);
        const url = code === 302 ? `${receiver.url}/redirect` : `${receiver.url}/status/${code}`;
        const hook = await createWebhook(api, { url, events: ['drift.detected'] });
        await publish(api);
        return { code, api, hook };
      }),
    );
    for (const { code, api, hook } of cases) {
      await expect.poll(async () => (await historyOf(api, hook.id, '&status=failed')).length).toBeGreaterThanOrEqual(1);
      const [first] = (await historyOf(api, hook.id, '&status=failed')).reverse();
      expect(first, `HTTP ${code}`).toMatchObject({
        attempt: 1,
        status: 'failed',
        response_code: code,
        error_class: 'http',
        error: `receiver answered HTTP ${code}`,
      });
      // 410 Gone is never retried: it disables the webhook (test/integration/auto-disable.test.ts).
      if (code === 410) expect(first.next_retry_at).toBeNull();
      else expect(first.next_retry_at).not.toBeNull();
    }
    // All three attempts of the redirecting webhook happen, and none of them goes to the Location.
    const redirect = cases.find((c) => c.code === 302)!;
    await receiver.waitFor(3, { match: eventsOf(redirect.hook.id) });
    await expect.poll(async () => (await historyOf(redirect.api, redirect.hook.id, '&status=failed')).length).toBe(3);
    const [last] = await historyOf(redirect.api, redirect.hook.id, '&status=failed');
    expect(last.response_headers.location).toBe(`${receiver.url}/redirect-target`);
    expect(receiver.requests.filter((r) => r.path.startsWith('/redirect-target'))).toHaveLength(0);
  });

  it('a receiver that does not answer within WEBHOOK_TIMEOUT is a timeout', async () => {
    const api = await tenantClient(gw, 'timeout');
    const hook = await createWebhook(api, { url: `${receiver.url}/hang`, events: ['drift.detected'] });
    await publish(api);
    await receiver.waitFor(1, { match: eventsOf(hook.id) });
    await expect.poll(async () => (await historyOf(api, hook.id, '&status=failed')).length).toBeGreaterThanOrEqual(1);
    const [first] = (await historyOf(api, hook.id, '&status=failed')).reverse();
    expect(first).toMatchObject({ attempt: 1, status: 'failed', response_code: null, error_class: 'timeout' });
    expect(first.duration_ms).toBeGreaterThanOrEqual(WEBHOOK_TIMEOUT_MS - 50);
    // The configured limit ended it, not the default 10 s (a busy machine may add seconds).
    expect(first.duration_ms).toBeLessThan(10_000);
    expect(first.error).toEqual(expect.any(String));
  });

  it('a 2xx whose body never finishes is still a success: the body is not part of the outcome', async () => {
    const api = await tenantClient(gw, 'stall');
    const hook = await createWebhook(api, { url: `${receiver.url}/stall`, events: ['drift.detected'] });
    await publish(api);
    const [req] = await receiver.waitFor(1, { match: eventsOf(hook.id) });
    await expect.poll(async () => (await deliveryById(api, req!.json.delivery_id))?.status).toBe('success');
    const [attempt] = (await historyOf(api, hook.id)).filter((a) => a.event_type === 'drift.detected');
    expect(attempt).toMatchObject({ status: 'success', response_code: 200, response_body: 'partial', response_body_truncated: true, error: null });
    await expectUnchangedFor(RETRY_WAITS[0]! + RETRY_WAITS[1]! + 200, () => receiver.requests.filter(eventsOf(hook.id)).length, 1);
  });

  it('a refused connection is class connect, and a name that does not resolve is class dns', async () => {
    const refusedApi = await tenantClient(gw, 'refused');
    const refused = await createWebhook(refusedApi, { url: `http://127.0.0.1:${await freePort()}/`, events: ['drift.detected'] });
    const dnsApi = await tenantClient(gw, 'dns');
    const dns = await createWebhook(dnsApi, { url: 'http://nonexistent.invalid/hook', events: ['drift.detected'] });
    await publish(refusedApi);
    await publish(dnsApi);
    for (const [api, hook, errorClass] of [
      [refusedApi, refused, 'connect'],
      [dnsApi, dns, 'dns'],
    ] as const) {
      await expect.poll(async () => (await historyOf(api, hook.id)).filter((a) => a.event_type === 'drift.detected').length).toBeGreaterThanOrEqual(1);
      const first = (await historyOf(api, hook.id)).filter((a) => a.event_type === 'drift.detected').at(-1);
      expect(first).toMatchObject({ attempt: 1, status: 'failed', response_code: null, error_class: errorClass, response_body: null });
      expect(first.error).toEqual(expect.any(String));
    }
    const firstRefused = (await historyOf(refusedApi, refused.id)).at(-1);
    expect(firstRefused.error).toMatch(/ECONNREFUSED/);
    const firstDns = (await historyOf(dnsApi, dns.id)).at(-1);
    expect(firstDns.error).toMatch(/nonexistent\.invalid/);
  });

  it('fails twice then recovers: exactly 3 requests, spaced at least the configured waits', async () => {
    const api = await tenantClient(gw, 'recover');
    const hook = await createWebhook(api, { url: `${receiver.url}/fail-twice/recover`, events: ['drift.detected'] });
    await publish(api);

    const tries = await receiver.waitFor(3, { match: eventsOf(hook.id) });
    expect(tries[1]!.at - tries[0]!.at).toBeGreaterThanOrEqual(RETRY_WAITS[0]!);
    expect(tries[2]!.at - tries[1]!.at).toBeGreaterThanOrEqual(RETRY_WAITS[1]!);
    const deliveryId = tries[0]!.json.delivery_id as string;
    await expect.poll(async () => (await deliveryById(api, deliveryId))?.status).toBe('success');
    const delivery = await deliveryById(api, deliveryId);
    expect(delivery).toMatchObject({ status: 'success', attemptCount: 3, nextAttemptAt: null });
    expect(delivery!.attempts.map((a) => [a.attempt, a.status, a.responseCode])).toEqual([
      [1, 'failed', 500],
      [2, 'failed', 500],
      [3, 'success', 200],
    ]);
    await expectUnchangedFor(RETRY_WAITS[1]! * 2, () => receiver.requests.filter(eventsOf(hook.id)).length, 3);
  });

  it('never recovers: 1 + schedule-length requests, then the delivery is failed', async () => {
    const api = await tenantClient(gw, 'give-up');
    const hook = await createWebhook(api, { url: `${receiver.url}/status/500`, events: ['drift.detected'] });
    await publish(api);
    const tries = await receiver.waitFor(1 + RETRY_WAITS.length, { match: eventsOf(hook.id) });
    const deliveryId = tries[0]!.json.delivery_id as string;
    await expect.poll(async () => (await deliveryById(api, deliveryId))?.status).toBe('failed');
    const delivery = await deliveryById(api, deliveryId);
    expect(delivery).toMatchObject({ status: 'failed', attemptCount: 3, nextAttemptAt: null });
    expect(delivery!.attempts.map((a) => a.attempt)).toEqual([1, 2, 3]);
    expect(delivery!.attempts.map((a) => a.nextRetryAt !== null)).toEqual([true, true, false]);
    // Each failed attempt advertises its retry exactly the configured wait after it.
    const history = (await historyOf(api, hook.id)).filter((a) => a.delivery_id === deliveryId).reverse();
    expect(history.map((a) => a.attempt)).toEqual([1, 2, 3]);
    for (const [i, wait] of RETRY_WAITS.entries()) {
      expect(Date.parse(history[i].next_retry_at) - Date.parse(history[i].created_at)).toBe(wait);
    }
    expect(history[2].next_retry_at).toBeNull();
    await expectUnchangedFor(RETRY_WAITS[1]! * 2, () => receiver.requests.filter(eventsOf(hook.id)).length, 3);
    const webhook = await api.get(`/api/v1/webhooks/${hook.id}`);
    expect(webhook.body.last_delivery_status).toBe('failed');
  });
});

describe('disabling and deleting stop pending retries', () => {
  const WAIT = 700;
  let gw: TestGateway;
  let receiver: Receiver;
  const held = new Map<string, () => void>();

  beforeAll(async () => {
    gw = await startTestGateway({ WEBHOOK_RETRY_SCHEDULE: `${WAIT}ms,${WAIT}ms`, WORKER_POLL_INTERVAL: '50ms', WEBHOOK_TIMEOUT: '2s' });
    // Pings and events with data.phase 'after' get 200; /hold answers 500 once the test
    // releases it; everything else 500.
    receiver = await startReceiver((req, n, res) => {
      if (req.json?.event === 'ping' || req.json?.data?.phase === 'after') return answer(200)(req, n, res);
      if (req.path.startsWith('/hold')) {
        const id = req.json.delivery_id as string;
        held.set(id, () => {
          held.delete(id);
          answer(500)(req, n, res);
        });
        return;
      }
      answer(500)(req, n, res);
    });
  });
  afterAll(async () => {
    for (const release of held.values()) release();
    await gw?.close();
    await receiver?.close();
  });

  it('disabling while a retry is waiting stops it; events published while disabled are never sent', async () => {
    const api = await tenantClient(gw, 'disable');
    const hook = await createWebhook(api, { url: `${receiver.url}/fail/disable`, events: ['drift.detected', 'alert.created'] });
    // A sibling in the same tenant, failing the same way, shows when the retry would have come.
    const sibling = await createWebhook(api, { url: `${receiver.url}/fail/sibling`, events: ['drift.detected'] });
    await publish(api, 'drift.detected', { phase: 'before' });
    const [first] = await receiver.waitFor(1, { match: eventsOf(hook.id) });
    await expect.poll(async () => (await deliveryById(api, first!.json.delivery_id))?.attemptCount).toBe(1);
    const disabled = await api.put(`/api/v1/webhooks/${hook.id}`, { enabled: false });
    expect(disabled.status, disabled.text).toBe(200);
    expect(disabled.body.enabled).toBe(false);
    await expect.poll(async () => (await deliveryById(api, first!.json.delivery_id))?.status).toBe('cancelled');

    const whileDisabled = await publish(api, 'alert.created', { phase: 'while-disabled' });
    expect(whileDisabled.deliveries).toBe(0);
    const both = await publish(api, 'drift.detected', { phase: 'while-disabled' });
    expect(both.deliveries).toBe(1);

    // The sibling's retries of the first event run their full course...
    await receiver.waitFor(3, { match: (r) => eventsOf(sibling.id)(r) && r.json.data.phase === 'before', timeoutMs: 10_000 });
    // ...while the disabled webhook was asked once.
    expect(receiver.requests.filter(eventsOf(hook.id))).toHaveLength(1);

    const enabled = await api.put(`/api/v1/webhooks/${hook.id}`, { enabled: true });
    expect(enabled.status).toBe(200);
    await publish(api, 'alert.created', { phase: 'after' });
    await receiver.waitFor(1, { match: (r) => r.json?.webhook_id === hook.id && r.json?.data?.phase === 'after' });
    await expectUnchangedFor(WAIT + 300, () => receiver.requests.filter((r) => r.json?.webhook_id === hook.id && r.json?.event !== 'ping').map((r) => `${r.json.event}:${r.json.data.phase}`), ['drift.detected:before', 'alert.created:after']);
    expect((await deliveryById(api, first!.json.delivery_id))?.status).toBe('cancelled');
  });

  it('disabling while an attempt is in flight: its failure schedules no retry', async () => {
    const api = await tenantClient(gw, 'disable-inflight');
    const hook = await createWebhook(api, { url: `${receiver.url}/hold/disable`, events: ['drift.detected'] });
    await publish(api);
    const [first] = await receiver.waitFor(1, { match: eventsOf(hook.id) });
    const deliveryId = first!.json.delivery_id as string;
    expect((await api.put(`/api/v1/webhooks/${hook.id}`, { enabled: false })).status).toBe(200);
    held.get(deliveryId)!();
    await expect.poll(async () => (await deliveryById(api, deliveryId))?.attemptCount).toBe(1);
    const delivery = await deliveryById(api, deliveryId);
    expect(delivery).toMatchObject({ status: 'cancelled', attemptCount: 1, nextAttemptAt: null });
    expect(delivery!.attempts).toEqual([expect.objectContaining({ attempt: 1, status: 'failed', responseCode: 500, nextRetryAt: null })]);
    await expectUnchangedFor(WAIT * 2, () => receiver.requests.filter(eventsOf(hook.id)).length, 1);
  });

  it('deleting while a retry is waiting stops it', async () => {
    const api = await tenantClient(gw, 'delete');
    const hook = await createWebhook(api, { url: `${receiver.url}/fail/delete`, events: ['drift.detected'] });
    const sibling = await createWebhook(api, { url: `${receiver.url}/fail/delete-sibling`, events: ['drift.detected'] });
    await publish(api);
    const [first] = await receiver.waitFor(1, { match: eventsOf(hook.id) });
    await expect.poll(async () => (await deliveryById(api, first!.json.delivery_id))?.attemptCount).toBe(1);
    const deleted = await api.delete(`/api/v1/webhooks/${hook.id}`);
    expect(deleted.status).toBe(204);
    expect(deleted.text).toBe('');
    expect((await api.get(`/api/v1/webhooks/${hook.id}`)).status).toBe(404);
    expect(await deliveryById(api, first!.json.delivery_id)).toBeNull();

    await receiver.waitFor(3, { match: eventsOf(sibling.id), timeoutMs: 10_000 });
    await expectUnchangedFor(400, () => receiver.requests.filter(eventsOf(hook.id)).length, 1);
  });

  it('deleting while an attempt is in flight: nothing more is sent and nothing is recorded', async () => {
    const api = await tenantClient(gw, 'delete-inflight');
    const hook = await createWebhook(api, { url: `${receiver.url}/hold/delete`, events: ['drift.detected'] });
    await publish(api);
    const [first] = await receiver.waitFor(1, { match: eventsOf(hook.id) });
    expect((await api.delete(`/api/v1/webhooks/${hook.id}`)).status).toBe(204);
    const deliveryId = first!.json.delivery_id as string;
    held.get(deliveryId)!();
    await expect.poll(() => gw.logs.some((l) => l.includes('"msg":"delivery attempt"') && l.includes(deliveryId))).toBe(true);
    await expectUnchangedFor(WAIT * 2, () => receiver.requests.filter(eventsOf(hook.id)).length, 1);
    const stored = await gw.gateway.db.orm.em
      .fork()
      .getConnection()
      .execute<{ n: string }[]>('select count(*) as n from delivery_attempt where delivery_id = ?', [deliveryId], 'all');
    expect(Number(stored[0]!.n)).toBe(0);
    expect(gw.logs.filter((l) => l.includes('"level":50'))).toEqual([]);
  });
});
