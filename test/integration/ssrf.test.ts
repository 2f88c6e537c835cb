import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { createServer, isIP, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSender, type OutgoingDelivery } from '../../src/worker/sender.js';
import { userToken } from '../helpers/auth.js';
import { createWebhook, historyOf, newSecret, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';

/** A name other than localhost that this machine's hosts file maps to 127.0.0.1, if there is one. */
async function loopbackAlias(): Promise<string | undefined> {
  let hosts: string;
  try {
    hosts = readFileSync('/etc/hosts', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of hosts.split('\n')) {
    const [address, ...names] = line.replace(/#.*/, '').trim().split(/\s+/);
    if (address !== '127.0.0.1') continue;
    for (const name of names) {
      const lower = name.toLowerCase();
      if (lower === 'localhost' || lower.endsWith('.localhost') || !/^[a-z0-9.-]+$/.test(lower)) continue;
      const resolved = await lookup(name, { all: true }).catch(() => []);
      if (resolved.length > 0 && resolved.every((a) => a.address === '127.0.0.1')) return name;
    }
  }
  return undefined;
}

/** A TCP listener that only counts connections: whatever the protocol, nothing reaches it unseen. */
async function startConnectionCounter(): Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
  let count = 0;
  const server: Server = createServer((socket) => {
    count += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => count,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const alias = await loopbackAlias();

describe('send-time address policy in the sender', () => {
  let receiver: Receiver;
  const strict = createSender({ timeoutMs: 2_000, allowInsecureUrls: false, responseBodyLimitBytes: 1024 });
  const insecure = createSender({ timeoutMs: 2_000, allowInsecureUrls: true, responseBodyLimitBytes: 1024 });

  beforeAll(async () => {
    receiver = await startReceiver();
  });
  afterAll(async () => {
    strict.close();
    insecure.close();
    await receiver?.close();
  });

  const delivery = (url: string): OutgoingDelivery => ({
    deliveryId: 'del_AAAAAAAAAAAAAAAAAAAA',
    webhookId: 'wh_AAAAAAAAAAAAAAAAAAAA',
    url,
    secrets: [newSecret()],
    eventType: 'drift.detected',
    body: JSON.stringify({ url }),
    attempt: 1,
  });

  it('refuses loopback by name and by every spelling of the literal, before connecting', async () => {
    const targets = [
      `http://localhost:${receiver.port}/`,
      `http://127.0.0.1:${receiver.port}/`,
      `http://127.1:${receiver.port}/`,
      `http://2130706433:${receiver.port}/`,
      `http://0x7f.0.0.1:${receiver.port}/`,
      `http://0.0.0.0:${receiver.port}/`,
      `http://[::1]:${receiver.port}/`,
      `http://[::ffff:127.0.0.1]:${receiver.port}/`,
      `https://localhost:${receiver.port}/`,
      ...(alias ? [`http://${alias}:${receiver.port}/`] : []),
    ];
    for (const url of targets) {
      const result = await strict.send(delivery(url));
      expect(result, url).toMatchObject({ ok: false, errorClass: 'blocked', responseCode: null });
      expect(result.error, url).toMatch(/private or reserved address/);
      // For a name, what it resolved to is not echoed back to the webhook's owner.
      if (isIP(new URL(url).hostname.replace(/^\[|\]$/g, '')) === 0) expect(result.error, url).not.toMatch(/127\.0\.0\.1|::1/);
    }
    // A send that is allowed goes through on the same receiver: only it arrives.
    const allowed = await insecure.send(delivery(`http://127.0.0.1:${receiver.port}/allowed`));
    expect(allowed).toMatchObject({ ok: true, responseCode: 200, errorClass: null });
    await receiver.waitFor(1);
    expect(receiver.requests.map((r) => r.path)).toEqual(['/allowed']);
  });

  it('with allowInsecureUrls the same targets are reached', async () => {
    const before = receiver.requests.length;
    for (const url of [`http://localhost:${receiver.port}/by-name`, `http://127.0.0.1:${receiver.port}/by-literal`]) {
      const result = await insecure.send(delivery(url));
      expect(result, url).toMatchObject({ ok: true, responseCode: 200 });
    }
    expect(receiver.requests.slice(before).map((r) => r.path)).toEqual(['/by-name', '/by-literal']);
  });
});

describe('send-time address policy end to end (WEBHOOK_ALLOW_INSECURE_URLS=false)', () => {
  let gw: TestGateway;
  let api: TestClient;
  let counter: Awaited<ReturnType<typeof startConnectionCounter>>;

  beforeAll(async () => {
    gw = await startTestGateway({
      WEBHOOK_ALLOW_INSECURE_URLS: 'false',
      WEBHOOK_RETRY_SCHEDULE: '100ms',
      WORKER_POLL_INTERVAL: '50ms',
      WEBHOOK_TIMEOUT: '1s',
    });
    api = client(gw.url, await userToken(uniqueTenant('ssrf')));
    counter = await startConnectionCounter();
  });
  afterAll(async () => {
    await gw?.close();
    await counter?.close();
  });

  it('create refuses literal private hosts and localhost (422)', async () => {
    for (const url of [`https://localhost:${counter.port}/`, `https://127.0.0.1:${counter.port}/`, `https://[::1]:${counter.port}/`]) {
      const res = await api.post('/api/v1/webhooks', { name: 'x', url, events: ['drift.detected'] });
      expect(res.status, url).toBe(422);
      expect(res.body.code).toBe('VALIDATION_ERROR');
    }
  });

  it.skipIf(alias === undefined)('a public-looking name that resolves to loopback is refused when sending (hosts-file alias)', async () => {
    const hook = await createWebhook(api, { url: `https://${alias}:${counter.port}/hook`, events: ['drift.detected'] });
    const published = await api.post('/api/v1/events', { event: 'drift.detected', data: {} });
    expect(published.status).toBe(202);
    // The ping and the event, each tried twice (one retry), all refused.
    await expect.poll(async () => (await historyOf(api, hook.id)).length).toBe(4);
    for (const attempt of await historyOf(api, hook.id)) {
      expect(attempt).toMatchObject({ status: 'failed', error_class: 'blocked', response_code: null, response_body: null });
      expect(attempt.error).toBe(`refusing to connect to ${alias}: it is or resolves to a private or reserved address`);
    }
    expect(counter.connections()).toBe(0);
    const webhook = await api.get(`/api/v1/webhooks/${hook.id}`);
    expect(webhook.body.last_delivery_status).toBe('failed');
  });

  it('a stored URL pointing at localhost or a loopback literal is refused when sending', async () => {
    // The API refuses such URLs, so they are written straight into the row, as an old row or a
    // changed policy would leave them.
    const em = gw.gateway.db.orm.em.fork();
    for (const url of [`https://localhost:${counter.port}/`, `https://127.0.0.1:${counter.port}/`]) {
      const hook = await createWebhook(api, { url: 'https://receiver.example.com/hook', events: ['alert.created'], enabled: false });
      await em.getConnection().execute('update webhook set url = ?, enabled = true where id = ?', [url, hook.id], 'run');
      const published = await api.post('/api/v1/events', { event: 'alert.created', data: { url } });
      expect(published.status).toBe(202);
      await expect.poll(async () => (await historyOf(api, hook.id)).length).toBe(2);
      const attempts = await historyOf(api, hook.id);
      const host = new URL(url).hostname;
      for (const attempt of attempts) {
        expect(attempt, url).toMatchObject({ status: 'failed', error_class: 'blocked', response_code: null, event_type: 'alert.created' });
        expect(attempt.error).toBe(`refusing to connect to ${host}: it is or resolves to a private or reserved address`);
      }
      expect(attempts.map((a) => a.next_retry_at === null)).toEqual([true, false]);
    }
    expect(counter.connections()).toBe(0);
  });
});
