import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceToken, userToken } from '../helpers/auth.js';
import { onRealPostgres } from '../helpers/database.js';
import { uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type JsonResponse } from '../helpers/http.js';

const LIMIT = 5;

function rateHeaders(res: JsonResponse) {
  return {
    limit: res.headers.get('x-ratelimit-limit'),
    remaining: res.headers.get('x-ratelimit-remaining'),
    reset: res.headers.get('x-ratelimit-reset'),
  };
}

/** The reset is unix seconds within the next minute (the window is 60 s). */
function expectResetWithinMinute(res: JsonResponse): void {
  const reset = Number(res.headers.get('x-ratelimit-reset'));
  expect(Number.isInteger(reset)).toBe(true);
  const now = Date.now() / 1000;
  expect(reset).toBeGreaterThanOrEqual(Math.floor(now));
  expect(reset).toBeLessThanOrEqual(Math.ceil(now) + 61);
}

function expectRateLimited(res: JsonResponse): void {
  expect(res.status, res.text).toBe(429);
  expect(Object.keys(res.body).sort()).toEqual(['code', 'error', 'retryAfter']);
  expect(res.body.code).toBe('RATE_LIMITED');
  expect(typeof res.body.error).toBe('string');
  expect(res.body.error.length).toBeGreaterThan(0);
  expect(Number.isInteger(res.body.retryAfter)).toBe(true);
  expect(res.body.retryAfter).toBeGreaterThan(0);
  expect(res.body.retryAfter).toBeLessThanOrEqual(60);
  expect(res.headers.get('retry-after')).toBe(String(res.body.retryAfter));
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  expect(rateHeaders(res)).toMatchObject({ limit: String(LIMIT), remaining: '0' });
  expectResetWithinMinute(res);
}

describe('rate limits per tenant (RATE_LIMIT_PER_MINUTE=5)', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({ RATE_LIMIT_PER_MINUTE: String(LIMIT) });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('counts REST and GraphQL requests together, then answers 429 with Retry-After', async () => {
    const tenant = uniqueTenant('limited');
    const api = client(gw.url, await userToken(tenant));
    const calls = [
      () => api.get('/api/v1/webhooks'),
      () => api.graphql('{ webhooks { id } }'),
      () => api.get('/api/v1/webhooks/events'),
      () => api.graphql('{ webhookEventTypes { event } }'),
      () => api.get('/api/v1/webhooks/wh_AAAAAAAAAAAAAAAAAAAA'),
    ];
    const remaining: string[] = [];
    for (const call of calls) {
      const res = await call();
      expect([200, 404]).toContain(res.status);
      expect(rateHeaders(res).limit).toBe(String(LIMIT));
      expectResetWithinMinute(res);
      remaining.push(rateHeaders(res).remaining ?? 'missing');
    }
    expect(remaining).toEqual(['4', '3', '2', '1', '0']);

    const sixth = await api.get('/api/v1/webhooks');
    expectRateLimited(sixth);
    const viaGraphql = await api.graphql('{ webhooks { id } }');
    expectRateLimited(viaGraphql);
    const publish = await api.post('/api/v1/events', { event: 'drift.detected', data: {} });
    expectRateLimited(publish);

    // Another tenant has its own budget.
    const other = client(gw.url, await userToken(uniqueTenant('other')));
    const fine = await other.get('/api/v1/webhooks');
    expect(fine.status).toBe(200);
    expect(rateHeaders(fine)).toMatchObject({ limit: String(LIMIT), remaining: '4' });

    // Health and metrics are not authenticated and carry no rate headers, even with a token.
    for (const path of ['/health', '/healthz', '/readyz', '/metrics']) {
      const res = await api.get(path);
      expect(res.status, path).toBe(200);
      expect(rateHeaders(res), path).toEqual({ limit: null, remaining: null, reset: null });
    }
  });

  it('shares one budget between a tenant\'s JWTs and API keys', async () => {
    const tenant = uniqueTenant('keys');
    const jwtApi = client(gw.url, await userToken(tenant));
    const created = await jwtApi.post('/api/v1/settings/api-keys', { name: 'limit' });
    expect(created.status).toBe(201);
    expect(rateHeaders(created).remaining).toBe('4');
    const keyApi = client(gw.url, created.body.key as string);
    const seen: string[] = [];
    for (const api of [keyApi, jwtApi, keyApi, jwtApi]) {
      const res = await api.get('/api/v1/settings/api-keys');
      expect(res.status).toBe(200);
      seen.push(rateHeaders(res).remaining ?? 'missing');
    }
    expect(seen).toEqual(['3', '2', '1', '0']);
    expectRateLimited(await keyApi.graphql('{ apiKeys { id } }'));
  });

  it('gives service tokens a budget that no tenant can spend', async () => {
    // A tenant whose id is literally "service" must not eat into what the scanners may publish.
    const namedService = client(gw.url, await userToken('service'));
    for (let i = 0; i < LIMIT; i += 1) expect((await namedService.get('/api/v1/webhooks')).status).toBe(200);
    expectRateLimited(await namedService.get('/api/v1/webhooks'));

    const scanner = client(gw.url, await serviceToken());
    const published = await scanner.post('/api/v1/events', { event: 'drift.detected', data: {}, tenant_id: uniqueTenant('t') });
    expect(published.status, published.text).toBe(202);
    expect(rateHeaders(published)).toMatchObject({ limit: String(LIMIT), remaining: '4' });
  });

  it('does not count requests that fail authentication, nor give them rate headers', async () => {
    const tenant = uniqueTenant('unauth');
    const bad = client(gw.url, await userToken(tenant, {}, 'a-different-secret-that-is-long-enough'));
    for (let i = 0; i < LIMIT + 2; i += 1) {
      const res = await bad.get('/api/v1/webhooks');
      expect(res.status).toBe(401);
      expect(rateHeaders(res).limit).toBeNull();
    }
    const good = await client(gw.url, await userToken(tenant)).get('/api/v1/webhooks');
    expect(good.status).toBe(200);
    expect(rateHeaders(good).remaining).toBe('4');
  });
});

describe('rate limiting switched off (RATE_LIMIT_PER_MINUTE=0)', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({ RATE_LIMIT_PER_MINUTE: '0' });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('never answers 429 and, with no limit to report, sends no X-RateLimit-* headers', async () => {
    const api = client(gw.url, await userToken(uniqueTenant('unlimited')));
    for (let i = 0; i < 3 * LIMIT; i += 1) {
      const res = i % 2 === 0 ? await api.get('/api/v1/webhooks') : await api.graphql('{ webhooks { id } }');
      expect(res.status).toBe(200);
      expect(rateHeaders(res)).toEqual({ limit: null, remaining: null, reset: null });
      expect(res.headers.get('retry-after')).toBeNull();
    }
  });
});

describe.skipIf(!onRealPostgres)('rate limits shared between gateway instances (real Postgres)', () => {
  let first: TestGateway;
  let second: TestGateway;

  beforeAll(async () => {
    first = await startTestGateway({ RATE_LIMIT_PER_MINUTE: String(LIMIT) });
    second = await startTestGateway({ RATE_LIMIT_PER_MINUTE: String(LIMIT) }, first.database);
  });
  afterAll(async () => {
    await second?.stop();
    await first?.close();
  });

  it('counts a tenant\'s requests on both instances against one budget', async () => {
    const token = await userToken(uniqueTenant('shared'));
    const a = client(first.url, token);
    const b = client(second.url, token);
    const seen: string[] = [];
    for (const api of [a, a, a, b, b]) {
      const res = await api.get('/api/v1/webhooks');
      expect(res.status).toBe(200);
      seen.push(rateHeaders(res).remaining ?? 'missing');
    }
    expect(seen).toEqual(['4', '3', '2', '1', '0']);
    expectRateLimited(await b.get('/api/v1/webhooks'));
    expectRateLimited(await a.graphql('{ webhooks { id } }'));
  });
});
