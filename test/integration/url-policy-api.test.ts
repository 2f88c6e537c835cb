import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';

const longUrl = (length: number) => {
  const base = 'https://example.com/';
  return base + 'a'.repeat(length - base.length);
};

const REFUSED: [string, string][] = [
  ['plain http', 'http://example.com/hook'],
  ['user and password', 'https://user:password@example.com/hook'],
  ['a user alone', 'https://user@example.com/hook'],
  ['2049 characters', longUrl(2049)],
  ['localhost', 'https://localhost/hook'],
  ['localhost with a trailing dot', 'https://localhost./hook'],
  ['a name under .localhost', 'https://api.localhost/hook'],
  ['127.0.0.1', 'https://127.0.0.1/hook'],
  ['127.0.0.1 with a port', 'https://127.0.0.1:8443/hook'],
  ['10.x', 'https://10.1.2.3/hook'],
  ['172.16.x', 'https://172.16.0.1/hook'],
  ['172.31.x', 'https://172.31.255.254/hook'],
  ['192.168.x', 'https://192.168.0.10/hook'],
  ['the cloud metadata address', 'https://169.254.169.254/latest/meta-data/'],
  ['link-local 169.254.x', 'https://169.254.1.1/hook'],
  ['CGNAT 100.64.x', 'https://100.64.0.1/hook'],
  ['multicast 224.x', 'https://224.0.0.1/hook'],
  ['0.0.0.0', 'https://0.0.0.0/hook'],
  ['broadcast', 'https://255.255.255.255/hook'],
  ['[::1]', 'https://[::1]/hook'],
  ['[::]', 'https://[::]/hook'],
  ['[fe80::1]', 'https://[fe80::1]/hook'],
  ['[fc00::1]', 'https://[fc00::1]/hook'],
  ['[fd00:ec2::254]', 'https://[fd00:ec2::254]/hook'],
  ['[::ffff:127.0.0.1]', 'https://[::ffff:127.0.0.1]/hook'],
  ['[::ffff:10.0.0.1]', 'https://[::ffff:10.0.0.1]/hook'],
  ['[64:ff9b::a9fe:a9fe] (NAT64 of the metadata address)', 'https://[64:ff9b::a9fe:a9fe]/hook'],
  ['[ff02::1]', 'https://[ff02::1]/hook'],
  ['decimal 2130706433', 'https://2130706433/hook'],
  ['octal 0177.0.0.1', 'https://0177.0.0.1/hook'],
  ['hex 0x7f000001', 'https://0x7f000001/hook'],
  ['hex dotted 0x7f.0.0.1', 'https://0x7f.0.0.1/hook'],
  ['short 127.1', 'https://127.1/hook'],
  ['short 10.1', 'https://10.1/hook'],
  ['a leading space', ' https://example.com/hook'],
  ['an embedded newline', 'https://example.com/ho\nok'],
  ['no host', 'https:///hook'],
  ['no slashes', 'https:example.com/hook'],
  ['one slash', 'https:/example.com/hook'],
  ['backslashes', 'https:\\\\example.com\\hook'],
  ['a javascript: URL', 'javascript:alert(1)'],
  ['a file: URL', 'file:///etc/passwd'],
];

const ACCEPTED: [string, string][] = [
  ['a public https URL', 'https://example.com/hook'],
  ['a public address literal', 'https://93.184.216.34/hook'],
  ['a public IPv6 literal', 'https://[2606:2800:220:1:248:1893:25c8:1946]/hook'],
  ['a port and a query', 'https://hooks.example.com:8443/in?source=infraudit'],
  ['exactly 2048 characters', longUrl(2048)],
];

describe('webhook URL policy (WEBHOOK_ALLOW_INSECURE_URLS=false)', () => {
  let gw: TestGateway;
  let api: TestClient;
  let seedId: string;
  let seedUrl: string;

  beforeAll(async () => {
    gw = await startTestGateway({ WEBHOOK_ALLOW_INSECURE_URLS: 'false' });
    api = client(gw.url, await userToken('tenant-url-policy'));
    const seed = await api.post('/api/v1/webhooks', { name: 'seed', url: 'https://seed.example.com/hook', events: ['ping'] });
    expect(seed.status).toBe(201);
    seedId = seed.body.id;
    seedUrl = seed.body.url;
  });
  afterAll(async () => {
    await gw?.close();
  });

  const ids = async () => ((await api.get('/api/v1/webhooks')).body as { id: string }[]).map((w) => w.id);

  it.each(REFUSED)('refuses %s at create with 422 naming url', async (_what, url) => {
    const before = await ids();
    const res = await api.post('/api/v1/webhooks', { name: 'x', url, events: ['drift.detected'] });
    expect(res.status, res.text).toBe(422);
    expect(res.body.code).toBe('VALIDATION_ERROR');
    expect(res.body.details).toEqual({ field: 'url' });
    expect(await ids()).toEqual(before);
  });

  it.each(REFUSED)('refuses %s at update with 422 naming url', async (_what, url) => {
    const res = await api.put(`/api/v1/webhooks/${seedId}`, { url });
    expect(res.status, res.text).toBe(422);
    expect(res.body.code).toBe('VALIDATION_ERROR');
    expect(res.body.details).toEqual({ field: 'url' });
    expect((await api.get(`/api/v1/webhooks/${seedId}`)).body.url).toBe(seedUrl);
  });

  it.each(REFUSED)('refuses %s over GraphQL createWebhook', async (_what, url) => {
    const res = await api.graphql(
      `mutation ($input: CreateWebhookInput!) { createWebhook(input: $input) { webhook { id } } }`,
      { input: { name: 'x', url, events: ['ping'] } },
    );
    expect(res.body.errors?.[0]?.extensions).toMatchObject({ code: 'VALIDATION_ERROR', details: { field: 'url' } });
  });

  it.each(ACCEPTED)('accepts %s at create and update', async (_what, url) => {
    const created = await api.post('/api/v1/webhooks', { name: 'ok', url, events: ['drift.detected'] });
    expect(created.status, created.text).toBe(201);
    expect(created.body.url).toBe(url);
    const updated = await api.put(`/api/v1/webhooks/${created.body.id}`, { url });
    expect(updated.status, updated.text).toBe(200);
    expect(updated.body.url).toBe(url);
  });
});

describe('webhook URL policy (WEBHOOK_ALLOW_INSECURE_URLS=true)', () => {
  let gw: TestGateway;
  let receiver: Server;
  let receiverUrl: string;

  beforeAll(async () => {
    receiver = createServer((_req, res) => res.writeHead(204).end());
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    gw = await startTestGateway({ WEBHOOK_ALLOW_INSECURE_URLS: 'true' });
  });
  afterAll(async () => {
    await gw?.close();
    await new Promise<void>((resolve) => receiver?.close(() => resolve()));
  });

  it('accepts http on a loopback receiver at create and update', async () => {
    const api = client(gw.url, await userToken('tenant-insecure'));
    const created = await api.post('/api/v1/webhooks', { name: 'local', url: receiverUrl, events: ['ping'] });
    expect(created.status, created.text).toBe(201);
    expect(created.body.url).toBe(receiverUrl);
    const updated = await api.put(`/api/v1/webhooks/${created.body.id}`, { url: 'http://localhost:9/other' });
    expect(updated.status, updated.text).toBe(200);
    expect(updated.body.url).toBe('http://localhost:9/other');
  });

  it('still refuses what is not a URL, other schemes, credentials and over-long URLs', async () => {
    const api = client(gw.url, await userToken('tenant-insecure'));
    for (const url of ['not a url', 'ftp://127.0.0.1/x', 'http://user:pw@127.0.0.1/x', longUrl(2049)]) {
      const res = await api.post('/api/v1/webhooks', { name: 'x', url, events: ['ping'] });
      expect(res.status, url).toBe(422);
      expect(res.body.details).toEqual({ field: 'url' });
    }
  });
});
