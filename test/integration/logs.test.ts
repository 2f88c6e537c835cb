import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceToken, userToken } from '../helpers/auth.js';
import { newSecret, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { answer, startReceiver, type Receiver } from '../helpers/receiver.js';

interface Sent {
  method: string;
  path: string;
  route: string;
  status: number;
  /** What the client sent as X-Request-ID, if anything. */
  sentId: string | undefined;
  /** What the gateway answered in X-Request-ID. */
  answeredId: string;
  authorization: string | undefined;
  body: any;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('logs: one JSON line per request and per attempt, never a secret', () => {
  let gw: TestGateway;
  let receiver: Receiver;
  const sent: Sent[] = [];

  beforeAll(async () => {
    gw = await startTestGateway({
      WEBHOOK_RETRY_SCHEDULE: '100ms,200ms',
      WORKER_POLL_INTERVAL: '50ms',
      LOG_LEVEL: 'debug',
    });
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  async function call(
    method: string,
    path: string,
    route: string,
    options: { token?: string; authorization?: string; body?: unknown; requestId?: string | null } = {},
  ): Promise<Sent> {
    const headers: Record<string, string> = {};
    const authorization = options.authorization ?? (options.token ? `Bearer ${options.token}` : undefined);
    if (authorization) headers['authorization'] = authorization;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    // Unless told otherwise, every request carries its own id so its log line can be found.
    const sentId = options.requestId === null ? undefined : (options.requestId ?? `logs-test-${randomBytes(6).toString('hex')}`);
    if (sentId !== undefined) headers['x-request-id'] = sentId;
    const res = await fetch(`${gw.url}${path}`, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    const text = await res.text();
    const record: Sent = {
      method,
      path,
      route,
      status: res.status,
      sentId,
      answeredId: res.headers.get('x-request-id') ?? '',
      authorization,
      body: text === '' ? undefined : JSON.parse(text),
    };
    sent.push(record);
    return record;
  }

  it('logs a full scenario without leaking any credential or signature', async () => {
    const tenant = uniqueTenant('logs');
    const jwt = await userToken(tenant);
    const service = await serviceToken();
    const secret = newSecret();

    let drifts = 0;
    receiver.respond((r, n, res) => answer(r.json?.event === 'drift.detected' && ++drifts === 1 ? 500 : 200)(r, n, res));

    const created = await call('POST', '/api/v1/webhooks', '/api/v1/webhooks', {
      token: jwt,
      body: { name: 'logged', url: `${receiver.url}/hook`, events: ['drift.detected', 'alert.created'], secret },
    });
    expect(created.status).toBe(201);
    expect(created.body.secret).toBe(secret);
    const webhookId = created.body.id as string;
    await receiver.waitFor(1, { match: (r) => r.json?.event === 'ping' });

    const keyCreated = await call('POST', '/api/v1/settings/api-keys', '/api/v1/settings/api-keys', {
      token: jwt,
      body: { name: 'ci' },
    });
    expect(keyCreated.status).toBe(201);
    const apiKey = keyCreated.body.key as string;
    expect(apiKey).toMatch(/^ia_live_/);

    const listed = await call('GET', '/api/v1/webhooks', '/api/v1/webhooks', { token: apiKey });
    expect(listed.status).toBe(200);
    expect(listed.body.map((w: any) => w.id)).toEqual([webhookId]);

    const viaGraphql = await call('POST', '/graphql', '/graphql', {
      token: jwt,
      body: { query: 'query($id: ID!) { webhook(id: $id) { id name } }', variables: { id: webhookId } },
    });
    expect(viaGraphql.status).toBe(200);
    expect(viaGraphql.body.data.webhook.id).toBe(webhookId);

    // A browser EventSource passes its token in the query string; the log keeps the path only.
    const queryToken = await userToken(tenant, { purpose: 'query-token' });
    const viaQuery = await call('GET', `/graphql?query=${encodeURIComponent('{ webhooks { id } }')}&token=${queryToken}`, '/graphql');
    expect(viaQuery.status).toBe(200);
    expect(viaQuery.body.data.webhooks.map((w: any) => w.id)).toEqual([webhookId]);

    const published = await call('POST', '/api/v1/events', '/api/v1/events', {
      token: service,
      body: { event: 'drift.detected', data: { resource: 'sg-1' }, tenant_id: tenant },
    });
    expect(published.status).toBe(202);
    const byKey = await call('POST', '/api/v1/events', '/api/v1/events', {
      token: apiKey,
      body: { event: 'alert.created', data: { severity: 'high' } },
    });
    expect(byKey.status).toBe(202);
    await receiver.waitFor(2, { match: (r) => r.json?.event === 'drift.detected' });
    await receiver.waitFor(1, { match: (r) => r.json?.event === 'alert.created' });

    const tested = await call('POST', `/api/v1/webhooks/${webhookId}/test`, '/api/v1/webhooks/:id/test', { token: jwt });
    expect(tested.status).toBe(200);
    expect(tested.body).toMatchObject({ event_type: 'ping', status: 'success' });

    const history = await call('GET', `/api/v1/webhooks/${webhookId}/deliveries`, '/api/v1/webhooks/:id/deliveries', { token: apiKey });
    expect(history.status).toBe(200);

    // Failed authentication: a wrong API key, a JWT signed with another secret, a malformed header.
    const wrongKey = `ia_live_${'Z'.repeat(32)}`;
    const forgedJwt = await userToken(tenant, {}, 'some-other-secret-that-is-long-enough-too');
    for (const [authorization, label] of [
      [`Bearer ${wrongKey}`, 'wrong key'],
      [`Bearer ${forgedJwt}`, 'forged jwt'],
      [`Token ${apiKey}`, 'malformed'],
    ] as const) {
      const refused = await call('GET', '/api/v1/webhooks', '/api/v1/webhooks', { authorization });
      expect(refused.status, label).toBe(401);
      expect(refused.body.code, label).toBe('UNAUTHORIZED');
    }

    // The request id: echoed when the client sends a usable one, generated otherwise.
    const generated = await call('GET', '/api/v1/webhooks', '/api/v1/webhooks', { token: jwt, requestId: null });
    expect(generated.answeredId).toMatch(UUID);
    const unusable = await call('GET', '/api/v1/webhooks', '/api/v1/webhooks', { token: jwt, requestId: 'has spaces in it' });
    expect(unusable.answeredId).toMatch(UUID);
    const tooLong = await call('GET', '/healthz', '/healthz', { requestId: 'x'.repeat(129) });
    expect(tooLong.answeredId).toMatch(UUID);
    await call('GET', '/health', '/health');
    const missingHook = await call('GET', '/api/v1/webhooks/wh_AAAAAAAAAAAAAAAAAAAA', '/api/v1/webhooks/:id', { token: jwt });
    expect(missingHook.status).toBe(404);

    // Every request is answered: wait for the retries and their log lines.
    const attemptLines = () => parsed().filter((l) => l.msg === 'delivery attempt');
    await expect.poll(() => attemptLines().length).toBe(receiver.requests.length);
    await expect.poll(() => parsed().filter((l) => l.msg === 'request').length).toBe(sent.length);

    // 1. Every line is one JSON object.
    const lines = parsed();
    expect(lines.length).toBe(gw.logs.length);

    // 2. One request line per request, with its id, method, route pattern, status and duration.
    const requestLines = lines.filter((l) => l.msg === 'request');
    for (const s of sent) {
      if (s.sentId !== undefined && /^[A-Za-z0-9._:-]{1,128}$/.test(s.sentId)) {
        expect(s.answeredId, s.path).toBe(s.sentId);
      } else {
        expect(s.answeredId, s.path).toMatch(UUID);
        expect(s.answeredId).not.toBe(s.sentId);
      }
      const mine = requestLines.filter((l) => l.requestId === s.answeredId);
      expect(mine, `${s.method} ${s.path}`).toHaveLength(1);
      const line = mine[0]!;
      expect(line).toMatchObject({ level: 30, method: s.method, route: s.route, status: s.status });
      expect(typeof line.durationMs).toBe('number');
      expect(line.durationMs).toBeGreaterThanOrEqual(0);
      expect(typeof line.time).toBe('string');
    }
    expect(new Set(sent.map((s) => s.answeredId)).size).toBe(sent.length);

    // 3. One attempt line per request the receiver got, naming webhook, delivery and attempt.
    expect(receiver.requests.length).toBeGreaterThanOrEqual(5);
    for (const r of receiver.requests) {
      const deliveryId = r.headers['x-infraaudit-delivery'];
      const attempt = Number(r.headers['x-infraaudit-attempt']);
      const matching = attemptLines().filter((l) => l.deliveryId === deliveryId && l.attempt === attempt);
      expect(matching, `${String(deliveryId)} #${attempt}`).toHaveLength(1);
      expect(matching[0]).toMatchObject({ webhookId: r.json.webhook_id, deliveryId: r.json.delivery_id, attempt });
      expect(typeof matching[0]!.attemptId).toBe('string');
    }
    const failed = attemptLines().filter((l) => l.ok === false);
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ responseCode: 500, eventType: 'drift.detected', attempt: 1 });

    // 4. Nothing secret anywhere in the logs.
    const forbidden = new Map<string, string>([
      ['webhook secret', secret],
      ['webhook secret key part', secret.slice('whsec_'.length)],
      ['API key', apiKey],
      ['API key body', apiKey.slice('ia_live_'.length)],
      ['wrong API key', wrongKey],
      ['user JWT', jwt],
      ['user JWT signature', jwt.split('.')[2]!],
      ['service JWT', service],
      ['service JWT signature', service.split('.')[2]!],
      ['forged JWT', forgedJwt],
      ['query-string JWT', queryToken],
    ]);
    for (const s of sent) if (s.authorization !== undefined) forbidden.set(`Authorization of ${s.method} ${s.path}`, s.authorization);
    for (const [i, r] of receiver.requests.entries()) {
      const sig = r.headers['x-infraaudit-signature'] as string;
      const std = r.headers['webhook-signature'] as string;
      expect(sig).toMatch(/^sha256=[0-9a-f]{64}$/);
      expect(std).toMatch(/^v1,/);
      forbidden.set(`X-InfraAudit-Signature #${i}`, sig);
      forbidden.set(`X-InfraAudit-Signature hex #${i}`, sig.slice('sha256='.length));
      forbidden.set(`webhook-signature #${i}`, std);
      forbidden.set(`webhook-signature base64 #${i}`, std.slice('v1,'.length));
    }
    const all = gw.logs.join('\n');
    for (const [what, value] of forbidden) {
      expect(all.includes(value), `${what} appears in the logs`).toBe(false);
    }
    expect(all).not.toMatch(/sha256=[0-9a-f]{64}/);
    expect(all).not.toMatch(/v1,[A-Za-z0-9+/]{40,}={0,2}/);
    expect(all).not.toMatch(/ia_live_[A-Za-z0-9]{32}/);
    expect(all).not.toMatch(/Bearer\s+\S{8,}/i);
  });

  function parsed(): any[] {
    return gw.logs.map((line) => {
      try {
        return JSON.parse(line);
      } catch {
        throw new Error(`log line is not JSON: ${line}`);
      }
    });
  }
});
