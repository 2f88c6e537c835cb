// Auto-disable (CONTRACT.md section 7): a webhook that has had no successful attempt for
// WEBHOOK_DISABLE_AFTER and whose delivery failed meanwhile is disabled as "failing"; an endpoint
// that answers 410 Gone disables its webhook at once as "gone". Either way its pending deliveries
// are cancelled, and disabled_reason / disabled_at say why and since when. The window is
// compressed by configuration; every wait is for a condition.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceToken, userToken } from '../helpers/auth.js';
import { createWebhook, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client } from '../helpers/http.js';
import { answer, startReceiver, type Receiver } from '../helpers/receiver.js';

const EVENT = 'drift.detected';

async function deliveryStatuses(gw: TestGateway, webhookId: string): Promise<Record<string, number>> {
  const rows = await gw.gateway.db.orm.em
    .fork()
    .getConnection()
    .execute<{ status: string; n: string | number }[]>(
      `select status, count(*) as n from delivery where webhook_id = ? and event_type = ? group by status order by status`,
      [webhookId, EVENT],
    );
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
}

/** Publishes `count` events at once; resolves with how many deliveries they made. */
async function publish(gw: TestGateway, tenant: string, count: number): Promise<number> {
  const publisher = client(gw.url, await serviceToken());
  const answers = await Promise.all(Array.from({ length: count }, (_, n) => publisher.post('/api/v1/events', { event: EVENT, data: { n }, tenant_id: tenant })));
  for (const res of answers) expect(res.status, res.text).toBe(202);
  return answers.reduce((sum, res) => sum + (res.body.deliveries as number), 0);
}

describe('auto-disable after WEBHOOK_DISABLE_AFTER of failure', () => {
  let gw: TestGateway;
  let failing: Receiver;

  beforeAll(async () => {
    gw = await startTestGateway({
      WEBHOOK_DISABLE_AFTER: '300ms',
      WEBHOOK_RETRY_SCHEDULE: '200ms,200ms',
      WORKER_POLL_INTERVAL: '50ms',
      // One request at a time, so deliveries are still waiting when the first one fails for good.
      WORKER_MAX_IN_FLIGHT_PER_WEBHOOK: '1',
    });
    // The creation ping succeeds; every event after it fails.
    failing = await startReceiver((req, n, res) => (req.json?.event === 'ping' ? answer(200)(req, n, res) : answer(500, 'down')(req, n, res)));
  });
  afterAll(async () => {
    await failing?.close();
    await gw?.close();
  });

  it('disables a webhook whose deliveries keep failing, cancels what it had pending, and sends it nothing more', async () => {
    const tenant = uniqueTenant('failing');
    const api = client(gw.url, await userToken(tenant));
    const hook = await createWebhook(api, { url: `${failing.url}/down`, events: [EVENT] });
    expect(hook.body).toMatchObject({ enabled: true, disabled_reason: null, disabled_at: null });
    await failing.waitFor(1, { match: (r) => r.json?.event === 'ping' });
    const made = await publish(gw, tenant, 20);
    expect(made).toBeGreaterThan(1);

    await expect.poll(async () => (await api.get(`/api/v1/webhooks/${hook.id}`)).body.disabled_reason, { timeout: 30_000 }).toBe('failing');
    const disabled = (await api.get(`/api/v1/webhooks/${hook.id}`)).body;
    expect(disabled.enabled).toBe(false);
    expect(Date.parse(disabled.disabled_at)).toBeGreaterThanOrEqual(Date.parse(hook.body['created_at'] as string));

    // Nothing is left waiting: what had not failed for good was cancelled.
    await expect.poll(async () => (await deliveryStatuses(gw, hook.id))['pending'] ?? 0).toBe(0);
    const statuses = await deliveryStatuses(gw, hook.id);
    expect(statuses['failed']).toBeGreaterThanOrEqual(1);
    expect((statuses['failed'] ?? 0) + (statuses['cancelled'] ?? 0)).toBe(made);

    // Events published now do not reach it.
    const before = failing.requests.length;
    const res = await client(gw.url, await serviceToken()).post('/api/v1/events', { event: EVENT, data: { late: true }, tenant_id: tenant });
    expect(res.body.deliveries).toBe(0);
    expect(failing.requests.length).toBe(before);

    // GraphQL tells the same.
    const viaGraphql = await api.graphql<{ webhook: { enabled: boolean; disabledReason: string; disabledAt: string } }>(
      `query($id: ID!) { webhook(id: $id) { enabled disabledReason disabledAt } }`,
      { id: hook.id },
    );
    expect(viaGraphql.body.data?.webhook).toEqual({ enabled: false, disabledReason: 'failing', disabledAt: disabled.disabled_at });
  });

  it('clears the reason when enabled again, and says "manual" when disabled by its owner', async () => {
    const tenant = uniqueTenant('owner');
    const api = client(gw.url, await userToken(tenant));
    const ok = await startReceiver();
    try {
      const created = await createWebhook(api, { url: `${ok.url}/owner`, events: [EVENT], enabled: false });
      expect(created.body).toMatchObject({ enabled: false, disabled_reason: 'manual' });
      expect(Date.parse(created.body['disabled_at'] as string)).not.toBeNaN();

      const enabled = await api.put(`/api/v1/webhooks/${created.id}`, { enabled: true });
      expect(enabled.status, enabled.text).toBe(200);
      expect(enabled.body).toMatchObject({ enabled: true, disabled_reason: null, disabled_at: null });

      const disabled = await api.put(`/api/v1/webhooks/${created.id}`, { enabled: false });
      expect(disabled.body).toMatchObject({ enabled: false, disabled_reason: 'manual' });
      expect(Date.parse(disabled.body.disabled_at)).toBeGreaterThanOrEqual(Date.parse(enabled.body.updated_at));
    } finally {
      await ok.close();
    }
  });
});

describe('410 Gone, and WEBHOOK_DISABLE_AFTER=0', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({ WEBHOOK_DISABLE_AFTER: '0', WEBHOOK_RETRY_SCHEDULE: '100ms', WORKER_POLL_INTERVAL: '50ms', WORKER_MAX_IN_FLIGHT_PER_WEBHOOK: '1' });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('keeps a failing webhook enabled when WEBHOOK_DISABLE_AFTER is 0', async () => {
    const tenant = uniqueTenant('never');
    const api = client(gw.url, await userToken(tenant));
    const failing = await startReceiver(answer(503));
    try {
      const hook = await createWebhook(api, { url: `${failing.url}/never`, events: [EVENT] });
      await publish(gw, tenant, 2);
      await expect.poll(() => deliveryStatuses(gw, hook.id), { timeout: 30_000 }).toEqual({ failed: 2 });
      expect((await api.get(`/api/v1/webhooks/${hook.id}`)).body).toMatchObject({ enabled: true, disabled_reason: null, disabled_at: null });
    } finally {
      await failing.close();
    }
  });

  it('disables the webhook at once when its endpoint answers 410 Gone, without retrying, and cancels the rest', async () => {
    const tenant = uniqueTenant('gone');
    const api = client(gw.url, await userToken(tenant));
    // The ping succeeds; every event after it is answered 410.
    const gone = await startReceiver((req, n, res) => (req.json?.event === 'ping' ? answer(200)(req, n, res) : answer(410, 'gone')(req, n, res)));
    try {
      const hook = await createWebhook(api, { url: `${gone.url}/gone`, events: [EVENT] });
      await gone.waitFor(1, { match: (r) => r.json?.event === 'ping' });
      const made = await publish(gw, tenant, 20);

      await expect.poll(async () => (await api.get(`/api/v1/webhooks/${hook.id}`)).body.disabled_reason, { timeout: 30_000 }).toBe('gone');
      await expect.poll(async () => (await deliveryStatuses(gw, hook.id))['pending'] ?? 0).toBe(0);
      const statuses = await deliveryStatuses(gw, hook.id);
      // The first 410 disables it; rows the worker had already taken up before the disable
      // committed may still have gone out, each once. Nothing is retried; the rest is cancelled.
      const sent = gone.requests.filter((r) => r.json?.event === EVENT);
      expect(sent.length).toBeGreaterThanOrEqual(1);
      expect(sent.length).toBeLessThan(made);
      expect(new Set(sent.map((r) => r.json.delivery_id)).size).toBe(sent.length);
      // The delivery answered 410 failed; those sent beside it were cancelled while under way.
      expect(statuses['failed']).toBeGreaterThanOrEqual(1);
      expect(statuses['failed']).toBeLessThanOrEqual(sent.length);
      expect((statuses['failed'] ?? 0) + (statuses['cancelled'] ?? 0)).toBe(made);
      const history = (await api.get(`/api/v1/webhooks/${hook.id}/deliveries?per_page=100`)).body.data as { response_code: number; attempt: number }[];
      const gones = history.filter((a) => a.response_code === 410);
      expect(gones).toHaveLength(sent.length);
      expect(gones.every((a) => a.attempt === 1)).toBe(true);
    } finally {
      await gone.close();
    }
  });

  it('keeps the time of the newest success on the webhook, which the rule reads', async () => {
    const tenant = uniqueTenant('success');
    const api = client(gw.url, await userToken(tenant));
    const ok = await startReceiver();
    try {
      const hook = await createWebhook(api, { url: `${ok.url}/ok`, events: [EVENT] });
      await publish(gw, tenant, 1);
      await ok.waitFor(1, { match: (r) => r.json?.event === EVENT });
      const read = async () =>
        (
          await gw.gateway.db.orm.em
            .fork()
            .getConnection()
            .execute<{ last_success_at: Date | string | null; last_delivery_at: Date | string | null }[]>(
              'select last_success_at, last_delivery_at from webhook where id = ?',
              [hook.id],
            )
        )[0]!;
      await expect.poll(async () => (await read()).last_success_at !== null && (await deliveryStatuses(gw, hook.id))['success'] === 1).toBe(true);
      const row = await read();
      expect(new Date(row.last_success_at!).getTime()).toBe(new Date(row.last_delivery_at!).getTime());
    } finally {
      await ok.close();
    }
  });
});
