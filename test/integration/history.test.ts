import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pruneAttempts } from '../../src/worker/queue.js';
import { userToken } from '../helpers/auth.js';
import { createWebhook, deliveryById, historyOf, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { startReceiver, type ReceivedRequest, type Receiver } from '../helpers/receiver.js';

const ATTEMPT_KEYS = [
  'attempt',
  'created_at',
  'delivery_id',
  'duration_ms',
  'error',
  'error_class',
  'event_type',
  'id',
  'next_retry_at',
  'request_body',
  'request_headers',
  'response_body',
  'response_body_truncated',
  'response_code',
  'response_headers',
  'status',
  'webhook_id',
];
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

const HUGE_BYTES = 64 * 1024 * 1024;

describe('delivery history', () => {
  let gw: TestGateway;
  let receiver: Receiver;
  const hugeWritten = new Map<string, number>();

  beforeAll(async () => {
    gw = await startTestGateway({ WEBHOOK_RETRY_SCHEDULE: '100ms,200ms', WORKER_POLL_INTERVAL: '50ms' });
    // The published data scripts the answer: `answer` (status), `failFirst` (500 on attempt 1),
    // `delayMs`, `bigBody` (64 KiB), `body` (exact text), `nulBody` (text with NUL), `endless` (1 KiB every 10 ms, never
    // ending), `huge` (64 MiB, written as fast as it is read). Every answer has an x-receiver header.
    receiver = await startReceiver(async (req, _n, res) => {
      const data = (req.json?.data ?? {}) as Record<string, unknown>;
      if (typeof data['delayMs'] === 'number') await new Promise((r) => setTimeout(r, data['delayMs'] as number));
      let status = typeof data['answer'] === 'number' ? data['answer'] : 200;
      if (data['failFirst'] === true && req.headers['x-infraaudit-attempt'] === '1') status = 500;
      res.writeHead(status, { 'content-type': 'text/plain', 'x-receiver': 'history-test' });
      if (data['endless'] === true) {
        const timer = setInterval(() => res.write('e'.repeat(1024)), 10);
        res.on('close', () => clearInterval(timer));
        return;
      }
      if (data['huge'] === true) {
        const chunk = Buffer.alloc(64 * 1024, 'h');
        let written = 0;
        const pump = () => {
          while (written < HUGE_BYTES && !res.destroyed) {
            written += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          if (!res.destroyed) res.end();
        };
        res.on('close', () => hugeWritten.set(req.json.delivery_id as string, written));
        pump();
        return;
      }
      if (data['nulBody'] === true) return void res.end('before\u0000after');
      if (typeof data['body'] === 'string') return void res.end(data['body']);
      res.end(data['bigBody'] === true ? 'b'.repeat(64 * 1024) : status < 300 ? 'thanks' : 'try later');
    });
  });
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  async function setup(prefix: string, events = ['drift.detected']) {
    const tenant = uniqueTenant(prefix);
    const api = client(gw.url, await userToken(tenant));
    const hook = await createWebhook(api, { url: `${receiver.url}/${prefix}`, events });
    await expect.poll(async () => (await historyOf(api, hook.id)).length).toBe(1);
    return { tenant, api, hook };
  }

  async function publish(api: TestClient, data: Record<string, unknown>, event = 'drift.detected') {
    const res = await api.post('/api/v1/events', { event, data });
    expect(res.status, res.text).toBe(202);
  }

  const sentTo = (hookId: string) => (r: ReceivedRequest) => r.json?.webhook_id === hookId;

  it('lists attempts newest first with every documented field, and never the secret', async () => {
    const { api, hook } = await setup('fields');
    await publish(api, { failFirst: true, delayMs: 120 });
    await receiver.waitFor(3, { match: sentTo(hook.id) });
    await expect.poll(async () => (await historyOf(api, hook.id)).length).toBe(3);

    const res = await api.get(`/api/v1/webhooks/${hook.id}/deliveries`);
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(['data', 'pagination']);
    expect(res.body.pagination).toEqual({ page: 1, pageSize: 20, total: 3, totalPages: 1 });
    const [second, first, ping] = res.body.data as any[];
    expect([second.event_type, second.attempt, first.event_type, first.attempt, ping.event_type]).toEqual([
      'drift.detected',
      2,
      'drift.detected',
      1,
      'ping',
    ]);
    for (const a of res.body.data as any[]) {
      expect(Object.keys(a).sort()).toEqual(ATTEMPT_KEYS);
      expect(a.id).toMatch(/^att_[A-Za-z0-9_-]{20}$/);
      expect(a.delivery_id).toMatch(/^del_[A-Za-z0-9_-]{20}$/);
      expect(a.webhook_id).toBe(hook.id);
      expect(a.created_at).toMatch(ISO_UTC);
      expect(Number.isInteger(a.duration_ms) && a.duration_ms >= 0).toBe(true);
      // What was stored is exactly what the receiver got for that attempt.
      const sent = receiver.requests.find(
        (r) => r.json?.delivery_id === a.delivery_id && r.headers['x-infraaudit-attempt'] === String(a.attempt),
      )!;
      expect(a.request_body).toBe(sent.body);
      for (const name of ['x-infraaudit-signature', 'x-infraaudit-event', 'x-infraaudit-delivery', 'x-infraaudit-attempt', 'webhook-id', 'webhook-timestamp', 'webhook-signature', 'user-agent', 'content-type']) {
        expect(a.request_headers[name], name).toBe(sent.headers[name]);
      }
      expect(a.response_headers['x-receiver']).toBe('history-test');
    }
    expect(Date.parse(second.created_at)).toBeGreaterThanOrEqual(Date.parse(first.created_at));
    expect(Date.parse(first.created_at)).toBeGreaterThanOrEqual(Date.parse(ping.created_at));
    expect(second).toMatchObject({ status: 'success', response_code: 200, response_body: 'thanks', error: null, error_class: null, next_retry_at: null, response_body_truncated: false });
    expect(first).toMatchObject({ status: 'failed', response_code: 500, response_body: 'try later', error: 'receiver answered HTTP 500', error_class: 'http' });
    expect(first.next_retry_at).toMatch(ISO_UTC);
    expect(Date.parse(first.next_retry_at)).toBeGreaterThanOrEqual(Date.parse(first.created_at) + 95);
    expect(first.delivery_id).toBe(second.delivery_id);
    expect(first.duration_ms).toBeGreaterThanOrEqual(100);

    // The secret is in no part of the history, in either form.
    const secretBody = hook.secret.slice('whsec_'.length);
    for (const text of [res.text, (await api.get(`/api/v1/webhooks/${hook.id}/deliveries?status=failed`)).text]) {
      expect(text).not.toContain(hook.secret);
      expect(text).not.toContain(secretBody);
    }
    const gql = await api.graphql(`query($id: ID!) { deliveryAttempts(webhookId: $id) { data { requestHeaders requestBody } } }`, { id: hook.id });
    expect(gql.text).not.toContain(secretBody);
  });

  it('stores response bodies truncated, with a flag', async () => {
    const { api, hook } = await setup('truncate');
    await publish(api, { bigBody: true });
    await expect.poll(async () => (await historyOf(api, hook.id)).length).toBe(2);
    const [big] = await historyOf(api, hook.id);
    expect(big.status).toBe('success');
    expect(big.response_body_truncated).toBe(true);
    expect(big.response_body.length).toBeGreaterThan(0);
    expect(big.response_body.length).toBeLessThan(64 * 1024);
    expect('b'.repeat(64 * 1024).startsWith(big.response_body)).toBe(true);
    const ping = (await historyOf(api, hook.id))[1];
    expect(ping).toMatchObject({ response_body: 'thanks', response_body_truncated: false });
  });

  it('reads no more of an answer than it keeps: an endless or huge body is a prompt success', async () => {
    const { api, hook } = await setup('endless');
    await publish(api, { endless: true });
    await publish(api, { huge: true });
    await expect.poll(async () => (await historyOf(api, hook.id)).length).toBe(3);
    const attempts = (await historyOf(api, hook.id)).filter((a) => a.event_type === 'drift.detected');
    for (const a of attempts) {
      expect(a).toMatchObject({ status: 'success', response_code: 200, response_body_truncated: true, error: null });
      expect(a.response_body.length).toBe(4096);
      // Well inside WEBHOOK_TIMEOUT (10 s): the body was not waited for.
      expect(a.duration_ms).toBeLessThan(5_000);
    }
    const huge = attempts.find((a) => JSON.parse(a.request_body).data.huge === true)!;
    expect(huge.response_body).toBe('h'.repeat(4096));
    // The connection was dropped long before the receiver could write it all.
    await expect.poll(() => hugeWritten.get(huge.delivery_id)).toBeDefined();
    expect(hugeWritten.get(huge.delivery_id)!).toBeLessThan(HUGE_BYTES / 2);
  });

  it('stores any answer text: NUL and a character cut at the limit never block the record', async () => {
    const { api, hook } = await setup('odd-bodies');
    await publish(api, { nulBody: true });
    await publish(api, { body: '€'.repeat(2000) });
    await expect.poll(async () => (await historyOf(api, hook.id)).length).toBe(3);
    const attempts = (await historyOf(api, hook.id)).filter((a) => a.event_type === 'drift.detected');
    const byBody = (text: string) => attempts.find((a) => JSON.parse(a.request_body).data.body === text)!;
    expect(attempts.find((a) => JSON.parse(a.request_body).data.nulBody === true)).toMatchObject({ status: 'success', response_body: 'before\uFFFDafter', response_body_truncated: false });
    // 4096 bytes hold 1365 whole three-byte characters; the partial one is left out, not mangled.
    expect(byBody('€'.repeat(2000))).toMatchObject({ status: 'success', response_body: '€'.repeat(1365), response_body_truncated: true });
    expect(receiver.requests.filter(sentTo(hook.id))).toHaveLength(3);
  });

  it('filters by status and checks every query value', async () => {
    const { api, hook } = await setup('filters');
    await publish(api, { failFirst: true });
    await expect.poll(async () => (await historyOf(api, hook.id)).length).toBe(3);
    const base = `/api/v1/webhooks/${hook.id}/deliveries`;

    const ok = await api.get(`${base}?status=success`);
    expect(ok.body.data.map((a: any) => [a.event_type, a.status])).toEqual([
      ['drift.detected', 'success'],
      ['ping', 'success'],
    ]);
    expect(ok.body.pagination.total).toBe(2);
    const failed = await api.get(`${base}?status=failed`);
    expect(failed.body.data.map((a: any) => [a.event_type, a.status])).toEqual([['drift.detected', 'failed']]);
    expect(failed.body.pagination).toEqual({ page: 1, pageSize: 20, total: 1, totalPages: 1 });

    for (const query of [
      'status=pending',
      'status=SUCCESS',
      'status=',
      'status=cancelled',
      'per_page=0',
      'per_page=101',
      'per_page=-1',
      'per_page=abc',
      'per_page=1.5',
      'pageSize=0',
      'pageSize=500',
      'pageSize=ten',
      'page=0',
      'page=-2',
      'page=x',
    ]) {
      const res = await api.get(`${base}?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.code, query).toBe('BAD_REQUEST');
    }

    const small = await api.get(`${base}?per_page=2`);
    expect(small.body.pagination).toEqual({ page: 1, pageSize: 2, total: 3, totalPages: 2 });
    expect(small.body.data).toHaveLength(2);
    const page2 = await api.get(`${base}?pageSize=2&page=2`);
    expect(page2.body.pagination).toEqual({ page: 2, pageSize: 2, total: 3, totalPages: 2 });
    expect(page2.body.data).toHaveLength(1);
    expect(page2.body.data[0].event_type).toBe('ping');
    const max = await api.get(`${base}?per_page=100`);
    expect(max.status).toBe(200);
    expect(max.body.pagination.pageSize).toBe(100);
    const beyond = await api.get(`${base}?page=3&per_page=2`);
    expect(beyond.status).toBe(200);
    expect(beyond.body.data).toEqual([]);
    expect(beyond.body.pagination).toEqual({ page: 3, pageSize: 2, total: 3, totalPages: 2 });
  });

  it('keeps at most the last 100 attempts in reach, and pages stop there', async () => {
    const { api, hook } = await setup('hundred');
    const count = 105;
    for (let i = 0; i < count; i += 15) {
      await Promise.all(Array.from({ length: Math.min(15, count - i) }, (_, j) => publish(api, { n: i + j })));
    }
    await receiver.waitFor(count, { match: (r) => sentTo(hook.id)(r) && r.json.event === 'drift.detected', timeoutMs: 30_000 });
    const em = gw.gateway.db.orm.em.fork();
    await expect
      .poll(async () => {
        const rows = await em.getConnection().execute<{ n: string }[]>('select count(*) as n from delivery_attempt where webhook_id = ?', [hook.id], 'all');
        return Number(rows[0]!.n);
      })
      .toBe(count + 1);

    const base = `/api/v1/webhooks/${hook.id}/deliveries`;
    const first = await api.get(base);
    expect(first.body.pagination).toEqual({ page: 1, pageSize: 20, total: 100, totalPages: 5 });
    expect(first.body.data).toHaveLength(20);
    expect((await api.get(`${base}?page=5`)).body.data).toHaveLength(20);
    const sixth = await api.get(`${base}?page=6`);
    expect(sixth.status).toBe(200);
    expect(sixth.body.data).toEqual([]);

    const all = await api.get(`${base}?per_page=100`);
    expect(all.body.pagination).toEqual({ page: 1, pageSize: 100, total: 100, totalPages: 1 });
    expect(all.body.data).toHaveLength(100);
    expect((await api.get(`${base}?per_page=100&page=2`)).body.data).toEqual([]);
    const ids = (all.body.data as any[]).map((a) => a.id);
    expect(new Set(ids).size).toBe(100);
    // Newest first, and the oldest attempts (the ping among them) are out of reach.
    const times = (all.body.data as any[]).map((a) => Date.parse(a.created_at));
    expect(times).toEqual([...times].sort((x, y) => y - x));
    expect((all.body.data as any[]).some((a) => a.event_type === 'ping')).toBe(false);

    const paged: string[] = [];
    for (let page = 1; page <= 4; page += 1) {
      const res = await api.get(`${base}?pageSize=30&page=${page}`);
      expect(res.body.pagination).toEqual({ page, pageSize: 30, total: 100, totalPages: 4 });
      expect(res.body.data).toHaveLength(page < 4 ? 30 : 10);
      paged.push(...(res.body.data as any[]).map((a) => a.id));
    }
    expect(paged).toEqual(ids);
    expect((await api.get(`${base}?pageSize=30&page=5`)).body.data).toEqual([]);
    expect((await api.get(`${base}?status=success&per_page=100`)).body.pagination.total).toBe(100);

    const gql = await api.graphql(`query($id: ID!) { deliveryAttempts(webhookId: $id, perPage: 100) { data { id } pagination { total totalPages } } }`, { id: hook.id });
    expect(gql.body.data.deliveryAttempts.pagination).toEqual({ total: 100, totalPages: 1 });
    expect(gql.body.data.deliveryAttempts.data.map((a: any) => a.id)).toEqual(ids);
  });

  it("another tenant's webhook, an unknown id and a malformed id are 404", async () => {
    const owner = await setup('owner');
    const stranger = client(gw.url, await userToken(uniqueTenant('stranger')));
    const foreign = await stranger.get(`/api/v1/webhooks/${owner.hook.id}/deliveries`);
    expect(foreign.status).toBe(404);
    expect(foreign.body.code).toBe('NOT_FOUND');
    expect(foreign.text).not.toContain(owner.hook.id.slice(3));
    for (const id of ['wh_AAAAAAAAAAAAAAAAAAAA', 'wh_short', 'not-an-id', 'del_AAAAAAAAAAAAAAAAAAAA']) {
      const res = await owner.api.get(`/api/v1/webhooks/${id}/deliveries`);
      expect(res.status, id).toBe(404);
      expect(res.body.code).toBe('NOT_FOUND');
    }
    const gql = await stranger.graphql(`query($id: ID!) { deliveryAttempts(webhookId: $id) { data { id } } }`, { id: owner.hook.id });
    expect(gql.body.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
    const [attempt] = await historyOf(owner.api, owner.hook.id);
    expect(await deliveryById(stranger, attempt.delivery_id)).toBeNull();
    expect(await deliveryById(owner.api, attempt.delivery_id)).not.toBeNull();
  });

  it('GraphQL deliveryAttempts and delivery(id){attempts} agree with REST', async () => {
    const { api, hook } = await setup('graphql', ['drift.detected', 'alert.created']);
    await publish(api, { failFirst: true });
    await publish(api, { answer: 200 }, 'alert.created');
    await expect.poll(async () => (await historyOf(api, hook.id)).length).toBe(4);
    const query = `query($id: ID!, $status: DeliveryOutcome, $page: Int, $perPage: Int) {
      deliveryAttempts(webhookId: $id, status: $status, page: $page, perPage: $perPage) {
        data { id deliveryId webhookId eventType status attempt responseCode durationMs requestBody responseBody error errorClass createdAt nextRetryAt responseBodyTruncated }
        pagination { page pageSize total totalPages }
      } }`;
    for (const [vars, rest] of [
      [{}, ''],
      [{ status: 'success' }, '?status=success'],
      [{ status: 'failed' }, '?status=failed'],
      [{ page: 2, perPage: 3 }, '?page=2&per_page=3'],
    ] as const) {
      const g = await api.graphql(query, { id: hook.id, ...vars });
      expect(g.body.errors).toBeUndefined();
      const r = await api.get(`/api/v1/webhooks/${hook.id}/deliveries${rest}`);
      expect(g.body.data.deliveryAttempts.pagination).toEqual(r.body.pagination);
      expect(g.body.data.deliveryAttempts.data).toEqual(
        (r.body.data as any[]).map((a) => ({
          id: a.id,
          deliveryId: a.delivery_id,
          webhookId: a.webhook_id,
          eventType: a.event_type,
          status: a.status,
          attempt: a.attempt,
          responseCode: a.response_code,
          durationMs: a.duration_ms,
          requestBody: a.request_body,
          responseBody: a.response_body,
          error: a.error,
          errorClass: a.error_class,
          createdAt: a.created_at,
          nextRetryAt: a.next_retry_at,
          responseBodyTruncated: a.response_body_truncated,
        })),
      );
    }
    for (const bad of [{ perPage: 0 }, { perPage: 101 }, { page: 0 }, { status: 'pending' }]) {
      const g = await api.graphql(query, { id: hook.id, ...bad });
      expect(g.body.errors?.[0]?.extensions?.['code'], JSON.stringify(bad)).toBe('BAD_REQUEST');
    }

    const history = await historyOf(api, hook.id);
    const drift = history.find((a) => a.event_type === 'drift.detected')!;
    const delivery = await deliveryById(api, drift.delivery_id);
    expect(delivery).toMatchObject({ id: drift.delivery_id, status: 'success', attemptCount: 2 });
    const ofDelivery = history.filter((a) => a.delivery_id === drift.delivery_id).reverse();
    expect(delivery!.attempts.map((a) => [a.id, a.attempt, a.status, a.responseCode, a.nextRetryAt])).toEqual(
      ofDelivery.map((a) => [a.id, a.attempt, a.status, a.response_code, a.next_retry_at]),
    );
  });

  it('last_delivery_status and last_delivery_at follow the latest attempt', async () => {
    const api = client(gw.url, await userToken(uniqueTenant('last')));
    const hook = await createWebhook(api, { url: `${receiver.url}/last`, events: ['drift.detected'], enabled: false });
    const fresh = await api.get(`/api/v1/webhooks/${hook.id}`);
    expect(fresh.body).toMatchObject({ last_delivery_status: null, last_delivery_at: null });
    expect((await api.put(`/api/v1/webhooks/${hook.id}`, { enabled: true })).status).toBe(200);

    const readBoth = async () => {
      const rest = (await api.get(`/api/v1/webhooks/${hook.id}`)).body;
      const gql = (await api.graphql(`query($id: ID!) { webhook(id: $id) { lastDeliveryStatus lastDeliveryAt } }`, { id: hook.id })).body.data.webhook;
      expect(gql).toEqual({ lastDeliveryStatus: rest.last_delivery_status, lastDeliveryAt: rest.last_delivery_at });
      return rest;
    };

    await publish(api, { answer: 200 });
    await expect.poll(async () => (await historyOf(api, hook.id)).length).toBe(1);
    const [success] = await historyOf(api, hook.id);
    const afterSuccess = await readBoth();
    expect(afterSuccess.last_delivery_status).toBe('success');
    expect(afterSuccess.last_delivery_at).toBe(success.created_at);

    await publish(api, { answer: 503 });
    await expect.poll(async () => (await historyOf(api, hook.id)).length).toBe(4);
    const [latest] = await historyOf(api, hook.id);
    expect(latest).toMatchObject({ status: 'failed', attempt: 3 });
    const afterFailure = await readBoth();
    expect(afterFailure.last_delivery_status).toBe('failed');
    expect(afterFailure.last_delivery_at).toBe(latest.created_at);
    expect(Date.parse(afterFailure.last_delivery_at)).toBeGreaterThan(Date.parse(afterSuccess.last_delivery_at));
  });

  it('pruning removes only attempts older than the retention', async () => {
    const { api, hook } = await setup('prune');
    await publish(api, { answer: 200 });
    await publish(api, { answer: 200 });
    await publish(api, { answer: 200 });
    await expect.poll(async () => (await historyOf(api, hook.id)).length).toBe(4);
    const before = await historyOf(api, hook.id);
    const old = [before[1].id, before[3].id];
    const em = gw.gateway.db.orm.em.fork();
    await em
      .getConnection()
      .execute(`update delivery_attempt set created_at = now() - interval '2 hours' where id in (?, ?)`, old, 'run');

    // One row per batch, so the loop runs to the end rather than stopping after one statement.
    const removed = await pruneAttempts(gw.gateway.db.orm.em.fork(), 60 * 60 * 1000, 1);
    expect(removed).toBe(2);
    const after = await historyOf(api, hook.id);
    expect(after.map((a) => a.id)).toEqual([before[0].id, before[2].id]);
    // The deliveries themselves stay; only their old attempt records go.
    const delivery = await deliveryById(api, before[1].delivery_id);
    expect(delivery).toMatchObject({ status: 'success', attemptCount: 1, attempts: [] });

    expect(await pruneAttempts(gw.gateway.db.orm.em.fork(), 60 * 60 * 1000)).toBe(0);
    expect((await historyOf(api, hook.id)).map((a) => a.id)).toEqual([before[0].id, before[2].id]);
  });
});
