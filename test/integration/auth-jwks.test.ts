import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client } from '../helpers/http.js';

describe('authentication with asymmetric keys from JWT_JWKS_URL', () => {
  let gw: TestGateway;
  let jwks: Server;
  let signingKey: CryptoKey;
  let otherKey: CryptoKey;
  let jwksRequests = 0;

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256');
    signingKey = pair.privateKey;
    otherKey = (await generateKeyPair('RS256')).privateKey;
    const publicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'key-1', alg: 'RS256', use: 'sig' };
    jwks = createServer((req, res) => {
      if (req.url === '/auth/v1/.well-known/jwks.json') {
        jwksRequests += 1;
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [publicJwk] }));
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    const { port } = jwks.address() as AddressInfo;
    gw = await startTestGateway({
      JWT_SECRET: '',
      JWT_JWKS_URL: `http://127.0.0.1:${port}/auth/v1/.well-known/jwks.json`,
    });
  });
  afterAll(async () => {
    await gw?.close();
    await new Promise<void>((resolve) => jwks?.close(() => resolve()));
  });

  const rs256 = (key: CryptoKey, tenant: string, kid = 'key-1') =>
    new SignJWT({ role: 'authenticated' })
      .setProtectedHeader({ alg: 'RS256', kid })
      .setSubject(tenant)
      .setExpirationTime('1h')
      .sign(key);

  it('no development key is made when an identity provider is configured', () => {
    expect(gw.gateway.developmentKey).toBeUndefined();
  });

  it('accepts an RS256 token signed with the published key', async () => {
    const api = client(gw.url, await rs256(signingKey, 'tenant-jwks'));
    const created = await api.post('/api/v1/webhooks', {
      name: 'jwks',
      url: 'https://receiver.example.com/hook',
      events: ['drift.detected'],
    });
    expect(created.status, created.text).toBe(201);
    const list = await api.get('/api/v1/webhooks');
    expect(list.status).toBe(200);
    expect(list.body.map((w: { id: string }) => w.id)).toEqual([created.body.id]);
    expect(jwksRequests).toBeGreaterThan(0);
  });

  it('refuses a token signed with another key, under the same or another kid', async () => {
    for (const kid of ['key-1', 'key-2']) {
      const res = await client(gw.url, await rs256(otherKey, 'tenant-jwks', kid)).get('/api/v1/webhooks');
      expect(res.status).toBe(401);
      expect(res.body).toEqual({ error: expect.any(String), code: 'UNAUTHORIZED' });
    }
  });

  it('refuses an HS256 token (no shared secret is configured)', async () => {
    const res = await client(gw.url, await userToken('tenant-jwks')).get('/api/v1/webhooks');
    expect(res.status).toBe(401);
    expect(res.body.code).toBe('UNAUTHORIZED');
  });

  it('refuses an HS256 token whose secret is the published public key (algorithm confusion)', async () => {
    const publicJwk = JSON.stringify((await fetch(`http://127.0.0.1:${(jwks.address() as AddressInfo).port}/auth/v1/.well-known/jwks.json`).then((r) => r.json())) as unknown);
    const res = await client(gw.url, await userToken('tenant-jwks', {}, publicJwk)).get('/api/v1/webhooks');
    expect(res.status).toBe(401);
  });
});
