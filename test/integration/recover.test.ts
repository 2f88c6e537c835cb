import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../src/ids.js';
import { userToken } from '../helpers/auth.js';
import { createWebhook, deliveryById, expectUnchangedFor, uniqueTenant } from '../helpers/delivery.js';
import { onRealPostgres } from '../helpers/database.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { answer, startReceiver, type ReceivedRequest, type Receiver } from '../helpers/receiver.js';

async function tenantApi(gw: TestGateway, prefix: string): Promise<{ api: TestClient; tenant: string }> {
  const tenant = uniqueTenant(prefix);
  return { api: client(gw.url, await userToken(tenant)), tenant };
}

async function publish(api: TestClient, marker: string, event = 'drift.detected'): Promise<void> {
  const res = await api.post('/api/v1/events', { event, data: { marker } });
  expect(res.status, res.text).toBe(202);
}

const recoverPath = (webhookId: string) => `/api/v1/webhooks/${webhookId}/recover`;
const recoveryPath = (webhookId: string, id: string) => `/api/v1/webhooks/${webhookId}/recoveries/${id}`;
const HOUR = 3_600_000;
const ago = (ms: number) => new Date(Date.now() - ms).toISOString();

/** Waits until the recovery is completed, and answers it. */
async function completed(api: TestClient, webhookId: string, id: string): Promise<any> {
  let last: any;
  await expect
    .poll(async () => {
      last = (await api.get(recoveryPath(webhookId, id))).body;
      return last?.status;
    })
    .toBe('completed');
  return last;
}

const byMarker = (marker: string) => (r: ReceivedRequest) => r.json?.data?.marker === marker;
const requestsOf = (receiver: Receiver, deliveryId: string) => receiver.requests.filter((r) => r.json?.delivery_id === deliveryId).length;

describe('bulk recover', () => {
  let gw: TestGateway;
  let receiver: Receiver;
  /** Paths under which the receiver answers 500. */
  const down = new Set<string>();

  beforeAll(async () => {
    gw = await startTestGateway({
      // Two attempts, then failed.
      WEBHOOK_RETRY_SCHEDULE: '10ms',
      WORKER_POLL_INTERVAL: '50ms',
      // Several batches for every recover below.
      RECOVER_BATCH_SIZE: '2',
    });
    receiver = await startReceiver((req, n, res) => answer(down.has(req.path) ? 500 : 200, 'x')(req, n, res));
  });
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  /** Publishes an event whose delivery fails twice, and answers its delivery id and publish time. */
  async function failedDelivery(api: TestClient, path: string, marker: string) {
    await publish(api, marker);
    const [first] = await receiver.waitFor(2, { match: byMarker(marker) });
    const deliveryId = first!.json.delivery_id as string;
    await expect.poll(async () => (await deliveryById(api, deliveryId))?.status).toBe('failed');
    expect(first!.path).toBe(path);
    return { deliveryId, publishedAt: first!.json.timestamp as string };
  }

  it('queues again the failed deliveries of the window, which are then delivered; those outside it are left alone', async () => {
    const { api } = await tenantApi(gw, 'recover-failed');
    const path = '/failed';
    down.add(path);
    const hook = await createWebhook(api, { url: `${receiver.url}${path}`, events: ['drift.detected'] });
    const before = await failedDelivery(api, path, 'f-before');
    const inWindow = [];
    for (const marker of ['f-1', 'f-2', 'f-3']) inWindow.push(await failedDelivery(api, path, marker));
    down.delete(path);

    const since = new Date(Date.parse(before.publishedAt) + 1).toISOString();
    const res = await api.post(recoverPath(hook.id), { since });
    expect(res.status, res.text).toBe(202);
    expect(res.body).toMatchObject({ webhook_id: hook.id, since, total: 3, completed_at: null, status: 'running' });
    expect(res.body.id).toMatch(/^rcv_[A-Za-z0-9_-]{20}$/);
    expect(Date.parse(res.body.until)).toBeLessThanOrEqual(Date.now());
    expect(res.body.queued).toBeLessThanOrEqual(3);

    const done = await completed(api, hook.id, res.body.id);
    expect(done).toMatchObject({ id: res.body.id, total: 3, queued: 3, since, until: res.body.until, created_at: res.body.created_at });
    expect(Date.parse(done.completed_at)).toBeGreaterThanOrEqual(Date.parse(done.created_at));

    for (const { deliveryId } of inWindow) {
      await expect.poll(async () => (await deliveryById(api, deliveryId))?.status).toBe('success');
      const delivery = await deliveryById(api, deliveryId);
      expect(delivery!.attempts.map((a) => [a.attempt, a.status])).toEqual([
        [1, 'failed'],
        [2, 'failed'],
        [3, 'success'],
      ]);
      expect(requestsOf(receiver, deliveryId)).toBe(3);
    }
    await expectUnchangedFor(300, () => requestsOf(receiver, before.deliveryId), 2);
    expect((await deliveryById(api, before.deliveryId))?.status).toBe('failed');
  });

  it('with include_missed, creates the deliveries of events published while the webhook was disabled, once', async () => {
    const { api } = await tenantApi(gw, 'recover-missed');
    const since = ago(1000);
    await publish(api, 'm-before-creation');
    const path = '/missed';
    const hook = await createWebhook(api, { url: `${receiver.url}${path}`, events: ['drift.detected'] });
    await receiver.waitFor(1, { match: (r) => r.path === path && r.json?.event === 'ping' });

    expect((await api.put(`/api/v1/webhooks/${hook.id}`, { enabled: false })).status).toBe(200);
    await publish(api, 'm-while-disabled');
    await publish(api, 'm-while-disabled-2');
    await publish(api, 'm-unsubscribed', 'alert.created');
    expect((await api.put(`/api/v1/webhooks/${hook.id}`, { enabled: true })).status).toBe(200);
    await publish(api, 'm-while-enabled');
    await receiver.waitFor(1, { match: byMarker('m-while-enabled') });

    const res = await api.post(recoverPath(hook.id), { since, include_missed: true });
    expect(res.status, res.text).toBe(202);
    expect(res.body.total).toBe(2);
    expect(await completed(api, hook.id, res.body.id)).toMatchObject({ total: 2, queued: 2 });
    const [missed] = await receiver.waitFor(1, { match: byMarker('m-while-disabled') });
    await receiver.waitFor(1, { match: byMarker('m-while-disabled-2') });
    expect(missed!.path).toBe(path);
    expect(missed!.headers['x-infraaudit-attempt']).toBe('1');
    expect(missed!.json).toMatchObject({ event: 'drift.detected', webhook_id: hook.id });
    expect(missed!.json.delivery_id).toMatch(/^del_/);

    // Nothing twice: a second recover finds nothing missed, and nothing else is sent.
    const again = await api.post(recoverPath(hook.id), { since, include_missed: true });
    expect(again.status, again.text).toBe(202);
    expect(again.body).toMatchObject({ status: 'completed', total: 0, queued: 0 });
    const sentTo = () =>
      ['m-before-creation', 'm-while-disabled', 'm-while-disabled-2', 'm-unsubscribed', 'm-while-enabled'].map(
        (marker) => receiver.requests.filter((r) => r.path === path && byMarker(marker)(r)).length,
      );
    await expectUnchangedFor(300, sentTo, [0, 1, 1, 0, 1]);
  });

  it("with include_missed, never sends a webhook the gateway's notice that it is failing, which went to the tenant's other webhooks", async () => {
    const { api } = await tenantApi(gw, 'recover-ops');
    const since = ago(1000);
    const watcher = await createWebhook(api, { url: `${receiver.url}/ops-watcher`, events: ['webhook.failing'] });
    const path = '/ops-failing';
    down.add(path);
    const hook = await createWebhook(api, { url: `${receiver.url}${path}`, events: ['drift.detected', 'webhook.failing'] });
    const { deliveryId } = await failedDelivery(api, path, 'o-1');
    await receiver.waitFor(1, { match: (r) => r.path === '/ops-watcher' && r.json?.data?.webhook_id === hook.id });
    down.delete(path);

    const res = await api.post(recoverPath(hook.id), { since, include_missed: true });
    expect(res.status, res.text).toBe(202);
    // Its failed ping and o-1; not the webhook.failing about itself.
    expect(await completed(api, hook.id, res.body.id)).toMatchObject({ total: 2, queued: 2 });
    await expect.poll(async () => (await deliveryById(api, deliveryId))?.status).toBe('success');
    await expectUnchangedFor(300, () => receiver.requests.filter((r) => r.path === path && r.json?.event === 'webhook.failing').length, 0);
    expect(watcher.id).not.toBe(hook.id);
  });

  it('answers 400 for wrong JSON types, 422 for a bad window, 409 on a disabled webhook and 404 for what is not the caller\'s', async () => {
    const { api } = await tenantApi(gw, 'recover-checks');
    const hook = await createWebhook(api, { url: `${receiver.url}/checks`, events: ['drift.detected'] });
    for (const body of [{}, { since: 1 }, { since: ago(HOUR), until: true }, { since: ago(HOUR), include_missed: 'yes' }, { since: null }]) {
      const res = await api.post(recoverPath(hook.id), body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.code).toBe('BAD_REQUEST');
    }
    const now = Date.now();
    const cases: [Record<string, unknown>, string][] = [
      [{ since: 'yesterday' }, 'since'],
      [{ since: ago(HOUR), until: 'soon' }, 'until'],
      [{ since: new Date(now + HOUR).toISOString() }, 'since'],
      [{ since: ago(2 * HOUR), until: ago(3 * HOUR) }, 'since'],
      [{ since: ago(HOUR), until: ago(HOUR) }, 'since'],
      [{ since: ago(15 * 24 * HOUR) }, 'until'],
    ];
    for (const [body, field] of cases) {
      const res = await api.post(recoverPath(hook.id), body);
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(res.body).toMatchObject({ code: 'VALIDATION_ERROR', details: { field } });
    }
    // Exactly 14 days is allowed.
    const until = new Date(now).toISOString();
    const widest = await api.post(recoverPath(hook.id), { since: new Date(now - 14 * 24 * HOUR).toISOString(), until });
    expect(widest.status, widest.text).toBe(202);

    const { api: stranger } = await tenantApi(gw, 'recover-stranger');
    expect((await stranger.post(recoverPath(hook.id), { since: ago(HOUR) })).status).toBe(404);
    expect((await stranger.get(recoveryPath(hook.id, widest.body.id))).status).toBe(404);
    expect((await api.post(recoverPath('wh_AAAAAAAAAAAAAAAAAAAA'), { since: ago(HOUR) })).status).toBe(404);
    expect((await api.post(recoverPath('nope'), { since: ago(HOUR) })).status).toBe(404);
    const other = await createWebhook(api, { url: `${receiver.url}/checks-other`, events: ['drift.detected'] });
    expect((await api.get(recoveryPath(other.id, widest.body.id))).status).toBe(404);
    expect((await api.get(recoveryPath(hook.id, 'rcv_AAAAAAAAAAAAAAAAAAAA'))).status).toBe(404);
    expect((await api.get(recoveryPath(hook.id, 'not-an-id'))).status).toBe(404);

    expect((await api.put(`/api/v1/webhooks/${hook.id}`, { enabled: false })).status).toBe(200);
    const disabled = await api.post(recoverPath(hook.id), { since: ago(HOUR) });
    expect(disabled.status).toBe(409);
    expect(disabled.body.code).toBe('CONFLICT');
    expect(disabled.body.error).toMatch(/enable it first/);
  });

  it('runs over GraphQL: the recoverWebhook mutation and the recovery query', async () => {
    const { api } = await tenantApi(gw, 'recover-graphql');
    const path = '/graphql-recover';
    down.add(path);
    const hook = await createWebhook(api, { url: `${receiver.url}${path}`, events: ['drift.detected'] });
    // The webhook's ping failed too, before the window: since is inclusive, at the event's own time.
    const { deliveryId, publishedAt } = await failedDelivery(api, path, 'g-1');
    down.delete(path);

    const started = await api.graphql<{ recoverWebhook: any }>(
      `mutation($webhookId: ID!, $input: RecoverWebhookInput!) {
        recoverWebhook(webhookId: $webhookId, input: $input) { id webhookId status since until includeMissed total queued createdAt completedAt }
      }`,
      { webhookId: hook.id, input: { since: publishedAt, includeMissed: false } },
    );
    expect(started.body.errors).toBeUndefined();
    const recovery = started.body.data!.recoverWebhook;
    expect(recovery).toMatchObject({ webhookId: hook.id, includeMissed: false, total: 1 });
    const read = async () =>
      (
        await api.graphql<{ recovery: any }>(`query($webhookId: ID!, $id: ID!) { recovery(webhookId: $webhookId, id: $id) { id status total queued completedAt } }`, {
          webhookId: hook.id,
          id: recovery.id,
        })
      ).body.data?.recovery;
    await expect.poll(async () => (await read())?.status).toBe('completed');
    expect(await read()).toMatchObject({ id: recovery.id, total: 1, queued: 1 });
    await expect.poll(async () => (await deliveryById(api, deliveryId))?.status).toBe('success');

    const bad = await api.graphql(
      `mutation($webhookId: ID!) { recoverWebhook(webhookId: $webhookId, input: { since: "2024-02-01T00:00:00Z", until: "2024-01-01T00:00:00Z" }) { id } }`,
      { webhookId: hook.id },
    );
    expect(bad.body.errors?.[0]?.extensions).toMatchObject({ code: 'VALIDATION_ERROR' });
    const { api: stranger } = await tenantApi(gw, 'recover-graphql-stranger');
    const foreign = await stranger.graphql(`query($webhookId: ID!, $id: ID!) { recovery(webhookId: $webhookId, id: $id) { id } }`, {
      webhookId: hook.id,
      id: recovery.id,
    });
    expect(foreign.body.errors?.[0]?.extensions).toMatchObject({ code: 'NOT_FOUND' });
  });
});

/**
 * Writes `count` failed deliveries of the webhook directly, for events published in the last hour,
 * and `outside` more for events of two days ago; answers their ids, those of the last hour first.
 */
async function insertFailedDeliveries(gw: TestGateway, tenant: string, webhookId: string, count: number, outside: number): Promise<string[]> {
  const rows = Array.from({ length: count + outside }, (_, i) => ({
    event_id: newId('evt'),
    delivery_id: newId('del'),
    age_s: i < count ? 60 + i : 2 * 86_400,
  }));
  const connection = gw.gateway.db.orm.em.fork().getConnection();
  await connection.execute(
    `insert into event (id, tenant_id, type, data, published_at, delivery_count)
     select r.event_id, ?, 'drift.detected', '{}'::jsonb, now() - r.age_s * interval '1 second', 1
     from json_to_recordset(?::json) as r(event_id text, delivery_id text, age_s int)`,
    [tenant, JSON.stringify(rows)],
    'run',
  );
  await connection.execute(
    `insert into delivery (id, event_id, webhook_id, tenant_id, event_type, status, attempts, created_at, updated_at)
     select r.delivery_id, r.event_id, ?, ?, 'drift.detected', 'failed', 1, now(), now()
     from json_to_recordset(?::json) as r(event_id text, delivery_id text, age_s int)`,
    [webhookId, tenant, JSON.stringify(rows)],
    'run',
  );
  return rows.map((r) => r.delivery_id);
}

/** How many drift.detected requests the receiver got per delivery id. */
function sentPerDelivery(receiver: Receiver): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of receiver.requests) {
    if (r.json?.event === 'drift.detected') counts.set(r.json.delivery_id, (counts.get(r.json.delivery_id) ?? 0) + 1);
  }
  return counts;
}

describe('a bulk recover across a restart', () => {
  const COUNT = 240;
  const OUTSIDE = 6;
  let gw: TestGateway;
  let receiver: Receiver;

  beforeAll(async () => {
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  it('goes on after the gateway is stopped mid-way, and queues every failed delivery of the window exactly once', async () => {
    const settings = { RECOVER_BATCH_SIZE: '10', RECOVER_BATCH_DELAY: '40ms', WORKER_POLL_INTERVAL: '100ms' };
    gw = await startTestGateway(settings);
    const { api, tenant } = await tenantApi(gw, 'recover-restart');
    const hook = await createWebhook(api, { url: `${receiver.url}/restart`, events: ['drift.detected'] });
    await receiver.waitFor(1, { match: (r) => r.json?.event === 'ping' });

    const ids = await insertFailedDeliveries(gw, tenant, hook.id, COUNT, OUTSIDE);

    const res = await api.post(recoverPath(hook.id), { since: ago(24 * HOUR) });
    expect(res.status, res.text).toBe(202);
    expect(res.body.total).toBe(COUNT);
    const recoveryId = res.body.id as string;

    // Stopped once some batches are done, well before the last.
    await expect.poll(async () => (await api.get(recoveryPath(hook.id, recoveryId))).body.queued, { interval: 10 }).toBeGreaterThanOrEqual(30);
    await gw.stop();
    gw = await gw.restart();
    const again = client(gw.url, await userToken(tenant));
    const midway = (await again.get(recoveryPath(hook.id, recoveryId))).body;
    expect(midway.status).toBe('running');
    expect(midway.queued).toBeGreaterThanOrEqual(30);
    expect(midway.queued).toBeLessThan(COUNT);

    const done = await completed(again, hook.id, recoveryId);
    expect(done).toMatchObject({ total: COUNT, queued: COUNT });
    await receiver.waitFor(COUNT, { match: (r) => r.path === '/restart' && r.json?.event === 'drift.detected', timeoutMs: 30_000 });
    await expectUnchangedFor(500, () => sentPerDelivery(receiver).size, COUNT);
    const counts = sentPerDelivery(receiver);
    expect(ids.slice(0, COUNT).filter((id) => counts.get(id) !== 1)).toEqual([]);
    for (const id of ids.slice(COUNT)) expect(counts.has(id)).toBe(false);
    // Each was attempted once more, numbered after its first attempt.
    const attempts = receiver.requests.filter((r) => r.json?.event === 'drift.detected').map((r) => r.headers['x-infraaudit-attempt']);
    expect(new Set(attempts)).toEqual(new Set(['2']));
  });
});

describe.skipIf(!onRealPostgres)('a bulk recover run by two gateways on one database', () => {
  const COUNT = 200;
  let first: TestGateway;
  let second: TestGateway;
  let receiver: Receiver;

  beforeAll(async () => {
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await second?.stop();
    await first?.close();
    await receiver?.close();
  });

  it('queues every failed delivery of the window exactly once, whichever process runs each batch', async () => {
    const settings = { RECOVER_BATCH_SIZE: '5', WORKER_POLL_INTERVAL: '20ms' };
    first = await startTestGateway(settings);
    second = await startTestGateway(settings, first.database);
    const { api, tenant } = await tenantApi(first, 'recover-two');
    const hook = await createWebhook(api, { url: `${receiver.url}/two`, events: ['drift.detected'] });
    await receiver.waitFor(1, { match: (r) => r.json?.event === 'ping' });
    const ids = await insertFailedDeliveries(first, tenant, hook.id, COUNT, 0);

    const res = await api.post(recoverPath(hook.id), { since: ago(24 * HOUR) });
    expect(res.status, res.text).toBe(202);
    expect(await completed(api, hook.id, res.body.id)).toMatchObject({ total: COUNT, queued: COUNT });
    await receiver.waitFor(COUNT, { match: (r) => r.json?.event === 'drift.detected', timeoutMs: 30_000 });
    await expectUnchangedFor(500, () => sentPerDelivery(receiver).size, COUNT);
    const counts = sentPerDelivery(receiver);
    expect(ids.filter((id) => counts.get(id) !== 1)).toEqual([]);
  });
});
