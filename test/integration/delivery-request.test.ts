import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceToken, userToken } from '../helpers/auth.js';
import { createWebhook, newSecret, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { answer, startReceiver, type ReceivedRequest, type Receiver } from '../helpers/receiver.js';

const packageVersion = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** The receiver-side check of the README's Node receiver, over the raw bytes received. */
function verifyInfraAuditSignature(rawBody: string, signatureHeader: string, secret: string): boolean {
  const raw = Buffer.from(rawBody, 'utf8');
  const expected = 'sha256=' + createHmac('sha256', secret).update(raw).digest('hex');
  const given = signatureHeader;
  return given.length === expected.length && timingSafeEqual(Buffer.from(given), Buffer.from(expected));
}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

describe('the delivery request (CONTRACT.md section 2)', () => {
  let gw: TestGateway;
  let receiver: Receiver;
  let service: TestClient;

  beforeAll(async () => {
    // Retries a little over a second apart, so each attempt falls in a later unix second and the
    // freshness of webhook-timestamp is visible.
    gw = await startTestGateway({ WEBHOOK_RETRY_SCHEDULE: '1100ms,1100ms', WORKER_POLL_INTERVAL: '50ms' });
    receiver = await startReceiver();
    service = client(gw.url, await serviceToken());
  });
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  const headersOf = (r: ReceivedRequest) => r.headers as Record<string, string>;

  it('POSTs the documented envelope with every documented header, signed with the caller-supplied secret', async () => {
    const tenant = uniqueTenant('req');
    const api = client(gw.url, await userToken(tenant));
    const secret = newSecret();
    const hook = await createWebhook(api, { url: `${receiver.url}/hooks/in?source=ia`, events: ['drift.detected'], secret });
    expect(hook.secret).toBe(secret);
    await receiver.waitFor(1, { match: (r) => r.json?.webhook_id === hook.id && r.json?.event === 'ping' });

    const data = { resource: 'sg-1', changes: [{ field: 'ingress', from: null, to: '0.0.0.0/0' }], note: 'ünïcødé ✓', n: 1.5 };
    const before = Date.now();
    const published = await service.post('/api/v1/events', { event: 'drift.detected', data, tenant_id: tenant });
    const after = Date.now();
    expect(published.status, published.text).toBe(202);

    const [req] = await receiver.waitFor(1, { match: (r) => r.json?.webhook_id === hook.id && r.json?.event === 'drift.detected' });
    const h = headersOf(req!);
    expect(req!.method).toBe('POST');
    expect(req!.path).toBe('/hooks/in?source=ia');

    const envelope = JSON.parse(req!.body) as Record<string, unknown>;
    expect(Object.keys(envelope).sort()).toEqual(['data', 'delivery_id', 'event', 'timestamp', 'webhook_id']);
    expect(envelope['event']).toBe('drift.detected');
    expect(envelope['webhook_id']).toBe(hook.id);
    expect(envelope['delivery_id']).toMatch(/^del_[A-Za-z0-9_-]{20}$/);
    expect(envelope['data']).toEqual(data);
    expect(envelope['timestamp']).toMatch(ISO_UTC);
    const publishedAt = Date.parse(envelope['timestamp'] as string);
    expect(publishedAt).toBeGreaterThanOrEqual(before - 5);
    expect(publishedAt).toBeLessThanOrEqual(after + 5);

    expect(h['content-type']).toBe('application/json');
    expect(h['user-agent']).toBe(`InfraAudit-Webhooks/${packageVersion}`);
    expect(h['x-infraaudit-event']).toBe('drift.detected');
    expect(h['x-infraaudit-delivery']).toBe(envelope['delivery_id']);
    expect(h['x-infraaudit-attempt']).toBe('1');
    expect(h['webhook-id']).toBe(envelope['delivery_id']);
    expect(h['webhook-timestamp']).toMatch(/^\d+$/);
    expect(Math.abs(Number(h['webhook-timestamp']) - req!.at / 1000)).toBeLessThanOrEqual(2);

    expect(h['x-infraaudit-signature']).toMatch(/^sha256=[0-9a-f]{64}$/);
    expect(verifyInfraAuditSignature(req!.body, h['x-infraaudit-signature']!, secret)).toBe(true);
    // The key is the whole secret, prefix included: the base64 part alone does not verify.
    expect(verifyInfraAuditSignature(req!.body, h['x-infraaudit-signature']!, secret.slice('whsec_'.length))).toBe(false);
    expect(verifyInfraAuditSignature(req!.body.replace('sg-1', 'sg-2'), h['x-infraaudit-signature']!, secret)).toBe(false);
    expect(verifyInfraAuditSignature(req!.body, h['x-infraaudit-signature']!, newSecret())).toBe(false);

    expect(h['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]+={0,2}$/);
    const official = new StandardWebhook(secret);
    expect(official.verify(req!.body, h)).toEqual(envelope);
    expect(() => official.verify(req!.body.replace('sg-1', 'sg-2'), h)).toThrow();
    expect(() => new StandardWebhook(newSecret()).verify(req!.body, h)).toThrow();

    // Nothing sent carries the secret.
    expect(JSON.stringify(req!.headers)).not.toContain(secret.slice('whsec_'.length));
    expect(req!.body).not.toContain(secret.slice('whsec_'.length));
  });

  it('a generated secret signs too, and the ping carries the same header set', async () => {
    const tenant = uniqueTenant('req-ping');
    const api = client(gw.url, await userToken(tenant));
    const hook = await createWebhook(api, { url: `${receiver.url}/ping-check`, events: ['alert.created'] });
    expect(hook.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    const [ping] = await receiver.waitFor(1, { match: (r) => r.json?.webhook_id === hook.id });
    const h = headersOf(ping!);
    expect(ping!.method).toBe('POST');
    expect(JSON.parse(ping!.body)).toEqual({
      event: 'ping',
      timestamp: expect.stringMatching(ISO_UTC),
      webhook_id: hook.id,
      delivery_id: expect.stringMatching(/^del_/),
      data: { webhook_id: hook.id, message: 'Webhook endpoint verified' },
    });
    expect(h['x-infraaudit-event']).toBe('ping');
    expect(h['x-infraaudit-attempt']).toBe('1');
    expect(h['x-infraaudit-delivery']).toBe(ping!.json.delivery_id);
    expect(h['webhook-id']).toBe(ping!.json.delivery_id);
    expect(h['user-agent']).toBe(`InfraAudit-Webhooks/${packageVersion}`);
    expect(h['content-type']).toBe('application/json');
    expect(verifyInfraAuditSignature(ping!.body, h['x-infraaudit-signature']!, hook.secret)).toBe(true);
    expect(new StandardWebhook(hook.secret).verify(ping!.body, h)).toEqual(ping!.json);
  });

  it('across retries: same delivery_id, envelope and body; fresh webhook-timestamp; attempt counts up', async () => {
    const tenant = uniqueTenant('req-retry');
    const api = client(gw.url, await userToken(tenant));
    const secret = newSecret();
    const hook = await createWebhook(api, { url: `${receiver.url}/retry`, events: ['alert.created'], secret });
    const isAlert = (r: ReceivedRequest) => r.json?.webhook_id === hook.id && r.json?.event === 'alert.created';
    let seen = 0;
    receiver.respond((r, n, res) => answer(isAlert(r) && ++seen <= 2 ? 503 : 200)(r, n, res));

    const published = await service.post('/api/v1/events', { event: 'alert.created', data: { severity: 'high' }, tenant_id: tenant });
    expect(published.status).toBe(202);
    const tries = await receiver.waitFor(3, { match: isAlert, timeoutMs: 20_000 });
    receiver.respond(answer(200, 'ok'));

    expect(tries.map((r) => headersOf(r)['x-infraaudit-attempt'])).toEqual(['1', '2', '3']);
    expect(new Set(tries.map((r) => r.body)).size).toBe(1);
    expect(new Set(tries.map((r) => r.json.delivery_id)).size).toBe(1);
    expect(new Set(tries.map((r) => r.json.timestamp)).size).toBe(1);
    expect(new Set(tries.map((r) => headersOf(r)['x-infraaudit-delivery'])).size).toBe(1);
    expect(new Set(tries.map((r) => headersOf(r)['webhook-id'])).size).toBe(1);
    expect(new Set(tries.map((r) => headersOf(r)['x-infraaudit-signature'])).size).toBe(1);

    const stamps = tries.map((r) => Number(headersOf(r)['webhook-timestamp']));
    expect(stamps[1]!).toBeGreaterThan(stamps[0]!);
    expect(stamps[2]!).toBeGreaterThan(stamps[1]!);
    for (const r of tries) {
      expect(Math.abs(Number(headersOf(r)['webhook-timestamp']) - r.at / 1000)).toBeLessThanOrEqual(2);
      expect(new StandardWebhook(secret).verify(r.body, headersOf(r))).toEqual(r.json);
      expect(verifyInfraAuditSignature(r.body, headersOf(r)['x-infraaudit-signature']!, secret)).toBe(true);
    }
    // Each attempt's webhook-signature covers its own timestamp: an old one does not verify a new one.
    expect(new Set(tries.map((r) => headersOf(r)['webhook-signature'])).size).toBe(3);
    const replayed = { ...headersOf(tries[2]!), 'webhook-signature': headersOf(tries[0]!)['webhook-signature']! };
    expect(() => new StandardWebhook(secret).verify(tries[2]!.body, replayed)).toThrow();
  });
});
