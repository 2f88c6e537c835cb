import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

const APP = 'https://app.example.com';
const EVIL = 'https://evil.example.com';
const API_CSP = "default-src 'none'; frame-ancestors 'none'";

function list(value: string | null): string[] {
  return (value ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
}

function expectNoCors(res: Response, label: string): void {
  expect(res.headers.get('access-control-allow-origin'), label).toBeNull();
  expect(res.headers.get('access-control-allow-credentials'), label).toBeNull();
  expect(res.headers.get('access-control-allow-methods'), label).toBeNull();
  expect(res.headers.get('access-control-expose-headers'), label).toBeNull();
}

function preflight(url: string, path: string, origin: string, method = 'POST', headers = 'authorization, content-type, idempotency-key') {
  return fetch(`${url}${path}`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': headers },
  });
}

describe('security headers and CORS (ALLOWED_ORIGINS=https://app.example.com)', () => {
  let gw: TestGateway;
  let token: string;

  beforeAll(async () => {
    gw = await startTestGateway({ ALLOWED_ORIGINS: APP, RATE_LIMIT_PER_MINUTE: '1000' });
    token = await userToken(uniqueTenant('cors'));
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('sets the security headers, with a no-content CSP on JSON answers', async () => {
    const auth = { authorization: `Bearer ${token}` };
    const cases: [string, RequestInit, number][] = [
      ['/api/v1/webhooks', { headers: auth }, 200],
      ['/api/v1/webhooks', {}, 401],
      ['/api/v1/webhooks/wh_AAAAAAAAAAAAAAAAAAAA', { headers: auth }, 404],
      ['/api/v1/not-a-route', { headers: auth }, 404],
      ['/nowhere', {}, 404],
      ['/api/v1/events', { method: 'POST', headers: { ...auth, 'content-type': 'text/plain' }, body: 'x' }, 415],
      ['/health', {}, 200],
      ['/readyz', {}, 200],
      ['/metrics', {}, 200],
    ];
    for (const [path, init, status] of cases) {
      const res = await fetch(`${gw.url}${path}`, init);
      const label = `${init.method ?? 'GET'} ${path}`;
      expect(res.status, label).toBe(status);
      expect(res.headers.get('x-content-type-options'), label).toBe('nosniff');
      expect(res.headers.get('x-frame-options'), label).toBe('DENY');
      expect(res.headers.get('referrer-policy'), label).toBe('no-referrer');
      expect(res.headers.get('content-security-policy'), label).toBe(API_CSP);
      if (path !== '/metrics') expect(res.headers.get('content-type'), label).toMatch(/^application\/json/);
      await res.arrayBuffer();
    }
    const gql = await fetch(`${gw.url}/graphql`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ webhooks { id } }' }),
    });
    expect(gql.status).toBe(200);
    expect(gql.headers.get('x-content-type-options')).toBe('nosniff');
    expect(gql.headers.get('x-frame-options')).toBe('DENY');
    expect(gql.headers.get('referrer-policy')).toBe('no-referrer');
  });

  it('answers a preflight from the allowed origin with 204 and what may be sent', async () => {
    for (const [path, method] of [
      ['/api/v1/webhooks', 'POST'],
      ['/api/v1/webhooks/wh_AAAAAAAAAAAAAAAAAAAA', 'PUT'],
      ['/api/v1/webhooks/wh_AAAAAAAAAAAAAAAAAAAA', 'DELETE'],
      ['/api/v1/events', 'POST'],
      ['/graphql', 'POST'],
    ] as const) {
      const res = await preflight(gw.url, path, APP, method);
      const label = `${method} ${path}`;
      expect(res.status, label).toBe(204);
      expect(await res.text(), label).toBe('');
      expect(res.headers.get('access-control-allow-origin'), label).toBe(APP);
      expect(list(res.headers.get('access-control-allow-methods')), label).toEqual(expect.arrayContaining(['get', 'post', 'put', 'delete']));
      expect(list(res.headers.get('access-control-allow-headers')), label).toEqual(
        expect.arrayContaining(['authorization', 'content-type', 'idempotency-key']),
      );
      expect(list(res.headers.get('vary')), label).toContain('origin');
      expect(Number(res.headers.get('access-control-max-age')), label).toBeGreaterThan(0);
    }
  });

  it('refuses a preflight from any other origin with 403 and no allow-origin', async () => {
    for (const origin of [EVIL, 'http://app.example.com', 'https://app.example.com:8443', 'https://app.example.com.evil.example', 'null']) {
      for (const path of ['/api/v1/webhooks', '/graphql']) {
        const res = await preflight(gw.url, path, origin);
        const label = `${origin} ${path}`;
        expect(res.status, label).toBe(403);
        expect(await res.json(), label).toMatchObject({ code: 'FORBIDDEN' });
        expectNoCors(res, label);
        expect(res.headers.get('access-control-allow-headers'), label).toBeNull();
      }
    }
  });

  it('lets the allowed origin read answers and the rate-limit headers of a normal request', async () => {
    const res = await fetch(`${gw.url}/api/v1/webhooks`, { headers: { origin: APP, authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(APP);
    expect(list(res.headers.get('vary'))).toContain('origin');
    expect(list(res.headers.get('access-control-expose-headers'))).toEqual(
      expect.arrayContaining(['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'retry-after', 'x-request-id']),
    );
    expect(res.headers.get('x-ratelimit-limit')).toBe('1000');

    // Errors are readable too, so a browser client sees the code.
    const refused = await fetch(`${gw.url}/api/v1/webhooks`, { headers: { origin: APP } });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('access-control-allow-origin')).toBe(APP);

    const gql = await fetch(`${gw.url}/graphql`, {
      method: 'POST',
      headers: { origin: APP, authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ webhooks { id } }' }),
    });
    expect(gql.status).toBe(200);
    expect(gql.headers.get('access-control-allow-origin')).toBe(APP);
    expect(list(gql.headers.get('access-control-expose-headers'))).toContain('x-ratelimit-remaining');
  });

  it('gives no CORS headers to requests from other origins or without an Origin', async () => {
    const evil = await fetch(`${gw.url}/api/v1/webhooks`, { headers: { origin: EVIL, authorization: `Bearer ${token}` } });
    expect(evil.status).toBe(200);
    expectNoCors(evil, 'REST from another origin');
    const none = await fetch(`${gw.url}/api/v1/webhooks`, { headers: { authorization: `Bearer ${token}` } });
    expectNoCors(none, 'REST without Origin');
  });

  it('keeps /graphql to the same origins: no allow-origin for an origin that is not allowed', async () => {
    const requests: [string, RequestInit][] = [
      [
        'POST with a token',
        {
          method: 'POST',
          headers: { origin: EVIL, authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ query: '{ webhooks { id } }' }),
        },
      ],
      [
        'POST without a token',
        {
          method: 'POST',
          headers: { origin: EVIL, 'content-type': 'application/json' },
          body: JSON.stringify({ query: '{ webhookEventTypes { event } }' }),
        },
      ],
      ['GET', { method: 'GET', headers: { origin: EVIL, accept: 'application/json' } }],
      ['OPTIONS without Access-Control-Request-Method', { method: 'OPTIONS', headers: { origin: EVIL } }],
    ];
    for (const [label, init] of requests) {
      const path = init.method === 'GET' ? `/graphql?query=${encodeURIComponent('{ __typename }')}` : '/graphql';
      const res = await fetch(`${gw.url}${path}`, init);
      await res.arrayBuffer();
      expect(res.headers.get('access-control-allow-origin'), `${label}: ${JSON.stringify([...res.headers])}`).toBeNull();
      expect(res.headers.get('access-control-allow-credentials'), label).toBeNull();
    }
  });
});

describe('CORS with no ALLOWED_ORIGINS (the default)', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({ ALLOWED_ORIGINS: '' });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('allows no cross-origin use of REST or GraphQL', async () => {
    const token = await userToken(uniqueTenant('cors-default'));
    for (const path of ['/api/v1/webhooks', '/graphql']) {
      const res = await preflight(gw.url, path, APP);
      expect(res.status, path).toBe(403);
      expectNoCors(res, path);
    }
    const rest = await fetch(`${gw.url}/api/v1/webhooks`, { headers: { origin: APP, authorization: `Bearer ${token}` } });
    expect(rest.status).toBe(200);
    expectNoCors(rest, 'REST');
    const gql = await fetch(`${gw.url}/graphql`, {
      method: 'POST',
      headers: { origin: APP, authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ webhooks { id } }' }),
    });
    expect(gql.status).toBe(200);
    expect(gql.headers.get('access-control-allow-origin'), JSON.stringify([...gql.headers])).toBeNull();
  });
});
