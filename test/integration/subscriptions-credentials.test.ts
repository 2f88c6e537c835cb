// A live subscription ends with the credentials it was opened with: at its JWT's `exp`, and
// within 30 seconds of its API key's revocation (at once when the revocation's notice arrives,
// at the next periodic check when it does not). SSE streams close; WebSockets close with 4401.
import { createClient as createWsClient, type Client as WsClient } from 'graphql-ws';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { onRealPostgres } from '../helpers/database.js';
import { uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, TEST_JWT_SECRET, type TestGateway } from '../helpers/gateway.js';
import { client } from '../helpers/http.js';
import { eventSourceSubscribe, sseSubscribe, until, wsSubscribe, wsUrl, type Feed } from '../helpers/subscriptions.js';

/** A user token that expires `seconds` from now (whole seconds, as `exp` is). */
async function expiringToken(tenant: string, seconds: number): Promise<{ token: string; expiresAt: number }> {
  const exp = Math.floor(Date.now() / 1000) + seconds;
  const token = await new SignJWT({ role: 'authenticated' })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(tenant)
    .setIssuedAt()
    .setExpirationTime(exp)
    .sign(new TextEncoder().encode(TEST_JWT_SECRET));
  return { token, expiresAt: exp * 1000 };
}

/** A graphql-ws client that remembers the close codes of its socket. */
function watchedWsClient(url: string, token: string): { ws: WsClient; closeCodes: number[] } {
  const closeCodes: number[] = [];
  const ws = createWsClient({
    url: wsUrl(url),
    webSocketImpl: WebSocket,
    connectionParams: { token },
    retryAttempts: 0,
    lazy: true,
    on: { closed: (event) => closeCodes.push((event as { code: number }).code) },
  });
  return { ws, closeCodes };
}

const errorCodes = (feed: Feed) => feed.results.flatMap((r) => r.errors ?? []).map((e) => e.extensions?.code);

describe('live subscriptions end with their credentials', () => {
  let gw: TestGateway;
  const feeds: Feed[] = [];
  const sockets: WsClient[] = [];
  const openOn = (g: TestGateway) => g.gateway.deliveryUpdates?.openCount() ?? 0;
  const track = (feed: Feed) => (feeds.push(feed), feed);
  const socket = (url: string, token: string) => {
    const watched = watchedWsClient(url, token);
    sockets.push(watched.ws);
    return watched;
  };

  beforeAll(async () => {
    // The periodic check is far off here: a quick end shows the revocation's notice at work.
    gw = await startTestGateway({ SUBSCRIPTION_CREDENTIALS_CHECK_INTERVAL: '25s' });
  });
  afterAll(async () => {
    for (const feed of feeds) feed.close();
    await Promise.all(
      sockets.map(async (ws) => {
        await ws.dispose();
      }),
    );
    await gw?.close();
  });

  async function createKey(owner: string): Promise<{ id: string; key: string }> {
    const res = await client(gw.url, owner).post('/api/v1/settings/api-keys', { name: 'stream' });
    expect(res.status).toBe(201);
    return { id: res.body.id, key: res.body.key };
  }

  /** An SSE and a WebSocket subscription opened with `token` on `target`, once both are open. */
  async function openBoth(target: TestGateway, token: string) {
    const before = openOn(target);
    const sse = track(sseSubscribe(target.url, token));
    const { ws, closeCodes } = socket(target.url, token);
    const overWs = track(wsSubscribe(ws));
    await until(() => openOn(target) === before + 2, 10_000, 'both subscriptions to open');
    return { sse, overWs, closeCodes, before };
  }

  async function expectEnded(opened: Awaited<ReturnType<typeof openBoth>>, timeoutMs: number) {
    await opened.sse.waitForEnd(timeoutMs);
    // The stream says why, then closes (completed: no reconnecting with the same credentials).
    expect(errorCodes(opened.sse)).toEqual(['UNAUTHORIZED']);
    expect(opened.sse.completed).toBe(true);
    await until(() => opened.closeCodes.includes(4401), timeoutMs, 'the WebSocket to close with 4401');
    await opened.overWs.waitForEnd(timeoutMs);
  }

  it("ends SSE and WebSocket subscriptions once the JWT's exp passes, not before", async () => {
    const tenant = uniqueTenant();
    const { token, expiresAt } = await expiringToken(tenant, 4);
    const opened = await openBoth(gw, token);
    const eventSource = track(eventSourceSubscribe(gw.url, token));
    await until(() => openOn(gw) === opened.before + 3, 10_000, 'the EventSource subscription to open');
    // A token that stays valid keeps its stream.
    const lasting = track(sseSubscribe(gw.url, await userToken(tenant)));
    await until(() => openOn(gw) === opened.before + 4, 10_000, 'the lasting subscription to open');

    await opened.sse.waitForEnd(15_000);
    expect(Date.now()).toBeGreaterThanOrEqual(expiresAt);
    await expectEnded(opened, 15_000);
    await eventSource.waitForEnd(5_000);
    expect(errorCodes(eventSource)).toEqual(['UNAUTHORIZED']);
    await until(() => openOn(gw) === opened.before + 1, 5_000, 'only the lasting subscription to stay');
    expect(lasting.ended).toBe(false);
    lasting.close();
    await until(() => openOn(gw) === opened.before, 5_000, 'the lasting subscription to close');
  });

  it("ends the subscriptions opened with an API key as soon as it is revoked, and no other key's", async () => {
    const owner = await userToken(uniqueTenant());
    const revoked = await createKey(owner);
    const kept = await createKey(owner);
    const base = openOn(gw);
    const keptFeed = track(sseSubscribe(gw.url, kept.key));
    await until(() => openOn(gw) === base + 1, 10_000, 'the kept key’s subscription');
    const opened = await openBoth(gw, revoked.key);

    expect((await client(gw.url, owner).delete(`/api/v1/settings/api-keys/${revoked.id}`)).status).toBe(204);
    // Well before the 25 s periodic check.
    await expectEnded(opened, 10_000);
    await until(() => openOn(gw) === base + 1, 5_000, 'only the kept key’s subscription to stay');
    expect(keptFeed.ended).toBe(false);
    keptFeed.close();
    await until(() => openOn(gw) === base, 5_000, 'the kept key’s subscription to close');
  });

  it.runIf(onRealPostgres)('a revocation through one instance ends the streams on another (Postgres NOTIFY)', async () => {
    const other = await startTestGateway({ ROLE: 'api', SUBSCRIPTION_CREDENTIALS_CHECK_INTERVAL: '25s' }, gw.database);
    try {
      const owner = await userToken(uniqueTenant());
      const key = await createKey(owner);
      const opened = await openBoth(other, key.key);
      expect((await client(gw.url, owner).delete(`/api/v1/settings/api-keys/${key.id}`)).status).toBe(204);
      await expectEnded(opened, 10_000);
      await until(() => openOn(other) === opened.before, 5_000, 'the subscriptions to be gone');
    } finally {
      await other.stop();
    }
  });

  it('a revocation whose notice never came is found by the periodic check', async () => {
    // An instance of its own, checking often (on Postgres beside the first, on the same database);
    // the key is revoked behind the gateways' backs, by SQL alone.
    const checking = await startTestGateway(
      { SUBSCRIPTION_CREDENTIALS_CHECK_INTERVAL: '100ms', ...(onRealPostgres ? { ROLE: 'api' } : {}) },
      onRealPostgres ? gw.database : undefined,
    );
    try {
      const owner = await userToken(uniqueTenant());
      const res = await client(checking.url, owner).post('/api/v1/settings/api-keys', { name: 'quiet' });
      expect(res.status).toBe(201);
      const opened = await openBoth(checking, res.body.key);
      await checking.gateway.db.orm.em.fork().getConnection().execute('update api_key set revoked_at = now() where id = ?', [res.body.id]);
      await expectEnded(opened, 10_000);
      await until(() => openOn(checking) === opened.before, 5_000, 'the subscriptions to be gone');
    } finally {
      for (const feed of feeds) feed.close();
      await Promise.all(
        sockets.map(async (ws) => {
          await ws.dispose();
        }),
      );
      if (onRealPostgres) await checking.stop();
      else await checking.close();
    }
    // An embedded gateway of its own migrates a database of its own first.
  }, 90_000);
});
