import { stat, readFile } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { createSecretBox } from '../../src/crypto/secrets.js';
import { userToken } from '../helpers/auth.js';
import { withPg } from '../helpers/db-dump.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client } from '../helpers/http.js';

const storedSecret = (gw: TestGateway, webhookId: string) =>
  withPg(gw.gateway.db.url, async (c) => {
    const res = await c.query<{ secret_encrypted: string }>('select secret_encrypted from webhook where id = $1', [webhookId]);
    return res.rows[0]?.secret_encrypted;
  });

describe('persistence across restarts on the same database', () => {
  let gw: TestGateway | undefined;
  afterAll(async () => {
    await gw?.close();
  });

  it('webhooks, their data and API keys survive a restart', async () => {
    gw = await startTestGateway();
    const token = await userToken('tenant-persist');
    const api = client(gw.url, token);
    const created = await api.post('/api/v1/webhooks', {
      name: 'survivor',
      url: 'https://receiver.example.com/persist',
      events: ['drift.detected', 'job.completed'],
      enabled: false,
    });
    expect(created.status).toBe(201);
    const second = await api.post('/api/v1/webhooks', {
      name: 'second',
      url: 'https://receiver.example.com/second',
      events: ['ping'],
    });
    const renamed = await api.put(`/api/v1/webhooks/${second.body.id}`, { name: 'second, renamed' });
    expect(renamed.status).toBe(200);
    const key = await api.post('/api/v1/settings/api-keys', { name: 'survives' });
    expect(key.status).toBe(201);
    const revoked = await api.post('/api/v1/settings/api-keys', { name: 'revoked before restart' });
    expect((await api.delete(`/api/v1/settings/api-keys/${revoked.body.id}`)).status).toBe(204);

    const listBefore = (await api.get('/api/v1/webhooks')).body as Record<string, unknown>[];
    const keysBefore = (await api.get('/api/v1/settings/api-keys')).body;
    const secretBefore = await storedSecret(gw, created.body.id);

    gw = await gw.restart();

    const after = client(gw.url, token);
    const listAfter = (await after.get('/api/v1/webhooks')).body as Record<string, unknown>[];
    const stable = (w: Record<string, unknown>) => ({ ...w, last_delivery_status: null, last_delivery_at: null });
    expect(listAfter.map(stable)).toEqual(listBefore.map(stable));
    expect(listAfter.map((w) => w['name'])).toEqual(['second, renamed', 'survivor']);
    const one = await after.get(`/api/v1/webhooks/${created.body.id}`);
    expect(one.body).toMatchObject({
      name: 'survivor',
      url: 'https://receiver.example.com/persist',
      events: ['drift.detected', 'job.completed'],
      enabled: false,
      created_at: created.body.created_at,
    });
    expect(await storedSecret(gw, created.body.id)).toBe(secretBefore);

    const withKey = client(gw.url, key.body.key);
    const viaKey = await withKey.get('/api/v1/webhooks');
    expect(viaKey.status).toBe(200);
    expect(viaKey.body.map((w: { id: string }) => w.id)).toEqual(listAfter.map((w) => w['id']));
    expect((await client(gw.url, revoked.body.key).get('/api/v1/webhooks')).status).toBe(401);
    const keysAfter = (await after.get('/api/v1/settings/api-keys')).body as { id: string }[];
    expect(keysAfter.map((k) => k.id)).toEqual(keysBefore.map((k: { id: string }) => k.id));

    expect((await after.put(`/api/v1/webhooks/${created.body.id}`, { enabled: true })).body.enabled).toBe(true);
    expect((await after.delete(`/api/v1/webhooks/${second.body.id}`)).status).toBe(204);
  }, 180_000);
});

describe('the embedded encryption key file (no ENCRYPTION_KEY)', () => {
  let gw: TestGateway | undefined;
  afterAll(async () => {
    await gw?.close();
  });

  it('is written to DATA_DIR/encryption.key with mode 0600 and reused across restarts', async () => {
    gw = await startTestGateway({ ENCRYPTION_KEY: '', DATABASE_URL: '' });
    expect(gw.gateway.db.embedded).toBe(true);
    const file = path.join(gw.database.dataDir, 'encryption.key');
    const info = await stat(file);
    expect(info.mode & 0o777).toBe(0o600);
    const key = (await readFile(file, 'utf8')).trim();
    expect(key).toMatch(/^[0-9a-f]{64}$/);

    const api = client(gw.url, await userToken('tenant-key-file'));
    const secret = `whsec_${randomBytes(24).toString('base64')}`;
    const first = await api.post('/api/v1/webhooks', { name: 'before', url: 'https://r.example.com/a', events: ['ping'], secret });
    expect(first.status).toBe(201);
    expect(createSecretBox(key).decrypt((await storedSecret(gw, first.body.id))!)).toBe(secret);

    gw = await gw.restart();
    expect((await readFile(file, 'utf8')).trim()).toBe(key);
    expect((await stat(file)).mode & 0o777).toBe(0o600);

    const secondSecret = `whsec_${randomBytes(24).toString('base64')}`;
    const second = await client(gw.url, await userToken('tenant-key-file')).post('/api/v1/webhooks', {
      name: 'after',
      url: 'https://r.example.com/b',
      events: ['ping'],
      secret: secondSecret,
    });
    expect(second.status).toBe(201);
    const box = createSecretBox(key);
    expect(box.decrypt((await storedSecret(gw, second.body.id))!)).toBe(secondSecret);
    expect(box.decrypt((await storedSecret(gw, first.body.id))!)).toBe(secret);
  }, 180_000);
});
