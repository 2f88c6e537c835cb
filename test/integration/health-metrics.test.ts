import { ServerResponse } from 'node:http';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceToken, userToken } from '../helpers/auth.js';
import { onRealPostgres, realPostgresUrl } from '../helpers/database.js';
import { createWebhook, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { parsePrometheus, samplesOf, valueOf, type Exposition } from '../helpers/prometheus.js';
import { answer, startReceiver, type Receiver } from '../helpers/receiver.js';

async function scrape(url: string, headers: Record<string, string> = {}): Promise<{ res: Response; text: string; exposition: Exposition }> {
  const res = await fetch(`${url}/metrics`, { headers });
  const text = await res.text();
  return { res, text, exposition: res.status === 200 ? parsePrometheus(text) : { samples: [], types: new Map(), help: new Map() } };
}

describe('health endpoints and metrics', () => {
  let gw: TestGateway;
  let receiver: Receiver;
  let api: TestClient;
  const tenant = uniqueTenant('metrics');

  beforeAll(async () => {
    gw = await startTestGateway({ WEBHOOK_RETRY_SCHEDULE: '100ms,200ms', WORKER_POLL_INTERVAL: '50ms' });
    receiver = await startReceiver();
    api = client(gw.url, await userToken(tenant));
  });
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  it('answers /health, /healthz and /readyz without authentication', async () => {
    for (const path of ['/health', '/healthz', '/readyz']) {
      const res = await fetch(`${gw.url}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type'), path).toMatch(/^application\/json/);
      expect(await res.json(), path).toEqual({ status: 'ok' });
      expect(res.headers.get('x-ratelimit-limit'), path).toBeNull();
    }
    // A bad token does not matter to them either.
    const withJunk = await fetch(`${gw.url}/health`, { headers: { authorization: 'Bearer junk' } });
    expect(withJunk.status).toBe(200);
  });

  it('serves Prometheus text with HTTP figures labelled by route pattern, never by raw id', async () => {
    const created = await createWebhook(api, { url: `${receiver.url}/hook`, events: ['drift.detected'] });
    const one = await api.get(`/api/v1/webhooks/${created.id}`);
    expect(one.status).toBe(200);
    const missing = await api.get('/api/v1/webhooks/wh_AAAAAAAAAAAAAAAAAAAA');
    expect(missing.status).toBe(404);
    const unknownPath = await api.get(`/api/v1/nothing-here/${created.id}`);
    expect(unknownPath.status).toBe(404);
    await api.get(`/api/v1/webhooks/${created.id}/deliveries`);

    const { res, text, exposition } = await scrape(gw.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(exposition.types.get('gateway_http_requests_total')).toBe('counter');
    expect(exposition.types.get('gateway_http_request_duration_seconds')).toBe('histogram');

    expect(valueOf(exposition, 'gateway_http_requests_total', { method: 'GET', route: '/api/v1/webhooks/:id', status: '200' })).toBeGreaterThanOrEqual(1);
    expect(valueOf(exposition, 'gateway_http_requests_total', { method: 'GET', route: '/api/v1/webhooks/:id', status: '404' })).toBeGreaterThanOrEqual(1);
    expect(valueOf(exposition, 'gateway_http_requests_total', { method: 'POST', route: '/api/v1/webhooks', status: '201' })).toBe(1);
    expect(valueOf(exposition, 'gateway_http_requests_total', { method: 'GET', route: '/api/v1/webhooks/:id/deliveries', status: '200' })).toBe(1);
    expect(valueOf(exposition, 'gateway_http_requests_total', { route: 'unmatched', status: '404' })).toBeGreaterThanOrEqual(1);
    expect(valueOf(exposition, 'gateway_http_requests_total', { route: '/health', status: '200' })).toBeGreaterThanOrEqual(1);

    // No label anywhere carries a concrete id or the raw path of an unmatched request.
    expect(text).not.toContain(created.id);
    expect(text).not.toContain('wh_AAAAAAAAAAAAAAAAAAAA');
    expect(text).not.toContain('nothing-here');
    for (const s of samplesOf(exposition, 'gateway_http_requests_total')) {
      expect(s.labels['route']).toMatch(/^(\/[a-z0-9:/-]*|unmatched|preflight)$/);
    }

    const count = valueOf(exposition, 'gateway_http_request_duration_seconds_count', { method: 'GET', route: '/api/v1/webhooks/:id' });
    expect(count).toBeGreaterThanOrEqual(2);
    const inf = valueOf(exposition, 'gateway_http_request_duration_seconds_bucket', { method: 'GET', route: '/api/v1/webhooks/:id', le: '+Inf' });
    expect(inf).toBe(count);
    expect(valueOf(exposition, 'gateway_http_request_duration_seconds_sum', { method: 'GET', route: '/api/v1/webhooks/:id' })).toBeGreaterThan(0);
  });

  it('counts delivery attempts by outcome, their durations and finished deliveries after real deliveries', async () => {
    const hookReceiver = await startReceiver();
    try {
      let drifts = 0;
      let failedAnswers = 0;
      let okAnswers = 0;
      hookReceiver.respond((r, n, res) => {
        const fail = r.json?.event === 'drift.detected' && ++drifts === 1;
        if (fail) failedAnswers += 1;
        else okAnswers += 1;
        answer(fail ? 500 : 200)(r, n, res);
      });
      const t = uniqueTenant('metrics-delivery');
      await createWebhook(client(gw.url, await userToken(t)), { url: `${hookReceiver.url}/h`, events: ['drift.detected'] });
      await hookReceiver.waitFor(1, { match: (r) => r.json?.event === 'ping' });

      const published = await client(gw.url, await serviceToken()).post('/api/v1/events', {
        event: 'drift.detected',
        data: { n: 1 },
        tenant_id: t,
      });
      expect(published.status).toBe(202);
      const got = await hookReceiver.waitFor(2, { match: (r) => r.json?.event === 'drift.detected' });
      expect(got.map((r) => r.headers['x-infraaudit-attempt'])).toEqual(['1', '2']);
      expect(failedAnswers).toBe(1);

      // Every attempt this gateway made is counted exactly once: the other receiver of this suite
      // answers 200 to everything. The counters move just after the receiver answered.
      const figures = async () => {
        const e = (await scrape(gw.url)).exposition;
        return {
          success: valueOf(e, 'gateway_delivery_attempts_total', { outcome: 'success' }) ?? 0,
          failed: valueOf(e, 'gateway_delivery_attempts_total', { outcome: 'failed' }) ?? 0,
          finished: valueOf(e, 'gateway_deliveries_finished_total', { status: 'success' }) ?? 0,
        };
      };
      const expected = () => ({
        success: receiver.requests.length + okAnswers,
        failed: failedAnswers,
        finished: receiver.requests.length + okAnswers,
      });
      await expect.poll(figures).toEqual(expected());

      const { exposition } = await scrape(gw.url);
      expect(exposition.types.get('gateway_delivery_attempts_total')).toBe('counter');
      expect(valueOf(exposition, 'gateway_delivery_attempts_total', { outcome: 'failed', error_class: 'http' })).toBe(1);
      expect(valueOf(exposition, 'gateway_delivery_attempts_total', { outcome: 'success', error_class: 'none' })).toBe(expected().success);
      expect(exposition.types.get('gateway_delivery_attempt_duration_seconds')).toBe('histogram');
      expect(valueOf(exposition, 'gateway_delivery_attempt_duration_seconds_count', { outcome: 'failed' })).toBe(1);
      expect(valueOf(exposition, 'gateway_delivery_attempt_duration_seconds_count', { outcome: 'success' })).toBe(expected().success);
      expect(valueOf(exposition, 'gateway_delivery_attempt_duration_seconds_bucket', { outcome: 'success', le: '+Inf' })).toBe(expected().success);
      expect(exposition.types.get('gateway_deliveries_finished_total')).toBe('counter');
      expect(valueOf(exposition, 'gateway_deliveries_finished_total', { status: 'failed' }) ?? 0).toBe(0);
    } finally {
      await hookReceiver.close();
    }
  });

  it('reports the queue gauges and open subscriptions', async () => {
    const { exposition } = await scrape(gw.url);
    expect(exposition.types.get('gateway_delivery_backlog')).toBe('gauge');
    expect(exposition.types.get('gateway_delivery_backlog_oldest_age_seconds')).toBe('gauge');
    expect(exposition.types.get('gateway_subscriptions_open')).toBe('gauge');
    expect(valueOf(exposition, 'gateway_delivery_backlog')).toBeGreaterThanOrEqual(0);
    expect(valueOf(exposition, 'gateway_subscriptions_open')).toBe(0);
  });
});

describe('metrics: a due backlog behind a hanging receiver', () => {
  let gw: TestGateway;
  let receiver: Receiver;
  const hanging: ServerResponse[] = [];

  beforeAll(async () => {
    gw = await startTestGateway({
      WORKER_CONCURRENCY: '1',
      WORKER_MAX_IN_FLIGHT_PER_WEBHOOK: '1',
      WORKER_POLL_INTERVAL: '50ms',
      // Far beyond any wait of this test: the ping must still hang when the backlog is read.
      WEBHOOK_TIMEOUT: '300s',
      SHUTDOWN_TIMEOUT: '1s',
    });
    // Never answers while the test runs; the responses are ended before the gateway stops.
    receiver = await startReceiver((_r, _n, res) => {
      hanging.push(res);
    });
  });
  afterAll(async () => {
    for (const res of hanging) if (!res.writableEnded) res.writeHead(200).end();
    await gw?.close();
    await receiver?.close();
  });

  it('shows a backlog above zero and the age of its oldest due delivery', async () => {
    const t = uniqueTenant('backlog');
    await createWebhook(client(gw.url, await userToken(t)), { url: `${receiver.url}/slow`, events: ['drift.detected'] });
    await receiver.waitFor(1);
    const service = client(gw.url, await serviceToken());
    for (let i = 0; i < 3; i += 1) {
      const res = await service.post('/api/v1/events', { event: 'drift.detected', data: { i }, tenant_id: t });
      expect(res.status).toBe(202);
    }
    // The ping holds the only slot: the three events wait, due, in the queue, and grow older.
    await expect
      .poll(async () => valueOf((await scrape(gw.url)).exposition, 'gateway_delivery_backlog_oldest_age_seconds') ?? 0)
      .toBeGreaterThanOrEqual(1);
    const { exposition } = await scrape(gw.url);
    expect(valueOf(exposition, 'gateway_delivery_backlog')).toBeGreaterThanOrEqual(3);
    expect(receiver.requests).toHaveLength(1);
  });
});

describe('metrics behind METRICS_TOKEN', () => {
  let gw: TestGateway;
  const token = 'metrics-token-for-tests-0123456789';

  beforeAll(async () => {
    gw = await startTestGateway({ METRICS_TOKEN: token });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('refuses /metrics without the bearer or with a wrong one, and serves it with the right one', async () => {
    const none = await scrape(gw.url);
    expect(none.res.status).toBe(401);
    expect(JSON.parse(none.text)).toMatchObject({ code: 'UNAUTHORIZED' });
    expect(none.text).not.toContain('gateway_http_requests_total');

    for (const header of [`Bearer ${token}x`, `Bearer ${token.slice(0, -1)}`, token, `Basic ${token}`, 'Bearer ']) {
      const wrong = await scrape(gw.url, { authorization: header });
      expect(wrong.res.status, header).toBe(401);
    }
    const userJwt = await scrape(gw.url, { authorization: `Bearer ${await userToken('someone')}` });
    expect(userJwt.res.status).toBe(401);

    const right = await scrape(gw.url, { authorization: `Bearer ${token}` });
    expect(right.res.status).toBe(200);
    expect(right.exposition.types.get('gateway_http_requests_total')).toBe('counter');
    expect(valueOf(right.exposition, 'gateway_http_requests_total', { route: '/metrics', status: '401' })).toBeGreaterThanOrEqual(6);

    // The health endpoints stay open.
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
  });
});

describe.skipIf(!onRealPostgres)('readiness when the database stops answering (real Postgres)', () => {
  let gw: TestGateway;
  let admin: pg.Client;
  let dbName: string;

  beforeAll(async () => {
    gw = await startTestGateway({ WORKER_POLL_INTERVAL: '200ms', WORKER_STALLED_AFTER: '1s' });
    dbName = new URL(gw.database.url!).pathname.slice(1);
    admin = new pg.Client({ connectionString: realPostgresUrl });
    await admin.connect();
  });
  afterAll(async () => {
    await admin?.query(`alter database ${pg.escapeIdentifier(dbName)} allow_connections true`).catch(() => undefined);
    await admin?.end();
    await gw?.close();
  });

  it('answers 503 while the database refuses connections and 200 again once it is back', async () => {
    const ready = async () => {
      const res = await fetch(`${gw.url}/readyz`, { signal: AbortSignal.timeout(10_000) });
      return { status: res.status, body: await res.json() };
    };
    expect(await ready()).toEqual({ status: 200, body: { status: 'ok' } });

    await admin.query(`alter database ${pg.escapeIdentifier(dbName)} allow_connections false`);
    await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [dbName]);

    const started = Date.now();
    await expect.poll(async () => (await ready()).status, { timeout: 15_000, interval: 200 }).toBe(503);
    expect((await ready()).body).toEqual({ status: 'unavailable' });
    expect(Date.now() - started).toBeLessThan(15_000);
    // Health is liveness only: it does not depend on the database.
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);

    await admin.query(`alter database ${pg.escapeIdentifier(dbName)} allow_connections true`);
    await expect.poll(async () => (await ready()).status, { timeout: 15_000, interval: 200 }).toBe(200);
    expect((await ready()).body).toEqual({ status: 'ok' });
  });

  it("answers 503 while the worker's claim loop is stuck, though the probe's own connection answers, and 200 once it runs again", async () => {
    const ready = async () => (await fetch(`${gw.url}/readyz`, { signal: AbortSignal.timeout(10_000) })).status;
    await expect.poll(ready, { timeout: 15_000, interval: 200 }).toBe(200);

    // A lock that every claim waits behind (the default DATABASE_QUERY_TIMEOUT gives it 30 s),
    // while `select 1` on a fresh connection answers at once.
    const holder = new pg.Client({ connectionString: gw.database.url });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('lock table delivery in access exclusive mode');
      await expect.poll(ready, { timeout: 15_000, interval: 200 }).toBe(503);
      const probe = await gw.gateway.db.ping(2_000);
      expect(probe).toBe(true);
      await holder.query('rollback');
    } finally {
      await holder.end();
    }
    await expect.poll(ready, { timeout: 15_000, interval: 200 }).toBe(200);
  });
});
