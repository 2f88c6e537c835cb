import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { createTestDatabase, onRealPostgres, type TestDatabase } from '../helpers/database.js';
import { startTestGateway, TEST_ENCRYPTION_KEY, type TestGateway } from '../helpers/gateway.js';
import { client, type JsonResponse, type TestClient } from '../helpers/http.js';
import { cli } from '../helpers/cli.js';

const KEY_FORMAT = /^ia_live_[A-Za-z0-9]{32}$/;
const LISTED_KEYS = ['created_at', 'id', 'last_used_at', 'name', 'prefix'];
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

describe('API keys', () => {
  let gw: TestGateway;
  let api: TestClient;

  beforeAll(async () => {
    gw = await startTestGateway();
    api = client(gw.url, await userToken('tenant-keys'));
  });
  afterAll(async () => {
    await gw?.close();
  });

  describe('over REST', () => {
    it('POST creates a key: 201 with the key shown once', async () => {
      const res = await api.post('/api/v1/settings/api-keys', { name: 'ci pipeline' });
      expect(res.status).toBe(201);
      expect(Object.keys(res.body).sort()).toEqual([...LISTED_KEYS, 'key'].sort());
      expect(res.body.key).toMatch(KEY_FORMAT);
      expect(res.body.id).toMatch(/^key_[A-Za-z0-9_-]{20}$/);
      expect(res.body.name).toBe('ci pipeline');
      expect(res.body.key.startsWith(res.body.prefix)).toBe(true);
      expect(res.body.prefix.length).toBeLessThan(res.body.key.length);
      expect(res.body.last_used_at).toBeNull();
    });

    it('GET lists {id,name,prefix,created_at,last_used_at}, newest first, never the key or its hash', async () => {
      const other = client(gw.url, await userToken('tenant-keys-list'));
      const first = await other.post('/api/v1/settings/api-keys', { name: 'first' });
      const second = await other.post('/api/v1/settings/api-keys', { name: 'second' });
      const res = await other.get('/api/v1/settings/api-keys');
      expect(res.status).toBe(200);
      expect(res.body.map((k: { id: string }) => k.id)).toEqual([second.body.id, first.body.id]);
      for (const entry of res.body) expect(Object.keys(entry).sort()).toEqual(LISTED_KEYS);
      for (const created of [first, second]) {
        const { key, ...listed } = created.body;
        expect(res.body).toContainEqual(listed);
        expect(res.text).not.toContain(key);
        expect(res.text).not.toContain(key.slice('ia_live_'.length));
        expect(res.text).not.toContain(sha256(key));
      }
    });

    it('the key authenticates requests for its tenant and records when it was used', async () => {
      const created = await api.post('/api/v1/settings/api-keys', { name: 'deploy bot' });
      const withKey = client(gw.url, created.body.key);
      const hook = await api.post('/api/v1/webhooks', {
        name: 'made with a JWT',
        url: 'https://receiver.example.com/hook',
        events: ['drift.detected'],
      });
      const listed = await withKey.get('/api/v1/webhooks');
      expect(listed.status).toBe(200);
      expect(listed.body.map((w: { id: string }) => w.id)).toContain(hook.body.id);

      const viaKey = await withKey.post('/api/v1/webhooks', {
        name: 'made with the key',
        url: 'https://receiver.example.com/hook',
        events: ['ping'],
      });
      expect(viaKey.status).toBe(201);
      expect((await api.get(`/api/v1/webhooks/${viaKey.body.id}`)).status).toBe(200);

      const keys = await api.get('/api/v1/settings/api-keys');
      const entry = keys.body.find((k: { id: string }) => k.id === created.body.id);
      expect(entry.last_used_at).not.toBeNull();
      expect(Date.parse(entry.last_used_at)).toBeGreaterThanOrEqual(Date.parse(entry.created_at));
    });

    it('DELETE revokes at once: 204, the key gets 401, it leaves the list, a second DELETE is 404', async () => {
      const created = await api.post('/api/v1/settings/api-keys', { name: 'short lived' });
      const withKey = client(gw.url, created.body.key);
      expect((await withKey.get('/api/v1/webhooks')).status).toBe(200);

      const res = await api.delete(`/api/v1/settings/api-keys/${created.body.id}`);
      expect(res.status).toBe(204);
      expect(res.text).toBe('');

      const refused = await withKey.get('/api/v1/webhooks');
      expect(refused.status).toBe(401);
      expect(refused.body).toEqual({ error: expect.any(String), code: 'UNAUTHORIZED' });
      const list = await api.get('/api/v1/settings/api-keys');
      expect(list.body.map((k: { id: string }) => k.id)).not.toContain(created.body.id);
      const again = await api.delete(`/api/v1/settings/api-keys/${created.body.id}`);
      expect(again.status).toBe(404);
      expect(again.body.code).toBe('NOT_FOUND');
    });

    it('a key can revoke itself, and is refused right after', async () => {
      const created = await api.post('/api/v1/settings/api-keys', { name: 'self' });
      const withKey = client(gw.url, created.body.key);
      expect((await withKey.delete(`/api/v1/settings/api-keys/${created.body.id}`)).status).toBe(204);
      expect((await withKey.get('/api/v1/settings/api-keys')).status).toBe(401);
    });

    it('revoking one key leaves the others working', async () => {
      const keep = await api.post('/api/v1/settings/api-keys', { name: 'keep' });
      const drop = await api.post('/api/v1/settings/api-keys', { name: 'drop' });
      expect((await api.delete(`/api/v1/settings/api-keys/${drop.body.id}`)).status).toBe(204);
      expect((await client(gw.url, keep.body.key).get('/api/v1/webhooks')).status).toBe(200);
      expect((await client(gw.url, drop.body.key).get('/api/v1/webhooks')).status).toBe(401);
    });

    it('refuses bad input with the documented codes', async () => {
      const before = (await api.get('/api/v1/settings/api-keys')).body;
      const cases: [JsonResponse, number, string][] = [
        [await api.post('/api/v1/settings/api-keys', {}), 400, 'BAD_REQUEST'],
        [await api.post('/api/v1/settings/api-keys', { name: '' }), 400, 'BAD_REQUEST'],
        [await api.post('/api/v1/settings/api-keys', { name: 7 }), 400, 'BAD_REQUEST'],
        [await api.request('POST', '/api/v1/settings/api-keys', { rawBody: '[', headers: { 'content-type': 'application/json' } }), 400, 'BAD_REQUEST'],
        [await api.post('/api/v1/settings/api-keys', { name: 'k'.repeat(256) }), 422, 'VALIDATION_ERROR'],
        [await api.post('/api/v1/settings/api-keys', { name: 'a\u0000b' }), 422, 'VALIDATION_ERROR'],
        [await api.request('POST', '/api/v1/settings/api-keys', { rawBody: 'name=x', headers: { 'content-type': 'text/plain' } }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
        [await api.delete('/api/v1/settings/api-keys/key_AAAAAAAAAAAAAAAAAAAA'), 404, 'NOT_FOUND'],
        [await api.delete('/api/v1/settings/api-keys/not-an-id'), 404, 'NOT_FOUND'],
      ];
      for (const [res, status, code] of cases) {
        expect(res.status, res.text).toBe(status);
        expect(res.body.code).toBe(code);
      }
      expect((await api.get('/api/v1/settings/api-keys')).body).toEqual(before);
    });
  });

  describe('over GraphQL', () => {
    it('createApiKey, apiKeys and revokeApiKey', async () => {
      const gql = client(gw.url, await userToken('tenant-keys-gql'));
      const created = await gql.graphql(
        `mutation ($name: String!) { createApiKey(name: $name) { key apiKey { id name prefix createdAt lastUsedAt } } }`,
        { name: 'graphql key' },
      );
      expect(created.body.errors).toBeUndefined();
      const { key, apiKey } = created.body.data.createApiKey;
      expect(key).toMatch(KEY_FORMAT);
      expect(apiKey).toMatchObject({ name: 'graphql key', lastUsedAt: null });
      expect(key.startsWith(apiKey.prefix)).toBe(true);

      const listed = await gql.graphql(`{ apiKeys { id name prefix createdAt lastUsedAt } }`);
      expect(listed.body.data.apiKeys).toEqual([apiKey]);

      const withKey = client(gw.url, key);
      const viaKey = await withKey.graphql(`{ apiKeys { id } }`);
      expect(viaKey.body.data.apiKeys).toEqual([{ id: apiKey.id }]);

      const revoked = await gql.graphql(`mutation ($id: ID!) { revokeApiKey(id: $id) }`, { id: apiKey.id });
      expect(revoked.body).toEqual({ data: { revokeApiKey: true } });
      expect((await withKey.get('/api/v1/webhooks')).status).toBe(401);
      const refused = await withKey.graphql(`{ apiKeys { id } }`);
      expect(refused.status).toBe(401);
      expect(refused.body.errors?.[0]?.extensions?.['code']).toBe('UNAUTHORIZED');
      expect((await gql.graphql(`{ apiKeys { id } }`)).body.data.apiKeys).toEqual([]);

      const again = await gql.graphql(`mutation ($id: ID!) { revokeApiKey(id: $id) }`, { id: apiKey.id });
      expect(again.body.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
    });

    it('the ApiKey type has no field for the key or its hash', async () => {
      const gql = client(gw.url, await userToken('tenant-keys-gql'));
      for (const field of ['key', 'keyHash', 'hash']) {
        const res = await gql.graphql(`{ apiKeys { id ${field} } }`);
        expect(res.body.errors?.[0]?.message).toMatch(new RegExp(`Cannot query field "${field}"`));
      }
    });
  });
});

describe('API keys from the command line', () => {
  let database: TestDatabase | undefined;
  let gw: TestGateway | undefined;
  afterAll(async () => {
    if (gw) await gw.close();
    else await database?.drop();
  });

  it('`api-key create --tenant T --name N` prints a key that works against a gateway on that database', async () => {
    database = await createTestDatabase();
    const env = { ...database.env, ENCRYPTION_KEY: TEST_ENCRYPTION_KEY, LOG_LEVEL: 'silent' };
    const result = await cli(['api-key', 'create', '--tenant', 'tenant-cli', '--name', 'from the shell'], env);
    expect(result.code, result.stderr).toBe(0);
    const key = result.stdout.trim();
    expect(key).toMatch(KEY_FORMAT);
    expect(result.stderr).not.toContain(key);

    gw = await startTestGateway({}, database);
    const withKey = client(gw.url, key);
    const created = await withKey.post('/api/v1/webhooks', {
      name: 'cli tenant hook',
      url: 'https://receiver.example.com/hook',
      events: ['ping'],
    });
    expect(created.status).toBe(201);
    const asTenant = client(gw.url, await userToken('tenant-cli'));
    expect((await asTenant.get('/api/v1/webhooks')).body.map((w: { id: string }) => w.id)).toEqual([created.body.id]);
    const keys = (await asTenant.get('/api/v1/settings/api-keys')).body as { name: string; prefix: string }[];
    expect(keys.map((k) => k.name)).toEqual(['from the shell']);
    expect(key.startsWith(keys[0]!.prefix)).toBe(true);
    expect((await client(gw.url, await userToken('someone-else')).get(`/api/v1/webhooks/${created.body.id}`)).status).toBe(404);

    const whileRunning = await cli(['api-key', 'create', '--tenant', 'tenant-cli', '--name', 'second'], env);
    if (onRealPostgres) {
      expect(whileRunning.code, whileRunning.stderr).toBe(0);
      const second = whileRunning.stdout.trim();
      expect(second).toMatch(KEY_FORMAT);
      expect((await client(gw.url, second).get('/api/v1/webhooks')).status).toBe(200);
    } else {
      // The embedded database belongs to the running gateway: the command refuses to open it.
      expect(whileRunning.code).toBe(1);
      expect(whileRunning.stderr).toMatch(/in use/);
      expect(whileRunning.stdout).not.toMatch(/ia_live_/);
      expect((await asTenant.get('/api/v1/settings/api-keys')).body).toHaveLength(1);
    }
  }, 120_000);
});
