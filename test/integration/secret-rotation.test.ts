import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretBox } from '../../src/crypto/secrets.js';
import { deleteExpiredSecrets } from '../../src/modules/webhooks/previous-secrets.js';
import { serviceToken, userToken } from '../helpers/auth.js';
import { dumpAllTables, withPg } from '../helpers/db-dump.js';
import { createWebhook, newSecret, uniqueTenant, type CreatedWebhook } from '../helpers/delivery.js';
import { startTestGateway, TEST_ENCRYPTION_KEY, type TestGateway } from '../helpers/gateway.js';
import { client, type JsonResponse, type TestClient } from '../helpers/http.js';
import { startReceiver, type ReceivedRequest, type Receiver } from '../helpers/receiver.js';

const UNKNOWN_ID = 'wh_AAAAAAAAAAAAAAAAAAAA';
const SECRET_FORMAT = /^whsec_[A-Za-z0-9+/]{32}$/;

/** The README's Node receiver check of X-InfraAudit-Signature, over the raw bytes received. */
function readmeCheck(raw: string, header: string | undefined, secret: string): boolean {
  const expected = 'sha256=' + createHmac('sha256', secret).update(Buffer.from(raw, 'utf8')).digest('hex');
  const given = Buffer.from(header ?? '');
  const want = Buffer.from(expected);
  return given.length === want.length && timingSafeEqual(given, want);
}

/** The official verifier holding `secret` only: true when it accepts the request. */
function officialVerifies(req: ReceivedRequest, secret: string): boolean {
  try {
    new StandardWebhook(secret).verify(req.body, req.headers as Record<string, string>);
    return true;
  } catch {
    return false;
  }
}

/** What `webhook-signature` should hold for `secret`, worked out here from the specification. */
function expectedSignature(req: ReceivedRequest, secret: string): string {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const signed = `${req.headers['webhook-id'] as string}.${req.headers['webhook-timestamp'] as string}.${req.body}`;
  return 'v1,' + createHmac('sha256', key).update(signed).digest('base64');
}

const signatures = (req: ReceivedRequest) => (req.headers['webhook-signature'] as string).split(' ');

describe('secret rotation (CONTRACT.md section 7)', () => {
  let gw: TestGateway;
  let receiver: Receiver;
  let service: TestClient;
  /** The secrets the receiver's official verifier holds; it answers 204 when one verifies, else 401. */
  let held: string[] = [];

  beforeAll(async () => {
    gw = await startTestGateway({ WORKER_POLL_INTERVAL: '50ms', WEBHOOK_RETRY_SCHEDULE: '1h' });
    receiver = await startReceiver((req, _n, res) => {
      const ok = held.some((secret) => officialVerifies(req, secret));
      res.writeHead(ok ? 204 : 401).end();
    });
    service = client(gw.url, await serviceToken());
  });
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  const dbUrl = () => gw.gateway.db.url;

  async function setUp(prefix: string, secret?: string): Promise<{ api: TestClient; tenant: string; hook: CreatedWebhook }> {
    const tenant = uniqueTenant(prefix);
    const api = client(gw.url, await userToken(tenant));
    held = [];
    const hook = await createWebhook(api, { url: `${receiver.url}/${prefix}`, events: ['drift.detected'], ...(secret ? { secret } : {}) });
    await receiver.waitFor(1, { match: (r) => r.json?.webhook_id === hook.id && r.json?.event === 'ping' });
    return { api, tenant, hook };
  }

  /** Publishes one event to the tenant and answers its request as the receiver got it. */
  async function deliverOne(tenant: string, webhookId: string): Promise<ReceivedRequest> {
    const marker = randomBytes(8).toString('hex');
    const published = await service.post('/api/v1/events', { event: 'drift.detected', data: { marker }, tenant_id: tenant });
    expect(published.status, published.text).toBe(202);
    const [req] = await receiver.waitFor(1, { match: (r) => r.json?.webhook_id === webhookId && r.json?.data?.marker === marker });
    return req!;
  }

  async function rotate(api: TestClient, id: string, body?: unknown): Promise<JsonResponse> {
    return body === undefined ? api.request('POST', `/api/v1/webhooks/${id}/secret/rotate`) : api.post(`/api/v1/webhooks/${id}/secret/rotate`, body);
  }

  const previousRows = (webhookId: string) =>
    withPg(dbUrl(), async (c) =>
      (await c.query<{ secret_encrypted: string; expires_at: Date }>(
        'select secret_encrypted, expires_at from webhook_previous_secret where webhook_id = $1 order by seq desc',
        [webhookId],
      )).rows,
    );

  it('during the grace period the old and the new secret both verify, newest first; X-InfraAudit-Signature uses the new one', async () => {
    const { api, tenant, hook } = await setUp('rot-grace');
    const before = Date.now();
    const rotated = await rotate(api, hook.id);
    expect(rotated.status, rotated.text).toBe(200);
    expect(Object.keys(rotated.body).sort()).toEqual(['previous_secret_expires_at', 'secret']);
    const fresh = rotated.body.secret as string;
    expect(fresh).toMatch(SECRET_FORMAT);
    expect(fresh).not.toBe(hook.secret);
    // The default grace period: one day from the rotation.
    const expiresAt = Date.parse(rotated.body.previous_secret_expires_at);
    expect(expiresAt).toBeGreaterThanOrEqual(before + 86_400_000 - 5_000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 86_400_000 + 5_000);

    held = [hook.secret];
    const first = await deliverOne(tenant, hook.id);
    expect(signatures(first)).toEqual([expectedSignature(first, fresh), expectedSignature(first, hook.secret)]);
    expect(first.headers['webhook-signature']).toMatch(/^v1,\S+ v1,\S+$/);
    expect(officialVerifies(first, hook.secret)).toBe(true);
    expect(officialVerifies(first, fresh)).toBe(true);
    expect(officialVerifies(first, newSecret())).toBe(false);
    expect(readmeCheck(first.body, first.headers['x-infraaudit-signature'] as string, fresh)).toBe(true);
    expect(readmeCheck(first.body, first.headers['x-infraaudit-signature'] as string, hook.secret)).toBe(false);

    held = [fresh];
    const second = await deliverOne(tenant, hook.id);
    expect(officialVerifies(second, fresh)).toBe(true);
    expect(officialVerifies(second, hook.secret)).toBe(true);

    // Both receivers answered 204: the deliveries succeeded.
    await expect.poll(async () => (await api.get(`/api/v1/webhooks/${hook.id}/deliveries?per_page=100`)).body.data.filter((a: any) => a.event_type === 'drift.detected').map((a: any) => a.response_code)).toEqual([204, 204]);
  });

  it('after the grace period only the new secret verifies, and the expired secret is deleted', async () => {
    const old = newSecret();
    const { api, tenant, hook } = await setUp('rot-expiry', old);
    const supplied = newSecret();
    const rotated = await rotate(api, hook.id, { secret: supplied, grace_period_seconds: 1 });
    expect(rotated.status, rotated.text).toBe(200);
    expect(rotated.body.secret).toBe(supplied);
    expect((await previousRows(hook.id)).length).toBe(1);

    // Deliveries until one is signed with one secret only: the grace period is over.
    held = [supplied];
    let last: ReceivedRequest;
    do last = await deliverOne(tenant, hook.id);
    while (signatures(last).length > 1);
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(rotated.body.previous_secret_expires_at));
    expect(signatures(last)).toEqual([expectedSignature(last, supplied)]);
    expect(officialVerifies(last, supplied)).toBe(true);
    expect(officialVerifies(last, old)).toBe(false);
    expect(readmeCheck(last.body, last.headers['x-infraaudit-signature'] as string, supplied)).toBe(true);
    expect(readmeCheck(last.body, last.headers['x-infraaudit-signature'] as string, old)).toBe(false);
    // The worker met the expired secret and deleted it: it is gone from the database.
    await expect.poll(async () => (await previousRows(hook.id)).length).toBe(0);
  });

  it('a grace period of 0 stops the old secret at once', async () => {
    const { api, tenant, hook } = await setUp('rot-zero');
    const before = Date.now();
    const rotated = await rotate(api, hook.id, { grace_period_seconds: 0 });
    expect(rotated.status, rotated.text).toBe(200);
    expect(Math.abs(Date.parse(rotated.body.previous_secret_expires_at) - before)).toBeLessThan(5_000);
    expect(await previousRows(hook.id)).toEqual([]);
    held = [rotated.body.secret];
    const req = await deliverOne(tenant, hook.id);
    expect(signatures(req)).toEqual([expectedSignature(req, rotated.body.secret)]);
    expect(officialVerifies(req, hook.secret)).toBe(false);
  });

  it('the test ping is signed with every live secret too', async () => {
    const { api, hook } = await setUp('rot-ping');
    const rotated = await rotate(api, hook.id, { grace_period_seconds: 600 });
    expect(rotated.status, rotated.text).toBe(200);
    held = [hook.secret];
    const tested = await api.post(`/api/v1/webhooks/${hook.id}/test`);
    expect(tested.status, tested.text).toBe(200);
    expect(tested.body.status).toBe('success');
    expect(tested.body.response_code).toBe(204);
    const [ping] = await receiver.waitFor(2, { match: (r) => r.json?.webhook_id === hook.id && r.json?.event === 'ping' }).then((r) => r.slice(-1));
    expect(signatures(ping!)).toEqual([expectedSignature(ping!, rotated.body.secret), expectedSignature(ping!, hook.secret)]);
    expect(tested.body.request_headers['webhook-signature']).toBe(ping!.headers['webhook-signature']);
    expect(readmeCheck(ping!.body, ping!.headers['x-infraaudit-signature'] as string, rotated.body.secret)).toBe(true);
  });

  it('keeps at most 10 previous secrets, dropping the oldest, all encrypted at rest', async () => {
    const { api, tenant, hook } = await setUp('rot-eleven');
    const secrets = [hook.secret];
    for (let i = 0; i < 11; i++) {
      const rotated = await rotate(api, hook.id, i % 2 === 0 ? undefined : { grace_period_seconds: 3600 });
      expect(rotated.status, rotated.text).toBe(200);
      secrets.push(rotated.body.secret);
    }
    expect(new Set(secrets).size).toBe(12);
    const newestFirst = [...secrets].reverse();

    // The current secret and the 10 newest previous ones sign; the first secret no longer does.
    held = [secrets[1]!];
    const req = await deliverOne(tenant, hook.id);
    expect(signatures(req)).toEqual(newestFirst.slice(0, 11).map((s) => expectedSignature(req, s)));
    expect(officialVerifies(req, secrets[0]!)).toBe(false);
    for (const secret of secrets.slice(1)) expect(officialVerifies(req, secret)).toBe(true);

    // Stored: 10 rows, each the AES-GCM ciphertext of a previous secret, newest first.
    const rows = await previousRows(hook.id);
    const box = createSecretBox(TEST_ENCRYPTION_KEY);
    expect(rows.map((r) => box.decrypt(r.secret_encrypted))).toEqual(newestFirst.slice(1, 11));
    // No spelling of any of the secrets is in any column of any table.
    const dump = (await dumpAllTables(dbUrl())).flatMap((t) => t.rows.map((row) => ({ table: t.table, row })));
    expect(dump.some(({ table }) => table === 'webhook_previous_secret')).toBe(true);
    for (const secret of secrets) {
      const raw = Buffer.from(secret.slice('whsec_'.length), 'base64');
      for (const spelling of [secret, secret.slice('whsec_'.length), raw.toString('hex'), raw.toString('base64url')]) {
        expect(dump.filter(({ row }) => row.includes(spelling)).map((h) => h.table)).toEqual([]);
      }
    }
    expect(dump.filter(({ row }) => row.includes('whsec_')).map((h) => h.table)).toEqual([]);
  });

  it('rotations of one webhook at once each retire the secret the other replaced: no new secret is lost', async () => {
    const { api, tenant, hook } = await setUp('rot-race');
    const answers = await Promise.all([rotate(api, hook.id), rotate(api, hook.id), rotate(api, hook.id)]);
    for (const res of answers) expect(res.status, res.text).toBe(200);
    const box = createSecretBox(TEST_ENCRYPTION_KEY);
    const retired = (await previousRows(hook.id)).map((r) => box.decrypt(r.secret_encrypted));
    const current = await withPg(dbUrl(), async (c) =>
      box.decrypt((await c.query<{ secret_encrypted: string }>('select secret_encrypted from webhook where id = $1', [hook.id])).rows[0]!.secret_encrypted),
    );
    // Every secret handed out is live: the current one, or retired by the rotation after it.
    expect([current, ...retired].sort()).toEqual([hook.secret, ...answers.map((r) => r.body.secret as string)].sort());
    expect(retired[retired.length - 1]).toBe(hook.secret);
    held = answers.map((r) => r.body.secret as string);
    const req = await deliverOne(tenant, hook.id);
    expect(signatures(req)).toHaveLength(4);
  });

  it("the worker's sweep deletes the expired secrets of webhooks nothing is sent to", async () => {
    const { api: first, hook: idle } = await setUp('rot-sweep');
    const { api: second, hook: live } = await setUp('rot-sweep-live');
    expect((await rotate(first, idle.id, { grace_period_seconds: 3600 })).status).toBe(200);
    expect((await rotate(second, live.id, { grace_period_seconds: 3600 })).status).toBe(200);
    await withPg(dbUrl(), (c) => c.query(`update webhook_previous_secret set expires_at = now() - interval '1 second' where webhook_id = $1`, [idle.id]));
    expect(await deleteExpiredSecrets(gw.gateway.db.orm.em.fork(), null)).toBe(1);
    expect(await previousRows(idle.id)).toEqual([]);
    expect(await previousRows(live.id)).toHaveLength(1);
  });

  describe('refusals', () => {
    let api: TestClient;
    let hook: CreatedWebhook;
    beforeAll(async () => {
      ({ api, hook } = await setUp('rot-refuse'));
    });

    /** Nothing changed: the webhook still signs with its one secret. */
    async function expectUnrotated() {
      expect(await previousRows(hook.id)).toEqual([]);
      const stored = await withPg(dbUrl(), async (c) =>
        (await c.query<{ secret_encrypted: string }>('select secret_encrypted from webhook where id = $1', [hook.id])).rows[0]!,
      );
      expect(createSecretBox(TEST_ENCRYPTION_KEY).decrypt(stored.secret_encrypted)).toBe(hook.secret);
    }

    it.each([
      ['a secret without the prefix', { secret: Buffer.alloc(24, 7).toString('base64') }, 'secret'],
      ['a secret that is too short', { secret: 'whsec_abc' }, 'secret'],
      ['an empty secret', { secret: '' }, 'secret'],
      ['a negative grace period', { grace_period_seconds: -1 }, 'grace_period_seconds'],
      ['a grace period over 7 days', { grace_period_seconds: 604_801 }, 'grace_period_seconds'],
      ['a fractional grace period', { grace_period_seconds: 1.5 }, 'grace_period_seconds'],
      ['a grace period past 32 bits', { grace_period_seconds: 1e12 }, 'grace_period_seconds'],
    ])('%s is 422 naming the field', async (_label, body, field) => {
      for (const id of [hook.id, UNKNOWN_ID]) {
        const res = await rotate(api, id, body);
        expect(res.status, res.text).toBe(422);
        expect(res.body).toMatchObject({ code: 'VALIDATION_ERROR', details: { field } });
      }
      await expectUnrotated();
    });

    it.each([
      ['a numeric secret', { secret: 5 }],
      ['a null secret', { secret: null }],
      ['a grace period as a string', { grace_period_seconds: '60' }],
      ['a null grace period', { grace_period_seconds: null }],
      ['an array body', [1]],
    ])('%s is 400', async (_label, body) => {
      const res = await rotate(api, hook.id, body);
      expect(res.status, res.text).toBe(400);
      expect(res.body.code).toBe('BAD_REQUEST');
      await expectUnrotated();
    });

    it('malformed JSON is 400, a body that is not JSON 415', async () => {
      const path = `/api/v1/webhooks/${hook.id}/secret/rotate`;
      const malformed = await api.request('POST', path, { rawBody: '{"secret":', headers: { 'content-type': 'application/json' } });
      expect(malformed.status).toBe(400);
      const text = await api.request('POST', path, { rawBody: 'secret=x', headers: { 'content-type': 'text/plain' } });
      expect(text.status).toBe(415);
      await expectUnrotated();
    });

    it("unknown, malformed and another tenant's ids are 404", async () => {
      const stranger = client(gw.url, await userToken(uniqueTenant('rot-stranger')));
      for (const [caller, id] of [[api, UNKNOWN_ID], [api, 'nope'], [stranger, hook.id]] as const) {
        const res = await rotate(caller, id, { grace_period_seconds: 60 });
        expect(res.status, res.text).toBe(404);
        expect(res.body.code).toBe('NOT_FOUND');
      }
      const gql = await stranger.graphql(`mutation ($id: ID!) { rotateWebhookSecret(id: $id) { secret } }`, { id: hook.id });
      expect(gql.body.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
      await expectUnrotated();
    });

    it('a disabled webhook is 409: enable it first', async () => {
      expect((await api.put(`/api/v1/webhooks/${hook.id}`, { enabled: false })).status).toBe(200);
      const res = await rotate(api, hook.id);
      expect(res.status, res.text).toBe(409);
      expect(res.body.code).toBe('CONFLICT');
      expect(res.body.error).toMatch(/enable it first/);
      await expectUnrotated();
      expect((await api.put(`/api/v1/webhooks/${hook.id}`, { enabled: true })).status).toBe(200);
    });

    it('a token without a tenant may not rotate', async () => {
      const res = await rotate(service, hook.id);
      expect(res.status, res.text).toBe(403);
      await expectUnrotated();
    });
  });

  describe('the GraphQL mutation rotateWebhookSecret', () => {
    const ROTATE = `mutation ($id: ID!, $input: RotateWebhookSecretInput) {
      rotateWebhookSecret(id: $id, input: $input) { secret previousSecretExpiresAt }
    }`;

    it('rotates like the REST route, with camelCase fields', async () => {
      const { api, tenant, hook } = await setUp('rot-gql');
      const before = Date.now();
      const res = await api.graphql(ROTATE, { id: hook.id, input: { gracePeriodSeconds: 120 } });
      expect(res.body.errors, res.text).toBeUndefined();
      const rotated = res.body.data.rotateWebhookSecret;
      expect(Object.keys(rotated).sort()).toEqual(['previousSecretExpiresAt', 'secret']);
      expect(rotated.secret).toMatch(SECRET_FORMAT);
      expect(Date.parse(rotated.previousSecretExpiresAt)).toBeGreaterThanOrEqual(before + 120_000 - 5_000);
      expect(Date.parse(rotated.previousSecretExpiresAt)).toBeLessThanOrEqual(Date.now() + 120_000 + 5_000);

      held = [rotated.secret];
      const req = await deliverOne(tenant, hook.id);
      expect(signatures(req)).toEqual([expectedSignature(req, rotated.secret), expectedSignature(req, hook.secret)]);

      const noInput = await api.graphql(ROTATE, { id: hook.id });
      expect(noInput.body.errors, noInput.text).toBeUndefined();
      expect(noInput.body.data.rotateWebhookSecret.secret).toMatch(SECRET_FORMAT);
      expect((await previousRows(hook.id)).length).toBe(2);
    });

    it('refuses bad values as VALIDATION_ERROR naming the field', async () => {
      const { api, hook } = await setUp('rot-gql-bad');
      for (const [input, field] of [
        [{ gracePeriodSeconds: -1 }, 'grace_period_seconds'],
        [{ gracePeriodSeconds: 604_801 }, 'grace_period_seconds'],
        [{ secret: 'whsec_short' }, 'secret'],
      ] as const) {
        const res = await api.graphql(ROTATE, { id: hook.id, input });
        expect(res.body.errors?.[0]?.extensions?.['code'], res.text).toBe('VALIDATION_ERROR');
        expect((res.body.errors?.[0]?.extensions?.['details'] as { field?: string }).field).toBe(field);
      }
      expect(await previousRows(hook.id)).toEqual([]);
    });
  });
});
