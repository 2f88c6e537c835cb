import { SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceToken, userToken } from '../helpers/auth.js';
import { startTestGateway, TEST_JWT_SECRET, type TestGateway } from '../helpers/gateway.js';
import { client, type JsonResponse } from '../helpers/http.js';

const hmac = (secret: string) => new TextEncoder().encode(secret);

function expectUnauthorized(res: JsonResponse) {
  expect(res.status, res.text).toBe(401);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  expect(res.body).toEqual({ error: expect.any(String), code: 'UNAUTHORIZED' });
}

const WEBHOOK = { name: 'x', url: 'https://receiver.example.com/hook', events: ['drift.detected'] };

describe('authentication with HS256 JWTs (JWT_SECRET)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(async () => {
    await gw?.close();
  });

  const raw = (authorization?: string) => client(gw.url).get('/api/v1/webhooks', authorization ? { headers: { authorization } } : {});

  it('a valid user token is accepted', async () => {
    const res = await client(gw.url, await userToken('tenant-auth')).get('/api/v1/webhooks');
    expect(res.status).toBe(200);
    expect(res.body).toEqual([]);
  });

  it('no token is 401 UNAUTHORIZED on every route', async () => {
    const api = client(gw.url);
    expectUnauthorized(await api.get('/api/v1/webhooks'));
    expectUnauthorized(await api.post('/api/v1/webhooks', WEBHOOK));
    expectUnauthorized(await api.get('/api/v1/webhooks/events'));
    expectUnauthorized(await api.get('/api/v1/webhooks/wh_AAAAAAAAAAAAAAAAAAAA'));
    expectUnauthorized(await api.put('/api/v1/webhooks/wh_AAAAAAAAAAAAAAAAAAAA', { name: 'x' }));
    expectUnauthorized(await api.delete('/api/v1/webhooks/wh_AAAAAAAAAAAAAAAAAAAA'));
    expectUnauthorized(await api.get('/api/v1/settings/api-keys'));
    expectUnauthorized(await api.post('/api/v1/settings/api-keys', { name: 'x' }));
    expectUnauthorized(await api.delete('/api/v1/settings/api-keys/key_AAAAAAAAAAAAAAAAAAAA'));
  });

  it('an unknown path is 404 even without a token', async () => {
    const res = await client(gw.url).get('/api/v1/no-such-thing');
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: expect.any(String), code: 'NOT_FOUND' });
  });

  it.each([
    ['Basic credentials', 'Basic dXNlcjpwYXNz'],
    ['"Basic x"', 'Basic x'],
    ['"Bearer" alone', 'Bearer'],
    ['two tokens', 'Bearer a b'],
    ['a token that is not a JWT', 'Bearer not-a-jwt'],
    ['a JWT with a broken payload', 'Bearer eyJhbGciOiJIUzI1NiJ9.!!!.abc'],
    ['an unknown API key', 'Bearer ia_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
    ['an API key of the wrong shape', 'Bearer ia_live_short'],
  ])('a malformed Authorization header (%s) is 401', async (_what, header) => {
    expectUnauthorized(await raw(header));
  });

  it('an expired token is 401', async () => {
    const token = await new SignJWT({ role: 'authenticated' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('tenant-auth')
      .setIssuedAt(Math.floor(Date.now() / 1000) - 7200)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 3600)
      .sign(hmac(TEST_JWT_SECRET));
    expectUnauthorized(await raw(`Bearer ${token}`));
  });

  it('a token that is not valid yet is 401', async () => {
    const token = await new SignJWT({ role: 'authenticated' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('tenant-auth')
      .setNotBefore('1h')
      .setExpirationTime('2h')
      .sign(hmac(TEST_JWT_SECRET));
    expectUnauthorized(await raw(`Bearer ${token}`));
  });

  it('a token signed with another secret is 401', async () => {
    expectUnauthorized(await raw(`Bearer ${await userToken('tenant-auth', {}, 'another-secret-of-the-same-length-for-hs256')}`));
  });

  it('a token whose payload was altered after signing is 401', async () => {
    const token = await userToken('tenant-auth');
    const [header, , signature] = token.split('.');
    const payload = Buffer.from(JSON.stringify({ sub: 'tenant-victim', role: 'authenticated', exp: 9999999999 })).toString(
      'base64url',
    );
    expectUnauthorized(await raw(`Bearer ${header}.${payload}.${signature}`));
  });

  it('an unsigned (alg none) token is 401', async () => {
    const token = new UnsecuredJWT({ role: 'authenticated' }).setSubject('tenant-auth').setExpirationTime('1h').encode();
    expectUnauthorized(await raw(`Bearer ${token}`));
  });

  it('a user token without the tenant claim is 401', async () => {
    const token = await new SignJWT({ role: 'authenticated' })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime('1h')
      .sign(hmac(TEST_JWT_SECRET));
    expectUnauthorized(await raw(`Bearer ${token}`));
    const empty = await new SignJWT({ role: 'authenticated', sub: '' })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime('1h')
      .sign(hmac(TEST_JWT_SECRET));
    expectUnauthorized(await raw(`Bearer ${empty}`));
  });

  it('a refused token creates nothing', async () => {
    const forged = await userToken('tenant-forged', {}, 'another-secret-of-the-same-length-for-hs256');
    expectUnauthorized(await client(gw.url, forged).post('/api/v1/webhooks', WEBHOOK));
    const list = await client(gw.url, await userToken('tenant-forged')).get('/api/v1/webhooks');
    expect(list.body).toEqual([]);
  });

  it('a service token without a tenant may not manage webhooks (403)', async () => {
    const res = await client(gw.url, await serviceToken()).get('/api/v1/webhooks');
    expect(res.status).toBe(403);
    expect(res.body).toEqual({ error: expect.any(String), code: 'FORBIDDEN' });
  });

  it('GraphQL without a token is UNAUTHORIZED', async () => {
    const res = await client(gw.url).graphql('{ webhooks { id } }');
    expect(res.body.errors?.[0]?.extensions?.['code']).toBe('UNAUTHORIZED');
    expect(res.body.data ?? null).toBeNull();
  });

  it('GraphQL with a bad token is a 401 UNAUTHORIZED', async () => {
    const forged = await userToken('tenant-auth', {}, 'another-secret-of-the-same-length-for-hs256');
    for (const header of [`Bearer ${forged}`, 'Basic x']) {
      const res = await client(gw.url).graphql('{ webhooks { id } }', undefined, { headers: { authorization: header } });
      expect(res.status).toBe(401);
      expect(res.body.errors?.[0]?.extensions?.['code']).toBe('UNAUTHORIZED');
      expect(res.body.data ?? null).toBeNull();
    }
  });

  it('GraphQL accepts the token as ?token= (for EventSource)', async () => {
    const token = await userToken('tenant-query-token');
    await client(gw.url, token).post('/api/v1/webhooks', WEBHOOK);
    const res = await client(gw.url).request('POST', `/graphql?token=${encodeURIComponent(token)}`, {
      body: { query: '{ webhooks { name } }' },
    });
    expect(res.status).toBe(200);
    expect(res.body.data).toEqual({ webhooks: [{ name: 'x' }] });
  });
});

describe('authentication with JWT_ISSUER, JWT_AUDIENCE and JWT_TENANT_CLAIM', () => {
  const ISSUER = 'https://project.supabase.test/auth/v1';
  const AUDIENCE = 'authenticated';
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE, JWT_TENANT_CLAIM: 'tenant_id' });
  });
  afterAll(async () => {
    await gw?.close();
  });

  async function token(claims: Record<string, unknown>, options: { iss?: string | null; aud?: string | null; sub?: string } = {}) {
    const jwt = new SignJWT({ role: 'authenticated', ...claims }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h');
    const iss = options.iss === undefined ? ISSUER : options.iss;
    const aud = options.aud === undefined ? AUDIENCE : options.aud;
    if (iss !== null) jwt.setIssuer(iss);
    if (aud !== null) jwt.setAudience(aud);
    if (options.sub) jwt.setSubject(options.sub);
    return jwt.sign(hmac(TEST_JWT_SECRET));
  }
  const list = async (t: string) => client(gw.url, t).get('/api/v1/webhooks');

  it('accepts the right issuer and audience', async () => {
    const res = await list(await token({ tenant_id: 'org-1' }, { sub: 'user-1' }));
    expect(res.status).toBe(200);
  });

  it.each([
    ['a wrong issuer', { iss: 'https://elsewhere.test/auth/v1' }],
    ['no issuer', { iss: null }],
    ['a wrong audience', { aud: 'anon' }],
    ['no audience', { aud: null }],
  ] as const)('refuses %s', async (_what, options) => {
    expectUnauthorized(await list(await token({ tenant_id: 'org-1' }, { sub: 'user-1', ...options })));
  });

  it('takes the tenant from the configured claim, not from sub', async () => {
    const alice = client(gw.url, await token({ tenant_id: 'org-1' }, { sub: 'alice' }));
    const bob = client(gw.url, await token({ tenant_id: 'org-1' }, { sub: 'bob' }));
    const mallory = client(gw.url, await token({ tenant_id: 'org-2' }, { sub: 'org-1' }));

    const created = await alice.post('/api/v1/webhooks', WEBHOOK);
    expect(created.status).toBe(201);
    const seenByBob = await bob.get(`/api/v1/webhooks/${created.body.id}`);
    expect(seenByBob.status).toBe(200);
    expect((await mallory.get(`/api/v1/webhooks/${created.body.id}`)).status).toBe(404);
    expect((await mallory.get('/api/v1/webhooks')).body).toEqual([]);
  });

  it('refuses a token with sub but without the configured claim', async () => {
    expectUnauthorized(await list(await token({}, { sub: 'org-1' })));
    expectUnauthorized(await list(await token({ tenant_id: 42 }, { sub: 'org-1' })));
  });
});
