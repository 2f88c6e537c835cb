import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type JsonResponse, type TestClient } from '../helpers/http.js';

const MAX_BODY_BYTES = 2048;
const UNKNOWN_ID = 'wh_AAAAAAAAAAAAAAAAAAAA';

const valid = (overrides: Record<string, unknown> = {}) => ({
  name: 'Production receiver',
  url: 'https://receiver.example.com/infraudit',
  events: ['drift.detected', 'alert.created'],
  ...overrides,
});

/** The parts of a webhook a request can change (delivery outcome fields are the worker's). */
const stable = (w: Record<string, unknown>) => {
  const { last_delivery_status: _s, last_delivery_at: _a, ...rest } = w;
  return rest;
};

/** `{error, code}` or `{error, code, details}`, nothing else. */
function expectErrorBody(res: JsonResponse, status: number, code: string) {
  expect(res.status, res.text).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const keys = Object.keys(res.body ?? {}).sort();
  expect([['code', 'error'], ['code', 'details', 'error']]).toContainEqual(keys);
  expect(typeof res.body.error).toBe('string');
  expect(res.body.error.length).toBeGreaterThan(0);
  expect(res.body.code).toBe(code);
}

describe('webhook input validation', () => {
  let gw: TestGateway;
  let api: TestClient;
  let other: TestClient;
  let seedId: string;
  let before: Record<string, unknown>[];

  beforeAll(async () => {
    gw = await startTestGateway({ MAX_BODY_BYTES: String(MAX_BODY_BYTES), WEBHOOK_ALLOW_INSECURE_URLS: 'false' });
    api = client(gw.url, await userToken('tenant-validation'));
    other = client(gw.url, await userToken('tenant-other'));
    const seed = await api.post('/api/v1/webhooks', valid({ name: 'seed', events: ['ping', 'cost.anomaly'] }));
    expect(seed.status).toBe(201);
    seedId = seed.body.id;
    const foreign = await other.post('/api/v1/webhooks', valid({ name: 'foreign' }));
    expect(foreign.status).toBe(201);
  });
  afterAll(async () => {
    await gw?.close();
  });

  async function snapshot() {
    const list = await api.get('/api/v1/webhooks');
    expect(list.status).toBe(200);
    return (list.body as Record<string, unknown>[]).map(stable);
  }
  beforeEach(async () => {
    before = await snapshot();
    expect(before).toHaveLength(1);
  });
  async function expectNothingChanged() {
    expect(await snapshot()).toEqual(before);
  }

  const post = (rawBody: string, contentType = 'application/json') =>
    api.request('POST', '/api/v1/webhooks', { rawBody, headers: { 'content-type': contentType } });
  const put = (rawBody: string, id = seedId, contentType = 'application/json') =>
    api.request('PUT', `/api/v1/webhooks/${id}`, { rawBody, headers: { 'content-type': contentType } });

  describe('400 BAD_REQUEST', () => {
    it.each([
      ['malformed JSON', '{"name": "x", '],
      ['an empty JSON text', ' '],
      ['an array', JSON.stringify([valid()])],
      ['a string', JSON.stringify('drift.detected')],
      ['a number', '42'],
      ['null', 'null'],
      ['true', 'true'],
    ])('create with %s as the body', async (_what, raw) => {
      expectErrorBody(await post(raw), 400, 'BAD_REQUEST');
      await expectNothingChanged();
    });

    it.each([
      ['malformed JSON', '{"name": '],
      ['an array', '[]'],
      ['a string', '"x"'],
      ['a number', '7'],
      ['null', 'null'],
    ])('update with %s as the body', async (_what, raw) => {
      expectErrorBody(await put(raw), 400, 'BAD_REQUEST');
      await expectNothingChanged();
    });

    it('create with no body at all', async () => {
      const res = await api.request('POST', '/api/v1/webhooks', { headers: { 'content-type': 'application/json' } });
      expectErrorBody(res, 400, 'BAD_REQUEST');
      await expectNothingChanged();
    });

    it.each([
      ['name', 123],
      ['name', null],
      ['name', ['a']],
      ['url', 5],
      ['url', { href: 'https://example.com' }],
      ['events', 'drift.detected'],
      ['events', { 0: 'drift.detected' }],
      ['events', [1, 2]],
      ['events', [null]],
      ['enabled', 'yes'],
      ['enabled', 1],
      ['enabled', null],
      ['secret', 42],
    ])('create with %s = %j (wrong JSON type)', async (field, value) => {
      const res = await api.post('/api/v1/webhooks', valid({ [field]: value }));
      expectErrorBody(res, 400, 'BAD_REQUEST');
      expect(res.body.details?.field ?? '').toMatch(new RegExp(`^${field}`));
      await expectNothingChanged();
    });

    it.each([
      ['name', 123],
      ['name', null],
      ['url', 5],
      ['url', null],
      ['events', 'drift.detected'],
      ['events', null],
      ['enabled', 'yes'],
      ['enabled', null],
    ])('update with %s = %j (wrong JSON type)', async (field, value) => {
      const res = await api.put(`/api/v1/webhooks/${seedId}`, { [field]: value });
      expectErrorBody(res, 400, 'BAD_REQUEST');
      expect(res.body.details?.field ?? '').toMatch(new RegExp(`^${field}`));
      await expectNothingChanged();
    });

    it.each(['name', 'url', 'events'])('create without %s', async (field) => {
      const b: Record<string, unknown> = valid();
      delete b[field];
      const res = await api.post('/api/v1/webhooks', b);
      expectErrorBody(res, 400, 'BAD_REQUEST');
      expect(res.body.details).toEqual({ field });
      await expectNothingChanged();
    });

    it.each([
      ['name', ''],
      ['name', '   '],
      ['url', ''],
      ['events', []],
    ])('create with an empty %s (%j)', async (field, value) => {
      const res = await api.post('/api/v1/webhooks', valid({ [field]: value }));
      expectErrorBody(res, 400, 'BAD_REQUEST');
      expect(res.body.details).toEqual({ field });
      await expectNothingChanged();
    });

    it.each([
      ['name', ''],
      ['url', ''],
      ['events', []],
    ])('update with an empty %s (%j)', async (field, value) => {
      const res = await api.put(`/api/v1/webhooks/${seedId}`, { [field]: value });
      expectErrorBody(res, 400, 'BAD_REQUEST');
      expect(res.body.details).toEqual({ field });
      await expectNothingChanged();
    });
  });

  describe('422 VALIDATION_ERROR naming the field', () => {
    const invalidCreates: [string, Record<string, unknown>, string][] = [
      ['a URL that does not parse', { url: 'not a url' }, 'url'],
      ['a relative URL', { url: '/hooks/infraudit' }, 'url'],
      ['an http URL', { url: 'http://receiver.example.com/infraudit' }, 'url'],
      ['an ftp URL', { url: 'ftp://receiver.example.com/infraudit' }, 'url'],
      ['a loopback host', { url: 'https://127.0.0.1/hook' }, 'url'],
      ['localhost', { url: 'https://localhost/hook' }, 'url'],
      ['the metadata address', { url: 'https://169.254.169.254/latest/meta-data' }, 'url'],
      ['an unknown event', { events: ['drift.detected', 'drift.exploded'] }, 'events'],
      ['an empty event name', { events: [''] }, 'events'],
      ['an event name in the wrong case', { events: ['Drift.Detected'] }, 'events'],
      ['a name of 256 characters', { name: 'n'.repeat(256) }, 'name'],
      ['a name with a NUL character', { name: 'a\u0000b' }, 'name'],
      ['a name with an unpaired surrogate', { name: 'a\ud800b' }, 'name'],
      ['a URL with a NUL character', { url: 'https://example.com/a\u0000b' }, 'url'],
      ['an event name with a NUL character', { events: ['drift.detected\u0000'] }, 'events'],
      ['a secret without the prefix', { secret: Buffer.alloc(24, 7).toString('base64') }, 'secret'],
      ['a secret that is too short', { secret: 'whsec_abc' }, 'secret'],
      ['a secret that is too long', { secret: `whsec_${Buffer.alloc(32, 7).toString('base64')}` }, 'secret'],
      ['a secret in base64url', { secret: `whsec_${'-_'.repeat(16)}` }, 'secret'],
      ['an empty secret', { secret: '' }, 'secret'],
    ];
    it.each(invalidCreates)('create with %s', async (_what, overrides, field) => {
      const res = await api.post('/api/v1/webhooks', valid(overrides));
      expectErrorBody(res, 422, 'VALIDATION_ERROR');
      expect(res.body.details.field).toBe(field);
      await expectNothingChanged();
    });

    const invalidUpdates: [string, Record<string, unknown>, string][] = [
      ['a URL that does not parse', { url: 'not a url' }, 'url'],
      ['an http URL', { url: 'http://receiver.example.com/infraudit' }, 'url'],
      ['a private host', { url: 'https://10.0.0.8/hook' }, 'url'],
      ['an unknown event', { events: ['nope'] }, 'events'],
      ['an empty event name', { events: ['drift.detected', ''] }, 'events'],
      ['a name of 256 characters', { name: 'n'.repeat(256) }, 'name'],
      ['a name with a NUL character', { name: '\u0000' }, 'name'],
      ['a secret', { secret: `whsec_${Buffer.alloc(24, 1).toString('base64')}` }, 'secret'],
      ['a secret next to valid fields', { name: 'renamed', secret: 'whsec_x' }, 'secret'],
      ['a null secret', { secret: null }, 'secret'],
    ];
    it.each(invalidUpdates)('update with %s', async (_what, changes, field) => {
      const res = await api.put(`/api/v1/webhooks/${seedId}`, changes);
      expectErrorBody(res, 422, 'VALIDATION_ERROR');
      expect(res.body.details.field).toBe(field);
      await expectNothingChanged();
    });

    it('a refused update leaves the other given fields unapplied too', async () => {
      const res = await api.put(`/api/v1/webhooks/${seedId}`, { name: 'renamed', enabled: false, url: 'http://x.example.com' });
      expectErrorBody(res, 422, 'VALIDATION_ERROR');
      await expectNothingChanged();
    });

    it('accepts a name of exactly 255 characters (counted as characters, not bytes)', async () => {
      const api2 = client(gw.url, await userToken('tenant-validation-names'));
      const ascii = await api2.post('/api/v1/webhooks', valid({ name: 'n'.repeat(255) }));
      expect(ascii.status).toBe(201);
      expect(ascii.body.name).toHaveLength(255);
      const wide = await api2.post('/api/v1/webhooks', valid({ name: 'é'.repeat(255) }));
      expect(wide.status).toBe(201);
      expect(wide.body.name).toBe('é'.repeat(255));
    });
  });

  describe('415 UNSUPPORTED_MEDIA_TYPE', () => {
    it.each(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml'])(
      'create sent as %s',
      async (type) => {
        expectErrorBody(await post(JSON.stringify(valid()), type), 415, 'UNSUPPORTED_MEDIA_TYPE');
        await expectNothingChanged();
      },
    );

    it('update sent as text/plain', async () => {
      expectErrorBody(await put(JSON.stringify({ name: 'renamed' }), seedId, 'text/plain'), 415, 'UNSUPPORTED_MEDIA_TYPE');
      await expectNothingChanged();
    });

    it('create with a JSON body but no content type', async () => {
      const res = await api.request('POST', '/api/v1/webhooks', { rawBody: Buffer.from(JSON.stringify(valid())) });
      expectErrorBody(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
      await expectNothingChanged();
    });

    it('accepts application/json with a charset parameter', async () => {
      const api2 = client(gw.url, await userToken('tenant-validation-charset'));
      const res = await api2.request('POST', '/api/v1/webhooks', {
        rawBody: JSON.stringify(valid()),
        headers: { 'content-type': 'Application/JSON; charset=utf-8' },
      });
      expect(res.status).toBe(201);
    });
  });

  describe('413 PAYLOAD_TOO_LARGE', () => {
    const big = () => JSON.stringify(valid({ name: 'x', padding: 'p'.repeat(MAX_BODY_BYTES) }));

    it('create with a body over MAX_BODY_BYTES', async () => {
      expectErrorBody(await post(big()), 413, 'PAYLOAD_TOO_LARGE');
      await expectNothingChanged();
    });

    it('update with a body over MAX_BODY_BYTES', async () => {
      expectErrorBody(await put(JSON.stringify({ name: 'renamed', padding: 'p'.repeat(MAX_BODY_BYTES) })), 413, 'PAYLOAD_TOO_LARGE');
      await expectNothingChanged();
    });

    it('a chunked body without Content-Length that grows past the limit', async () => {
      const token = await userToken('tenant-validation');
      const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpRequest(
          `${gw.url}/api/v1/webhooks`,
          { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } },
          (r) => {
            let text = '';
            r.setEncoding('utf8').on('data', (c: string) => (text += c));
            r.on('end', () => resolve({ status: r.statusCode ?? 0, body: text }));
          },
        );
        req.on('error', reject);
        const text = big();
        req.write(text.slice(0, 1000));
        req.write(text.slice(1000));
        req.end();
      });
      expect(res.status).toBe(413);
      expect(JSON.parse(res.body)).toEqual({ error: expect.any(String), code: 'PAYLOAD_TOO_LARGE' });
      await expectNothingChanged();
    });

    it('accepts a body just under the limit', async () => {
      const api2 = client(gw.url, await userToken('tenant-validation-size'));
      const b = valid({ padding: '' });
      const room = MAX_BODY_BYTES - Buffer.byteLength(JSON.stringify(b));
      const res = await api2.post('/api/v1/webhooks', { ...b, padding: 'p'.repeat(room) });
      expect(Buffer.byteLength(JSON.stringify({ ...b, padding: 'p'.repeat(room) }))).toBe(MAX_BODY_BYTES);
      expect(res.status).toBe(201);
    });
  });

  describe('404 NOT_FOUND for ids that are not the caller’s', () => {
    const ids = () => [
      ['an unknown id', UNKNOWN_ID],
      ['a malformed id', 'not-an-id'],
      ['an id with the wrong prefix', 'key_AAAAAAAAAAAAAAAAAAAA'],
      ['an id too long', `${UNKNOWN_ID}A`],
    ];

    it('GET, PUT and DELETE answer 404', async () => {
      for (const [, id] of ids()) {
        expectErrorBody(await api.get(`/api/v1/webhooks/${id}`), 404, 'NOT_FOUND');
        expectErrorBody(await api.put(`/api/v1/webhooks/${id}`, { name: 'renamed' }), 404, 'NOT_FOUND');
        expectErrorBody(await api.delete(`/api/v1/webhooks/${id}`), 404, 'NOT_FOUND');
      }
      await expectNothingChanged();
    });

    it("another tenant's id answers exactly like an unknown one", async () => {
      const foreignId = (await other.get('/api/v1/webhooks')).body[0].id as string;
      const unknown = await api.get(`/api/v1/webhooks/${UNKNOWN_ID}`);
      for (const res of [
        await api.get(`/api/v1/webhooks/${foreignId}`),
        await api.put(`/api/v1/webhooks/${foreignId}`, { name: 'mine now' }),
        await api.delete(`/api/v1/webhooks/${foreignId}`),
      ]) {
        expectErrorBody(res, 404, 'NOT_FOUND');
        expect(res.body).toEqual(unknown.body);
      }
      const theirs = await other.get(`/api/v1/webhooks/${foreignId}`);
      expect(theirs.status).toBe(200);
      expect(theirs.body.name).toBe('foreign');
      await expectNothingChanged();
    });

    it('an unknown path is a 404 JSON error', async () => {
      expectErrorBody(await api.get('/api/v1/webhook'), 404, 'NOT_FOUND');
      expectErrorBody(await api.post('/api/v1/hooks', valid()), 404, 'NOT_FOUND');
      expectErrorBody(await api.get('/not/an/api/path'), 404, 'NOT_FOUND');
      await expectNothingChanged();
    });
  });

  describe('order of checks (README): 401, 415, 413, 400, 422, 404', () => {
    it('authentication comes before the content type', async () => {
      const res = await client(gw.url).request('POST', '/api/v1/webhooks', {
        rawBody: 'x',
        headers: { 'content-type': 'text/plain' },
      });
      expectErrorBody(res, 401, 'UNAUTHORIZED');
    });

    it('the content type comes before the size', async () => {
      expectErrorBody(await post('p'.repeat(MAX_BODY_BYTES * 2), 'text/plain'), 415, 'UNSUPPORTED_MEDIA_TYPE');
    });

    it('the size comes before the JSON syntax', async () => {
      expectErrorBody(await post(`{${'p'.repeat(MAX_BODY_BYTES * 2)}`), 413, 'PAYLOAD_TOO_LARGE');
    });

    it('JSON types come before values', async () => {
      const res = await api.post('/api/v1/webhooks', valid({ name: 123, url: 'ftp://x.example.com' }));
      expectErrorBody(res, 400, 'BAD_REQUEST');
      expect(res.body.details).toEqual({ field: 'name' });
    });

    it('values come before ids', async () => {
      const res = await api.put(`/api/v1/webhooks/${UNKNOWN_ID}`, { url: 'ftp://x.example.com' });
      expectErrorBody(res, 422, 'VALIDATION_ERROR');
      expect(res.body.details).toEqual({ field: 'url' });
      const secret = await api.put(`/api/v1/webhooks/${UNKNOWN_ID}`, { secret: 'whsec_x' });
      expectErrorBody(secret, 422, 'VALIDATION_ERROR');
      await expectNothingChanged();
    });
  });

  describe('the same rules over GraphQL (extensions.code)', () => {
    const CREATE = `mutation ($input: CreateWebhookInput!) { createWebhook(input: $input) { secret webhook { id } } }`;
    const UPDATE = `mutation ($id: ID!, $input: UpdateWebhookInput!) { updateWebhook(id: $id, input: $input) { id } }`;

    async function expectGraphQLError(res: JsonResponse, code: string, field?: string) {
      expect(res.body.errors, res.text).toBeDefined();
      expect(res.body.errors.length).toBeGreaterThan(0);
      const ext = res.body.errors[0].extensions ?? {};
      expect(ext['code'], res.text).toBe(code);
      if (field !== undefined) expect((ext['details'] as { field?: string } | undefined)?.field).toBe(field);
      expect(res.body.data?.createWebhook ?? res.body.data?.updateWebhook ?? null).toBeNull();
      await expectNothingChanged();
    }

    it.each([
      ['name', 123],
      ['name', null],
      ['url', 5],
      ['enabled', 'yes'],
      ['events', [1]],
    ])('createWebhook with %s = %j is BAD_REQUEST', async (field, value) => {
      await expectGraphQLError(await api.graphql(CREATE, { input: valid({ [field]: value }) }), 'BAD_REQUEST');
    });

    it.each([
      ['name', ''],
      ['url', ''],
      ['events', []],
    ])('createWebhook with an empty %s is BAD_REQUEST naming it', async (field, value) => {
      await expectGraphQLError(await api.graphql(CREATE, { input: valid({ [field]: value }) }), 'BAD_REQUEST', field);
    });

    it.each([
      ['url', { url: 'not a url' }],
      ['url', { url: 'http://receiver.example.com/infraudit' }],
      ['url', { url: 'https://192.168.1.1/hook' }],
      ['url', { url: 'https://[::1]/hook' }],
      ['events', { events: ['drift.exploded'] }],
      ['events', { events: [''] }],
      ['name', { name: 'n'.repeat(256) }],
      ['secret', { secret: 'whsec_short' }],
    ])('createWebhook with a bad %s (%j) is VALIDATION_ERROR', async (field, overrides) => {
      await expectGraphQLError(await api.graphql(CREATE, { input: valid(overrides) }), 'VALIDATION_ERROR', field);
    });

    it.each([
      ['url', { url: 'http://receiver.example.com/infraudit' }],
      ['url', { url: 'https://100.64.0.1/' }],
      ['events', { events: ['unknown.event'] }],
      ['name', { name: 'n'.repeat(256) }],
    ])('updateWebhook with a bad %s (%j) is VALIDATION_ERROR', async (field, input) => {
      await expectGraphQLError(await api.graphql(UPDATE, { id: seedId, input }), 'VALIDATION_ERROR', field);
    });

    it.each([
      ['name', ''],
      ['url', ''],
      ['events', []],
      ['name', null],
      ['enabled', null],
    ])('updateWebhook with an empty %s (%j) is BAD_REQUEST naming it', async (field, value) => {
      await expectGraphQLError(await api.graphql(UPDATE, { id: seedId, input: { [field]: value } }), 'BAD_REQUEST', field);
    });

    it('updateWebhook has no way to set a secret', async () => {
      await expectGraphQLError(
        await api.graphql(UPDATE, { id: seedId, input: { secret: `whsec_${Buffer.alloc(24).toString('base64')}` } }),
        'BAD_REQUEST',
      );
    });

    it('updateWebhook and deleteWebhook of unknown or malformed ids are NOT_FOUND', async () => {
      for (const id of [UNKNOWN_ID, 'nope']) {
        await expectGraphQLError(await api.graphql(UPDATE, { id, input: { name: 'x' } }), 'NOT_FOUND');
        const del = await api.graphql(`mutation ($id: ID!) { deleteWebhook(id: $id) }`, { id });
        expect(del.body.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
        const one = await api.graphql(`query ($id: ID!) { webhook(id: $id) { id } }`, { id });
        expect(one.body.errors?.[0]?.extensions?.['code']).toBe('NOT_FOUND');
      }
      await expectNothingChanged();
    });
  });
});
