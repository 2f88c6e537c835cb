// A test ping is sent by the API process itself, during the request. If that process dies before
// the outcome is recorded, the ping must not stay pending forever: it is leased, not parked, and a
// worker sends it once the lease ends.
import { afterAll, describe, expect, it } from 'vitest';
import { userToken } from '../helpers/auth.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { createWebhook, uniqueTenant } from '../helpers/delivery.js';
import { startTestGateway, TEST_ENCRYPTION_KEY, TEST_JWT_SECRET, type TestGateway } from '../helpers/gateway.js';
import { client } from '../helpers/http.js';
import { killAll, startTsx } from '../helpers/processes.js';
import { answer, startReceiver, type Receiver } from '../helpers/receiver.js';

describe('a test ping interrupted by a crash', () => {
  let db: TestDatabase | undefined;
  let gw: TestGateway | undefined;
  let receiver: Receiver | undefined;

  afterAll(async () => {
    await killAll();
    await receiver?.close();
    // Closing the gateway drops its database; without one, the database is dropped here.
    if (gw) await gw.close();
    else await db?.drop();
  });

  it('is sent by a worker once its lease ends, and ends as a success', async () => {
    db = await createTestDatabase();
    // The first request (the ping) is left unanswered; the process sending it is killed meanwhile.
    receiver = await startReceiver(() => undefined);
    const settings = { WEBHOOK_TIMEOUT: '2s', WORKER_LEASE_MARGIN: '1s', WORKER_POLL_INTERVAL: '200ms' };
    const api = startTsx('src/main.ts', [], {
      ...db.env,
      ...settings,
      ROLE: 'api',
      HOST: '127.0.0.1',
      PORT: '0',
      ENCRYPTION_KEY: TEST_ENCRYPTION_KEY,
      JWT_SECRET: TEST_JWT_SECRET,
      WEBHOOK_ALLOW_INSECURE_URLS: 'true',
      RATE_LIMIT_PER_MINUTE: '0',
    });
    const url = (await api.waitForStdout(/InfraAudit webhook gateway on (http:\/\/\S+)/, 120_000))[1]!;
    const tenant = uniqueTenant('crash');
    const caller = client(url, await userToken(tenant));
    const webhook = await createWebhook(caller, { url: `${receiver.url}/hook`, events: ['alert.created'] });
    // No worker runs in an api process: the creation ping waits; only the test ping is sent now.
    void caller.post(`/api/v1/webhooks/${webhook.id}/test`).catch(() => undefined);
    await expect.poll(() => receiver!.requests.length, { timeout: 30_000 }).toBe(1);
    api.child.kill('SIGKILL');
    expect(await api.exited).toBe('SIGKILL');

    receiver.respond(answer(200, 'ok'));
    gw = await startTestGateway(settings, db);
    const statuses = async () => {
      const rows = await gw!.gateway.db.orm.em
        .fork()
        .getConnection()
        .execute<{ status: string }[]>('select status from delivery where webhook_id = ? order by id', [webhook.id]);
      return rows.map((r) => r.status);
    };
    // Both pings (the creation one and the interrupted test one) end delivered, none pending.
    await expect.poll(statuses, { timeout: 60_000, interval: 200 }).toEqual(['success', 'success']);
    expect(receiver.requests.length).toBeGreaterThanOrEqual(3);
  }, 240_000);
});
