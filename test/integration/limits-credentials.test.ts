// CONTRACT section 10, "Tokens and tenants", "URLs", "Bodies" (MAX_EVENT_BYTES) and the webhook
// quota: each limit at its boundary, and nothing of a refused request stored.
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceToken, userToken } from '../helpers/auth.js';
import { uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, TEST_JWT_SECRET, type TestGateway } from '../helpers/gateway.js';
import { client } from '../helpers/http.js';

const MAX_EVENT_BYTES = 2048;
const MAX_WEBHOOKS = 3;

/** A user token whose tenant claim (`sub`) is any JSON value, with or without `exp`. */
async function tokenWithClaim(sub: unknown, options: { exp?: boolean } = {}): Promise<string> {
  const jwt = new SignJWT({ role: 'authenticated', sub } as Record<string, unknown>).setProtectedHeader({ alg: 'HS256' }).setIssuedAt();
  if (options.exp ?? true) jwt.setExpirationTime('1h');
  return jwt.sign(new TextEncoder().encode(TEST_JWT_SECRET));
}

/** A serialized `data` object of exactly `bytes` bytes. */
function dataOfSize(bytes: number): Record<string, string> {
  const overhead = JSON.stringify({ pad: '' }).length;
  return { pad: 'x'.repeat(bytes - overhead) };
}

describe('limits on credentials, tenants, URLs, events and webhooks', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({ MAX_EVENT_BYTES: String(MAX_EVENT_BYTES), MAX_WEBHOOKS_PER_TENANT: String(MAX_WEBHOOKS) });
  });
  afterAll(async () => {
    await gw?.close();
  });

  async function countRows(table: 'event' | 'webhook', tenant: string): Promise<number> {
    const rows = await gw.gateway.db.orm.em
      .fork()
      .getConnection()
      .execute<{ n: number }[]>(`select count(*)::int as n from ${table} where tenant_id = ?`, [tenant]);
    return rows[0]!.n;
  }

  it('refuses a JWT without exp', async () => {
    const tenant = uniqueTenant('noexp');
    const res = await client(gw.url, await tokenWithClaim(tenant, { exp: false })).get('/api/v1/webhooks');
    expect(res.status, res.text).toBe(401);
    expect(res.body.code).toBe('UNAUTHORIZED');
    const ok = await client(gw.url, await tokenWithClaim(tenant)).get('/api/v1/webhooks');
    expect(ok.status, ok.text).toBe(200);
  });

  it('accepts tenant claims of 1 to 255 characters of valid Unicode, and refuses every other value with 401', async () => {
    const accepted = ['a', 'é'.repeat(255), '🙂'.repeat(255), `${uniqueTenant('t')} with spaces`];
    for (const sub of accepted) {
      const res = await client(gw.url, await tokenWithClaim(sub)).get('/api/v1/webhooks');
      expect(res.status, `${JSON.stringify(sub)}: ${res.text}`).toBe(200);
    }
    const refused: unknown[] = ['', 'a'.repeat(256), '🙂'.repeat(256), 'a\u0000b', 'a\u0007b', 'tab\there', 'new\nline', '\ud800x', 'x\udc00', 42, ['a'], { id: 'a' }, null];
    for (const sub of refused) {
      const api = client(gw.url, await tokenWithClaim(sub));
      const rest = await api.get('/api/v1/webhooks');
      expect(rest.status, `${JSON.stringify(sub)}: ${rest.text}`).toBe(401);
      expect(rest.body.code).toBe('UNAUTHORIZED');
      const graphql = await api.graphql('{ webhooks { id } }');
      expect(graphql.status, graphql.text).toBe(401);
      expect(graphql.body.errors?.[0]?.extensions?.['code']).toBe('UNAUTHORIZED');
    }
  });

  it('never folds two tenants whose claims differ only in an unpaired surrogate', async () => {
    // Both would become "x\ufffd" in UTF-8: the first is refused, so the second's data stays its own.
    const honest = client(gw.url, await tokenWithClaim('x\ufffd'));
    await honest.post('/api/v1/webhooks', { name: 'own', url: 'http://127.0.0.1:9/own', events: ['alert.created'] });
    const forged = await client(gw.url, await tokenWithClaim('x\ud800')).get('/api/v1/webhooks');
    expect(forged.status).toBe(401);
    expect(forged.text).not.toContain('/own');
  });

  it('lets a service token without a tenant claim publish for a tenant, and refuses a bad tenant_id with 400', async () => {
    const service = client(gw.url, await serviceToken());
    const tenant = uniqueTenant('svc');
    const ok = await service.post('/api/v1/events', { event: 'alert.created', data: {}, tenant_id: tenant });
    expect(ok.status, ok.text).toBe(202);
    for (const tenant_id of ['a'.repeat(256), 'a\u0000', 'a\u001b[31m', '\udc00']) {
      const res = await service.post('/api/v1/events', { event: 'alert.created', data: {}, tenant_id });
      expect(res.status, res.text).toBe(400);
      expect(res.body.code).toBe('BAD_REQUEST');
      const graphql = await service.graphql('mutation($t: String) { publishEvent(input: { event: "alert.created", data: {}, tenantId: $t }) { id } }', {
        t: tenant_id,
      });
      expect(graphql.body.errors?.[0]?.extensions?.['code']).toBe('BAD_REQUEST');
    }
  });

  it('refuses webhook URLs with backslashes, whitespace or control characters anywhere (422), nothing stored', async () => {
    const api = client(gw.url, await userToken(uniqueTenant('urls')));
    const bad = [
      'http://127.0.0.1:9/a\\b',
      'http:\\\\127.0.0.1:9/a',
      'http://127.0.0.1:9/a\tb',
      'http://127.0.0.1:9/a b',
      'http://127.0.0.1:9/a\nb',
      ' http://127.0.0.1:9/a',
      'http://127.0.0.1:9/a\u0000',
      'http://127.0.0.1:9/a\u007f',
      'http://127.0.0.1:9/a\u0085',
      'http://127.0.0.1:9/a\u00a0b',
    ];
    for (const url of bad) {
      const res = await api.post('/api/v1/webhooks', { name: 'bad', url, events: ['alert.created'] });
      expect(res.status, `${JSON.stringify(url)}: ${res.text}`).toBe(422);
      expect(res.body.code).toBe('VALIDATION_ERROR');
    }
    const list = await api.get('/api/v1/webhooks');
    expect(list.body.webhooks ?? list.body).toHaveLength(0);
  });

  it('stores an event whose serialized data is MAX_EVENT_BYTES and refuses one byte more, over REST and GraphQL', async () => {
    const tenant = uniqueTenant('size');
    const api = client(gw.url, await userToken(tenant));
    const atLimit = await api.post('/api/v1/events', { event: 'alert.created', data: dataOfSize(MAX_EVENT_BYTES) });
    expect(atLimit.status, atLimit.text).toBe(202);
    const over = await api.post('/api/v1/events', { event: 'alert.created', data: dataOfSize(MAX_EVENT_BYTES + 1) });
    expect(over.status, over.text).toBe(413);
    expect(over.body.code).toBe('PAYLOAD_TOO_LARGE');

    const mutation = 'mutation($data: JSONObject!) { publishEvent(input: { event: "alert.created", data: $data }) { id } }';
    const gqlAtLimit = await api.graphql(mutation, { data: dataOfSize(MAX_EVENT_BYTES) });
    expect(gqlAtLimit.body.errors, gqlAtLimit.text).toBeUndefined();
    const gqlOver = await api.graphql(mutation, { data: dataOfSize(MAX_EVENT_BYTES + 1) });
    expect(gqlOver.body.errors?.[0]?.extensions?.['code']).toBe('PAYLOAD_TOO_LARGE');
    expect(gqlOver.body.data?.publishEvent ?? null).toBeNull();

    expect(await countRows('event', tenant)).toBe(2);
  });

  it('creates webhooks up to MAX_WEBHOOKS_PER_TENANT, then answers 409 CONFLICT naming the limit', async () => {
    const tenant = uniqueTenant('quota');
    const api = client(gw.url, await userToken(tenant));
    const create = (i: number) => api.post('/api/v1/webhooks', { name: `w${i}`, url: `http://127.0.0.1:9/w${i}`, events: ['alert.created'] });
    // Concurrent creates may not both take the last free slot.
    const results = await Promise.all(Array.from({ length: MAX_WEBHOOKS + 2 }, (_, i) => create(i)));
    expect(results.filter((r) => r.status === 201)).toHaveLength(MAX_WEBHOOKS);
    const refused = results.filter((r) => r.status !== 201);
    for (const res of refused) {
      expect(res.status, res.text).toBe(409);
      expect(res.body.code).toBe('CONFLICT');
      expect(res.body.error).toContain('MAX_WEBHOOKS_PER_TENANT');
    }
    const graphql = await api.graphql('mutation { createWebhook(input: { name: "g", url: "http://127.0.0.1:9/g", events: ["alert.created"] }) { webhook { id } } }');
    expect(graphql.body.errors?.[0]?.extensions?.['code']).toBe('CONFLICT');
    expect(await countRows('webhook', tenant)).toBe(MAX_WEBHOOKS);
    // Another tenant's quota is its own.
    const other = client(gw.url, await userToken(uniqueTenant('quota-other')));
    const res = await other.post('/api/v1/webhooks', { name: 'x', url: 'http://127.0.0.1:9/x', events: ['alert.created'] });
    expect(res.status).toBe(201);
  });
});
