// A database that stops answering, seen through a TCP proxy between the gateway and Postgres:
// first the proxy swallows everything (a network fault: /readyz must turn 503 within 5 s), then it
// leaves the connections it had half-open, accepting bytes and never answering, while new ones
// work (a failover: the worker must deliver again without a restart). The same again over TLS,
// where the proxy ends the encryption the way a Postgres server does.
import { readFileSync } from 'node:fs';
import { createServer, Socket, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { createTestDatabase, onRealPostgres, type TestDatabase } from '../helpers/database.js';
import { createWebhook, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { client, type TestClient } from '../helpers/http.js';
import { startReceiver, type Receiver } from '../helpers/receiver.js';

interface SilenceProxy {
  port: number;
  /** Every connection, open or new, stops carrying anything (and none is closed). */
  swallowAll(): void;
  /** Connections from now on are carried again; those opened before stay silent. */
  carryNew(): void;
  /** Connections that came over TLS. */
  readonly secured: number;
  close(): Promise<void>;
}

const TLS_KEYS = {
  key: readFileSync(new URL('../fixtures/localhost-key.pem', import.meta.url)),
  cert: readFileSync(new URL('../fixtures/localhost-cert.pem', import.meta.url)),
};

/** Postgres's SSLRequest: length 8, code 80877103. */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]);

/**
 * Answers a client's SSLRequest with 'S' and ends TLS as a Postgres server would, handing on the
 * decrypted stream (the server behind the proxy then sees a plain connection).
 */
function acceptTls(socket: Socket, carry: (stream: Duplex) => void, secured: () => void): void {
  socket.once('data', (first: Buffer) => {
    if (!first.subarray(0, 8).equals(SSL_REQUEST)) {
      socket.destroy();
      return;
    }
    socket.write('S');
    const secure = new TLSSocket(socket, { isServer: true, ...TLS_KEYS });
    secure.on('error', () => socket.destroy());
    secure.once('secure', secured);
    carry(secure);
  });
}

async function startSilenceProxy(target: { host: string; port: number }, tls: boolean): Promise<SilenceProxy> {
  const pairs = new Set<{ client: Socket; upstream: Socket | undefined; silent: boolean }>();
  let newSilent = false;
  let secured = 0;
  const server: Server = createServer((clientSocket) => {
    const pair = { client: clientSocket, upstream: undefined as Socket | undefined, silent: newSilent };
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      clientSocket.destroy();
      pair.upstream?.destroy();
    };
    clientSocket.on('error', drop);
    clientSocket.on('close', drop);
    // A silent connection is accepted and read, and nothing it sends goes anywhere.
    if (pair.silent) {
      clientSocket.on('data', () => undefined);
      return;
    }
    const carry = (stream: Duplex) => {
      const upstream = new Socket();
      pair.upstream = upstream;
      upstream.connect(target.port, target.host);
      upstream.on('error', drop);
      upstream.on('close', () => {
        if (!pair.silent) drop();
      });
      upstream.on('data', (chunk: Buffer) => {
        if (!pair.silent) stream.write(chunk);
      });
      stream.on('data', (chunk: Buffer) => {
        if (!pair.silent) upstream.write(chunk);
      });
    };
    if (tls) acceptTls(clientSocket, carry, () => (secured += 1));
    else carry(clientSocket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    swallowAll() {
      newSilent = true;
      for (const pair of pairs) pair.silent = true;
    },
    carryNew() {
      newSilent = false;
    },
    get secured() {
      return secured;
    },
    async close() {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream?.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const EVENT = 'drift.detected';

describe.skipIf(!onRealPostgres).each([
  { link: 'a plain connection', tls: false },
  { link: 'TLS', tls: true },
])('a database that stops answering, over $link (needs a real Postgres: set DATABASE_URL)', ({ tls }) => {
  let database: TestDatabase;
  let proxy: SilenceProxy;
  let gw: TestGateway;
  let receiver: Receiver;
  let api: TestClient;
  let token: string;
  let webhookId: string;

  beforeAll(async () => {
    database = await createTestDatabase();
    const direct = new URL(database.url!);
    proxy = await startSilenceProxy({ host: direct.hostname, port: Number(direct.port || 5432) }, tls);
    const viaProxy = new URL(direct);
    viaProxy.port = String(proxy.port);
    // The test's certificate is its own, so the gateway is told not to check it.
    if (tls) viaProxy.searchParams.set('sslmode', 'no-verify');
    gw = await startTestGateway(
      {
        DATABASE_URL: viaProxy.toString(),
        DATABASE_QUERY_TIMEOUT: '1s',
        WORKER_POLL_INTERVAL: '100ms',
        WEBHOOK_TIMEOUT: '2s',
        WORKER_LEASE_MARGIN: '1s',
        WEBHOOK_RETRY_SCHEDULE: '200ms,200ms,200ms,200ms,200ms',
      },
      database,
    );
    receiver = await startReceiver();
    token = await userToken(uniqueTenant('silence'));
    api = client(gw.url, token);
    webhookId = (await createWebhook(api, { url: `${receiver.url}/silence`, events: [EVENT] })).id;
  });

  afterAll(async () => {
    await receiver?.close();
    await proxy?.close();
    await gw?.close();
  });

  const readyStatus = async () => {
    const res = await fetch(`${gw.url}/readyz`, { signal: AbortSignal.timeout(5_000) });
    return res.status;
  };

  const delivered = (n: number) => (r: { json?: any }) => r.json?.webhook_id === webhookId && r.json?.event === EVENT && r.json?.data?.n === n;

  it('answers /readyz 503 within 5 s once the database goes silent, and the worker stops completing claim cycles', async () => {
    // Before: delivering, and ready.
    expect((await api.post('/api/v1/events', { event: EVENT, data: { n: 0 } })).status).toBe(202);
    await receiver.waitFor(1, { match: delivered(0), timeoutMs: 15_000 });
    expect(await readyStatus()).toBe(200);
    if (tls) expect(proxy.secured).toBeGreaterThan(0);

    proxy.swallowAll();
    const silentSince = Date.now();
    await expect.poll(readyStatus, { timeout: 5_000, interval: 100 }).toBe(503);
    expect(Date.now() - silentSince).toBeLessThan(5_000);
    // Each answer comes within the probe's own limit, not the database's.
    const asked = Date.now();
    expect(await readyStatus()).toBe(503);
    expect(Date.now() - asked).toBeLessThan(5_000);
    // The signal readiness also watches: the worker's claim loop no longer comes round.
    const scheduler = gw.gateway.scheduler!;
    await expect.poll(() => Date.now() - scheduler.lastCycleAt, { timeout: 10_000 }).toBeGreaterThan(2_000);
    // Requests meanwhile are answered (with an error) within the time limit, leaving MikroORM's
    // connections with a statement that will never be answered.
    const reads = await Promise.all(
      Array.from({ length: 3 }, async () => {
        const started = Date.now();
        const res = await fetch(`${gw.url}/api/v1/webhooks`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
        return { status: res.status, ms: Date.now() - started };
      }),
    );
    for (const read of reads) {
      expect(read.status).toBe(500);
      expect(read.ms).toBeLessThan(5_000);
    }
  });

  it('delivers again without a restart once new connections work, while the old ones stay half-open', async () => {
    proxy.carryNew();
    // The first publishes may meet a connection that went silent; each is answered within the
    // time limit, and one soon goes through on a fresh connection.
    let n = 0;
    await expect
      .poll(
        async () => {
          n += 1;
          return (await api.post('/api/v1/events', { event: EVENT, data: { n } })).status;
        },
        { timeout: 20_000, interval: 200 },
      )
      .toBe(202);
    await receiver.waitFor(1, { match: delivered(n), timeoutMs: 20_000 });
    // MikroORM's pool answers again too: the connections left waiting were dropped, not reused.
    await expect.poll(async () => (await api.get('/api/v1/webhooks')).status, { timeout: 10_000, interval: 200 }).toBe(200);
    for (let i = 0; i < 5; i += 1) expect((await api.get('/api/v1/webhooks')).status).toBe(200);
    // And keeps delivering, promptly.
    expect((await api.post('/api/v1/events', { event: EVENT, data: { n: 1000 } })).status).toBe(202);
    await receiver.waitFor(1, { match: delivered(1000), timeoutMs: 10_000 });
    await expect.poll(readyStatus, { timeout: 10_000, interval: 200 }).toBe(200);
  });
});
